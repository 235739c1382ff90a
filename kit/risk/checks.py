"""Risk rules: pure functions of (book view, market, time) that return findings.

A finding is an alert plus, optionally, the action the rule proposes. Rules report every condition
that is true *now*; the alert manager turns that level into edges (an alert when a condition
starts), and the desk proposes a finding's action only when its alert is new, so a held condition
never re-sends an order. Every alert and action carries the inputs that triggered it.

Each rule is vectorised over positions: it computes a mask over the view's arrays and builds
records only for the positions that fire, so a clean book costs a few array comparisons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from itertools import compress
from typing import Any

import numpy as np

from kit.core.clock import NS_PER_S, from_ns, session_at
from kit.core.model import Action, ActionKind, Alert, Position, Severity
from kit.portfolio.book import PositionView
from kit.portfolio.market import MarketState
from kit.risk.limits import check_limits
from kit.risk.rules import ROLL_UNTESTED, Level, LevelRule, Rules
from kit.risk.tenor import SigmaGreeks, sigma_greeks
from kit.signals import is_correlation_break


class Finding:
    """A rule's verdict on one subject: an alert and, optionally, a proposed action.

    The records are built only when first read. A condition that holds is re-reported on every
    tick and dropped by the alert manager as a repeat, so formatting its message and inputs each
    time would be the desk's largest cost; ``message`` and ``inputs`` may be zero-argument
    callables for that reason.
    """

    __slots__ = ("_action", "_alert", "_inputs", "_message", "_ts", "action_kind", "key",
                 "position_id", "rule", "severity")  # fmt: skip

    def __init__(
        self,
        ts_ns: int,
        rule: str,
        severity: Severity,
        message: str | Callable[[], str],
        inputs: dict[str, Any] | Callable[[], dict[str, Any]],
        position_id: str | None = None,
        key: str = "",
        action: str = "",
    ) -> None:
        self._ts, self.rule, self.severity = ts_ns, rule, severity
        self._message, self._inputs = message, inputs
        self.position_id, self.key, self.action_kind = position_id, key, action
        self._alert: Alert | None = None
        self._action: Action | None = None

    @property
    def built(self) -> bool:
        return self._alert is not None

    @property
    def alert(self) -> Alert:
        if self._alert is None:
            message = self._message() if callable(self._message) else self._message
            inputs = self._inputs() if callable(self._inputs) else self._inputs
            self._alert = Alert(self._ts, self.severity, self.rule, message, self.position_id,
                                inputs, self.key)  # fmt: skip
            if self.action_kind:
                self._action = Action(self._ts, ActionKind(self.action_kind), self.rule, message,
                                      self.position_id, {}, inputs)  # fmt: skip
        return self._alert

    @property
    def action(self) -> Action | None:
        self.alert  # noqa: B018 - building the alert builds its action
        return self._action


class BlockedBy(Mapping[str, str]):
    """The entry blocks in force, ``"rule:key"`` -> the alert's message, from one evaluation's
    findings. Built when first read: the conditions hold tick after tick (a book over its risk
    limit) and their messages are read only by an entry check or a snapshot."""

    __slots__ = ("_d", "_findings")

    def __init__(self, findings: Iterable[Finding] = ()) -> None:
        self._findings = [f for f in findings if f.action_kind == ActionKind.BLOCK_ENTRIES]
        self._d: dict[str, str] | None = None

    def _map(self) -> dict[str, str]:
        if self._d is None:
            self._d = {f"{f.rule}:{f.key}": f.alert.message for f in self._findings}
        return self._d

    def __getitem__(self, key: str) -> str:
        return self._map()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map())

    def __len__(self) -> int:
        return len(self._map())

    def __repr__(self) -> str:
        return repr(self._map())


@dataclass(frozen=True)
class Context:
    """What rules see. ``last_data_ns`` is when the desk last received market data (its clock);
    ``feed_down_since`` maps each feed that is not LIVE to when it stopped being LIVE."""

    view: PositionView
    market: MarketState
    rules: Rules
    now_ns: int
    last_data_ns: int
    feed_down_since: Mapping[str, int] = field(default_factory=dict)

    @cached_property
    def sigma(self) -> SigmaGreeks:
        """Delta and gamma scaled by each position's 1-sigma move (:mod:`kit.risk.tenor`)."""
        return sigma_greeks(self.view, self.market, self.now_ns)


def _f(x: Any) -> float:
    return round(float(x), 6)


def _inputs(v: PositionView, i: int, **extra: Any) -> dict[str, Any]:
    """The position's state at the time of the finding: the audit trail."""
    return {
        "spot": _f(v.spot[i]),
        "pnl": _f(v.total_pnl[i]),
        "pnl_pct": _f(v.pnl_pct[i]),
        "credit": _f(v.credit[i]),  # net credit of the units held: what P&L % is of
        "held_pnl": _f(v.held_pnl[i]),
        "net_credit": _f(v.net_credit[i]),
        "original_credit": _f(v.original_credit[i]),
        "delta_unit": _f(v.delta_unit[i]),
        "gamma_unit": _f(v.gamma_unit[i]),
        "short_dist_pct": _f(v.short_dist_pct[i]),
        **{k: _f(x) if isinstance(x, float | np.floating) else x for k, x in extra.items()},
    }


def _resolve(action: str, v: PositionView, i: int) -> str:
    """roll_untested → the side away from spot: when spot falls (delta > 0) the call."""
    if action != ROLL_UNTESTED:
        return action
    side = np.sign(v.delta_unit[i]) or v.tested[i]
    return ActionKind.ROLL_CALL.value if side >= 0 else ActionKind.ROLL_PUT.value


def _level_rule(
    ctx: Context,
    rule: str,
    cfg: LevelRule,
    metric: np.ndarray,
    reached: Callable[[np.ndarray, float], np.ndarray],
    describe: Callable[[int, Level], str],
    extra: Mapping[str, np.ndarray] | None = None,
) -> list[Finding]:
    """One finding per position and level reached; the level's threshold is the alert's key.
    ``extra`` arrays join each finding's inputs (the metric's own ingredients)."""
    v, out = ctx.view, []
    live = v.is_open & np.isfinite(metric)
    # the loosest level first: a book where it holds nowhere (most ticks) costs one comparison
    ats = [lv.at for lv in cfg.levels]
    loosest = min(ats, default=0.0) if reached is _ge else max(ats, default=0.0)
    if reached in (_ge, _le) and not (live & reached(metric, loosest)).any():
        return out
    for level in cfg.levels:
        mask = live & reached(metric, level.at)
        if level.profitable_only:
            mask &= v.total_pnl > 0
        key = f"{level.at:g}"
        for i in np.flatnonzero(mask).tolist():
            action = _resolve(level.action, v, i)
            msg = partial(_described, describe, i, level, action)
            out.append(Finding(ctx.now_ns, rule, level.severity, msg,
                                partial(_level_inputs, v, i, level.at, extra),
                                position_id=v.ids[i], key=key, action=action))  # fmt: skip
    return out


def _level_inputs(
    v: PositionView, i: int, at: float, extra: Mapping[str, np.ndarray] | None
) -> dict[str, Any]:
    """A level finding's inputs, read when its alert is built (most findings are repeats)."""
    return _inputs(v, i, threshold=at, **{k: a[i] for k, a in (extra or {}).items()})


def _described(describe: Callable[[int, Level], str], i: int, level: Level, action: str) -> str:
    return describe(i, level) + (f" → {action}" if action else "")


def _ge(x: np.ndarray, at: float) -> np.ndarray:
    return x >= at


def _le(x: np.ndarray, at: float) -> np.ndarray:
    return x <= at


def _sigma_inputs(s: SigmaGreeks) -> dict[str, np.ndarray]:
    return {"delta_1s": s.delta_1s, "gamma_1s": s.gamma_1s, "move_pct": s.move_pct,
            "atm_iv": s.atm_iv}  # fmt: skip


def delta(ctx: Context) -> list[Finding]:
    """1σ moves (over the time left) from the delta-neutral spot (kit.risk.tenor)."""
    v, s = ctx.view, ctx.sigma
    return _level_rule(ctx, "delta", ctx.rules.delta, s.delta_1s, _ge,
                       lambda i, lv: f"net delta {v.delta_unit[i]:+.3f} per unit: spot "
                                     f"{s.delta_1s[i]:.2f}σ (σ ±{s.move_pct[i]:.2f}%) from "
                                     f"delta-neutral, reached {lv.at:g}σ",
                       _sigma_inputs(s))  # fmt: skip


def profit_target(ctx: Context) -> list[Finding]:
    v = ctx.view
    return _level_rule(ctx, "profit_target", ctx.rules.profit_target, v.pnl_pct, _ge,
                       lambda i, lv: f"profit {v.pnl_pct[i]:.1f}% of the net credit "
                                     f"{v.credit[i]:,.2f} reached {lv.at:g}%")  # fmt: skip


def stop_loss(ctx: Context) -> list[Finding]:
    v = ctx.view
    loss = -v.stop_pct  # held marks at the worse side: a wide market never blinds the stop
    return _level_rule(ctx, "stop_loss", ctx.rules.stop_loss, loss, _ge,
                       lambda i, lv: f"loss {loss[i]:.0f}% of the net credit "
                                     f"{v.credit[i]:,.2f} reached {lv.at:g}%")  # fmt: skip


def strike_breach(ctx: Context) -> list[Finding]:
    v = ctx.view
    return _level_rule(ctx, "strike_breach", ctx.rules.strike_breach, v.short_dist_pct, _le,
                       lambda i, lv: f"spot {v.spot[i]:.2f} within {lv.at:g}% of a short "
                                     f"{'put' if v.tested[i] > 0 else 'call'} "
                                     f"({v.short_dist_pct[i]:+.2f}%)")  # fmt: skip


def leg_delta(ctx: Context) -> list[Finding]:
    """A short leg's own |delta| (the grid's ``exit_delta``): the largest of the position's."""
    v = ctx.view
    return _level_rule(ctx, "leg_delta", ctx.rules.leg_delta, v.short_delta, _ge,
                       lambda i, lv: f"a short leg's |delta| {v.short_delta[i]:.3f} reached "
                                     f"{lv.at:g}", {"short_delta": v.short_delta})  # fmt: skip


def gamma(ctx: Context) -> list[Finding]:
    """|Net delta change per unit| for a 1σ move over the time left (kit.risk.tenor)."""
    s = ctx.sigma
    return _level_rule(ctx, "gamma", ctx.rules.gamma, s.gamma_1s, _ge,
                       lambda i, lv: f"a 1σ move (±{s.move_pct[i]:.2f}%) swings net delta "
                                     f"{s.gamma_1s[i]:.2f} per unit, reached {lv.at:g}",
                       _sigma_inputs(s))  # fmt: skip


def trailing_stop(ctx: Context) -> list[Finding]:
    cfg, v = ctx.rules.trailing_stop, ctx.view
    peak = v.peak_pct
    armed = v.is_open & (peak >= min([cfg.arm_pct, *(lk.at for lk in cfg.locks)]))
    if not armed.any():  # no position ever reached the arming profit: the usual tick
        return []
    stop = np.where(
        peak >= cfg.arm_pct,
        np.where(peak >= cfg.tighten_from_pct, peak - cfg.trail_pct, 0.0),
        -np.inf,
    )
    for lk in cfg.locks:  # fixed tiers: from a peak of ``at`` the stop is at least ``lock``
        stop = np.where(peak >= lk.at, np.maximum(stop, lk.lock), stop)
    out = []
    for i in np.flatnonzero(armed & (v.pnl_pct <= stop)):
        msg = (f"profit {v.pnl_pct[i]:.1f}% fell to the trailing stop {stop[i]:.1f}% "
               f"(peak {v.peak_pct[i]:.1f}%) → {cfg.action}")  # fmt: skip
        out.append(Finding(ctx.now_ns, "trailing_stop", Severity.WARNING, msg,
                            partial(_inputs, v, i, peak_pct=v.peak_pct[i], stop_pct=stop[i]),
                            position_id=v.ids[i], action=cfg.action))  # fmt: skip
    return out


def time_stop(ctx: Context) -> list[Finding]:
    cfg, v = ctx.rules.time_stop, ctx.view
    if cfg.only_expiring_today:
        to_close_s = (v.nearest_expiry_ns - ctx.now_ns) / NS_PER_S
    else:
        s = session_at(from_ns(ctx.now_ns))
        left = np.inf if s is None else (s.close - from_ns(ctx.now_ns)).total_seconds()
        to_close_s = np.full(len(v), left)
    near = (to_close_s > 0) & (to_close_s <= cfg.minutes_to_close * 60)
    out: list[Finding] = []
    if not near.any():  # hours from the close: the usual tick
        return out
    for i in np.flatnonzero(v.is_open & near & (v.pnl_pct >= cfg.min_profit_pct)):
        msg = (f"{to_close_s[i] / 60:.0f} min to the close with profit {v.pnl_pct[i]:.1f}% "
               f"≥ {cfg.min_profit_pct:g}% → {cfg.action}")  # fmt: skip
        out.append(Finding(ctx.now_ns, "time_stop", Severity.WARNING, msg,
                            _inputs(v, i, minutes_to_close=to_close_s[i] / 60),
                            position_id=v.ids[i], action=cfg.action))  # fmt: skip
    return out


def liquidity(ctx: Context) -> list[Finding]:
    cfg, v = ctx.rules.liquidity, ctx.view
    out = []
    for i in np.flatnonzero(v.is_open & ((v.max_spread_pct >= cfg.max_spread_pct) | v.stale)):
        spread = v.max_spread_pct[i]
        what = (f"a leg's spread is {spread:.1f}% of mid (limit {cfg.max_spread_pct:g}%)"
                if np.isfinite(spread) else "a leg has no two-sided quote")  # fmt: skip
        msg = partial("{}: marks held at the last good quote, no automatic execution".format,
                      what)  # fmt: skip
        out.append(Finding(ctx.now_ns, "liquidity", Severity.WARNING, msg,
                            partial(_inputs, v, i, max_spread_pct=spread if np.isfinite(
                                spread) else None),  # no two-sided quote: no number
                            position_id=v.ids[i]))  # fmt: skip
    return out


def rapid_move(ctx: Context) -> list[Finding]:
    cfg, v, out = ctx.rules.rapid_move, ctx.view, []
    held = set(compress(v.underlying, v.is_open.tolist()))
    for sym in sorted(held | {s for s in cfg.watch if s in ctx.market.underlyings}):
        rise, fall = ctx.market.move_pct(sym, cfg.window_s, ctx.now_ns)
        move = rise if rise >= fall else -fall
        if abs(move) >= cfg.move_pct:
            msg = (f"{sym} moved {move:+.2f}% within {cfg.window_s:g} s: every position "
                   f"re-evaluated")  # fmt: skip
            inputs = {"symbol": sym, "move_pct": _f(move), "window_s": cfg.window_s,
                      "spot": _f(ctx.market.spot_of(sym))}  # fmt: skip
            out.append(Finding(ctx.now_ns, "rapid_move", Severity.CRITICAL, msg, inputs, key=sym))
    return out


def feed_stale(ctx: Context) -> list[Finding]:
    cfg, m = ctx.rules.feed_stale, ctx.market
    silent_s = (ctx.now_ns - ctx.last_data_ns) / NS_PER_S
    down = {f: (ctx.now_ns - t) / NS_PER_S for f, t in ctx.feed_down_since.items()}
    worst = max(down.values(), default=0.0)
    if max(silent_s, worst) < cfg.after_s:
        return []  # fresh data: the usual case, decided before the calendar look-up below
    crypto = any(u in ("BTC", "ETH") for u in ctx.view.underlying)
    if not crypto and session_at(from_ns(ctx.now_ns)) is None:
        return []  # a closed market is quiet, not stale
    why = (f"no market data for {silent_s:.0f} s" if silent_s >= worst
           else f"feed {max(down, key=down.get)} down for {worst:.0f} s")  # fmt: skip
    inputs = {"silent_s": _f(silent_s), "feeds_down": {f: _f(s) for f, s in down.items()},
              "last_data_ns": ctx.last_data_ns, "last_event_ns": m.last_event_ns}  # fmt: skip
    msg = f"{why} (limit {cfg.after_s:g} s): automated actions frozen until fresh data"
    return [Finding(ctx.now_ns, "feed_stale", Severity.CRITICAL, msg, inputs, action="freeze")]


def correlation_break(ctx: Context) -> list[Finding]:
    cfg, m = ctx.rules.correlation_break, ctx.market
    idx = m.window_return_pct(cfg.index, cfg.window_s, ctx.now_ns)
    if not idx <= -cfg.index_down_pct:  # the index did not fall (or is unknown): no break
        return []
    vol = m.window_return_pct(cfg.vol_index, cfg.window_s, ctx.now_ns)
    if not is_correlation_break(idx, vol, cfg.index_down_pct, cfg.vol_down_pct):
        return []
    msg = (f"{cfg.index} {idx:+.2f}% and {cfg.vol_index} {vol:+.2f}% together within "
           f"{cfg.window_s:g} s: new short-vol entries blocked")  # fmt: skip
    inputs = {"index": cfg.index, "index_return_pct": _f(idx), "vol_index": cfg.vol_index,
              "vol_return_pct": _f(vol), "window_s": cfg.window_s}  # fmt: skip
    return [Finding(ctx.now_ns, "correlation_break", Severity.WARNING, msg, inputs, key=cfg.index,
                     action="block_entries")]  # fmt: skip


def limits(ctx: Context) -> list[Finding]:
    cfg, v, out = ctx.rules.limits, ctx.view, []
    n_open = int(v.is_open.sum())
    total_risk = float(v.risk[v.is_open].sum())
    day = float(v.day_pnl.sum())
    book = partial(_book_inputs, n_open, total_risk, day)  # built with an alert, not each tick
    if day <= -cfg.daily_loss_limit:
        msg = f"day P&L ${day:,.0f} hit the daily loss limit ${cfg.daily_loss_limit:,.0f}"
        out.append(Finding(ctx.now_ns, "limits", Severity.CRITICAL, msg, book, key="daily_loss",
                            action="block_entries"))  # fmt: skip
    if n_open > cfg.max_open_positions:
        msg = f"{n_open} open positions exceed the limit of {cfg.max_open_positions:g}"
        out.append(Finding(ctx.now_ns, "limits", Severity.WARNING, msg, book, key="open_positions",
                            action="block_entries"))  # fmt: skip
    if total_risk > cfg.max_total_risk:
        msg = f"total risk ${total_risk:,.0f} exceeds ${cfg.max_total_risk:,.0f}"
        out.append(Finding(ctx.now_ns, "limits", Severity.WARNING, msg, book, key="total_risk",
                            action="block_entries"))  # fmt: skip
    for i in np.flatnonzero(v.is_open & (v.quantity > cfg.max_position_size)):
        msg = f"size {v.quantity[i]:g} exceeds the position limit {cfg.max_position_size:g}"
        out.append(Finding(ctx.now_ns, "limits", Severity.WARNING, msg,
                            _inputs(v, i, quantity=v.quantity[i]), position_id=v.ids[i],
                            key="size"))  # fmt: skip
    return out


def _book_inputs(n_open: int, total_risk: float, day: float) -> dict[str, Any]:
    return {"open_positions": n_open, "total_risk": _f(total_risk), "day_pnl": _f(day)}


RULES: dict[str, Callable[[Context], list[Finding]]] = {
    "delta": delta, "profit_target": profit_target, "trailing_stop": trailing_stop,
    "stop_loss": stop_loss, "strike_breach": strike_breach, "time_stop": time_stop,
    "leg_delta": leg_delta, "gamma": gamma, "rapid_move": rapid_move, "liquidity": liquidity,
    "feed_stale": feed_stale, "correlation_break": correlation_break, "limits": limits,
}  # fmt: skip


def evaluate(ctx: Context) -> list[Finding]:
    """Every enabled rule over the whole book, in a fixed order (portfolio rules first)."""
    out: list[Finding] = []
    for name in ("feed_stale", "rapid_move", "correlation_break", "limits", "stop_loss",
                 "strike_breach", "leg_delta", "delta", "gamma", "trailing_stop", "profit_target",
                 "time_stop", "liquidity"):  # fmt: skip
        if getattr(ctx.rules, name).enabled:
            out.extend(RULES[name](ctx))
    return out


@dataclass(frozen=True)
class EntryCheck:
    """The verdict on a proposed position: ``failures`` says why it may not be opened."""

    ok: bool
    failures: tuple[str, ...]
    inputs: dict[str, Any]
    finding: Finding


def check_entry(
    ctx: Context, position: Position, iv_rank: float | None, blocked_by: tuple[str, ...] = ()
) -> EntryCheck:
    """Entry validation and pre-trade limits for ``position`` at current quotes and Greeks.

    The legs' rows must have been refreshed (the desk does it before calling).
    """
    cfg, lim, m, v = ctx.rules.entry, ctx.rules.limits, ctx.market, ctx.view
    rows = m.rows([leg.contract for leg in position.legs])
    ratio = np.array([leg.ratio for leg in position.legs], dtype=float)
    width = m.ask[rows] - m.bid[rows]
    spread = np.where(m.mark[rows] > 0, width / m.mark[rows] * 100, np.inf)
    oi = m.open_interest[rows]
    net_delta = float(np.sum(ratio * m.delta[rows]))
    failures: list[str] = []
    if cfg.enabled:
        tight = (spread < cfg.max_spread_pct) | (width <= cfg.max_spread + 1e-9)
        if not np.all(tight):
            failures.append(
                f"spread {np.nanmax(spread[~tight]):.1f}% of mid ≥ "
                f"{cfg.max_spread_pct:g}% and wider than ${cfg.max_spread:g}"
            )
        if not np.all(oi > cfg.min_open_interest):
            low = "unknown" if np.isnan(oi).any() else f"{oi.min():g}"
            failures.append(f"open interest {low} ≤ {cfg.min_open_interest:g}")
        if not abs(net_delta) <= cfg.max_abs_delta:
            failures.append(f"net delta {net_delta:+.3f} outside ±{cfg.max_abs_delta:g}")
        if iv_rank is None or not np.isfinite(iv_rank):
            failures.append("IV rank unknown (no IV history for the underlying)")
        elif iv_rank <= cfg.min_iv_rank:
            failures.append(f"IV rank {iv_rank:.0f} ≤ {cfg.min_iv_rank:g}")
    # the same limits the order manager enforces (one implementation: kit.risk.limits); the
    # total-risk limit needs the order manager's pending entries, so it is checked there
    failures.extend(check_limits(
        lim, opening=True, quantity=position.quantity, added_risk=0.0,
        open_positions=int(v.is_open.sum()), total_risk=0.0, day_pnl=float(v.day_pnl.sum()),
        killed=False, blocked_by=blocked_by))  # fmt: skip
    inputs = {
        "legs": [str(leg.contract) for leg in position.legs],
        "spread_pct": [_f(x) for x in spread], "open_interest": [_f(x) for x in oi],
        "net_delta": _f(net_delta), "iv_rank": None if iv_rank is None else _f(iv_rank),
        "quantity": position.quantity,
    }  # fmt: skip
    if failures:
        msg = "entry refused: " + "; ".join(failures)
        sev = Severity.WARNING
    else:
        msg = f"entry passed: net delta {net_delta:+.3f}, IV rank {iv_rank:.0f}"
        sev = Severity.INFO
    finding = Finding(ctx.now_ns, "entry", sev, msg, inputs, position_id=position.id)
    return EntryCheck(not failures, tuple(failures), inputs, finding)

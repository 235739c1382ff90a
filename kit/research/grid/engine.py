"""One session of the grid: enter each distinct structure once, evaluate every config's exits
together with NumPy.

Why it is fast: a day has a few dozen distinct structures (strategy x entry time x DTE x strike
rule x wings) but hundreds of configs (exits x filters x costs x sizing). For each structure the
cost to close at every later snapshot is one vector; each exit rule is then a comparison of a
(configs x snapshots) matrix and its first hit an ``argmax`` — no per-minute Python loop.

Conventions (the README's "Backtest grid" section repeats them):

* Entry at the first snapshot at or after the entry time; fills at each leg's mid minus (sell)
  or plus (buy) :func:`kit.execution.costs.slippage` of its quoted spread. ``credit`` is the net
  premium per share after that slippage.
* Exits are checked on every snapshot after the entry, on the price to close at that snapshot
  (mids plus slippage); a rule needs every leg quoted. Priority on the same snapshot: stop,
  trailing stop, profit target, short-strike delta, time of day, DTE.
* Held to expiry: settled at intrinsic value (:func:`kit.core.payoff.pnl_at_expiry`) at the last
  snapshot's spot (PM-settled) or the expiry session's first spot (AM-settled monthlies, whose
  last trading session is the one before); no fees on settlement.
* Fees: :func:`kit.execution.costs.fees_per_contract` per leg and contract, on entry and on an
  exit that trades.
* Margin (and ``risk_pct`` sizing): :func:`kit.core.payoff.stress_loss` within
  ``margin_move_pct`` (the paper broker's buying power); max loss: the same over any move.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from kit.core.model import Contract, Leg, Position, Right
from kit.core.payoff import Legs, pnl_at_expiry, stress_loss
from kit.execution.costs import CostModel, fees_per_contract, slippage
from kit.research.grid.context import DayContext
from kit.research.grid.data import Series, build_series, listed_expiries, pick_expiry, read_day
from kit.research.grid.plan import Plan, Structure
from kit.research.grid.spec import STRUCTURES

REASONS = ("stop", "trailing", "profit_target", "exit_delta", "exit_time", "exit_dte",
           "expiry", "end_of_data")  # fmt: skip
NEVER = np.iinfo(np.int64).max
MULTIPLIER = 100.0
TRADE_COLUMNS = ("config_id", "entry_ts", "exit_ts", "exit_reason", "long_put", "short_put",
                 "short_call", "long_call", "credit", "contracts", "pnl", "fees", "max_loss",
                 "margin", "entry_spot", "exit_spot", "premium")  # fmt: skip


def allowed(plan: Plan, ctx: DayContext) -> np.ndarray:
    """Per config: do the session's filters let it trade (filters read pre-trade facts only)."""
    vix = np.array([s is None or ctx.vix_regime in s for s in plan.vix_sets])
    ivr = np.array([r is None or (np.isfinite(ctx.iv_rank) and r[0] <= ctx.iv_rank <= r[1])
                    for r in plan.ivr_ranges])  # fmt: skip
    trend = np.array([s is None or ctx.trend in s for s in plan.trend_sets])
    wd = np.array([s is None or ctx.weekday in s for s in plan.day_sets])
    return vix[plan.vix] & ivr[plan.ivr] & trend[plan.trend] & wd[plan.weekday]


def _nearest(score: np.ndarray) -> int | None:
    """Index of the smallest finite score, None when there is none."""
    if not np.isfinite(score).any():
        return None
    return int(np.nanargmin(np.where(np.isfinite(score), score, np.nan)))


def select_short(s: Structure, ser: Series, e: int, call: bool, ctx: DayContext) -> int | None:
    """Column of the short strike for one side at entry row ``e`` (quoted, out of the money)."""
    bid, ask, d = ser.bid[e], ser.ask[e], ser.delta[e]
    spot = ser.spot[e]
    otm = (ser.strike > spot) if call else (ser.strike < spot)
    ok = (ser.is_call == call) & otm & (bid > 0) & (ask > 0)
    kind, x = s.rule
    if kind == "delta":
        score = np.abs(np.abs(d) - x)
    elif kind == "otm_pct":
        score = np.abs(ser.strike - spot * (1 + (x if call else -x) / 100))
    elif kind == "premium":
        score = np.abs(0.5 * (bid + ask) - x)
    else:  # band: the first strike beyond the percentile move
        band = ctx.bands.get((s.entry_minute, s.dte, x))
        if band is None:
            return None
        edge = spot * (1 + (band[1] if call else band[0]))
        ok &= (ser.strike >= edge) if call else (ser.strike <= edge)
        score = np.abs(ser.strike - edge)
    return _nearest(np.where(ok, score, np.inf))


WING_TOLERANCE = 0.5  # a wing further than this fraction of the width from it: no trade


def select_wing(ser: Series, e: int, short: int, width: float) -> int | None:
    """Column of the long wing ``width`` points beyond ``short``: the nearest quoted strike
    beyond it, if within ``WING_TOLERANCE`` x width of the target (at a chain's edge the
    nearest can be far narrower than asked: that is another structure, not this one)."""
    call = bool(ser.is_call[short])
    k = ser.strike[short]
    beyond = (ser.strike > k) if call else (ser.strike < k)
    ok = (ser.is_call == call) & beyond & (ser.ask[e] > 0) & (ser.bid[e] >= 0)
    target = k + width if call else k - width
    col = _nearest(np.where(ok, np.abs(ser.strike - target), np.inf))
    if col is None or abs(ser.strike[col] - target) > WING_TOLERANCE * width:
        return None
    return col


def legs_of(s: Structure, ser: Series, e: int, ctx: DayContext) -> list[tuple[int, int]] | None:
    """[(column, ratio)] in the structure's leg order, or None when it cannot be entered."""
    shorts = {}
    for call in s.sides:
        col = select_short(s, ser, e, call, ctx)
        if col is None:
            return None
        shorts[call] = col
    out = []
    for leg in s.legs:
        call = leg.right is Right.CALL
        col = select_wing(ser, e, shorts[call], s.wings) if leg.wing else shorts[call]
        if col is None:
            return None
        out.append((col, leg.ratio))
    # the desk's shape rules (kit.core.model): a strangle's put below its call, wings outside
    contracts = [
        Leg(
            Contract(
                ser.root,
                ser.expiry,
                float(ser.strike[c]),
                Right.CALL if ser.is_call[c] else Right.PUT,
            ),
            r,
        )
        for c, r in out
    ]
    try:
        Position("grid", STRUCTURES[s.strategy][1], tuple(contracts), 1, int(ser.ts[e]) * 1000)
    except ValueError:
        return None
    return out


def leg_fees(root: str, model: CostModel, premium: np.ndarray) -> np.ndarray:
    """:func:`kit.execution.costs.fees_per_contract` element-wise over premiums: the schedule is
    a step in the premium (the root's low-premium tier below its threshold), so it is asked
    once per tier and the threshold picks."""
    low = model.low_premium_fees.get(root)
    standard = fees_per_contract(root, model, None)
    if low is None:
        return np.full(np.shape(premium), standard)
    return np.where(premium < low[0], fees_per_contract(root, model, 0.0), standard)


def first_hit(hit: np.ndarray) -> np.ndarray:
    """Per row of a boolean (configs x snapshots) matrix: the first True column, or NEVER."""
    if hit.shape[1] == 0:
        return np.full(hit.shape[0], NEVER)
    idx = np.argmax(hit, axis=1)
    return np.where(hit[np.arange(len(idx)), idx], idx, NEVER)


def trailing_hits(profit: np.ndarray, credit: np.ndarray, tiers) -> np.ndarray:
    """First snapshot where profit falls back to a tier's lock after reaching its trigger
    (both % of the credit); the running peak includes the current snapshot only."""
    peak = np.fmax.accumulate(np.where(np.isfinite(profit), profit, -np.inf), axis=1)
    floor = np.full(profit.shape, -np.inf)
    for trig, lock in tiers:
        on = peak >= (trig / 100) * credit[:, None]
        floor = np.where(on, np.maximum(floor, (lock / 100) * credit[:, None]), floor)
    return first_hit(np.isfinite(profit) & (profit <= floor))


def evaluate_structure(
    plan: Plan,
    si: int,
    ser: Series,
    ctx: DayContext,
    ok: np.ndarray,
    settle: tuple[float, int] | None,
) -> dict[str, np.ndarray] | None:
    """The trades of every config entering structure ``si`` on this session."""
    s = plan.structures[si]
    cfg = np.flatnonzero((plan.struct == si) & ok)
    on_day = np.flatnonzero(ser.session == 0)
    e_rel = np.searchsorted(ser.minute[on_day], s.entry_minute, side="left")
    if not cfg.size or e_rel >= on_day.size:
        return None
    e = int(on_day[e_rel])
    legs = legs_of(s, ser, e, ctx)
    if legs is None:
        return None
    cols = np.array([c for c, _ in legs])
    ratio = np.array([r for _, r in legs], dtype=float)
    n_legs = len(legs)
    last_day = len(ser.days) - 1
    expiry_seen = ser.days[-1] == ser.expiry
    trading = ser.session <= (last_day - 1 if ser.am_settled and expiry_seen else last_day)
    end = int(np.flatnonzero(trading)[-1]) + 1
    bid, ask = ser.bid[e:end][:, cols], ser.ask[e:end][:, cols]
    mid, spread = 0.5 * (bid + ask), ask - bid
    if not np.isfinite(mid[0]).all():
        return None
    mark = -(mid @ ratio)  # price to close at mid (a credit structure: positive)
    spread_sum = spread.sum(axis=1)
    frac = np.array([slippage(1.0, n_legs, m) for m in plan.costs])
    c_of = plan.cost[cfg]
    credit = mark[0] - frac[c_of] * spread_sum[0]  # (K,) net credit per share after slippage
    # later snapshots only: exits are decided after the entry
    debit = mark[None, 1:] + frac[c_of][:, None] * spread_sum[None, 1:]  # (K, T)
    T = debit.shape[1]
    num = {k: v[cfg] for k, v in plan.num.items()}
    # entry prices per leg for each cost model: mid -/+ slippage (sell / buy)
    entry_px = mid[0][None, :] + np.sign(ratio)[None, :] * frac[:, None] * spread[0][None, :]
    strikes, calls = ser.strike[cols], ser.is_call[cols]
    spot0 = float(ser.spot[e])
    margin_c = np.array([stress_loss(np.full(n_legs, spot0), strikes, calls,
                                     ratio * MULTIPLIER, px, plan.settings.margin_move_pct)[0]
                         for px in entry_px])  # fmt: skip
    maxloss_c = np.array([stress_loss(np.full(n_legs, spot0), strikes, calls, ratio * MULTIPLIER,
                                      px, 100.0, points=401)[0] for px in entry_px])  # fmt: skip
    contracts = np.ones(cfg.size)
    for j, (kind, v) in enumerate(plan.sizing):
        sel = plan.size[cfg] == j
        if kind == "contracts":
            contracts[sel] = v
        else:
            per = np.maximum(margin_c[c_of[sel]], 1e-9)
            contracts[sel] = np.floor(plan.settings.capital * v / 100 / per)
    keep = (credit >= num["min_credit"]) & (contracts >= 1) & (credit > 0)
    if not keep.any():
        return None
    cfg, credit, debit, contracts, c_of = cfg[keep], credit[keep], debit[keep], contracts[keep], \
        c_of[keep]  # fmt: skip
    num = {k: v[keep] for k, v in num.items()}
    quoted = np.isfinite(debit)
    hits = np.full((len(REASONS) - 2, cfg.size), NEVER)
    pt, stop = num["profit_target_pct"], num["stop_mult"]
    with np.errstate(invalid="ignore"):
        hits[0] = first_hit(debit >= (credit * (1 + stop))[:, None])
        profit = credit[:, None] - debit
        for j in np.unique(plan.trail[cfg]):
            if plan.trailing[j]:
                sel = plan.trail[cfg] == j
                hits[1, sel] = trailing_hits(profit[sel], credit[sel], plan.trailing[j])
        hits[2] = first_hit(debit <= (credit * (1 - pt / 100))[:, None])
        short_delta = np.abs(ser.delta[e + 1 : end][:, cols[ratio < 0]]).max(axis=1, initial=0.0)
        hits[3] = first_hit(quoted & (short_delta[None, :] >= num["exit_delta"][:, None]))
        sess, minute = ser.session[e + 1 : end], ser.minute[e + 1 : end]
        # exit_time: on the expiry's last trading session only (never if the history stops
        # before it)
        last_trading = ser.session[end - 1] if expiry_seen else -1
        at_time = (sess == last_trading)[None, :] & (minute[None, :] >= num["exit_minute"][:, None])
        hits[4] = first_hit(quoted & at_time)
        dte_left = np.array([(ser.expiry - d).days for d in ser.days])[sess]
        later = (sess > 0)[None, :] & (dte_left[None, :] <= num["exit_dte"][:, None])
        hits[5] = first_hit(quoted & later)
    exit_at = hits.min(axis=0)
    reason = np.argmax(hits == exit_at[None, :], axis=0)
    traded = exit_at != NEVER
    ex = np.where(traded, exit_at, 0)
    exit_debit = np.where(traded, debit[np.arange(cfg.size), ex], np.nan)
    pnl_share = credit - exit_debit
    exit_row = np.where(traded, e + 1 + ex, end - 1)
    if settle is not None and np.isfinite(settle[0]):
        settle_spot, settle_ts = settle
        expiry_legs = Legs(strikes, calls, ratio, np.ones(n_legs), np.zeros(n_legs),
                           np.zeros(n_legs), np.zeros(n_legs))  # fmt: skip
        owed = -float(pnl_at_expiry(expiry_legs, [settle_spot])[0])  # per share
        pnl_share = np.where(traded, pnl_share, credit - owed)
        reason = np.where(traded, reason, REASONS.index("expiry"))
        exit_spot = np.where(traded, ser.spot[exit_row], settle_spot)
        exit_ts = np.where(traded, ser.ts[exit_row], settle_ts)
    else:  # the history ends before expiry: marked at the last quoted snapshot
        last = np.flatnonzero(np.isfinite(debit[0])) if T else np.empty(0, dtype=np.int64)
        if last.size:
            li = int(last[-1])
            fallback, row = credit - debit[:, li], e + 1 + li
        else:  # never quoted again: the price to close at the entry
            fallback, row = -frac[c_of] * spread_sum[0], e
        pnl_share = np.where(traded, pnl_share, fallback)
        reason = np.where(traded, reason, REASONS.index("end_of_data"))
        exit_row = np.where(traded, exit_row, row)
        exit_spot, exit_ts = ser.spot[exit_row], ser.ts[exit_row]
    fees = np.zeros(cfg.size)
    exit_mid = mid[np.clip(exit_row - e, 0, len(mid) - 1)]  # (K, legs)
    traded_exit = reason < REASONS.index("expiry")  # settlement and open marks pay no exit fee
    for c in np.unique(c_of):
        sel, model = c_of == c, plan.costs[c]
        fees[sel] = leg_fees(ser.root, model, entry_px[c]).sum()
        out = sel & traded_exit
        fees[out] += leg_fees(ser.root, model, exit_mid[out]).sum(axis=1)
    fees *= contracts
    strike_of = {(leg.right, leg.wing): float(ser.strike[c]) for leg, (c, _) in
                 zip(s.legs, legs, strict=True)}  # fmt: skip
    k = cfg.size
    return {
        "config_id": cfg.astype(np.int64),
        "entry_ts": np.full(k, ser.ts[e]),
        "exit_ts": exit_ts.astype(np.int64),
        "exit_reason": reason.astype(np.int64),
        "long_put": np.full(k, strike_of.get((Right.PUT, True), np.nan)),
        "short_put": np.full(k, strike_of.get((Right.PUT, False), np.nan)),
        "short_call": np.full(k, strike_of.get((Right.CALL, False), np.nan)),
        "long_call": np.full(k, strike_of.get((Right.CALL, True), np.nan)),
        "credit": credit,
        "contracts": contracts,
        "pnl": pnl_share * MULTIPLIER * contracts - fees,
        "fees": fees,
        "max_loss": maxloss_c[c_of] * contracts,
        "margin": margin_c[c_of] * contracts,
        "entry_spot": np.full(k, spot0),
        "exit_spot": exit_spot.astype(float),
        "premium": credit * MULTIPLIER * contracts,
    }


def _hold_frames(history: str, underlying: str, ctx: DayContext, first: pl.DataFrame,
                 expiry: date) -> list[tuple[date, pl.DataFrame]]:  # fmt: skip
    """The sessions from the entry day to ``expiry``, read one by one from disk."""
    frames = [(ctx.day, first)]
    for d in ctx.ahead:
        if d > expiry:
            break
        frames.append((d, read_day(history, underlying, d)))
    return frames


def settlement(frames: list[tuple[date, pl.DataFrame]], expiry: date,
               am_settled: bool) -> tuple[float, int] | None:  # fmt: skip
    """(spot, ts) settling ``expiry``: its session's last snapshot, or its first for
    AM-settled monthlies; None when the history stops before expiry."""
    day, frame = frames[-1]
    if day != expiry or frame.height == 0:
        return None
    snap = frame.select("ts", "spot").sort("ts")
    i = 0 if am_settled else -1
    return float(snap["spot"][i]), int(snap["ts"].dt.epoch("us")[i])


def evaluate_day(plan: Plan, ctx: DayContext, history: str) -> dict[str, np.ndarray]:
    """Every trade of every config entering on ``ctx.day`` (columns: :data:`TRADE_COLUMNS`
    plus ``date``), from the history directory ``history``."""
    underlying = plan.settings.underlying
    ok = allowed(plan, ctx)
    out: list[dict[str, np.ndarray]] = []
    if ok.any():
        frame = read_day(history, underlying, ctx.day)
        roots = plan.settings.roots
        expiries = [p for p in listed_expiries(frame) if not roots or p[1] in roots]
        by_dte: dict[int, list[int]] = {}
        for si, s in enumerate(plan.structures):
            by_dte.setdefault(s.dte, []).append(si)
        for dte, sis in by_dte.items():
            picked = pick_expiry(expiries, ctx.day, dte)
            if picked is None:
                continue
            expiry, root = picked
            frames = _hold_frames(history, underlying, ctx, frame, expiry)
            ser = build_series(frames, root, expiry)
            settle = settlement(frames, expiry, ser.am_settled)
            for si in sis:
                trades = evaluate_structure(plan, si, ser, ctx, ok, settle)
                if trades is not None:
                    out.append(trades)
    if not out:
        return {c: np.empty(0) for c in (*TRADE_COLUMNS, "date")}
    cols = {c: np.concatenate([t[c] for t in out]) for c in TRADE_COLUMNS}
    cols["date"] = np.full(len(cols["config_id"]), ctx.day.toordinal())
    return cols

"""One strategy for the event-driven backtest: a grid row (or a TOML file with the same
parameters), turned into what the desk trades with: the autopilot's entry and the risk rules'
exits.

Why a grid row: a strategy that looked good in ``kit backtest grid`` is replayed event by event
through the real desk with exactly its parameters, so the two can be compared trade by trade.
A config file is the grid's own TOML format with one value per axis (a scalar or a one-element
list), so a config copied out of a grid file runs as is.

What the desk does with each axis (the grid's meaning, the desk's rules):

* ``strategy`` ``short_strangle`` or ``iron_condor`` (its long wings ``wings`` points beyond
  the shorts, the nearest quoted strike within half the width: the grid's rule, bought with the
  shorts in one order); ``entry_time`` the one entry attempt (New York time);
  ``dte`` sessions to expiry; ``strikes`` ``delta:X`` the put and the call each nearest
  X (the grid's rule: ``AutoConfig.nearest``), ``otm_pct:X`` / ``premium:X`` the grid's
  out-of-the-money, two-sided strike nearest X % from spot / with a mid nearest $X
  (``strategies.nearest_otm``), ``P95`` (an options history only) the first strike beyond
  the session's move band, computed by the grid's own contexts (a session without enough past
  moves is skipped, as the grid skips it); ``sizing`` ``contracts:N``.
* ``profit_target_pct`` closes all at that % of the credit (the ``profit_target`` rule),
  ``stop_mult`` closes all at a loss of that multiple of the credit (``stop_loss`` at
  100 x mult %), ``exit_time`` closes all from that time on the expiry day (``time_stop``
  whatever the P&L, as the grid does; the live default spares a position at a loss). Every
  other rule that
  would trade (delta rolls, gamma reductions, strike breach rolls, the trailing stop unless
  ``trailing`` sets it, below) is off,
  and so is the entry rule's filter (the grid enters whenever its structure exists): the desk
  trades what the grid trades.
* The entry filters ``weekdays``, ``vix_regime``, ``iv_rank`` and ``trend`` are the grid's
  own: each session's pre-trade context is computed from the history replayed with the grid's
  functions, and a session the grid's test refuses is skipped (not run through the desk),
  reported as a ``skipped`` decision naming the filter (:mod:`kit.research.backtest.filters`).
  The simulator's sessions have no past, so there only ``weekdays`` is accepted; the others
  need ``--history``. ``kit run --auto --strategy`` trades one live session and applies no
  filter, so it refuses a filtered config.
* ``trailing`` ``"T:L,..."`` (once the profit reached T % of the credit, close when it falls
  back to L %) is the ``trailing_stop`` rule's fixed tiers (``locks``), with its breakeven
  stop and its trail never armed: the grid's stop stays at each lock, it never follows the
  peak.
* ``exit_dte``: the grid closes from the session after the entry on; the backtest holds one
  session, so it is accepted with ``dte = 0`` (where it never fires in the grid either) and
  refused otherwise.
* ``exit_delta`` (a short leg's |delta| reaching X) is the desk's ``leg_delta`` rule at X,
  closing the position. Both read the largest |delta| of the short legs; the grid's is the
  history's delta at each snapshot, the desk's its own from each quote.
  Credit spreads and cost models other than the paper broker's are not
  modelled by the desk yet: a config that sets them is refused with one line naming the axis.
  ``wings`` means nothing to a strangle; ``min_credit`` is not enforced (the desk enters below
  it: a listed difference).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from datetime import time
from functools import cached_property
from pathlib import Path
from typing import Any

from kit.app.autopilot import AutoConfig
from kit.portfolio.strategies import DeltaBand, LiquidityFilter
from kit.research.grid.plan import Plan, compile_grid
from kit.research.grid.spec import (
    AXES,
    Grid,
    GridError,
    minute_of,
    parse_grid,
    parse_strike_rule,
    parse_trailing,
)
from kit.risk.rules import Rules, load_rules

TRADED = ("short_strangle", "iron_condor")
OTM_RULES = ("otm_pct", "premium")  # the grid's strike rules the desk also picks by
BAND_HALF_WIDTH = 0.05  # delta:X: the autopilot's band around X (its midpoint is X)
CLOSE_MINUTE = 16 * 60  # minutes_to_close is counted to the 16:00 close
NEVER_TIGHTEN_PCT = 1e9  # a trailing-stop stage that never arms: only the grid's fixed tiers
# the grid's entry filters (kit.research.backtest.filters applies them per session); the data
# filters read past sessions, so they need a history
FILTERS = ("weekdays", "vix_regime", "iv_rank", "trend")
DATA_FILTERS = ("vix_regime", "iv_rank", "trend")
# a selection the grid would make: any two-sided quote (the grid checks no spread or OI)
OPEN_LIQUIDITY = LiquidityFilter(max_spread_pct=1e6, min_open_interest=0.0, min_bid=0.05,
                                 max_spread=1e6)  # fmt: skip


class ConfigError(ValueError):
    """A config the event-driven backtest cannot trade (one line, for the CLI)."""


@dataclass(frozen=True)
class BacktestConfig:
    """One grid row, validated by the grid's own parser (``row`` holds its axis values)."""

    row: dict[str, Any]
    settings: Any  # kit.research.grid.spec.Settings
    config_id: int | None = None  # the grid's config id, when taken from grid results

    # --- sources ---

    @classmethod
    def from_grid(cls, grid: Grid, config_id: int | None = None) -> BacktestConfig:
        if len(grid.rows) != 1:
            raise ConfigError(f"a backtest config is one configuration; this one expands to "
                              f"{len(grid.rows)} (give one value per axis)")  # fmt: skip
        cfg = cls(dict(grid.rows[0]), grid.settings, config_id)
        cfg.check()
        return cfg

    @classmethod
    def from_toml(cls, path: str | Path) -> BacktestConfig:
        """A config file: the grid TOML format, one value per axis."""
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"no config file {p}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, IsADirectoryError) as exc:
            raise ConfigError(f"{p}: not a TOML config ({exc})") from None
        axes = data.get("grid", {})
        if isinstance(axes, dict):
            data = {**data, "grid": {k: v if isinstance(v, list) else [v] for k, v in axes.items()}}
        return cls.from_grid(parse_grid(data))

    @classmethod
    def from_results(cls, results: str | Path, config_id: int) -> BacktestConfig:
        """Config ``config_id`` of a grid results directory (``grid.duckdb`` or
        ``results.parquet``, as ``kit backtest grid --out`` writes them)."""
        import polars as pl

        base = Path(results)
        path = base / "results.parquet" if base.is_dir() else base
        if not path.is_file():
            raise ConfigError(f"no grid results at {base} (kit backtest grid --out DIR)")
        rows = pl.read_parquet(path).filter(pl.col("config_id") == config_id)
        if rows.height == 0:
            raise ConfigError(f"config {config_id} is not in {path}")
        row = rows.row(0, named=True)
        axes = {a: [_typed(a, row[a])] for a in AXES if a in row}
        return cls.from_grid(parse_grid({"grid": axes}), config_id)

    # --- what the desk trades ---

    def check(self) -> None:
        r = self.row
        if r["strategy"] not in TRADED:
            raise ConfigError(f"strategy {r['strategy']!r}: the event-driven backtest trades "
                              f"{' and '.join(TRADED)} so far")  # fmt: skip
        if r["exit_dte"] != "none" and int(r["dte"]) > 0:
            raise ConfigError(f"exit_dte {r['exit_dte']!r}: the grid closes on a later session; "
                              "the event-driven backtest holds one session (use none, or "
                              "dte = 0, where it never fires)")  # fmt: skip
        if r["costs"] != "default":
            raise ConfigError(f"costs {r['costs']!r}: the desk's paper broker charges its own "
                              "fees (use default)")  # fmt: skip
        if not str(r["sizing"]).startswith("contracts:"):
            raise ConfigError(f"sizing {r['sizing']!r}: use contracts:N")
        self.band()  # a delta the band cannot hold
        self.filter_plan  # noqa: B018 -- a filter value the grid's parser refuses

    @property
    def band_key(self) -> tuple[int, int, float] | None:
        """A P-band strike rule's key into the grid's session contexts (entry minute, dte,
        percentile); None for the other rules."""
        kind, pct = parse_strike_rule(self.row["strikes"])
        if kind != "band":
            return None
        return minute_of(self.row["entry_time"], "entry_time"), int(self.row["dte"]), pct

    @property
    def filtered(self) -> bool:
        """Does the config set an entry filter (the grid's ``any`` is off)?"""
        return any(str(self.row[a]).strip().lower() != "any" for a in FILTERS)

    def for_live(self) -> BacktestConfig:
        """The config for ``kit run --auto --strategy``: one session traded as it comes, where
        no filter is applied, so a filtered config is refused rather than traded unfiltered."""
        if self.band_key is not None:
            raise ConfigError(f"strikes {self.row['strikes']!r}: the move band comes from past "
                              "sessions of an options history; kit run --auto cannot place "
                              "it (kit backtest run --history DIR can)")  # fmt: skip
        if self.filtered:
            axis = next(a for a in FILTERS if str(self.row[a]).strip().lower() != "any")
            raise ConfigError(f"{axis} {self.row[axis]!r}: kit run --auto trades every "
                              "session (entry filters apply in kit backtest run only); use "
                              "any")  # fmt: skip
        return self

    @cached_property
    def filter_plan(self) -> Plan:
        """The config compiled as the grid compiles it: its filters parsed by the grid's own
        parsers, for the grid's own test (:func:`kit.research.grid.engine.allowed`)."""
        try:
            return compile_grid(Grid(self.settings, [self.row]))
        except GridError as exc:
            raise ConfigError(str(exc)) from None

    def band(self) -> DeltaBand:
        kind, target = parse_strike_rule(self.row["strikes"])
        if kind != "delta":  # strikes by otm_pct or premium: the band is not used
            return DeltaBand()
        try:
            half = min(BAND_HALF_WIDTH, target - 0.01, 0.49 - target)  # centred: mid = X
            return DeltaBand(target - half, target + half)
        except ValueError as exc:
            raise ConfigError(f"strikes {self.row['strikes']!r}: {exc}") from None

    @property
    def quantity(self) -> int:
        n = float(str(self.row["sizing"]).split(":", 1)[1])
        if n < 1 or n != int(n):
            raise ConfigError(f"sizing {self.row['sizing']!r}: whole contracts >= 1")
        return int(n)

    @property
    def entry_time(self) -> time:
        m = minute_of(self.row["entry_time"], "entry_time")
        return time(m // 60, m % 60)

    @property
    def name(self) -> str:
        r = self.row
        cid = f"config {self.config_id}: " if self.config_id is not None else ""
        return (f"{cid}{r['strategy']} {r['strikes']} at {r['entry_time']}, {r['dte']} DTE, "
                f"target {r['profit_target_pct']}%, stop x{r['stop_mult']}, "
                f"exit {r['exit_time']}"
                + (f", trailing {r['trailing']}" if r["trailing"] != "none" else "")
                + "".join(f", {a} {r[a]}" for a in FILTERS if str(r[a]) != "any"))  # fmt: skip

    def auto(self) -> AutoConfig:
        """The autopilot's entry: one attempt at ``entry_time``."""
        sid = f"bt-{self.config_id}" if self.config_id is not None else "bt"
        condor = self.row["strategy"] == "iron_condor"
        wings = float(self.row["wings"]) if condor else 0.0
        kind, _ = parse_strike_rule(self.row["strikes"])
        return AutoConfig(strategy_id=sid, dte=int(self.row["dte"]), band=self.band(),
                          liquidity=OPEN_LIQUIDITY, quantity=self.quantity,
                          first_entry=self.entry_time, last_entry=self.entry_time,
                          nearest=True, wing_width=wings,
                          strikes=self.row["strikes"] if kind in OTM_RULES else "")  # fmt: skip

    def rule_overrides(self, snapshot_s: float | None = None) -> dict[str, Any]:
        """The risk rules' tables for this config's exits (and nothing else that trades). The
        grid trades at any spread, so no spread holds an exit back (``liquidity``); on data
        ``snapshot_s`` apart (a history) silence counts as stale only after 2.5 snapshots."""
        r = self.row
        off = {"enabled": False}
        out: dict[str, Any] = {"entry": off, "delta": off, "gamma": off, "strike_breach": off,
                               "trailing_stop": off,
                               "liquidity": {"max_spread_pct": 1e6}}  # fmt: skip
        if tiers := parse_trailing(r["trailing"]):  # the grid's fixed tiers, nothing trailing
            out["trailing_stop"] = {"enabled": True, "arm_pct": NEVER_TIGHTEN_PCT,
                                    "tighten_from_pct": NEVER_TIGHTEN_PCT, "trail_pct": 0.0,
                                    "locks": [{"at": t, "lock": lk} for t, lk in tiers],
                                    "action": "close_all"}  # fmt: skip
        if snapshot_s:
            out["feed_stale"] = {"after_s": 2.5 * snapshot_s}
        target, stop = r["profit_target_pct"], r["stop_mult"]
        close = lambda at, sev: {"enabled": True, "levels": [{"at": at,  # noqa: E731
                                 "severity": sev, "action": "close_all"}]}  # fmt: skip
        out["profit_target"] = off if target == "none" else close(float(target), "INFO")
        leg = r["exit_delta"]
        out["leg_delta"] = off if leg == "none" else close(float(leg), "WARNING")
        out["stop_loss"] = off if stop == "none" else close(100.0 * float(stop), "CRITICAL")
        if r["exit_time"] == "none":
            out["time_stop"] = off
        else:
            minutes = CLOSE_MINUTE - minute_of(r["exit_time"], "exit_time")
            # whatever the P&L, as the grid's exit_time (the live default spares a loser)
            out["time_stop"] = {"minutes_to_close": float(max(minutes, 1)),
                                "min_profit_pct": -1e12, "only_expiring_today": True,
                                "action": "close_all"}  # fmt: skip
        return out

    def rules(self, snapshot_s: float | None = None) -> Rules:
        try:
            return load_rules(None, self.rule_overrides(snapshot_s))
        except ValueError as exc:
            raise ConfigError(f"rules for {self.name}: {exc}") from None


def _typed(axis: str, value: Any) -> Any:
    """A results table's text value back to the type the grid file had (dte an int, numbers
    floats, the rest text)."""
    if value is None:
        return "none"
    text = str(value)
    if axis in ("dte", "exit_dte") and text != "none":
        return int(float(text))
    if axis in ("wings", "min_credit", "profit_target_pct", "stop_mult", "exit_delta"):
        try:
            x = float(text)
        except ValueError:
            return text
        return "none" if math.isnan(x) else x
    return text

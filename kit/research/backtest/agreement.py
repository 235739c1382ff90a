"""Grid <-> desk agreement: the grid's fast estimate and the event-driven replay, trade by trade.

Why: a grid row is only worth trading if the desk that will trade it does what the grid
assumed. For the same config and sessions (an options history), each session's grid trade and
desk trade are set side by side; where their models agree (same strikes entered at the same
snapshot, the same exit rule at the same snapshot) they must agree within :class:`Tolerance`,
and every other difference is listed with its cause.

The models differ in known ways, each named in a row's ``causes``:

* ``fill``: the grid fills at mid less its slippage model at the snapshot; the desk's order
  manager works a limit ladder through the paper broker, seconds later, a tick or so off mid,
  with the paper broker's fees.
* ``exit_snapshot``: the desk measures P&L on its own fills and marks, the grid on its credit
  after slippage and its exit cost, so a threshold near the line (a target, a stop, a trailing
  stop's arming profit or its breakeven) is crossed a snapshot or more apart.
* ``held_quote``: the desk never executes automatically on a position whose leg has no
  quote to mark (wide, or gone), and cannot sell a long wing that has no bid (a 0DTE wing bid
  at 0): its exit is only proposed or refused, and the position settles; the grid closes at
  the quotes. (A short leg quoted 0.00 / 0.05 is marked at its mid and bought back.)
* ``strikes``: the desk's deltas (its own IV from the quotes) and the history's put another
  strike nearest the target.
* ``entry``: one side entered and the other did not (a refused or unfillable entry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl

from kit.research.backtest.runner import HELD_NO_BID, BacktestResult

# grid exit reason -> the desk rule that carries it out
EXIT_RULE = {"profit_target": "profit_target", "stop": "stop_loss", "exit_time": "time_stop",
             "trailing": "trailing_stop", "exit_delta": "leg_delta", "expiry": "settlement",
             "end_of_data": "settlement"}  # fmt: skip


@dataclass(frozen=True)
class Tolerance:
    """How far apart a matched trade may be. The desk's ladder works an order for seconds
    (entries and exits fill within ``fill_s`` of the grid's snapshot), and fills a tick or so
    off the grid's mid-less-slippage on each leg, both ways, plus its own fees: ``pnl_per_contract``
    dollars on a two-leg round trip."""

    fill_s: float = 90.0
    pnl_per_contract: float = 25.0


def compare(
    grid_trades: pl.DataFrame, desk: BacktestResult, tol: Tolerance | None = None
) -> list[dict[str, Any]]:
    """One row per session with a trade on either side: ``status`` ``agree`` | ``differ`` |
    ``grid_only`` | ``desk_only``, both sides' strikes, times, exit reasons and P&L, and
    ``causes`` (see the module docstring) for each difference."""
    tol = tol or Tolerance()
    grid = {r["date"]: r for r in grid_trades.sort("entry_ts").iter_rows(named=True)}
    mine = {datetime.fromisoformat(t["entry_ts"]).date(): t for t in desk.trades}
    rows = []
    for day in sorted(set(grid) | set(mine)):
        g, d = grid.get(day), mine.get(day)
        if g is None or d is None:
            status = "desk_only" if g is None else "grid_only"
            rows.append({"date": day.isoformat(), "status": status, "causes": ["entry"],
                         "grid": _side(g), "desk": d})  # fmt: skip
            continue
        rows.append(_pair(day.isoformat(), g, d, tol))
    return rows


def _side(g: dict[str, Any] | None) -> dict[str, Any] | None:
    if g is None:
        return None
    return {"strikes": _grid_strikes(g), "entry_ts": _iso(g["entry_ts"]),
            "exit_ts": _iso(g["exit_ts"]), "exit_reason": g["exit_reason"],
            "pnl": round(float(g["pnl"]), 2), "contracts": int(g["contracts"])}  # fmt: skip


def _pair(day: str, g: dict[str, Any], d: dict[str, Any], tol: Tolerance) -> dict[str, Any]:
    grid = _side(g)
    assert grid is not None
    causes: list[str] = []
    desk_exit = d["exit_reason"]
    if d["strikes"] != grid["strikes"]:
        causes.append("strikes")
    entry_lag = _seconds(d["entry_ts"]) - _seconds(grid["entry_ts"])
    if not 0 <= entry_lag <= tol.fill_s:
        causes.append("fill")
    if EXIT_RULE.get(grid["exit_reason"]) != desk_exit:
        held = {"proposed: illiquid quotes, no automatic execution", HELD_NO_BID}
        if held & set(d.get("proposed", ())):
            causes.append("held_quote")
        else:
            causes.append("exit_snapshot")
    elif desk_exit != "settlement":
        exit_lag = _seconds(d["exit_ts"]) - _seconds(grid["exit_ts"])
        if not 0 <= exit_lag <= tol.fill_s:
            causes.append("exit_snapshot")
    pnl_gap = d["pnl"] - grid["pnl"]
    if abs(pnl_gap) > tol.pnl_per_contract * max(grid["contracts"], 1) and not causes:
        causes.append("fill")
    return {"date": day, "status": "differ" if causes else "agree", "causes": causes,
            "grid": grid, "desk": {k: d[k] for k in ("strikes", "entry_ts", "exit_ts",
                                                      "exit_reason", "pnl", "contracts")},
            "pnl_gap": round(pnl_gap, 2), "entry_lag_s": round(entry_lag, 1)}  # fmt: skip


def _grid_strikes(g: dict[str, Any]) -> str:
    """The grid's strikes in the desk's form, low to high (``4960P/5090C``)."""
    legs = [(g["long_put"], "P"), (g["short_put"], "P"), (g["short_call"], "C"),
            (g["long_call"], "C")]  # fmt: skip
    return "/".join(f"{k:g}{r}" for k, r in legs if k == k)  # NaN: no such leg


def _iso(ts: Any) -> str:
    return ts.astimezone(UTC).isoformat() if isinstance(ts, datetime) else str(ts)


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def report(rows: list[dict[str, Any]]) -> str:
    """The comparison as text: a line per session, the differences with their causes."""
    out = []
    for r in rows:
        g, d = r["grid"], r["desk"]
        if g is None or d is None:
            out.append(f"{r['date']}  {r['status']}: only one side traded (entry)")
            continue
        line = (f"{r['date']}  {r['status']:6}  {d['strikes']:>13} vs {g['strikes']:<13} "
                f"exit {d['exit_reason']} {d['exit_ts'][11:19]} vs {g['exit_reason']} "
                f"{g['exit_ts'][11:19]}  P&L {d['pnl']:+.2f} vs {g['pnl']:+.2f}")  # fmt: skip
        out.append(line + (f"  causes: {', '.join(r['causes'])}" if r["causes"] else ""))
    return "\n".join(out)

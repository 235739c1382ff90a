"""The event-driven backtest: one strategy, day by day, through the real desk.

Each session is the autopilot's (:func:`kit.app.autopilot.run_auto`): the builder wires the
full Desk, the risk rules, the order manager and the paper broker on a stepped simulated clock
(RunSpec mode ``backtest``), the strategy enters once at its entry time, the rules carry out
its exits, and whatever is held at the close is settled at intrinsic value. The market is

* the simulator (``history=None``): the same seeded 1 s path as ``kit run --feed sim``,
  conflated to one batch per ``conflate_s`` (:class:`~kit.adapters.sim.feed.SimFeed`);
* an options history (``history=DIR``, ``kit history build``): each session's snapshots
  replayed as quotes and SPX/VIX ticks (:mod:`kit.research.backtest.history`);
* the store's recorded ticks: give the recording (``kit run --feed replay:``'s Parquet) as
  ``recording`` (``kit validate`` replays a store's day this way).

API (what ``kit backtest run`` and ``kit validate`` call)::

    from kit.research.backtest import BacktestConfig, run_backtest
    cfg = BacktestConfig.from_toml("my.toml")          # or .from_results(DIR, config_id)
    result = run_backtest(cfg, date(2024, 3, 11), date(2024, 3, 15), emit=print)
    result.days[0].trades, result.totals                # per-day and total, grid statistics

``emit`` receives every desk record (alerts, decisions, orders, fills) as the JSON of
``kit run --jsonl``, then one ``{"kind": "day", ...}`` per session and a final
``{"kind": "backtest", ...}``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time as walltime
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from kit.adapters.sim.chains import DEFAULT_CHAINS
from kit.adapters.sim.market import SimConfig
from kit.app.autopilot import AUTO_SEED, AutoConfig, run_auto
from kit.app.build import FeedSpec, Run
from kit.core.clock import NEW_YORK, NS_PER_S, from_ns, us_session
from kit.core.model import Contract, Fill
from kit.execution.broker import SETTLEMENT
from kit.execution.ladder import NEEDS_QUOTE
from kit.research.backtest.config import BacktestConfig
from kit.research.backtest.filters import band_strikes, session_contexts, skip_reason
from kit.research.grid.stats import statistics

SIM_CONFLATE_S = 15.0  # the simulator's batches in a backtest: 1,560 evaluations per session
HISTORY_CONFLATE_S = 60.0  # a history's snapshots are a minute apart: a heartbeat per snapshot
CAPITAL = 100_000.0
# a close the order manager refused because a leg had no quote to trade against (the ladder's
# NEEDS_QUOTE): the exit is held as an illiquid quote holds it (agreement's ``held_quote``)
HELD_NO_BID = "held: a leg to sell has no bid"
Emit = Callable[[dict[str, Any]], None]


@dataclass
class DayResult:
    """One session: its trades (one per position), P&L, fees and how long it took."""

    day: date
    entered: bool
    trades: list[dict[str, Any]]
    pnl: float  # dollars, after fees (the book's realised P&L: the session ends flat)
    fees: float
    fills: int
    orders: int
    events: int  # market events the desk processed
    evaluations: int
    seconds: float  # wall time of the session (build to close)
    cpu_seconds: float = float("nan")  # CPU time of this process meanwhile (load-independent)
    skipped: str | None = None  # why the grid's entry filters kept the session out

    def to_json(self) -> dict[str, Any]:
        return {"kind": "day", "day": self.day.isoformat(), "entered": self.entered,
                "trades": len(self.trades), "pnl": round(self.pnl, 2),
                "fees": round(self.fees, 2), "fills": self.fills, "orders": self.orders,
                "events": self.events, "evaluations": self.evaluations,
                "seconds": round(self.seconds, 3),
                "cpu_seconds": round(self.cpu_seconds, 3),
                **({"skipped": self.skipped} if self.skipped else {})}  # fmt: skip


@dataclass
class BacktestResult:
    config: BacktestConfig
    days: list[DayResult] = field(default_factory=list)

    @property
    def trades(self) -> list[dict[str, Any]]:
        return [t for d in self.days for t in d.trades]

    @property
    def totals(self) -> dict[str, Any]:
        """Trades, P&L and fees in total, and the grid's statistics over the sessions
        (:func:`kit.research.grid.stats.statistics`, one group)."""
        trades = self.trades
        n = len(trades)
        pnl = np.array([t["pnl"] for t in trades], float)
        day_index = {d.day: i for i, d in enumerate(self.days)}
        stats = statistics(
            np.zeros(n, np.int64), np.array([t["entry_ts_ns"] for t in trades], np.int64), pnl,
            np.full(n, np.nan), np.full(n, np.nan),
            np.array([t["premium"] for t in trades], float),
            np.array([day_index[date.fromisoformat(t["date"])] for t in trades], np.int64),
            1, len(self.days), CAPITAL,
        )  # fmt: skip
        out: dict[str, Any] = {
            "kind": "backtest", "config": self.config.name, "config_id": self.config.config_id,
            "sessions": len(self.days), "trades": n, "pnl": round(float(pnl.sum()), 2),
            "fees": round(sum(d.fees for d in self.days), 2),
            "seconds": round(sum(d.seconds for d in self.days), 3),
            "seconds_per_session": round(sum(d.seconds for d in self.days)
                                         / max(len(self.days), 1), 3),
        }  # fmt: skip
        for key, values in stats.items():
            if key in ("sessions", "trades"):
                continue
            x = float(values[0])
            out[key] = round(x, 4) if np.isfinite(x) else None
        return out


def sessions(date_from: date, date_to: date) -> list[date]:
    """The US sessions from ``date_from`` to ``date_to`` inclusive."""
    if date_to < date_from:
        raise ValueError(f"--to {date_to} is before --from {date_from}")
    days, d = [], date_from
    while d <= date_to:
        if us_session(d) is not None:
            days.append(d)
        d = date.fromordinal(d.toordinal() + 1)
    return days


async def run_day(
    cfg: BacktestConfig,
    day: date,
    *,
    feed: FeedSpec | str = "sim",
    seed: int = AUTO_SEED,
    conflate_s: float | None = SIM_CONFLATE_S,
    emit: Emit | None = None,
    auto: AutoConfig | None = None,
    quote_chain: bool = False,
) -> DayResult:
    """One session of ``cfg`` through the desk (``feed``: ``sim`` or a replay recording;
    ``auto``: the entry, default ``cfg.auto()``). ``conflate_s=None, quote_chain=True`` is the
    live pace (every step, the whole expiry quoted all day): the speed baseline."""
    held: list[Run] = []
    actions: dict[str, list[str]] = {}  # position -> rules whose actions were carried out
    proposed: dict[str, set[str]] = {}  # position -> why an action was only proposed

    def listen(doc: dict[str, Any]) -> None:
        status, pid = str(doc.get("status")), doc.get("position_id") or ""
        if doc.get("kind") == "decision" and status == "executed":
            actions.setdefault(pid, []).append(str(doc.get("rule")))
        elif doc.get("decision") == "rejected" and "not carried out" in str(doc.get("message")):
            actions.get(pid, [""]).pop()  # executed, then refused: it closed nothing
        elif doc.get("kind") == "decision" and status.startswith("proposed"):
            proposed.setdefault(pid, set()).add(status)
        elif doc.get("kind") == "decision" and NEEDS_QUOTE in str(doc.get("message")):
            proposed.setdefault(pid, set()).add(HELD_NO_BID)
        if emit is not None and doc.get("kind") != "summary":
            emit(doc)

    def started(run: Run) -> None:
        held.append(run)
        if not quote_chain:
            run.desk.listeners.append(lambda record: _quote_only_legs(run, record))

    began, cpu = walltime.perf_counter(), walltime.process_time()
    snapshot_s = conflate_s if isinstance(feed, FeedSpec) and feed.kind == "replay" else None
    entry = auto or cfg.auto()
    result = await run_auto(day=day, seed=seed, speed=None, rules=cfg.rules(snapshot_s),
                            config=entry, feed=feed, conflate_s=conflate_s,
                            sim=listing_only(entry.root), emit=listen,
                            on_start=started)  # fmt: skip
    seconds, cpu = walltime.perf_counter() - began, walltime.process_time() - cpu
    desk = held[0].desk
    by_position: dict[str, list[Any]] = {}
    for pid, fill in desk.book.fills:
        by_position.setdefault(pid, []).append(fill)
    trades = [_trade(pid, fills, day, (actions.get(pid) or [None])[-1],
                     sorted(proposed.get(pid, ())))
              for pid, fills in by_position.items()]  # fmt: skip
    fees = sum(f.commission for fills in by_position.values() for f in fills)
    return DayResult(day, result.entered, trades, result.realized_pnl, fees, result.fills,
                     result.orders, desk.stats["events"], desk.stats["evaluations"],
                     seconds, cpu)  # fmt: skip


def listing_only(root: str) -> SimConfig:
    """The simulator listing only ``root``'s chains: the same path and the same quotes for
    them (a quote depends on the path, the step and the contract), without listing and
    re-listing every other root all day (a third of a backtest session's CPU time)."""
    return SimConfig(chains=tuple(c for c in DEFAULT_CHAINS if c.root == root))


def _quote_only_legs(run: Run, record: Any) -> None:
    """Once a fill lands, stop quoting the chain beyond the book's legs: the config's rules
    roll nothing, so after the entry no rule reads those quotes (the entry itself selected
    from a fresh chain snapshot). Two thirds of a session's events were such quotes."""
    if not isinstance(record, Fill):
        return
    book = run.desk.book
    legs = {book.market.contracts[int(r)] for r in book.leg_row}
    extra = [c for c in run.feed.subscriptions if isinstance(c, Contract) and c not in legs]
    if extra:
        asyncio.get_running_loop().create_task(run.feed.unsubscribe(extra))


def _trade(
    pid: str, fills: list[Any], day: date, closed_by: str | None, proposed: list[str]
) -> dict[str, Any]:
    """One position as a trade row (the grid's columns where the desk has them)."""
    fills = sorted(fills, key=lambda f: f.ts_ns)
    opened = [f for f in fills if ".open" in f.client_id] or fills[:1]  # the entry's order
    premium = sum(f.price * f.quantity * 100 for f in opened)
    entry, exit_ = fills[0].ts_ns, fills[-1].ts_ns
    # a close that left worthless long legs to expire (intents.closing_legs) exits at the
    # close: their settlement at 0 moves no money
    closes = [f for f in fills if f not in opened and f.client_id != SETTLEMENT]
    if closes and all(f.price == 0 for f in fills if f.client_id == SETTLEMENT):
        exit_ = closes[-1].ts_ns
    session = us_session(day)
    settled = session is not None and exit_ >= int(session.close.timestamp() * NS_PER_S)
    return {"position_id": pid, "date": day.isoformat(),
            "entry_ts": from_ns(entry).isoformat(), "exit_ts": from_ns(exit_).isoformat(),
            "entry_ts_ns": entry, "exit_ts_ns": exit_,
            "exit_reason": "settlement" if settled else closed_by or "close",
            "strikes": "/".join(f"{c.strike:g}{c.right.value}" for c in
                                sorted({f.contract for f in opened},
                                       key=lambda c: (c.strike, c.is_call))),
            "contracts": max(f.quantity for f in opened), "premium": round(premium, 2),
            "fees": round(sum(f.commission for f in fills), 2),
            "pnl": round(sum(f.cash_flow for f in fills), 2),
            "proposed": proposed}  # fmt: skip


def _skipped(cfg: BacktestConfig, day: date, why: str, emit: Emit | None) -> DayResult:
    """A session the grid's filters keep out: no desk run, a ``skipped`` decision at the time
    the entry would have been tried, and an empty day."""
    at = datetime.combine(day, cfg.entry_time, NEW_YORK).astimezone(UTC)
    if emit is not None:
        emit({"kind": "decision", "decision": "entry", "ts": at.isoformat(),
              "ts_ns": int(at.timestamp()) * NS_PER_S, "rule": "filter", "status": "skipped",
              "reason": why, "message": why, "position_id": None})  # fmt: skip
    return DayResult(day, False, [], 0.0, 0.0, 0, 0, 0, 0, 0.0, 0.0, skipped=why)


def run_backtest(
    cfg: BacktestConfig,
    date_from: date,
    date_to: date,
    *,
    history: str | Path | None = None,
    seed: int = AUTO_SEED,
    conflate_s: float | None = None,
    emit: Emit | None = None,
) -> BacktestResult:
    """Every session from ``date_from`` to ``date_to``: the simulator (session i of the range
    on seed ``seed + i``, so days differ) or an options history. Emits a ``day`` line after
    each session and the ``backtest`` totals last."""
    days = sessions(date_from, date_to)
    if not days:
        raise ValueError(f"no sessions from {date_from} to {date_to}")
    out = BacktestResult(cfg)
    banded = cfg.band_key is not None
    ctxs = session_contexts(cfg, days, history) if cfg.filtered or banded else {}
    with tempfile.TemporaryDirectory(prefix="kit-backtest-") as scratch:
        for i, day in enumerate(days):
            if why := skip_reason(cfg, ctxs.get(day)):
                out.days.append(_skipped(cfg, day, why, emit))
                if emit is not None:
                    emit(out.days[-1].to_json())
                continue
            if history is None:
                feed: FeedSpec | str = "sim"
                pace, auto = conflate_s or SIM_CONFLATE_S, cfg.auto()
            else:
                from kit.research.backtest.history import recording

                dte, roots = int(cfg.row["dte"]), cfg.settings.roots
                path, root = recording(history, cfg.settings.underlying, day, Path(scratch),
                                       dte=dte, roots=roots)  # fmt: skip
                feed, pace = FeedSpec("replay", path), conflate_s or HISTORY_CONFLATE_S
                auto = replace(cfg.auto(), root=root, dte=0)  # the recording's one expiry
                if banded:  # this session's P-band edges, as the grid places them
                    auto = replace(auto, strikes=band_strikes(cfg, ctxs.get(day)) or "")
            result = asyncio.run(run_day(cfg, day, feed=feed, seed=seed + i, conflate_s=pace,
                                         emit=emit, auto=auto))  # fmt: skip
            out.days.append(result)
            if emit is not None:
                emit(result.to_json())
    if emit is not None:
        emit(out.totals)
    return out

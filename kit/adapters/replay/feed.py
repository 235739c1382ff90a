"""Replay recorded market data through the desk, on the simulated clock, 1x to 1000x.

A recording is a Parquet file with one row per event (see :data:`SCHEMA`); ``record`` writes one
from any events (a simulated day, a ThetaData session). ``ReplayFeed`` plays it back: each event
is released when the clock reaches its timestamp, so a paced clock replays at ``speed`` times real
time and a stepped clock (a backtest) replays as fast as the desk can consume. Rows are read in
slices, so a full day of ticks never sits in memory as objects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl

from kit.adapters.base import FeedBase, FeedStats, SubKey
from kit.core.clock import Clock, SimClock, from_ns
from kit.core.model import (
    Contract,
    Event,
    FeedState,
    ModelError,
    Quote,
    Trade,
    UnderlyingTick,
)

log = logging.getLogger(__name__)

SCHEMA: dict[str, pl.DataType] = {
    "kind": pl.Utf8,  # quote | trade | tick
    "ts_ns": pl.Int64,
    "root": pl.Utf8,
    "expiry": pl.Date,
    "strike": pl.Float64,
    "right": pl.Utf8,
    "bid": pl.Float64,
    "ask": pl.Float64,
    "bid_size": pl.Float64,
    "ask_size": pl.Float64,
    "price": pl.Float64,
    "size": pl.Float64,
    "symbol": pl.Utf8,
}
MAX_SPEED = 1000.0


def _row(ev: Event) -> dict[str, object] | None:
    if isinstance(ev, Quote):
        c = ev.contract
        return {"kind": "quote", "ts_ns": ev.ts_ns, "root": c.root, "expiry": c.expiry,
                "strike": c.strike, "right": c.right.value, "bid": ev.bid, "ask": ev.ask,
                "bid_size": ev.bid_size, "ask_size": ev.ask_size}  # fmt: skip
    if isinstance(ev, Trade):
        c = ev.contract
        return {"kind": "trade", "ts_ns": ev.ts_ns, "root": c.root, "expiry": c.expiry,
                "strike": c.strike, "right": c.right.value, "price": ev.price,
                "size": ev.size}  # fmt: skip
    if isinstance(ev, UnderlyingTick):
        return {"kind": "tick", "ts_ns": ev.ts_ns, "symbol": ev.symbol, "price": ev.price}
    return None  # feed status is not market data


def record(events: Iterable[Event], path: str | Path) -> int:
    """Write market events to Parquet, sorted by time; returns the number of rows."""
    rows = [r for r in map(_row, events) if r is not None]
    frame = pl.DataFrame(rows, schema=SCHEMA).sort("ts_ns", maintain_order=True)
    frame.write_parquet(path)
    return frame.height


def read_events(frame: pl.DataFrame, stats: FeedStats | None = None) -> Iterator[Event]:
    """Events from recording rows; a bad row is counted and skipped, never raised."""
    contracts: dict[tuple, Contract] = {}
    for r in frame.iter_rows(named=True):
        try:
            kind = r["kind"]
            if kind == "tick":
                yield UnderlyingTick(r["symbol"], r["price"], r["ts_ns"])
                continue
            key = (r["root"], r["expiry"], r["strike"], r["right"])
            c = contracts.get(key) or contracts.setdefault(key, Contract(*key))
            if kind == "quote":
                yield Quote(c, r["bid"], r["ask"], r["bid_size"], r["ask_size"], r["ts_ns"])
            elif kind == "trade":
                yield Trade(c, r["price"], r["size"], r["ts_ns"])
            else:
                raise ModelError(f"kind: unknown value {kind!r}")
        except (ModelError, TypeError) as exc:
            if stats is not None:
                stats.malformed += 1
            log.warning("replay: skipping bad row %r: %s", r, exc)


class ReplayFeed(FeedBase):
    """Plays a recording on a clock. Without subscriptions it plays everything recorded."""

    def __init__(
        self,
        source: str | Path | pl.DataFrame,
        *,
        clock: Clock | None = None,
        speed: float = 1.0,
        name: str = "replay",
        batch_rows: int = 10_000,
    ) -> None:
        if not 0 < speed <= MAX_SPEED:
            raise ValueError(f"speed must be in (0, {MAX_SPEED:g}], got {speed!r}")
        if isinstance(source, pl.DataFrame):
            self._frame = source.lazy()
        else:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"no recording at {path}")
            self._frame = pl.scan_parquet(path)
        missing = set(SCHEMA) - set(self._frame.collect_schema().names())
        if missing:
            raise ValueError(f"not a recording: missing columns {sorted(missing)}")
        self._frame = self._frame.sort("ts_ns")
        first = self._frame.select(pl.col("ts_ns").min()).collect().item()
        if first is None:
            raise ValueError("the recording is empty")
        super().__init__(name, clock or SimClock(from_ns(first), speed=speed))
        self._filter: set[SubKey] = set()
        self._batch_rows = batch_rows
        self.finished = asyncio.Event()

    async def _on_start(self) -> None:
        self._set_state(FeedState.LIVE, "replaying")

    async def subscribe(self, keys: Iterable[SubKey]) -> None:
        self._filter.update(keys)

    async def unsubscribe(self, keys: Iterable[SubKey]) -> None:
        self._filter.difference_update(keys)

    @property
    def subscriptions(self) -> list[SubKey]:
        return list(self._filter)

    def _wanted(self, ev: Event) -> bool:
        if not self._filter:
            return True
        key = ev.symbol if isinstance(ev, UnderlyingTick) else ev.contract
        return key in self._filter

    async def _run(self) -> None:
        for batch in self._frame.collect().iter_slices(self._batch_rows):
            for ev in read_events(batch, self.stats):
                wait_ns = ev.ts_ns - self.clock.now_ns()
                if wait_ns > 0:
                    await self.clock.sleep(wait_ns / 1e9)
                if self._wanted(ev):
                    self._sink.emit(ev)
        self._set_state(FeedState.CLOSED, "end of recording")
        self.finished.set()

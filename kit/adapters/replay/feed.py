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
    reader = _Rows(frame.columns, stats)
    for r in frame.iter_rows():
        ev = reader.event(r)
        if ev is not None:
            yield ev


class _Rows:
    """Recording rows (tuples, in ``columns`` order) to events, with one Contract per key.

    Why tuples and a filter here: a recorded day holds every quote of every subscribed chain
    (a million rows), and building a dict and a validated Quote for each row the desk then
    drops cost more than the replay itself; a row outside ``wanted`` is skipped before any
    record is built."""

    def __init__(self, columns: list[str], stats: FeedStats | None) -> None:
        ix = {c: i for i, c in enumerate(columns)}
        self.kind, self.ts, self.symbol, self.price, self.size = (
            ix["kind"], ix["ts_ns"], ix["symbol"], ix["price"], ix["size"])  # fmt: skip
        self.key = (ix["root"], ix["expiry"], ix["strike"], ix["right"])
        self.quote = (ix["bid"], ix["ask"], ix["bid_size"], ix["ask_size"])
        self.contracts: dict[tuple, Contract] = {}
        self.stats = stats

    def event(self, r: tuple, wanted: set[SubKey] | None = None) -> Event | None:
        """The row's event; None when bad (counted and logged) or, with a non-empty
        ``wanted``, for a symbol or contract not in it."""
        try:
            kind = r[self.kind]
            if kind == "tick":
                if wanted and r[self.symbol] not in wanted:
                    return None
                return UnderlyingTick(r[self.symbol], r[self.price], r[self.ts])
            if kind != "quote" and kind != "trade":
                raise ModelError(f"kind: unknown value {kind!r}")
            k0, k1, k2, k3 = self.key
            key = (r[k0], r[k1], r[k2], r[k3])
            c = self.contracts.get(key) or self.contracts.setdefault(key, Contract(*key))
            if wanted and c not in wanted:
                return None
            if kind == "quote":
                b, a, bs, as_ = (r[i] for i in self.quote)
                return Quote(c, b, a, bs, as_, r[self.ts])
            return Trade(c, r[self.price], r[self.size], r[self.ts])
        except (ModelError, TypeError) as exc:
            if self.stats is not None:
                self.stats.malformed += 1
            log.warning("replay: skipping bad row %r: %s", r, exc)
            return None


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

    async def _run(self) -> None:
        frame = self._frame.collect()
        reader = _Rows(frame.columns, self.stats)
        ts = reader.ts
        for batch in frame.iter_slices(self._batch_rows):
            for r in batch.iter_rows():
                wait_ns = (r[ts] or 0) - self.clock.now_ns()  # a null time: a bad row, below
                if wait_ns > 0:
                    await self.clock.sleep(wait_ns / 1e9)
                ev = reader.event(r, self._filter)  # the subscriptions as of this instant
                if ev is not None:
                    self._sink.emit(ev)
        self._set_state(FeedState.CLOSED, "end of recording")
        self.finished.set()

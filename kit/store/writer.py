"""The batched writer: the desk hands rows over in O(1) and never waits on the database.

``put`` appends a tuple to its table's buffer on the event loop. Every ``flush_s`` (or as soon
as a table holds ``batch_rows``) the buffers are swapped out in one step and a worker thread
turns them into polars frames (Arrow underneath) and writes all of them in one transaction, so
what is in the database is always a consistent cut of the desk: the paper broker's state, the
order manager's journal and the fills it knows about come from the same instant.

Rows are validated where it is cheap: in bulk, when a frame is built. A chunk that does not
build (a string where a number belongs) is retried row by row; rows that fail, carry NaN or
infinity in a required number, or NULL in a required column are rejected with a logged reason
and counted, and the rest are written.

When the database is unavailable (server down, file locked) frames are kept in memory and
retried with backoff; they are written, in order, when it returns. The buffer is bounded by
``max_rows``: past ``warn_fraction`` a CRITICAL alert says so; at the bound the oldest *ticks*
are dropped (journal rows — orders, fills, alerts, audit, state — never are) and that is alerted
too. A clean close writes everything; if the database is still down, what is left is spooled
to Parquet files that the next start writes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import msgspec
import polars as pl

from kit.core.model import Severity
from kit.store import frames as fr
from kit.store import spool
from kit.store.base import Store, StoreError, StoreUnavailableError
from kit.store.frames import ARROW_ERRORS, arrow_spec, check, columns, from_structs, to_struct
from kit.store.schema import TABLES, Table
from kit.store.threads import worker_pool

log = logging.getLogger(__name__)

Batch = list[tuple[Table, pl.DataFrame]]
_CONVERT_ERRORS = (TypeError, ValueError, OverflowError, msgspec.EncodeError,
                   pl.exceptions.PolarsError)  # fmt: skip
AlertHook = Callable[[Severity, str], None]


@dataclass(frozen=True)
class WriterConfig:
    """``flush_s``: rows reach the database at most this late (state is persisted at least
    this often). ``batch_rows``: a table this full is flushed early. ``max_rows``: rows kept
    while the database is unavailable. ``retry_s``: backoff between attempts during an outage
    (the last value repeats). ``chunk_rows``: rows converted between yields of the GIL, which
    bounds how long the worker can hold up the event loop. ``spool_dir``: where a close during
    an outage leaves unwritten rows (None: they are lost, with a CRITICAL log).
    ``worker_nice``: see :mod:`kit.store.threads`."""

    flush_s: float = 0.25
    batch_rows: int = 10_000
    max_rows: int = 2_000_000
    warn_fraction: float = 0.8
    retry_s: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 5.0)
    chunk_rows: int = 1_024  # measured: 2,048 held the loop up to ~4 ms p99 at 500k rows/s
    close_timeout_s: float = 10.0
    spool_dir: str | None = "data/spool"
    worker_nice: int = 10  # the worker threads' priority below the event loop's (Linux)


class StoreWriter:
    """Buffers rows per table and writes them in batches from a worker thread."""

    def __init__(
        self, store: Store, config: WriterConfig | None = None, *, on_alert: AlertHook | None = None
    ) -> None:
        self.store = store
        self.config = config or WriterConfig()
        self.on_alert = on_alert
        self.stats: dict[str, int] = dict.fromkeys(
            ("put", "written", "rejected", "dropped", "batches", "outages", "spooled"), 0
        )
        self.available = True
        self.outage_since: float | None = None
        self._bufs: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TABLES}
        self._width = {name: len(t.columns) for name, t in TABLES.items()}
        self._pending: deque[Batch] = deque()
        self._pending_rows = 0
        # batches ever queued / ever written: "durable" is a batch count, callbacks wait on it
        self._taken_batches = 0
        self._done_batches = 0
        self._waiters: deque[tuple[int, Callable[[], None]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pool: ThreadPoolExecutor | None = None  # two: a conversion and an insert at once
        self._closing = False
        self._busy = 0  # leading pending batches being converted or written
        self._warned = False
        self._reject_logged: dict[str, float] = {}
        # seconds each batch took to write (the metrics' histogram); None: not measured
        self.on_write: Callable[[float], None] | None = None

    # --- the hot path ---

    def put(self, table: str, row: tuple[Any, ...]) -> bool:
        """Queue one row (values in the table's column order; times as int ns since the
        epoch; JSON columns take Python values, or a ``str`` of JSON text). O(1): values are
        checked in bulk when the batch is built. Returns False if the row is refused now."""
        buf = self._bufs.get(table)
        if buf is None or len(row) != self._width[table]:
            why = "unknown table" if buf is None else (
                f"{len(row)} values for {self._width[table]} columns")  # fmt: skip
            self._reject(table, 1, why)
            return False
        buf.append(row)
        self.stats["put"] += 1
        if len(buf) >= self.config.batch_rows:
            self._wake.set()
        return True

    def when_durable(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` on the loop once every row put so far is in the database (at once if
        it already is): viewers are shown a fill only when a crash can no longer take it back.
        During an outage the call waits for the database to return (or for a close's spool)."""
        target = self._taken_batches + (1 if any(self._bufs.values()) else 0)
        if target <= self._done_batches:
            fn()
        else:
            self._waiters.append((target, fn))

    def _durable(self, batches: int) -> None:
        self._done_batches += batches
        while self._waiters and self._waiters[0][0] <= self._done_batches:
            _, fn = self._waiters.popleft()
            try:
                fn()
            except Exception:
                log.exception("store: a when_durable callback failed")

    @property
    def buffered(self) -> int:
        """Rows not yet in the database (buffered and pending retry)."""
        return sum(map(len, self._bufs.values())) + self._pending_rows

    # --- lifecycle ---

    async def start(self) -> None:
        """Start the flush task (idempotent); rows spooled by an earlier close go first."""
        if self._task is None or self._task.done():
            self._closing = False
            self._load_spool()
            self._task = asyncio.create_task(self._run(), name="store-writer")

    def _in_worker(self, fn: Callable[[Any], Any], arg: Any) -> asyncio.Future[Any]:
        if self._pool is None:
            self._pool = worker_pool("store-writer", 2, self.config.worker_nice)
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, arg)

    async def flush(self) -> None:
        """Write everything queued so far (raises StoreUnavailableError during an outage)."""
        self._take()
        await self._drain()
        if self._pending:
            raise StoreUnavailableError(
                f"{self.store.describe()}: {self._pending_rows} rows waiting"
            )

    async def close(self) -> None:
        """Write everything; if the database stays down, spool what is left to Parquet."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), self.config.close_timeout_s)
            if not self._task.done():
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._take()
        if self._pending:
            with contextlib.suppress(StoreUnavailableError):
                await self._drain()
        if self._pending:
            self._spool()
        if self._pool is not None:  # a later start makes a new one
            self._pool.shutdown(wait=False)
            self._pool = None

    async def __aenter__(self) -> StoreWriter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self) -> None:
        attempt = 0
        while True:
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(self.config.flush_s):
                    await self._wake.wait()
            self._wake.clear()
            self._take()
            try:
                await self._drain()
                attempt = 0
            except StoreUnavailableError:
                delays = self.config.retry_s
                await asyncio.sleep(delays[min(attempt, len(delays) - 1)])
                attempt += 1
            if self._closing and not self._pending and not any(self._bufs.values()):
                return

    # --- batches ---

    def _take(self) -> None:
        """Swap the buffers out (on the loop: one consistent cut) into the pending queue."""
        taken = [(TABLES[n], rows) for n, rows in self._bufs.items() if rows]
        if not taken:
            return
        for name in self._bufs:
            if self._bufs[name]:
                self._bufs[name] = []
        self._pending.append([(t, rows) for t, rows in taken])  # type: ignore[misc]
        self._taken_batches += 1
        self._pending_rows += sum(len(rows) for _, rows in taken)
        self._bound()

    async def _drain(self) -> None:
        """Write pending batches oldest first; an outage stops it (StoreUnavailableError).
        While a batch is in the database (DuckDB and psycopg release the GIL), the rows put
        since are cut into the next batch and converted: conversion and insert overlap."""
        ahead: asyncio.Future[Batch] | None = None  # the frames of pending[1], being built
        try:
            while self._pending:
                batch = self._pending[0]
                rows = sum(_height(x) for _, x in batch)
                self._busy = 1  # the bound leaves the batches in flight alone
                if ahead is not None:
                    frames, ahead = await ahead, None
                else:
                    frames = await self._in_worker(self._build, batch)
                self._pending[0] = frames  # converted once, kept as frames while retrying
                started = time.perf_counter()
                write = self._in_worker(self._write, frames)
                try:
                    ahead = await self._ahead(write)
                    written = await write
                except StoreUnavailableError as exc:
                    if ahead is not None:  # keep its conversion for the retry
                        self._pending[1], ahead = await ahead, None
                    self._down(exc)
                    raise
                if self.on_write is not None:
                    self.on_write(time.perf_counter() - started)
                self._pending.popleft()
                self._pending_rows -= rows
                self.stats["written"] += written
                self.stats["batches"] += 1
                self._up()
                self._durable(1)
        finally:
            self._busy = 0

    async def _ahead(self, write: asyncio.Future[int]) -> asyncio.Future[Batch] | None:
        """While ``write`` is in the database, cut the next batch as soon as there is one
        (``chunk_rows`` at the start, then when a table fills ``batch_rows``) and convert it
        beside the insert. Deciding only as the write started made them take turns whenever
        the rows came later (measured: half the inserts ran alone)."""
        woken = False
        while True:
            unbatched = self.buffered - self._pending_rows
            cut = woken or self._closing or unbatched >= self.config.chunk_rows
            if len(self._pending) == 1 and unbatched and cut:
                self._take()  # a consistent cut, as every take: made on the loop
            if len(self._pending) > 1:
                if _built(self._pending[1]):
                    return None
                self._busy = 2
                return self._in_worker(self._build, self._pending[1])
            if write.done() or self._closing:
                return None
            self._wake.clear()  # put sets it when a table holds batch_rows
            wake = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait((write, wake), return_when=asyncio.FIRST_COMPLETED)
            finally:  # a cancelled writer leaves no waiter behind
                wake.cancel()
            woken = wake.done() and not wake.cancelled()

    def _write(self, frames: Batch) -> int:
        try:
            return self.store.write(frames)
        except StoreUnavailableError:
            raise
        except StoreError as exc:  # one table's rows are refused: write the others, keep those
            log.error("store: batch refused (%s); writing table by table", exc)
            written = 0
            for table, frame in frames:
                try:
                    written += self.store.write([(table, frame)])
                except StoreUnavailableError:
                    raise
                except StoreError as one:
                    self._dead_letter(table, frame, str(one))
            return written

    def _build(self, batch: Sequence[tuple[Table, Any]]) -> Batch:
        """Rows → frames of each table's schema, converted in chunks (the GIL is released
        between them, bounding how long the event loop can wait) and checked once per table.
        Tables of text, numbers and times go through Arrow (:mod:`kit.store.frames`)."""
        out: Batch = []
        for table, rows in batch:
            if isinstance(rows, pl.DataFrame):
                out.append((table, rows))
                continue
            frame = self._frame(table, rows)
            frame = self._check(table, frame)
            if frame.height:
                out.append((table, frame))
        return out

    def _frame(self, table: Table, rows: list[tuple[Any, ...]]) -> pl.DataFrame:
        step = self.config.chunk_rows
        spec = arrow_spec(table.name)
        frames: list[pl.DataFrame] = []
        structs: list[Any] = []  # Arrow chunks not yet made into a frame, from row ``start``
        start = 0
        for i in range(0, len(rows), step):
            chunk = rows[i : i + step]
            if spec is not None:
                try:
                    structs.append(to_struct(spec, chunk))
                    time.sleep(fr.HANDOFF_S)  # let the event loop have the GIL between chunks
                    continue
                except ARROW_ERRORS:
                    pass
            if structs:
                frames.append(self._structs(table, structs, rows[start:i]))
                structs = []
            frames.append(self._convert(table, chunk))
            start = i + step
            time.sleep(fr.HANDOFF_S)
        if structs:
            frames.append(self._structs(table, structs, rows[start:]))
        if not frames:
            return columns(table, [])
        return pl.concat(frames) if len(frames) > 1 else frames[0]

    def _structs(
        self, table: Table, structs: list[Any], rows: list[tuple[Any, ...]]
    ) -> pl.DataFrame:
        """Arrow chunks → a frame; should that fail, these rows go the reference path, which
        rejects what it refuses with its reason (a float time is caught in the chunk)."""
        spec = arrow_spec(table.name)
        assert spec is not None
        try:
            return from_structs(table, spec, structs)
        except ARROW_ERRORS:
            step = self.config.chunk_rows
            parts = [self._convert(table, rows[i : i + step]) for i in range(0, len(rows), step)]
            return pl.concat(parts) if len(parts) > 1 else parts[0]

    def _convert(self, table: Table, rows: list[tuple[Any, ...]]) -> pl.DataFrame:
        """Strict conversion; a chunk that does not convert is redone row by row, rejecting the
        rows that fail with their reason."""
        try:
            return columns(table, rows)
        except _CONVERT_ERRORS:
            good = []
            for row in rows:
                try:
                    columns(table, [row])
                except Exception as exc:
                    self._reject(table.name, 1, _why(exc), row)
                else:
                    good.append(row)
            return columns(table, good)

    def _check(self, table: Table, frame: pl.DataFrame) -> pl.DataFrame:
        frame, rejected = check(table, frame)
        if rejected is not None:
            self._reject(table.name, rejected.height, "NaN, infinity or NULL in a required "
                         "column", rejected.row(0))  # fmt: skip
        return frame

    # --- outages, bounds, rejects ---

    def _down(self, exc: Exception) -> None:
        if self.available:
            self.available = False
            self.outage_since = time.monotonic()
            self.stats["outages"] += 1
            self._alert(Severity.CRITICAL, f"store unavailable ({exc}); keeping rows in memory "
                        f"(up to {self.config.max_rows:,}) and retrying")  # fmt: skip

    def _up(self) -> None:
        if not self.available:
            down = time.monotonic() - (self.outage_since or time.monotonic())
            self.available, self.outage_since, self._warned = True, None, False
            self._alert(Severity.INFO, f"store available again after {down:.1f} s: "
                        "buffered rows written")  # fmt: skip

    def _bound(self) -> None:
        cfg = self.config
        if not self._warned and self._pending_rows >= cfg.warn_fraction * cfg.max_rows:
            self._warned = True
            self._alert(Severity.CRITICAL, f"store buffer {self._pending_rows:,} of "
                        f"{cfg.max_rows:,} rows: ticks are dropped when full")  # fmt: skip
        excess = self._pending_rows - cfg.max_rows
        if excess <= 0:
            return
        dropped = 0
        for k, batch in enumerate(self._pending):  # oldest first
            if k < self._busy:
                continue
            for i, (table, rows) in enumerate(batch):
                if excess <= 0:
                    break
                if not table.ticks:
                    continue
                n = min(excess, _height(rows))
                batch[i] = (table, rows[n:])
                excess -= n
                dropped += n
        if dropped:
            self._pending_rows -= dropped
            self.stats["dropped"] += dropped
            self._alert(Severity.CRITICAL, f"store buffer full: dropped the {dropped:,} oldest "
                        "ticks (journal rows are kept)")  # fmt: skip

    def _reject(self, table: str, n: int, why: str, row: Any = None) -> None:
        self.stats["rejected"] += n
        now = time.monotonic()
        key = f"{table}:{why}"
        if len(self._reject_logged) > 1000:  # reasons quoting bad values must not pile up
            self._reject_logged.clear()
        if now - self._reject_logged.get(key, -math.inf) >= 1.0:  # a reason at most once a second
            self._reject_logged[key] = now
            log.warning("store: %d %s row(s) rejected: %s%s", n, table, why,
                        f" (e.g. {row!r:.200})" if row is not None else "")  # fmt: skip

    def _alert(self, severity: Severity, message: str) -> None:
        log.log(logging.CRITICAL if severity is Severity.CRITICAL else logging.INFO,
                "store: %s", message)  # fmt: skip
        if self.on_alert is not None:
            try:
                self.on_alert(severity, message)
            except Exception:
                log.exception("store: alert hook failed")

    # --- spool: nothing lost across a close during an outage ---

    def _spool(self) -> None:
        rows = self._pending_rows
        if self.config.spool_dir is None:
            log.critical("store: closing during an outage: %d rows lost", rows)
            self.stats["dropped"] += rows
        else:
            spool.spool(self.config.spool_dir, (self._build(b) for b in self._pending))
            self.stats["spooled"] += rows
            log.critical("store: closing during an outage: %d rows spooled to %s; they are "
                         "written at the next start", rows, self.config.spool_dir)  # fmt: skip
            self._durable(len(self._pending))  # on disk: the next start writes them first
        self._pending.clear()
        self._pending_rows = 0

    def _load_spool(self) -> None:
        if self.config.spool_dir is None:
            return
        for table, frame in spool.load(self.config.spool_dir):
            self._pending.append([(table, frame)])
            self._taken_batches += 1
            self._pending_rows += frame.height
        if self._pending_rows:
            log.warning("store: %d rows from the spool queued for writing", self._pending_rows)

    def _dead_letter(self, table: Table, frame: pl.DataFrame, why: str) -> None:
        self.stats["rejected"] += frame.height
        folder = self.config.spool_dir
        kept = f": kept in {spool.refused(folder, table, frame)}" if folder else ""
        log.error("store: %d %s rows refused by the database (%s)%s", frame.height,
                  table.name, why, kept)  # fmt: skip


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


def _height(rows: Any) -> int:
    return rows.height if isinstance(rows, pl.DataFrame) else len(rows)


def _built(batch: Batch | list[tuple[Table, Any]]) -> bool:
    return all(isinstance(x, pl.DataFrame) for _, x in batch)

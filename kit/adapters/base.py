"""The Feed protocol and the machinery every streaming adapter shares.

An adapter only says how to connect, how to (un)subscribe, how to parse one frame and how to
fetch history. This module does the rest, the same way for every vendor:

- reconnect with exponential backoff and jitter, and **replay the subscriptions** on every new
  connection;
- a receive-side liveness watchdog: no frame for ``liveness_timeout_s`` -> STALE, then reconnect
  (checked by a side task, so the per-frame cost is one timestamp store);
- **gap backfill** after a reconnect: live events are held back while the gap since the last
  event of each subscription is fetched from the vendor's history, then everything is released in
  order through a per-key watermark, so the consumer sees no duplicate and no hole;
- malformed frames are counted and logged (rate-limited), never raised into the loop.

Consumers iterate the feed: ``async for event in feed: ...`` yields normalised
:data:`kit.core.model.Event` records (Quote, Trade, UnderlyingTick, FeedStatus).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, runtime_checkable

from kit.core.backoff import Backoff
from kit.core.clock import NS_PER_S, Clock, LiveClock
from kit.core.model import Contract, Event, FeedState, FeedStatus, Quote, Trade, UnderlyingTick

log = logging.getLogger(__name__)

SubKey = Contract | str  # an option contract, or an underlying/index symbol ("SPX", "VIX")


class MalformedFrameError(ValueError):
    """A frame could not be decoded into events; counted and logged, never fatal."""


@dataclass(frozen=True)
class FeedConfig:
    liveness_timeout_s: float = 5.0
    backoff: Backoff = field(default_factory=Backoff)
    backfill: bool = True
    backfill_concurrency: int = 4


@dataclass
class FeedStats:
    frames: int = 0
    events: int = 0
    malformed: int = 0
    connects: int = 0
    reconnects: int = 0
    stale: int = 0
    backfilled: int = 0
    duplicates_dropped: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # subscription refusals by reason


@runtime_checkable
class Feed(Protocol):
    """What the desk needs from any source of market data."""

    name: str
    state: FeedState
    stats: FeedStats

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def subscribe(self, keys: Iterable[SubKey]) -> None: ...

    async def unsubscribe(self, keys: Iterable[SubKey]) -> None: ...

    def __aiter__(self) -> AsyncIterator[Event]: ...

    def get_nowait(self) -> Event | None:
        """The next event if one is ready, else None: the desk drains a batch this way after
        each awaited event, so it evaluates once per batch instead of once per event."""
        ...


_CLOSED = object()  # queue sentinel


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel a task and wait until it has really stopped."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _Watermark:
    """Last timestamp emitted for one key, and what was emitted at exactly that timestamp."""

    __slots__ = ("seen", "ts")

    def __init__(self, ts: int, event: Event) -> None:
        self.ts = ts
        self.seen = [event]


class EventSink:
    """Queue + per-key watermark: the O(1) path from a parsed event to the consumer."""

    def __init__(self, stats: FeedStats) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.stats = stats
        self._marks: dict[Any, _Watermark] = {}
        self._holding: list[Event] | None = None

    def emit(self, event: Event) -> None:
        if self._holding is not None and not isinstance(event, FeedStatus):
            self._holding.append(event)
            return
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        if isinstance(event, Quote | Trade):
            key: Any = (type(event), event.contract)
        elif isinstance(event, UnderlyingTick):
            key = event.symbol
        else:
            self.queue.put_nowait(event)
            return
        mark = self._marks.get(key)
        ts = event.ts_ns
        if mark is None:
            self._marks[key] = _Watermark(ts, event)
        elif ts > mark.ts:
            mark.ts, mark.seen = ts, [event]
        elif ts < mark.ts or event in mark.seen:
            self.stats.duplicates_dropped += 1
            return
        else:
            mark.seen.append(event)
        self.stats.events += 1
        self.queue.put_nowait(event)

    def last_ts(self, key: Any) -> int | None:
        mark = self._marks.get(key)
        return None if mark is None else mark.ts

    def hold(self) -> None:
        """Start holding live events back (a backfill is about to run)."""
        if self._holding is None:
            self._holding = []

    def release(self, backfilled: Sequence[Event]) -> None:
        """Deliver backfilled events, then the held live ones, all through the watermark."""
        held, self._holding = self._holding or [], None
        for ev in sorted(backfilled, key=lambda e: e.ts_ns):
            self._deliver(ev)
        for ev in held:
            self._deliver(ev)


class FeedBase(ABC):
    """Lifecycle every feed shares: a task that produces events into the sink, start/close,
    ``async with``, ``async for`` and status reporting. Subclasses write ``_run``."""

    def __init__(self, name: str, clock: Clock) -> None:
        self.name = name
        self.clock = clock
        self.stats = FeedStats()
        self.state = FeedState.CLOSED
        self._sink = EventSink(self.stats)
        self._task: asyncio.Task[None] | None = None
        self._detail = ""

    @abstractmethod
    async def _run(self) -> None:
        """Produce events until cancelled (or the source ends)."""

    async def _on_start(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Hook: runs before the producing task starts."""

    async def _on_close(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Hook: release connections after the producing task is cancelled."""

    async def start(self) -> None:
        if self._task is None:
            await self._on_start()
            self._task = asyncio.create_task(self._run(), name=f"feed:{self.name}")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
        await self._on_close()
        self._set_state(FeedState.CLOSED, "closed by client")
        self._sink.queue.put_nowait(_CLOSED)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def __aiter__(self) -> AsyncIterator[Event]:
        queue = self._sink.queue
        while True:
            item = await queue.get()
            if item is _CLOSED:
                return
            yield item

    def get_nowait(self) -> Event | None:
        """Next event if one is ready (for consumers that poll in batches)."""
        try:
            item = self._sink.queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        return None if item is _CLOSED else item

    def _set_state(self, state: FeedState, detail: str = "") -> None:
        if state is self.state and detail == self._detail:
            return  # 1 Hz vendor status frames repeat themselves: report changes only
        self.state, self._detail = state, detail
        self._sink.emit(FeedStatus(self.name, state, self.clock.now_ns(), detail))

    def _reject(self, reason: str, what: object) -> None:
        """Count and log a refused subscription; the feed carries on."""
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
        log.warning("%s: %s refused: %s", self.name, what, reason)


class StreamingFeed(FeedBase):
    """Base class of every network adapter: subclasses implement the vendor hooks below."""

    def __init__(
        self,
        name: str,
        *,
        clock: Clock | None = None,
        config: FeedConfig | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(name, clock or LiveClock())
        self.config = config or FeedConfig()
        self._subs: dict[SubKey, None] = {}  # insertion-ordered set
        self._conn: Any = None
        self._rng = random.Random(seed)
        self._last_frame_ns = 0
        self._gap = False  # data stopped flowing at some point: backfill on the way back
        self._backfilling = False
        self._malformed_logged = 0

    # --- vendor hooks ---

    @abstractmethod
    async def _connect(self) -> Any:
        """Open a connection (raise OSError-like errors to trigger a backoff retry)."""

    @abstractmethod
    async def _send_subscribe(self, conn: Any, keys: Sequence[SubKey], add: bool) -> None:
        """Ask the vendor to start (``add``) or stop streaming ``keys``."""

    @abstractmethod
    def _frames(self, conn: Any) -> AsyncIterator[Any]:
        """Raw frames until the connection ends."""

    @abstractmethod
    def _parse(self, frame: Any) -> Iterable[Event]:
        """Events in one frame; raise MalformedFrameError if it can't be decoded."""

    async def _fetch_history(self, key: SubKey, start_ns: int) -> list[Event]:
        """Events for ``key`` from ``start_ns`` (vendor time) through the vendor's present.
        Default: none (a source without history)."""
        return []

    async def _close_conn(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            await conn.close()

    async def _on_close(self) -> None:
        if self._conn is not None:
            await self._close_conn(self._conn)
            self._conn = None

    # --- subscriptions ---

    async def subscribe(self, keys: Iterable[SubKey]) -> None:
        """Remember the keys (replayed on every connection) and send them if connected."""
        new = [k for k in keys if k not in self._subs]
        self._subs.update(dict.fromkeys(new))
        if new and self._conn is not None:
            await self._send_subscribe(self._conn, new, True)

    async def unsubscribe(self, keys: Iterable[SubKey]) -> None:
        gone = [k for k in keys if k in self._subs]
        for k in gone:
            del self._subs[k]
        if gone and self._conn is not None:
            await self._send_subscribe(self._conn, gone, False)

    @property
    def subscriptions(self) -> list[SubKey]:
        return list(self._subs)

    # --- machinery ---

    def _on_frame(self, frame: Any) -> None:
        self._last_frame_ns = self.clock.now_ns()
        self.stats.frames += 1
        try:
            for ev in self._parse(frame):
                self._sink.emit(ev)
                if self.state is FeedState.DISCONNECTED:
                    self.vendor_up()  # data flows again before the vendor's status says so
        except MalformedFrameError as exc:
            self.stats.malformed += 1
            if self._malformed_logged < 20 or self.stats.malformed % 1000 == 0:
                self._malformed_logged += 1
                log.warning("%s: malformed frame #%d: %s", self.name, self.stats.malformed, exc)

    def vendor_down(self, detail: str) -> None:
        """The vendor says its upstream is down although our socket is fine (e.g. ThetaData
        DISCONNECTED status): report it and remember where the gap started."""
        self._gap = True
        self._sink.hold()  # whatever trickles in before the gap is filled waits behind it
        self._set_state(FeedState.DISCONNECTED, detail)

    def vendor_up(self) -> None:
        """Upstream is back (its status says so, or market data flows again): backfill what
        the stream missed, then go LIVE. Live events have been held since ``vendor_down``: a
        newer live quote delivered first would lift the watermark above the gap and the
        backfill would be discarded as duplicates."""
        if (
            self.state is FeedState.DISCONNECTED
            and not self._backfilling
            and self._conn is not None
        ):
            self._backfilling = True
            asyncio.get_running_loop().create_task(self._backfill_and_go_live())

    async def _run(self) -> None:
        attempt = 0
        while True:
            self._set_state(FeedState.CONNECTING)
            try:
                conn = await self._connect()
            except Exception as exc:  # refused, unreachable, bad auth: all retried with backoff
                self._note_gap()
                self._set_state(FeedState.DISCONNECTED, f"connect failed: {exc}")
                await self.clock.sleep(self.config.backoff.delay(attempt, self._rng))
                attempt += 1
                continue
            self._conn = conn
            self.stats.connects += 1
            if self.stats.connects > 1:
                self.stats.reconnects += 1
            watchdog = asyncio.create_task(self._watchdog(conn))
            backfill: asyncio.Task[None] | None = None
            frames_before = self.stats.frames
            try:
                self._last_frame_ns = self.clock.now_ns()
                self._sink.hold()
                await self._send_subscribe(conn, list(self._subs), True)
                backfill = asyncio.create_task(self._backfill_and_go_live())
                async for frame in self._frames(conn):
                    self._on_frame(frame)
                detail = "connection closed by peer"
            except Exception as exc:  # OSError, or a vendor library's "connection closed"
                detail = f"connection lost: {type(exc).__name__}: {exc}"
            finally:
                watchdog.cancel()
                if backfill is not None:
                    backfill.cancel()  # never announce LIVE for a connection that is gone
                self._conn = None
                await self._close_conn(conn)
            self._note_gap()
            if self.state is not FeedState.STALE:
                self._set_state(FeedState.DISCONNECTED, detail)
            # back off further unless this connection really delivered data
            attempt = 0 if self.stats.frames > frames_before else attempt + 1
            await self.clock.sleep(self.config.backoff.delay(attempt, self._rng))

    def _note_gap(self) -> None:
        self._gap = True

    async def _watchdog(self, conn: Any) -> None:
        timeout_ns = int(self.config.liveness_timeout_s * NS_PER_S)
        while True:
            await self.clock.sleep(self.config.liveness_timeout_s / 4)
            if self.clock.now_ns() - self._last_frame_ns > timeout_ns:
                self.stats.stale += 1
                self._note_gap()
                self._set_state(FeedState.STALE, f"no data for {self.config.liveness_timeout_s:g}s")
                await self._close_conn(conn)  # ends the frame loop -> reconnect
                return

    async def _backfill_and_go_live(self) -> None:
        """Fetch the gap for every subscription, release held events in order, go LIVE.

        Each key's gap starts at the last event delivered for it, in the vendor's own time base
        (so the adapter's clock never has to match the vendor's), and runs to the vendor's
        present. A key that never delivered anything has no gap to fill.
        """
        self._sink.hold()
        had_gap, self._gap = self._gap, False
        events: list[Event] = []
        try:
            if had_gap and self.config.backfill and self._subs:
                sem = asyncio.Semaphore(self.config.backfill_concurrency)

                async def one(key: SubKey) -> list[Event]:
                    start = self._sink.last_ts((Quote, key) if isinstance(key, Contract) else key)
                    if start is None:
                        return []
                    async with sem:
                        try:
                            return await self._fetch_history(key, start)
                        except Exception as exc:  # a failed backfill must not kill the feed
                            log.warning("%s: backfill of %s failed: %s", self.name, key, exc)
                            return []

                for chunk in await asyncio.gather(*(one(k) for k in list(self._subs))):
                    events.extend(chunk)
                self.stats.backfilled += len(events)
            self._sink.release(events)
        finally:
            self._backfilling = False
        self._set_state(FeedState.LIVE)

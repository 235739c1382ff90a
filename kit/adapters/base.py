"""The Feed protocol and the machinery every streaming adapter shares.

An adapter only says how to connect, how to (un)subscribe, how to parse one frame and how to
fetch history. This module does the rest, the same way for every vendor:

- reconnect with exponential backoff and jitter, and **replay the subscriptions** on every new
  connection;
- a receive-side liveness watchdog: no frame for ``liveness_timeout_s`` -> STALE, then reconnect
  (checked by a side task, so the per-frame cost is one timestamp store);
- **gap backfill** once a new connection's first frame arrives, after a heartbeat silence or a
  vendor outage: live events are held while each subscription's gap is fetched from the vendor's
  history (failed fetches retried, LOST declared, the key STALE till whole), then released in
  order through a per-key watermark: no duplicate, no hole; out-of-window stamps are refused;
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

from kit.adapters.ingest import FrameBatch, FrameIngest, MalformedFrameError
from kit.adapters.sink import EventSink, FeedStats, event_key
from kit.core.backoff import Backoff
from kit.core.clock import NS_PER_S, Clock, LiveClock, from_ns
from kit.core.model import Contract, Event, FeedState, FeedStatus, Quote
from kit.core.symbology import to_occ
from kit.core.tasks import cancel

__all__ = ["Backoff", "EventSink", "FeedStats", "MalformedFrameError", "event_key"]  # one site

log = logging.getLogger(__name__)

SubKey = Contract | str  # an option contract, or an underlying/index symbol ("SPX", "VIX")


@dataclass(frozen=True)
class FeedConfig:
    """Reconnect, liveness and gap settings. Times are seconds on the feed's clock (the vendor's
    market time when the desk runs on it)."""

    liveness_timeout_s: float = 5.0
    backoff: Backoff = field(default_factory=Backoff)
    backfill: bool = True
    backfill_concurrency: int = 4
    # a vendor that sends heartbeats: a longer hole between two frames on one connection is a
    # silence that may have swallowed events, so the gap is backfilled (None: no heartbeats)
    silence_gap_s: float | None = None
    # a failed gap fetch is retried with this backoff; after ``backfill_give_up_s`` of failures
    # the gap is declared lost (CRITICAL), and retries go on at ``backfill_retry.max_s``
    backfill_retry: Backoff = field(default_factory=lambda: Backoff(0.5, 2.0, 15.0, 0.2))
    backfill_give_up_s: float = 60.0
    # an event stamped further than this ahead of / behind the clock is refused and counted:
    # one far-future frame would otherwise lift its key's watermark and drop every later event
    max_ahead_s: float = 60.0
    max_behind_s: float = 6 * 3600.0


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
            item = queue.poll()
            if item is None:
                item = await queue.get()
            if item is _CLOSED:
                return
            yield item

    def get_nowait(self) -> Event | None:
        """Next event if one is ready (for consumers that poll in batches)."""
        item = self._sink.queue.poll()
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


class StreamingFeed(FrameIngest, FeedBase):
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
        self._backfill_task: asyncio.Task[None] | None = None
        self._gap_mark: int | None = None  # held events before a silence noted mid-backfill
        self._first_frame = False  # a new connection has not delivered its first frame yet
        self._repairs: dict[SubKey, asyncio.Task[None]] = {}  # keys whose gap fetch failed
        self._malformed_logged = 0
        self._window_logged = 0

    # --- vendor hooks ---

    @abstractmethod
    async def _connect(self) -> Any:
        """Open a connection (raise OSError-like errors to trigger a backoff retry)."""

    @abstractmethod
    async def _send_subscribe(self, conn: Any, keys: Sequence[SubKey], add: bool) -> None:
        """Ask the vendor to start (``add``) or stop streaming ``keys``."""

    @abstractmethod
    def _frames(self, conn: Any) -> AsyncIterator[Any]:
        """Raw frames until the connection ends (or :class:`FrameBatch` es of them)."""

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
        repairs, self._repairs = list(self._repairs.values()), {}
        for task in [*repairs, self._backfill_task]:
            await cancel(task)
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
            if (repair := self._repairs.pop(k, None)) is not None:
                repair.cancel()  # an unsubscribed key's gap is nobody's business any more
                self._sink.forget(self._mark(k))
        if gone and self._conn is not None:
            await self._send_subscribe(self._conn, gone, False)

    @property
    def subscriptions(self) -> list[SubKey]:
        return list(self._subs)

    @property
    def gaps_pending(self) -> list[SubKey]:
        """Keys whose gap could not be fetched yet (STALE until it is)."""
        return list(self._repairs)

    # --- machinery ---

    def vendor_down(self, detail: str) -> None:
        """The vendor says its upstream is down although our socket is fine (e.g. ThetaData
        DISCONNECTED status): report it and remember where the gap started."""
        self._note_gap()
        self._sink.hold()  # whatever trickles in before the gap is filled waits behind it
        self._set_state(FeedState.DISCONNECTED, detail)

    def vendor_up(self) -> None:
        """Upstream is back (its status says so, or market data flows again): backfill what
        the stream missed, then go LIVE. Live events have been held since ``vendor_down``: a
        newer live quote delivered first would lift the watermark above the gap and the
        backfill would be discarded as duplicates."""
        # (a new connection's own backfill waits for its subscriptions: _first_frame)
        up = self.state is FeedState.DISCONNECTED and self._conn is not None
        if up and not self._first_frame:
            self._start_backfill()

    def _start_backfill(self) -> None:
        """Run one backfill at a time; a gap noted while one runs makes it fetch again."""
        if not self._backfilling:
            self._backfilling = True
            self._backfill_task = asyncio.get_running_loop().create_task(
                self._backfill_and_go_live(), name=f"{self.name}:backfill"
            )

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
            frames_before = self.stats.frames
            try:
                self._last_frame_ns = self.clock.now_ns()
                self._sink.hold()
                await self._send_subscribe(conn, list(self._subs), True)
                self._first_frame = True  # the gap is fetched once the stream flows again
                async for frame in self._frames(conn):
                    if type(frame) is FrameBatch:  # all a socket read brought (wsbatch)
                        self._on_frames(frame)
                    else:
                        self._on_frame(frame)
                detail = "connection closed by peer"
            except Exception as exc:  # OSError, or a vendor library's "connection closed"
                detail = f"connection lost: {type(exc).__name__}: {exc}"
            finally:
                watchdog.cancel()
                backfill, self._backfill_task = self._backfill_task, None
                if backfill is not None:
                    backfill.cancel()  # never announce LIVE for a connection that is gone
                self._backfilling = False
                self._conn = None
                await self._close_conn(conn)
            self._note_gap()
            if self.state is not FeedState.STALE:
                self._set_state(FeedState.DISCONNECTED, detail)
            # back off further unless this connection really delivered data
            attempt = 0 if self.stats.frames > frames_before else attempt + 1
            await self.clock.sleep(self.config.backoff.delay(attempt, self._rng))

    def _note_gap(self) -> None:
        if self._backfilling and self._gap_mark is None:
            self._gap_mark = self._sink.held  # held before it: covered by the running fetch
        self._gap = True

    async def _watchdog(self, conn: Any) -> None:
        timeout_ns = int(self.config.liveness_timeout_s * NS_PER_S)
        began = self.clock.now_ns()
        while True:
            await self.clock.sleep(self.config.liveness_timeout_s / 4)
            flowing = self._last_frame_ns > began  # frames came, but not every confirmation
            if self._first_frame and flowing and self.clock.now_ns() - began > timeout_ns:
                # data flows but the vendor never confirmed every subscription: fetch the gap
                # anyway rather than hold the stream back for ever (a hole stays possible)
                log.warning("%s: subscriptions unconfirmed after %gs; backfilling anyway",
                            self.name, self.config.liveness_timeout_s)  # fmt: skip
                self._first_frame = False
                self._start_backfill()
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
        present. A key that never delivered anything has no gap to fill. A silence that ends
        while the fetches run opens a new gap: the events held before it are released with
        this round and the next round fetches from there (always progress, however often the
        loop stalls). A key whose fetch fails is suspended and handed to :meth:`_repair`: its
        events wait, the others go on.
        """
        self._sink.hold()
        try:
            while True:
                had_gap, self._gap, self._gap_mark = self._gap, False, None
                events: list[Event] = []
                if had_gap and self.config.backfill:
                    events, failed = await self._fetch_gaps()
                    self.stats.backfilled += len(events)
                    for key, exc in failed.items():
                        self._suspend(key, exc)
                if not self._gap:
                    self._sink.release(events)
                    break
                self._sink.release(events, upto=self._gap_mark)
                if self.state is FeedState.DISCONNECTED:
                    return  # the vendor went down meanwhile: vendor_up fetches the rest
        finally:
            self._backfilling = False
        self._set_state(FeedState.LIVE)

    def _mark(self, key: SubKey) -> Any:
        return (Quote, key) if isinstance(key, Contract) else key

    async def _fetch_gaps(self) -> tuple[list[Event], dict[SubKey, Exception]]:
        """Every subscription's gap (keys under repair are the repair's business)."""
        sem = asyncio.Semaphore(self.config.backfill_concurrency)
        failed: dict[SubKey, Exception] = {}

        async def one(key: SubKey) -> list[Event]:
            start = self._sink.last_ts(self._mark(key))
            if start is None or key in self._repairs:
                return []
            async with sem:
                try:
                    return [e for e in await self._fetch_history(key, start) if self.in_window(e)]
                except Exception as exc:  # retried by _repair, never dropped
                    self.stats.backfill_failures += 1
                    failed[key] = exc
                    return []

        chunks = await asyncio.gather(*(one(k) for k in list(self._subs)))
        return [e for chunk in chunks for e in chunk], failed

    def _key_status(self, key: SubKey, state: FeedState, detail: str) -> None:
        """A per-key status (``feed:key``): the desk treats it like a feed that is not LIVE,
        so no automation runs while one of them is STALE."""
        name = to_occ(key, padded=False) if isinstance(key, Contract) else key
        self._sink.emit(FeedStatus(f"{self.name}:{name}", state, self.clock.now_ns(), detail))

    def _suspend(self, key: SubKey, exc: Exception) -> None:
        """Hold ``key``'s events, mark it STALE and retry its gap until it is whole again."""
        self._sink.suspend(self._mark(key))
        log.warning("%s: backfill of %s failed (%s); retrying", self.name, key, exc)
        self._key_status(key, FeedState.STALE, f"gap not backfilled ({exc}); retrying")
        self._repairs[key] = asyncio.get_running_loop().create_task(
            self._repair(key), name=f"{self.name}:repair:{key}"
        )

    async def _repair(self, key: SubKey) -> None:
        """Retry one key's gap with backoff. After ``backfill_give_up_s`` the gap is declared
        lost (CRITICAL) but retries go on: the key stays STALE until its data is whole."""
        mark, cfg = self._mark(key), self.config
        began, attempt, lost = self.clock.now_ns(), 0, False
        try:
            while True:
                await self.clock.sleep(cfg.backfill_retry.delay(attempt, self._rng))
                attempt += 1
                start = self._sink.last_ts(mark)
                try:
                    if start is None:
                        raise RuntimeError("no watermark")  # pragma: no cover - suspended keys
                    events = [e for e in await self._fetch_history(key, start) if self.in_window(e)]
                except Exception as exc:
                    self.stats.backfill_failures += 1
                    waited = (self.clock.now_ns() - began) / NS_PER_S
                    if not lost and waited >= cfg.backfill_give_up_s:
                        lost = True
                        self.stats.gaps_lost += 1
                        since = from_ns(start or began).isoformat(timespec="seconds")
                        msg = (
                            f"gap since {since} LOST after {attempt} failed fetches in "
                            f"{waited:.0f} s ({exc}); STALE, no automation until it is whole"
                        )
                        log.critical("%s: %s: %s", self.name, key, msg)
                        self._key_status(key, FeedState.STALE, msg)
                    continue
                if self._sink.resume(mark, events):
                    break
            self.stats.backfilled += len(events)
            self.stats.gaps_filled_late += 1
            log.warning("%s: gap of %s filled after %d retries", self.name, key, attempt)
            self._key_status(key, FeedState.LIVE, f"gap filled after {attempt} retries")
        finally:
            if self._repairs.get(key) is asyncio.current_task():
                del self._repairs[key]

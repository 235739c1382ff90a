"""The per-frame path of every streaming feed: clock read, silence check, parse, window, emit.

Kept apart from :mod:`kit.adapters.base` (the connection lifecycle, backfill and repair) because
this is the one piece that runs for every frame a vendor sends, 100k+ times a second flat out:
each line here is paid per frame, so it reads attributes once, counts without calling helpers
and tests an event's stamp against integer bounds before it falls back to the exact check.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kit.core.clock import NS_PER_S
from kit.core.model import Event, FeedState, FeedStatus

if TYPE_CHECKING:
    from kit.adapters.base import FeedConfig
    from kit.adapters.sink import EventSink, FeedStats
    from kit.core.clock import Clock

log = logging.getLogger("kit.adapters.base")  # the feeds' warnings keep their logger's name

_SIZED = (str, bytes, bytearray, memoryview)
_MARGIN_NS = 1_000_000  # the integer fast check stays 1 ms inside the exact window


class FrameBatch(list[Any]):
    """Payloads (bytes or str) that arrived together, one socket read, in order: a feed parses
    them as one batch, with one clock read and one silence check (:mod:`kit.adapters.wsbatch`)."""

    __slots__ = ()


class MalformedFrameError(ValueError):
    """A frame could not be decoded into events; counted and logged, never fatal."""


class FrameIngest:
    """Mixin of :class:`kit.adapters.base.StreamingFeed`: one received frame to events. It uses
    the feed's ``_parse`` (the vendor's), ``_start_backfill``, ``_note_gap`` and ``vendor_up``."""

    name: str
    clock: Clock
    config: FeedConfig
    stats: FeedStats
    state: FeedState
    _sink: EventSink
    _conn: Any
    _last_frame_ns: int
    _first_frame: bool
    _malformed_logged: int
    _window_logged: int
    _win: tuple[Any, int, int] = (None, 0, 0)  # (config, behind, ahead): the window in ns

    def _stream_ready(self) -> bool:
        """True once the vendor streams every subscribed key (after its acknowledgements, for a
        vendor that sends them): the reconnect backfill waits for it. Default: at once."""
        return True

    def _on_frame(self, frame: Any) -> None:
        self._on_frames((frame,))

    def _on_frames(self, frames: Sequence[Any]) -> None:
        """Frames that arrived together (one socket read): one clock read and one silence
        check for all of them, then each parsed, windowed and emitted in order."""
        now = self.clock.now_ns()
        cfg, stats = self.config, self.stats
        if (
            not self._first_frame
            and cfg.silence_gap_s is not None
            and now - self._last_frame_ns > cfg.silence_gap_s * NS_PER_S
            and self._conn is not None
        ):
            # heartbeats stopped and came back: whatever the vendor sent meanwhile is lost on
            # the wire, so fetch it (these frames and later ones are held behind the backfill)
            stats.silences += 1
            self._note_gap()
            self._sink.hold()
            self._start_backfill()
        self._last_frame_ns = now
        # inside these bounds an event is in the window for sure; near or past them the exact
        # (float, logged) check of in_window decides
        win = self._win
        if win[0] is not cfg:  # the bounds in ns, worked out once per config
            behind, ahead = int(cfg.max_behind_s * NS_PER_S), int(cfg.max_ahead_s * NS_PER_S)
            win = self._win = (cfg, behind - _MARGIN_NS, ahead - _MARGIN_NS)
        lo, hi = now - win[1], now + win[2]
        emit, parse, disconnected = self._sink.emit, self._parse, FeedState.DISCONNECTED
        stats.frames += len(frames)
        for frame in frames:
            if isinstance(frame, _SIZED):
                stats.bytes += len(frame)
            try:
                for ev in parse(frame):
                    if not lo < ev.ts_ns < hi and not self.in_window(ev, now):
                        continue
                    emit(ev)
                    if self.state is disconnected:
                        self.vendor_up()  # data flows again before the vendor's status says so
            except MalformedFrameError as exc:
                stats.malformed += 1
                if self._malformed_logged < 20 or stats.malformed % 1000 == 0:
                    self._malformed_logged += 1
                    log.warning("%s: malformed frame #%d: %s", self.name, stats.malformed, exc)
        if self._first_frame and self._stream_ready():
            # a vendor may stay silent after we reconnect, so a fetch made at connect time
            # would miss what it dropped before the stream flows; and a key's quotes are only
            # streamed once its subscription is in, so the gap is fetched once every key's is:
            # from then on each change is on the stream, everything before in the history
            self._first_frame = False
            self._start_backfill()

    def in_window(self, ev: Event, now: int | None = None) -> bool:
        """False (counted, logged) for an event stamped outside the sane window of the clock."""
        if isinstance(ev, FeedStatus):
            return True
        now = self.clock.now_ns() if now is None else now
        ahead_s = (ev.ts_ns - now) / NS_PER_S
        if -self.config.max_behind_s <= ahead_s <= self.config.max_ahead_s:
            return True
        self.stats.out_of_window += 1
        if self._window_logged < 20 or self.stats.out_of_window % 1000 == 0:
            self._window_logged += 1
            log.warning("%s: refused %s stamped %+.0f s from the clock (window -%g/+%g s)",
                        self.name, type(ev).__name__, ahead_s, self.config.max_behind_s,
                        self.config.max_ahead_s)  # fmt: skip
        return False

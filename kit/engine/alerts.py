"""De-duplication of alerts with cool-down, and their delivery to the sinks.

Risk rules are pure functions re-evaluated on every tick: they return the alerts whose conditions
hold *now*, so the same breach is reported again and again while it lasts. Forwarding that stream
would page the user every tick, so :class:`AlertManager` is level-triggered with edge detection:
it remembers which keys ``(rule, position_id)`` are active and emits only what is news:

- a key that was not active fires (a rising edge);
- a key that is active fires again only when its severity rises (INFO < WARNING < CRITICAL);
- a key that was evaluated (its position is in ``scope``) but not offered has cleared;
- after clearing, a key re-firing within ``cooldown_s`` of its last emission becomes active
  silently unless it is now more severe than that emission, so a condition flapping around its
  threshold pages once, not every few ticks.

Delivery is off the hot path: ``offer`` appends records to one bounded queue per sink and a
dispatcher task per sink drains it in batches, so a slow or failing sink (an SMTP server timing
out) never delays the desk or the other sinks. The records are :mod:`kit.engine.records`; the
sinks themselves (console, JSON lines, email, webhook) are :mod:`kit.sinks`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, Self, runtime_checkable

import msgspec

from kit.core.clock import NS_PER_S, Clock
from kit.core.model import Action, Alert, Decision, Fill, Severity
from kit.engine.records import RANK as _RANK
from kit.engine.records import SEVERITIES as _SEVERITIES
from kit.engine.records import AlertRecord, DeskRecord, SinkRecord, record_to_json
from kit.execution.broker import OrderState

log = logging.getLogger(__name__)

__all__ = ["AlertConfig", "AlertKey", "AlertManager", "AlertRecord", "AlertSink", "Candidate",
           "DeskRecord", "SinkRecord", "record_to_json"]  # fmt: skip
AlertKey = tuple[str, str | None, str]  # (rule, position_id, key); None is the portfolio


class Candidate(Protocol):
    """An alert not built yet (a risk finding): its identity now, the record when emitted."""

    rule: str
    position_id: str | None
    key: str
    severity: Severity

    @property
    def alert(self) -> Alert: ...


@dataclass(frozen=True)
class AlertConfig:
    """How the manager de-duplicates and delivers.

    ``cooldown_s``: after a key clears it cannot re-fire (at the same or a lower severity) within
    this many seconds of its last emission. ``history``: emitted records kept in memory.
    ``queue_size``: records buffered per sink before the oldest are dropped. ``close_timeout_s``:
    how long :meth:`AlertManager.close` waits for sinks to flush.
    """

    cooldown_s: float = 300.0
    history: int = 10_000
    queue_size: int = 10_000
    close_timeout_s: float = 5.0


@runtime_checkable
class AlertSink(Protocol):
    """Somewhere alerts go. ``audit`` sinks also receive every :class:`Action`."""

    name: str
    min_severity: Severity
    audit: bool

    async def send(self, records: Sequence[SinkRecord]) -> None: ...


class _Emission(NamedTuple):
    """What the user was last told about a key: when (clock), how severe and which record."""

    ts_ns: int
    rank: int
    seq: int


class _Channel:
    """One sink's bounded queue and its dispatcher's state.

    The queue drops its *oldest* records when full: a sink that is down for an hour should, once
    back, deliver the current state of the book rather than an hour-old backlog, and memory stays
    bounded. Drops are counted and logged once per batch, not once per record.
    """

    __slots__ = ("audit", "buf", "dropped", "failures", "inflight", "rank", "sink", "task", "wake")

    def __init__(self, sink: AlertSink, size: int) -> None:
        self.sink = sink
        self.rank = _RANK[Severity(sink.min_severity)]
        self.audit = bool(sink.audit)
        self.buf: deque[SinkRecord] = deque(maxlen=size)
        self.wake = asyncio.Event()
        self.dropped = 0
        self.inflight = 0
        self.failures: set[type[BaseException]] = set()
        self.task: asyncio.Task[None] | None = None

    def put(self, item: SinkRecord) -> None:
        if len(self.buf) == self.buf.maxlen:
            self.dropped += 1
        self.buf.append(item)
        self.wake.set()


class AlertManager:
    """Turns the alerts rules return each tick into emitted records, and feeds the sinks."""

    def __init__(
        self, clock: Clock, sinks: Iterable[AlertSink] = (), config: AlertConfig | None = None
    ) -> None:
        self.clock = clock
        self.config = config or AlertConfig()
        self.stats: dict[str, int] = dict.fromkeys(
            ("emitted", "repeated", "suppressed", "cleared", "audit", "dropped", "sink_errors"), 0
        )
        self._cooldown_ns = int(self.config.cooldown_s * NS_PER_S)
        self._channels = [_Channel(s, self.config.queue_size) for s in sinks]
        self._history: deque[AlertRecord] = deque(maxlen=self.config.history)
        self._active: dict[str | None, dict[tuple[str, str], _Emission]] = {}  # pos -> (rule, key)
        self._last: dict[AlertKey, _Emission] = {}
        self._prune_at = 1024
        self._seq = 0
        self._closing = False

    # --- the hot path ---

    def offer(
        self, alerts: Iterable[Alert | Candidate], scope: Collection[str | None] | None = None
    ) -> list[AlertRecord]:
        """Feed the alerts true now; return the ones emitted. ``scope``: the positions evaluated
        (None = portfolio level); their active keys not offered this time clear. A
        :class:`Candidate` is built into its alert only when it is emitted."""
        now = self.clock.now_ns()
        emitted: list[AlertRecord] = []
        offered: set[AlertKey] = set()
        for alert in alerts:
            key = (alert.rule, alert.position_id, alert.key)
            offered.add(key)
            rank = _RANK[alert.severity]
            rules = self._active.get(alert.position_id)
            state = rules.get((alert.rule, alert.key)) if rules else None
            if state is None:
                last = self._last.get(key)
                if last is not None and now - last.ts_ns < self._cooldown_ns and rank <= last.rank:
                    self._active.setdefault(alert.position_id, {})[key[0], key[2]] = last
                    self.stats["suppressed"] += 1
                    continue
            elif rank <= state.rank:
                self.stats["repeated"] += 1
                continue
            built = alert if type(alert) is Alert else alert.alert  # a lazy finding: build now
            emitted.append(self._emit(key, built, rank, now))
        if scope is not None:
            self._clear(scope, offered)
        if len(self._last) > self._prune_at:
            self._prune(now)
        return emitted

    def _emit(self, key: AlertKey, alert: Alert, rank: int, now: int) -> AlertRecord:
        record = self._emit_once(alert)
        emission = self._last[key] = _Emission(now, rank, record.seq)
        self._active.setdefault(key[1], {})[key[0], key[2]] = emission
        return record

    def _clear(self, scope: Collection[str | None], offered: set[AlertKey]) -> None:
        # the positions with active keys are few: intersect, not look up every one in scope
        for position_id in self._active.keys() & scope:
            rules = self._active[position_id]
            if not rules:
                continue
            gone = [rk for rk in rules if (rk[0], position_id, rk[1]) not in offered]
            for rk in gone:
                del rules[rk]
            self.stats["cleared"] += len(gone)
            if not rules:
                del self._active[position_id]

    def _prune(self, now: int) -> None:
        """Forget emissions whose cool-down is over (they can no longer suppress anything), so
        closed positions do not accumulate; amortised: only when the map has doubled."""
        self._last = {k: e for k, e in self._last.items() if now - e.ts_ns < self._cooldown_ns}
        self._prune_at = max(1024, 2 * len(self._last))

    def notify(self, alert: Alert) -> AlertRecord:
        """Emit a one-off alert (an entry verdict, a switch flipped) without de-duplication: it
        reports an event, not a condition that holds."""
        return self._emit_once(alert)

    def _emit_once(self, alert: Alert) -> AlertRecord:
        self._seq += 1
        record = AlertRecord(self._seq, alert)
        self._history.append(record)
        self.stats["emitted"] += 1
        rank = _RANK[alert.severity]
        for ch in self._channels:
            if rank >= ch.rank:
                ch.put(record)
        return record

    def audit(self, record: Action | Decision | OrderState | Fill) -> None:
        """Forward an action, decision, order state or fill to the audit sinks. Never
        de-duplicated: each is something the desk did."""
        self.stats["audit"] += 1
        for ch in self._channels:
            if ch.audit:
                ch.put(record)

    # --- acknowledgement and state ---

    def acknowledge(self, seq: int, by: str = "user") -> AlertRecord:
        """Mark record ``seq`` acknowledged (the first acknowledgement stands)."""
        first = self._history[0].seq if self._history else self._seq + 1
        if not 0 <= seq - first < len(self._history):
            last = first + len(self._history) - 1
            raise KeyError(f"no alert with seq {seq} in history (holds {first}..{last})")
        record = self._history[seq - first]
        if record.acked_ts_ns is None:
            record = msgspec.structs.replace(record, acked_ts_ns=self.clock.now_ns(), acked_by=by)
            self._history[seq - first] = record
        return record

    def recent(self, n: int = 30) -> list[AlertRecord]:
        """The last ``n`` emitted records, acknowledged or cleared or not (oldest first): the
        log a trader reads to see why a position that is gone was closed."""
        return list(itertools.islice(reversed(self._history), n))[::-1]

    def unacknowledged(self) -> list[AlertRecord]:
        """The latest emission of each active key, unless it was acknowledged (oldest first)."""
        if not self._history:
            return []
        first = self._history[0].seq
        seqs = sorted(e.seq for rules in self._active.values() for e in rules.values())
        records = (self._history[s - first] for s in seqs if s >= first)
        return [r for r in records if r.acked_ts_ns is None]

    def state(self) -> dict[str, Any]:
        """What de-duplication remembers (sequence, active keys, last emissions), as JSON-ready
        data; the records themselves are kept by the store's ``alerts`` table."""
        return {
            "seq": self._seq,
            "active": [[p, r, k, *e] for p, rs in self._active.items() for (r, k), e in rs.items()],
            "last": [[r, p, k, *e] for (r, p, k), e in self._last.items()],
        }

    def restore(self, state: Mapping[str, Any], history: Iterable[AlertRecord] = ()) -> None:
        """Take back :meth:`state` and the emitted records (any order; only the unbroken run
        of sequence numbers ending at the newest is kept, so numbering stays positional)."""
        records = sorted(history, key=lambda r: r.seq)[-self.config.history :]
        start = len(records) - 1
        while start > 0 and records[start - 1].seq == records[start].seq - 1:
            start -= 1
        self._history.clear()
        self._history.extend(records[max(start, 0) :])
        self._seq = max([int(state.get("seq", 0)), *(r.seq for r in records)])
        self._active = {}
        for p, r, k, *e in state.get("active", ()):
            self._active.setdefault(p, {})[r, k] = _Emission(*e)
        self._last = {(r, p, k): _Emission(*e) for r, p, k, *e in state.get("last", ())}

    @property
    def active(self) -> dict[AlertKey, Severity]:
        """Active keys and the severity last emitted for each."""
        return {
            (r, p, k): _SEVERITIES[e.rank]
            for p, rs in self._active.items()
            for (r, k), e in rs.items()
        }

    @property
    def history(self) -> list[AlertRecord]:
        return list(self._history)

    # --- delivery ---

    def start(self) -> None:
        """Start one dispatcher task per sink (needs a running loop); idempotent."""
        for ch in self._channels:
            if ch.task is None or ch.task.done():
                ch.task = asyncio.create_task(self._dispatch(ch), name=f"alerts:{ch.sink.name}")

    async def close(self) -> int:
        """Deliver everything queued, waiting at most ``close_timeout_s``; return records lost."""
        self.start()
        self._closing = True
        for ch in self._channels:
            ch.wake.set()
        tasks = {ch.task for ch in self._channels if ch.task is not None}
        if tasks:
            await asyncio.wait(tasks, timeout=self.config.close_timeout_s)
        lost = 0
        for ch in self._channels:
            if ch.task is not None and not ch.task.done():
                n, ch.dropped = len(ch.buf) + ch.inflight + ch.dropped, 0
                log.warning(
                    "alert sink %r did not flush in time: lost %d record(s)", ch.sink.name, n
                )
                ch.task.cancel()
                await asyncio.wait({ch.task})
                ch.buf.clear()
                lost += n
            ch.task = None
        self.stats["dropped"] += lost
        self._closing = False
        return lost

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _dispatch(self, ch: _Channel) -> None:
        """Drain one sink's queue in batches until closing and empty. Never raises."""
        while ch.buf or not self._closing:
            if not ch.buf:
                ch.wake.clear()
                await ch.wake.wait()
                continue
            batch = list(ch.buf)
            ch.buf.clear()
            if ch.dropped:
                log.warning(
                    "alert sink %r fell behind: dropped %d oldest", ch.sink.name, ch.dropped
                )
                self.stats["dropped"] += ch.dropped
                ch.dropped = 0
            ch.inflight = len(batch)
            try:
                await ch.sink.send(batch)
            except Exception as exc:
                self.stats["sink_errors"] += 1
                if type(exc) not in ch.failures:  # once per failure type per outage, not per batch
                    ch.failures.add(type(exc))
                    log.exception("alert sink %r failed; dropped %d", ch.sink.name, len(batch))
            else:
                ch.failures.clear()
            finally:
                ch.inflight = 0

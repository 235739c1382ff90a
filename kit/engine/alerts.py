"""Alert records, de-duplication with cool-down, and the sinks that deliver them.

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
out) never delays the desk or the other sinks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from email.message import EmailMessage
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Protocol, Self, TextIO, runtime_checkable

import httpx
import msgspec
from rich.console import Console
from rich.text import Text

from kit.core.clock import NEW_YORK, NS_PER_S, Clock, from_ns
from kit.core.model import Action, Alert, Decision, FeedStatus, Fill, Severity
from kit.core.symbology import to_occ
from kit.execution.broker import OrderState

log = logging.getLogger(__name__)

AlertKey = tuple[str, str | None, str]  # (rule, position_id, key); None is the portfolio
_SEVERITIES = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)  # by rank, least severe first
_RANK = {s: i for i, s in enumerate(_SEVERITIES)}
_STYLE = {Severity.CRITICAL: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


class Candidate(Protocol):
    """An alert not built yet (a risk finding): its identity now, the record when emitted."""

    rule: str
    position_id: str | None
    key: str
    severity: Severity

    @property
    def alert(self) -> Alert: ...


class SinkError(RuntimeError):
    """A sink gave up on a batch (rejected, or still failing after its retries)."""


class AlertRecord(msgspec.Struct, frozen=True):
    """An emitted alert, numbered by the manager so a user can acknowledge exactly this one."""

    seq: int
    alert: Alert
    acked_ts_ns: int | None = None
    acked_by: str | None = None


SinkRecord = AlertRecord | Action | Decision | OrderState | Fill  # audit sinks get all but alerts
DeskRecord = SinkRecord | FeedStatus


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
        for position_id in scope:
            rules = self._active.get(position_id)
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


# --- rendering ---


def _plain(obj: Any) -> Any:
    """msgspec enc_hook: NumPy scalars and arrays (rule inputs) become Python numbers and lists;
    anything else unknown becomes its ``str``, since one odd input must not lose the alert."""
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def record_to_json(record: DeskRecord) -> dict[str, Any]:
    """Any desk record as plain JSON-ready Python: the one shape every sink and ``kit run
    --jsonl`` writes. ``kind`` says what it is: ``alert``, ``decision`` (rule actions, with
    ``decision`` = ``action``, and the order manager's decisions), ``order``, ``fill`` or
    ``feed``; every record has ``ts`` (ISO, UTC) and ``ts_ns``."""
    if isinstance(record, AlertRecord):
        a = record.alert
        out: dict[str, Any] = {
            "kind": "alert", "ts_ns": a.ts_ns, "seq": record.seq,
            "severity": a.severity.value, "rule": a.rule, "message": a.message,
            "position_id": a.position_id, "inputs": a.inputs, "acked_ts_ns": record.acked_ts_ns,
            "acked_by": record.acked_by,
        }  # fmt: skip
    elif isinstance(record, Action):
        out = {
            "kind": "decision", "decision": "action", "ts_ns": record.ts_ns,
            "action": record.kind.value, "status": record.params.get("status"),
            "rule": record.rule, "reason": record.reason, "position_id": record.position_id,
            "params": record.params, "inputs": record.inputs,
        }  # fmt: skip
    elif isinstance(record, Decision):
        out = {
            "kind": "decision", "decision": record.kind, "ts_ns": record.ts_ns,
            "message": record.message, "position_id": record.position_id,
            "inputs": record.inputs,
        }  # fmt: skip
    elif isinstance(record, OrderState):
        o = record.order
        out = {
            "kind": "order", "ts_ns": record.ts_ns or o.ts_ns, "client_id": o.client_id,
            "status": record.status.value, "side": o.side.value, "qty": o.quantity,
            "filled_qty": record.filled_qty, "avg_price": record.avg_price,
            "order_type": o.order_type.value, "limit_price": o.limit_price,
            "legs": [{"contract": to_occ(leg.contract, padded=False), "ratio": leg.ratio}
                     for leg in o.legs],
            "position_id": o.position_id, "broker_id": record.broker_id,
            "reason": record.reason,
        }  # fmt: skip
    elif isinstance(record, Fill):
        out = {
            "kind": "fill", "ts_ns": record.ts_ns, "fill_id": record.fill_id,
            "client_id": record.client_id, "contract": to_occ(record.contract, padded=False),
            "side": record.side.value, "qty": record.quantity, "price": record.price,
            "multiplier": record.contract.multiplier, "commission": record.commission,
            "cash_flow": record.cash_flow,
        }  # fmt: skip
    else:
        out = {"kind": "feed", "ts_ns": record.ts_ns, "feed": record.feed,
               "state": record.state.value, "detail": record.detail}  # fmt: skip
    out["ts"] = from_ns(out["ts_ns"]).isoformat()
    return msgspec.to_builtins(out, enc_hook=_plain)


def _ny_time(ts_ns: int) -> str:
    return from_ns(ts_ns).astimezone(NEW_YORK).strftime("%H:%M:%S")


def _console_line(item: SinkRecord) -> Text:
    if not isinstance(item, AlertRecord):
        return Text.assemble((_ny_time(item.ts_ns), "dim"), f" → {_audit_text(item)}")
    a = item.alert
    return Text.assemble(
        (_ny_time(a.ts_ns), "dim"),
        " ",
        (f"{a.severity.value:<8}", _STYLE[a.severity]),
        f" {a.rule} {a.position_id or 'portfolio'} {a.message}",
    )


def _audit_text(item: Action | Decision | OrderState | Fill) -> str:
    if isinstance(item, Action):
        return f"{item.kind.value} ({item.rule}): {item.reason} [{item.position_id or 'book'}]"
    if isinstance(item, Decision):
        return f"{item.kind}: {item.message}"
    if isinstance(item, OrderState):
        o = item.order
        price = "market" if o.limit_price is None else f"{o.limit_price:g}"
        return (f"order {o.client_id} {o.side.value} {o.quantity} @ {price}: "
                f"{item.status.value} {item.filled_qty}/{o.quantity}")  # fmt: skip
    return (f"fill {item.side.value} {item.quantity:g} {to_occ(item.contract, padded=False)} "
            f"@ {item.price:g} (commission {item.commission:.2f})")  # fmt: skip


# --- sinks ---


class ConsoleSink:
    """One colored line per record on a ``rich`` console (times in New York)."""

    def __init__(
        self, console: Console | None = None, *, min_severity: Severity = Severity.INFO
    ) -> None:
        self.name, self.audit, self.min_severity = "console", True, min_severity
        self.console = console or Console()

    async def send(self, records: Sequence[SinkRecord]) -> None:
        for item in records:  # Text, not markup: a message with "[...]" prints as written
            self.console.print(_console_line(item), soft_wrap=True)


class JsonlSink:
    """One JSON object per line, appended to a file (parents created) or written to a stream."""

    def __init__(
        self, target: str | os.PathLike[str] | TextIO, *, min_severity: Severity = Severity.INFO
    ) -> None:
        self.audit, self.min_severity = True, min_severity
        self._path = Path(target) if isinstance(target, str | os.PathLike) else None
        self._stream = None if isinstance(target, str | os.PathLike) else target
        self.name = f"jsonl:{self._path or getattr(target, 'name', 'stream')}"

    async def send(self, records: Sequence[SinkRecord]) -> None:
        data = b"".join(msgspec.json.encode(record_to_json(r)) + b"\n" for r in records)
        if self._stream is not None:
            self._stream.write(data.decode())
            self._stream.flush()
        else:
            await asyncio.to_thread(self._append, data)  # a slow disk must not stall the loop

    def _append(self, data: bytes) -> None:
        assert self._path is not None
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("ab") as f:
            f.write(data)


async def _with_retries(
    what: str,
    attempt: Callable[[], Awaitable[None]],
    transient: tuple[type[Exception], ...],
    delays_s: Sequence[float],
) -> None:
    """Run ``attempt``, retrying transient failures after each delay in turn, then give up.

    Real seconds (asyncio.sleep), not the desk clock: the pace is set by a real remote server.
    """
    for delay in (*delays_s, None):
        try:
            await attempt()
            return
        except transient as exc:
            if delay is None:
                raise SinkError(
                    f"{what}: gave up after {len(delays_s) + 1} tries: {exc!r}"
                ) from exc
            log.warning("%s failed (%r); retrying in %.2f s", what, exc, delay)
            await asyncio.sleep(delay)


@dataclass(frozen=True)
class EmailSink:
    """One email per batch over SMTP, sent from a worker thread so the loop never blocks.

    Transient failures (refused, disconnected, timed out) are retried after each of
    ``retry_delays_s``; the password is kept out of repr and logs.
    """

    host: str
    port: int
    sender: str
    recipients: Sequence[str]
    min_severity: Severity = Severity.CRITICAL
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    subject_prefix: str = "[theta-desk]"
    _: KW_ONLY
    audit: bool = False
    timeout_s: float = 10.0
    retry_delays_s: tuple[float, ...] = (1.0, 5.0, 15.0)

    @property
    def name(self) -> str:
        return f"email:{self.host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EmailSink | None:
        """Configure from ``KIT_SMTP_*``; None when ``KIT_SMTP_HOST`` is unset."""
        env = os.environ if env is None else env
        if not env.get("KIT_SMTP_HOST"):
            return None
        if missing := [k for k in ("KIT_SMTP_FROM", "KIT_SMTP_TO") if not env.get(k)]:
            raise ValueError(f"KIT_SMTP_HOST is set but {', '.join(missing)} is not")
        starttls = env.get("KIT_SMTP_STARTTLS", "").lower() in {"1", "true", "yes", "on"}
        return cls(
            env["KIT_SMTP_HOST"],
            int(env.get("KIT_SMTP_PORT") or (587 if starttls else 25)),
            env["KIT_SMTP_FROM"],
            [r.strip() for r in env["KIT_SMTP_TO"].split(",") if r.strip()],
            username=env.get("KIT_SMTP_USER") or None,
            password=env.get("KIT_SMTP_PASSWORD") or None,
            starttls=starttls,
        )

    def message(self, records: Sequence[SinkRecord]) -> EmailMessage:
        """The email for one batch: the subject says how many and how bad, the body the inputs."""
        alerts = [r.alert for r in records if isinstance(r, AlertRecord)]
        if alerts:
            worst = _SEVERITIES[max(_RANK[a.severity] for a in alerts)]
            summary = f"{len(alerts)} alert{'s' * (len(alerts) != 1)}, worst {worst.value}"
        else:
            summary = f"{len(records)} action(s)"
        lines = []
        for r in records:
            d = record_to_json(r)
            what = d.get("severity") or f"ACTION {d['kind']}", d["rule"], d["position_id"] or "-"
            text = d.get("message", d.get("reason"))
            lines.append(f"{_ny_time(d['ts_ns'])} ET  {'  '.join(what)}: {text}")
            lines += [f"    {k} = {v}" for k, v in d["inputs"].items()]
        msg = EmailMessage()
        msg["Subject"] = f"{self.subject_prefix} {summary}"
        msg["From"], msg["To"] = self.sender, ", ".join(self.recipients)
        msg.set_content("\n".join(lines) + "\n")
        return msg

    async def send(self, records: Sequence[SinkRecord]) -> None:
        msg = self.message(records)
        transient = (ConnectionError, TimeoutError, smtplib.SMTPServerDisconnected)
        deliver = partial(asyncio.to_thread, self._deliver, msg)
        await _with_retries(self.name, deliver, transient, self.retry_delays_s)

    def _deliver(self, msg: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(msg)


class _ServerError(Exception):
    """A 5xx answer: the receiver is having trouble, worth another try."""


@dataclass(frozen=True)
class WebhookSink:
    """POSTs ``{"alerts": [...]}`` as JSON; retries 5xx and connection errors, drops on 4xx.

    Only the host is ever logged (and shown in repr): webhook URLs often carry a secret token.
    """

    url: str = field(repr=False)
    min_severity: Severity = Severity.WARNING
    timeout_s: float = 5.0
    headers: Mapping[str, str] | None = None
    _: KW_ONLY
    audit: bool = False
    retry_delays_s: tuple[float, ...] = (0.5, 2.0)

    @property
    def name(self) -> str:
        return f"webhook:{httpx.URL(self.url).host}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebhookSink | None:
        """Configure from ``KIT_WEBHOOK_URL``; None when it is unset."""
        url = (os.environ if env is None else env).get("KIT_WEBHOOK_URL")
        return cls(url) if url else None

    async def send(self, records: Sequence[SinkRecord]) -> None:
        body = msgspec.json.encode({"alerts": [record_to_json(r) for r in records]})
        headers = {"content-type": "application/json", **(self.headers or {})}
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:

            async def post() -> None:
                resp = await client.post(self.url, content=body, headers=headers)
                if resp.status_code >= 500:
                    raise _ServerError(f"HTTP {resp.status_code}")
                if resp.status_code >= 400:
                    raise SinkError(f"{self.name} refused: {resp.status_code} {resp.text[:200]!r}")

            transient = (_ServerError, httpx.TransportError)
            await _with_retries(self.name, post, transient, self.retry_delays_s)

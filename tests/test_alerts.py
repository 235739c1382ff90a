import asyncio
import email
import email.policy
import io
import json
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from kit.core.clock import SimClock
from kit.core.model import Action, ActionKind, Alert, Severity
from kit.engine.alerts import AlertConfig, AlertManager, AlertSink
from kit.engine.records import AlertRecord, record_to_json
from kit.sinks.base import SinkError
from kit.sinks.console import ConsoleSink
from kit.sinks.email import EmailSink
from kit.sinks.jsonl import JsonlSink
from kit.sinks.webhook import WebhookSink

T0 = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)  # 10:00 in New York (EST)
INFO, W, C = Severity.INFO, Severity.WARNING, Severity.CRITICAL
PASSWORD = "hunter2-s3cret"


@pytest.fixture
def clock() -> SimClock:
    return SimClock(T0)


def mk(clock: SimClock, rule="short_delta", pid="P1", sev=W, msg="delta 0.32 > 0.30", **inputs):
    return Alert(clock.now_ns(), sev, rule, msg, pid, inputs)


def act(clock: SimClock, kind=ActionKind.CLOSE_HALF, pid="P1") -> Action:
    return Action(clock.now_ns(), kind, "short_delta", "delta breached", pid, {"pct": 50}, {})


class Recorder:
    """A sink that keeps what it is sent; can be made to fail or to block."""

    def __init__(self, name="rec", min_severity=INFO, audit=True) -> None:
        self.name, self.min_severity, self.audit = name, min_severity, audit
        self.batches: list[list] = []
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def send(self, records) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.batches.append(list(records))

    @property
    def items(self) -> list:
        return [r for b in self.batches for r in b]


def _closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(cond: Callable[[], bool], timeout_s: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.002)


def rules_of(records) -> list[tuple[str, str | None, Severity]]:
    return [(r.alert.rule, r.alert.position_id, r.alert.severity) for r in records]


# --- de-duplication ---


def test_first_offer_emits_and_a_repeat_is_suppressed(clock):
    m = AlertManager(clock)
    first = m.offer([mk(clock)], scope={"P1"})
    assert [r.seq for r in first] == [1]
    assert first[0].alert.rule == "short_delta" and first[0].acked_ts_ns is None
    clock.advance(1)
    assert m.offer([mk(clock)], scope={"P1"}) == []
    assert m.history == first
    assert m.active == {("short_delta", "P1", ""): W}
    assert (m.stats["emitted"], m.stats["repeated"]) == (1, 1)


def test_escalation_emits_but_a_lower_or_equal_severity_does_not(clock):
    m = AlertManager(clock)
    assert len(m.offer([mk(clock, sev=INFO)])) == 1
    assert rules_of(m.offer([mk(clock, sev=C)])) == [("short_delta", "P1", C)]
    assert m.offer([mk(clock, sev=W)]) == []  # de-escalation is not news
    assert m.offer([mk(clock, sev=C)]) == []  # nor is going back up to the peak
    assert m.active == {("short_delta", "P1", ""): C}
    assert [r.seq for r in m.history] == [1, 2]


def test_cleared_key_refiring_inside_the_cooldown_is_suppressed_and_after_it_emits(clock):
    m = AlertManager(clock, config=AlertConfig(cooldown_s=300))
    m.offer([mk(clock)], scope={"P1"})
    clock.advance(10)
    m.offer([], scope={"P1"})  # condition cleared
    assert m.active == {}
    clock.advance(100)
    assert m.offer([mk(clock)], scope={"P1"}) == []  # 110 s after the emission
    assert m.stats["suppressed"] == 1
    assert ("short_delta", "P1", "") in m.active  # active again, silently
    assert m.offer([mk(clock)], scope={"P1"}) == []
    m.offer([], scope={"P1"})
    clock.advance(190)  # exactly cooldown_s after the last emission
    assert [r.seq for r in m.offer([mk(clock)], scope={"P1"})] == [2]


def test_refiring_more_severe_than_the_last_emission_is_news_even_inside_the_cooldown(clock):
    m = AlertManager(clock)
    m.offer([mk(clock, sev=W)], scope={"P1"})
    m.offer([], scope={"P1"})
    clock.advance(1)
    assert rules_of(m.offer([mk(clock, sev=C)], scope={"P1"})) == [("short_delta", "P1", C)]
    # a flapping critical: cleared, back as WARNING then CRITICAL within the cooldown -> silent
    m.offer([], scope={"P1"})
    assert m.offer([mk(clock, sev=W)], scope={"P1"}) == []
    assert m.offer([mk(clock, sev=C)], scope={"P1"}) == []
    assert m.stats["emitted"] == 2


def test_scope_none_never_clears(clock):
    m = AlertManager(clock, config=AlertConfig(cooldown_s=0))
    m.offer([mk(clock, pid="P1"), mk(clock, rule="margin", pid=None)])
    m.offer([])
    assert set(m.active) == {("short_delta", "P1", ""), ("margin", None, "")}
    assert m.offer([mk(clock, pid="P1")]) == []
    assert m.stats["cleared"] == 0


def test_only_positions_in_scope_clear(clock):
    m = AlertManager(clock, config=AlertConfig(cooldown_s=0))
    m.offer(
        [
            mk(clock, pid="P1"),
            mk(clock, rule="dte", pid="P1"),
            mk(clock, pid="P2"),
            mk(clock, rule="margin", pid=None),
        ]
    )
    m.offer([mk(clock, rule="dte", pid="P1")], scope={"P1"})  # P1 evaluated, P2 was not
    assert set(m.active) == {("dte", "P1", ""), ("short_delta", "P2", ""), ("margin", None, "")}
    assert m.offer([mk(clock, pid="P2")], scope={"P2"}) == []  # P2 kept its state
    m.offer([], scope={None})  # the portfolio-level rules were evaluated: nothing holds
    assert set(m.active) == {("dte", "P1", ""), ("short_delta", "P2", "")}
    assert len(m.offer([mk(clock, pid="P1"), mk(clock, rule="margin", pid=None)])) == 2


def test_two_keys_in_one_offer_are_independent(clock):
    m = AlertManager(clock)
    out = m.offer([mk(clock, pid="P1"), mk(clock, pid="P2"), mk(clock, rule="dte", pid="P1")])
    assert [r.seq for r in out] == [1, 2, 3]
    assert rules_of(out) == [("short_delta", "P1", W), ("short_delta", "P2", W), ("dte", "P1", W)]


def test_emissions_past_their_cooldown_are_forgotten_but_not_before(clock):
    m = AlertManager(clock, config=AlertConfig(cooldown_s=60))
    pids = [f"P{i}" for i in range(1500)]  # more than the 1,024 keys that trigger a prune
    m.offer([mk(clock, pid=p) for p in pids], scope=pids)
    m.offer([], scope=pids)
    clock.advance(30)
    assert m.offer([mk(clock, pid=p) for p in pids], scope=pids) == []  # cooldown survived it
    m.offer([], scope=pids)
    clock.advance(31)
    fresh = [f"Q{i}" for i in range(1600)]  # 3,100 keys: past the next prune threshold
    assert len(m.offer([mk(clock, pid=q) for q in fresh])) == 1600
    assert len(m._last) == 1600  # the memory this is about: the P keys are gone
    assert len(m.offer([mk(clock, pid=p) for p in pids], scope=pids)) == 1500
    assert m.offer([mk(clock, pid=q) for q in fresh[:5]]) == []  # still active


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(0, 400)),
        st.tuples(
            st.just("offer"),
            st.lists(
                st.tuples(st.sampled_from("ab"), st.sampled_from(["P1", "P2", None])), max_size=6
            ),
            st.lists(st.sampled_from([INFO, W, C]), min_size=6, max_size=6),
            st.one_of(st.none(), st.sets(st.sampled_from(["P1", "P2", None]))),
        ),
    ),
    max_size=40,
)


@given(OPS)
def test_manager_matches_a_naive_model_of_the_rules(ops):
    """The indexed implementation against an obvious dict-of-keys model of the documented rules."""
    clock, cooldown = SimClock(T0), 120
    m = AlertManager(clock, config=AlertConfig(cooldown_s=cooldown))
    rank = {INFO: 0, W: 1, C: 2}
    active: dict = {}  # key -> severity rank the user was last told about
    last: dict = {}  # key -> (time, rank) of the last emission
    now = 0
    for op in ops:
        if op[0] == "advance":
            clock.advance(op[1])
            now += op[1]
            continue
        _, keys, sevs, scope = op
        alerts = [mk(clock, rule=r, pid=p, sev=s) for (r, p), s in zip(keys, sevs, strict=False)]
        expected = []
        for a in alerts:
            key, r = (a.rule, a.position_id, a.key), rank[a.severity]
            if key in active and r <= active[key]:
                continue
            recent = key not in active and key in last and now - last[key][0] < cooldown
            if recent and r <= last[key][1]:
                active[key] = last[key][1]
                continue
            active[key], last[key] = r, (now, r)
            expected.append((a.rule, a.position_id, a.severity))
        if scope is not None:
            offered = {(a.rule, a.position_id, a.key) for a in alerts}
            active = {k: v for k, v in active.items() if k[1] not in scope or k in offered}
        assert rules_of(m.offer(alerts, scope)) == expected
        assert set(m.active) == set(active)


# --- acknowledgement ---


def test_acknowledge_stamps_the_clock_and_leaves_the_unacknowledged(clock):
    m = AlertManager(clock, config=AlertConfig(cooldown_s=0))
    m.offer([mk(clock, pid="P1"), mk(clock, pid="P2"), mk(clock, pid="P3")])
    clock.advance(42)
    acked = m.acknowledge(2, by="ana")
    assert (acked.seq, acked.acked_by) == (2, "ana")
    assert acked.acked_ts_ns == SimClock(T0).now_ns() + 42 * 10**9
    assert m.history[1] == acked
    assert [r.seq for r in m.unacknowledged()] == [1, 3]
    clock.advance(1)
    assert m.acknowledge(2, by="bob") == acked  # the first acknowledgement stands
    m.offer([mk(clock, pid="P1")], scope={"P1", "P3"})  # P3 cleared: nothing to acknowledge
    assert [r.seq for r in m.unacknowledged()] == [1]
    m.offer([mk(clock, pid="P1", sev=C)], scope={"P1"})  # escalation replaces seq 1
    assert [r.seq for r in m.unacknowledged()] == [4]


def test_unacknowledged_lists_the_latest_emission_per_key_oldest_first(clock):
    m = AlertManager(clock)
    m.offer([mk(clock, pid="P1"), mk(clock, pid="P2")])
    m.offer([mk(clock, pid="P1", sev=C)])
    assert [(r.seq, r.alert.position_id) for r in m.unacknowledged()] == [(2, "P2"), (3, "P1")]


def test_unknown_or_evicted_seq_is_a_key_error_naming_it(clock):
    m = AlertManager(clock, config=AlertConfig(history=2))
    with pytest.raises(KeyError, match="seq 1 "):
        m.acknowledge(1)
    m.offer([mk(clock, pid=p) for p in ("P1", "P2", "P3")])
    assert [r.seq for r in m.history] == [2, 3]
    for seq in (1, 4, 0):
        with pytest.raises(KeyError, match=rf"seq {seq} .*2\.\.3"):
            m.acknowledge(seq)
    assert m.acknowledge(3).acked_by == "user"


# --- delivery ---


async def test_records_reach_every_sink_at_or_above_its_min_severity(clock):
    everything, urgent = Recorder("all"), Recorder("urgent", min_severity=C, audit=False)
    assert isinstance(everything, AlertSink)
    async with AlertManager(clock, [everything, urgent]) as m:
        m.offer([mk(clock, pid="P1", sev=INFO), mk(clock, pid="P2", sev=C)])
        m.audit(act(clock))
        m.audit(act(clock))  # actions are never de-duplicated
    assert [type(r).__name__ for r in everything.items] == ["AlertRecord"] * 2 + ["Action"] * 2
    assert rules_of(urgent.items) == [("short_delta", "P2", C)]
    assert m.stats["audit"] == 2


async def test_close_flushes_everything_queued_even_if_never_started(clock):
    rec = Recorder()
    m = AlertManager(clock, [rec], AlertConfig(cooldown_s=0))
    for i in range(50):
        m.offer([mk(clock, pid=f"P{i}")])
    assert rec.items == []  # nothing delivered on the offer path
    assert await m.close() == 0
    assert [r.seq for r in rec.items] == list(range(1, 51))


async def test_a_raising_sink_is_logged_once_per_failure_type_and_others_carry_on(clock, caplog):
    bad, good = Recorder("bad"), Recorder("good")
    bad.fail = RuntimeError("disk full")
    async with AlertManager(clock, [bad, good]) as m:
        for i in range(3):
            m.offer([mk(clock, pid=f"P{i}")])
            await until(lambda i=i: len(good.items) == i + 1 and m.stats["sink_errors"] == i + 1)
        bad.fail = None
        m.offer([mk(clock, pid="P9")])
        await until(lambda: len(bad.items) == 1)
        bad.fail = RuntimeError("disk full again")
        m.offer([mk(clock, pid="P10")])
        await until(lambda: m.stats["sink_errors"] == 4)
    errors = [
        r for r in caplog.records if r.name == "kit.engine.alerts" and r.levelno == logging.ERROR
    ]
    assert len(errors) == 2  # the first failure and the first after recovery, not one per batch
    assert "'bad'" in errors[0].getMessage() and errors[0].exc_info is not None
    assert len(good.items) == 5


async def test_a_slow_sink_does_not_delay_another(clock):
    slow, fast = Recorder("slow"), Recorder("fast")
    slow.gate = asyncio.Event()
    async with AlertManager(clock, [slow, fast]) as m:
        m.offer([mk(clock, pid="P1")])
        await until(lambda: len(fast.items) == 1)
        m.offer([mk(clock, pid="P2")])
        await until(lambda: len(fast.items) == 2)
        assert slow.items == []
        slow.gate.set()
    assert [r.seq for r in slow.items] == [1, 2]  # and it got both, batched after the wait
    assert len(slow.batches) == 2 and len(slow.batches[1]) == 1


async def test_close_gives_up_on_a_stuck_sink_after_the_timeout_and_counts_the_loss(clock, caplog):
    stuck, ok = Recorder("stuck"), Recorder("ok")
    stuck.gate = asyncio.Event()  # never set
    m = AlertManager(clock, [stuck, ok], AlertConfig(close_timeout_s=0.05, cooldown_s=0))
    m.start()
    m.offer([mk(clock, pid="P1")])
    await until(lambda: len(ok.items) == 1)
    m.offer([mk(clock, pid="P2"), mk(clock, pid="P3")])
    assert await m.close() == 3  # one in flight, two queued
    assert len(ok.items) == 3
    assert "'stuck' did not flush in time: lost 3" in caplog.text
    assert m.stats["dropped"] == 3


async def test_a_full_queue_drops_the_oldest_and_says_how_many(clock, caplog):
    rec = Recorder()
    m = AlertManager(clock, [rec], AlertConfig(queue_size=3, cooldown_s=0))
    m.offer([mk(clock, pid=f"P{i}") for i in range(5)])
    await m.close()
    assert [r.seq for r in rec.items] == [3, 4, 5]
    assert m.stats["dropped"] == 2
    assert "fell behind: dropped 2 oldest" in caplog.text


# --- JSON / JSONL / console ---


def test_record_to_json_converts_numpy_inputs(clock):
    inputs = {"delta": np.float64(0.32), "dte": np.int64(3), "iv": np.float32(0.5), "x": Ellipsis}
    doc = record_to_json(AlertRecord(7, mk(clock, **inputs)))
    assert doc["inputs"] == {"delta": 0.32, "dte": 3, "iv": 0.5, "x": "Ellipsis"}
    assert type(doc["inputs"]["delta"]) is float and type(doc["inputs"]["dte"]) is int
    assert doc["ts"] == "2024-03-04T15:00:00+00:00" and doc["seq"] == 7
    json.dumps(doc)  # plain Python all the way down


async def test_jsonl_file_lines_parse_with_the_required_keys(clock, tmp_path):
    path = tmp_path / "logs" / "day" / "alerts.jsonl"
    m = AlertManager(clock, [JsonlSink(path)])
    m.offer([mk(clock, sev=C, delta=np.float64(0.41), legs=np.array([1.0, -2.0]))])
    m.audit(act(clock))
    await m.close()
    m2 = AlertManager(clock, [JsonlSink(str(path))])  # a second run appends
    m2.offer([mk(clock, rule="margin", pid=None)])
    await m2.close()
    docs = [json.loads(line) for line in path.read_text().splitlines()]
    assert [d["kind"] for d in docs] == ["alert", "decision", "alert"]
    alert, action = docs[0], docs[1]
    required = {"kind", "ts", "ts_ns", "seq", "severity", "rule", "message", "position_id"}
    assert required | {"inputs"} <= alert.keys()
    assert (alert["severity"], alert["rule"], alert["position_id"]) == (
        "CRITICAL",
        "short_delta",
        "P1",
    )
    assert alert["inputs"] == {"delta": 0.41, "legs": [1.0, -2.0]}
    assert datetime.fromisoformat(alert["ts"]) == T0 and alert["ts_ns"] == clock.now_ns()
    assert action.items() >= {"action": "close_half", "reason": "delta breached"}.items()
    assert {"ts", "ts_ns", "rule", "position_id", "params", "inputs"} <= action.keys()
    assert docs[2]["position_id"] is None


async def test_jsonl_writes_to_a_stream(clock):
    out = io.StringIO()
    async with AlertManager(clock, [JsonlSink(out)]) as m:
        m.offer([mk(clock)])
    assert json.loads(out.getvalue())["message"] == "delta 0.32 > 0.30"


async def test_console_sink_prints_one_line_per_record_in_new_york_time(clock):
    buf = io.StringIO()
    console = Console(file=buf, width=200, force_terminal=False)
    async with AlertManager(clock, [ConsoleSink(console)]) as m:
        m.offer([mk(clock, sev=C, msg="short call [bold]ITM[/bold]")])
        m.audit(act(clock))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("10:00:00 CRITICAL")
    assert "short_delta P1 short call [bold]ITM[/bold]" in lines[0]  # markup is not interpreted
    assert "→ close_half (short_delta): delta breached" in lines[1]


# --- email ---


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=True)


class _EphemeralController(Controller):
    """aiosmtpd's Controller on port 0: read the port the OS picked before its readiness probe."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def smtp():
    inbox = _Inbox()
    ctl = _EphemeralController(
        inbox,
        hostname="127.0.0.1",
        port=0,
        authenticator=inbox.authenticate,
        auth_require_tls=False,
    )
    ctl.start()
    yield ctl, inbox
    ctl.stop()


async def test_email_arrives_with_the_worst_severity_in_the_subject(clock, smtp, caplog):
    ctl, inbox = smtp
    caplog.set_level(logging.DEBUG)
    sink = EmailSink(
        "127.0.0.1",
        ctl.port,
        "desk@example.com",
        ["me@example.com", "pager@example.com"],
        min_severity=W,
        username="desk",
        password=PASSWORD,
    )
    async with AlertManager(clock, [sink]) as m:
        m.offer([mk(clock, pid="P1", sev=C, delta=np.float64(0.45)), mk(clock, pid="P2")])
        m.offer([mk(clock, rule="info_only", sev=INFO)])
    assert len(inbox.messages) == 1
    msg = inbox.messages[0]
    assert msg["Subject"] == "[theta-desk] 2 alerts, worst CRITICAL"
    assert msg["To"] == "me@example.com, pager@example.com"
    body = msg.get_content()
    assert "CRITICAL  short_delta  P1: delta 0.32 > 0.30" in body
    assert "delta = 0.45" in body and "info_only" not in body
    assert inbox.logins == [(b"desk", PASSWORD.encode())]
    assert PASSWORD not in caplog.text and PASSWORD not in repr(sink)


async def test_email_below_min_severity_is_not_sent(clock, smtp):
    ctl, inbox = smtp
    sink = EmailSink("127.0.0.1", ctl.port, "desk@example.com", ["me@example.com"])
    async with AlertManager(clock, [sink]) as m:
        m.offer([mk(clock, sev=W)])
        m.audit(act(clock))  # email is not an audit sink by default
    assert inbox.messages == []


async def test_email_retries_a_refused_connection_then_gives_up_without_the_password(clock, caplog):
    sink = EmailSink(
        "127.0.0.1", _closed_port(), "d@x.com", ["m@x.com"], username="desk", password=PASSWORD,
        retry_delays_s=(0.01, 0.01),
    )  # fmt: skip
    with pytest.raises(SinkError, match="gave up after 3 tries"):
        await sink.send([AlertRecord(1, mk(clock, sev=C))])
    assert caplog.text.count("retrying in") == 2
    async with AlertManager(clock, [sink]) as m:
        m.offer([mk(clock, sev=C)])
    assert m.stats["sink_errors"] == 1 and "ConnectionRefusedError" in caplog.text
    assert PASSWORD not in caplog.text


def test_email_from_env():
    assert EmailSink.from_env({}) is None
    env = {
        "KIT_SMTP_HOST": "smtp.example.com",
        "KIT_SMTP_FROM": "desk@example.com",
        "KIT_SMTP_TO": "a@example.com, b@example.com",
        "KIT_SMTP_USER": "desk",
        "KIT_SMTP_PASSWORD": PASSWORD,
        "KIT_SMTP_STARTTLS": "true",
    }
    sink = EmailSink.from_env(env)
    assert sink is not None
    assert (sink.host, sink.port, sink.starttls) == ("smtp.example.com", 587, True)
    assert sink.recipients == ["a@example.com", "b@example.com"]
    assert (sink.username, sink.password) == ("desk", PASSWORD)
    assert EmailSink.from_env({**env, "KIT_SMTP_PORT": "2525"}).port == 2525
    with pytest.raises(ValueError, match="KIT_SMTP_TO"):
        EmailSink.from_env({"KIT_SMTP_HOST": "h", "KIT_SMTP_FROM": "f"})


# --- webhook ---


class _Hook:
    """A tiny HTTP/1.1 server: records each request and answers the scripted statuses."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in head[1:] if line)
        headers = {k.lower(): v for k, v in headers.items()}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((head[0], headers, body))
        status = self.statuses.pop(0) if self.statuses else 200
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno".encode()
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def hook():
    h = _Hook()
    server = await asyncio.start_server(h.handle, "127.0.0.1", 0)
    h.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hooks/SECRET-TOKEN"
    yield h
    server.close()
    await server.wait_closed()


async def test_webhook_posts_json_and_retries_after_a_500(clock, hook, caplog):
    hook.statuses = [500]
    sink = WebhookSink(hook.url, headers={"X-Desk": "1"}, retry_delays_s=(0.01, 0.01))
    async with AlertManager(clock, [sink]) as m:
        m.offer([mk(clock, sev=C, delta=np.float64(0.4)), mk(clock, pid="P2", sev=INFO)])
    assert len(hook.requests) == 2
    line, headers, body = hook.requests[-1]
    assert line == "POST /hooks/SECRET-TOKEN HTTP/1.1"
    assert headers["content-type"] == "application/json" and headers["x-desk"] == "1"
    alerts = json.loads(body)["alerts"]
    assert [(a["seq"], a["severity"], a["inputs"]) for a in alerts] == [
        (1, "CRITICAL", {"delta": 0.4})
    ]
    assert hook.requests[0][2] == body
    assert m.stats["sink_errors"] == 0 and "retrying" in caplog.text
    assert "SECRET-TOKEN" not in caplog.text


async def test_webhook_gives_up_on_a_400_and_keeps_going(clock, hook, caplog):
    hook.statuses = [400]
    sink = WebhookSink(hook.url, retry_delays_s=(0.01, 0.01))
    async with AlertManager(clock, [sink]) as m:
        m.offer([mk(clock, pid="P1")])
        await until(lambda: m.stats["sink_errors"] == 1)
        m.offer([mk(clock, pid="P2")])
    assert len(hook.requests) == 2  # no retry of the refused batch; the next one went through
    assert json.loads(hook.requests[1][2])["alerts"][0]["position_id"] == "P2"
    assert "refused: 400" in caplog.text and "SECRET-TOKEN" not in caplog.text


async def test_webhook_retries_connection_errors_three_times(clock, caplog):
    sink = WebhookSink(f"http://127.0.0.1:{_closed_port()}/hook", retry_delays_s=(0.01, 0.01))
    with pytest.raises(SinkError, match="gave up after 3 tries"):
        await sink.send([AlertRecord(1, mk(clock))])
    assert caplog.text.count("retrying in") == 2


def test_webhook_from_env():
    assert WebhookSink.from_env({}) is None
    sink = WebhookSink.from_env({"KIT_WEBHOOK_URL": "https://hooks.example.com/T0/B1/secret"})
    assert sink is not None and sink.name == "webhook:hooks.example.com"
    assert (sink.min_severity, sink.audit) == (W, False)
    assert "secret" not in repr(sink)


def test_recent_keeps_what_was_cleared_and_acknowledged():
    from datetime import UTC, datetime

    from kit.core.clock import SimClock
    from kit.core.model import Alert, Severity
    from kit.engine.alerts import AlertManager

    m = AlertManager(SimClock(datetime(2024, 3, 12, 15, tzinfo=UTC)))
    for i in range(40):
        m.notify(Alert(i + 1, Severity.INFO, "entry", f"event {i}", f"p{i}", {}))
    m.acknowledge(40)
    recent = m.recent(30)
    assert [r.seq for r in recent] == list(range(11, 41))  # oldest first, the last 30
    assert recent[-1].acked_ts_ns is not None and m.unacknowledged() == []

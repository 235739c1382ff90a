"""No desk task dies silently: failures are counted, alerted once, freeze automation and mark the
engine DEGRADED; Close All and the kill switch keep working; the page sees its own staleness.

Everything runs against a real desk service on 127.0.0.1 (simulated market, paper broker)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from service_helpers import TOKEN, until

import kit
import kit.engine.desk
from kit.app.service import DeskService, ServiceConfig
from kit.core.model import Severity
from kit.engine.health import Health
from kit.remote.client import DeskClient
from kit.remote.gateway import GatewayConfig
from kit.ui import Monitor
from kit.ui.panels import banner_html


@pytest.fixture
async def service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[DeskService]:
    monkeypatch.setenv("KIT_TOKEN", TOKEN)
    rules = tmp_path / "rules.toml"  # entries pass on any simulated second
    rules.write_text("[entry]\nmax_spread_pct = 50.0\nmin_iv_rank = 0.0\n")
    cfg = ServiceConfig(gateway=GatewayConfig(port=0), speed=20.0, rules=str(rules),
                        manual=tmp_path / "m.json")  # fmt: skip
    async with DeskService(cfg) as svc:
        yield svc


@pytest.fixture
async def client(service: DeskService) -> AsyncIterator[DeskClient]:
    c = await kit.connect(f"ws://127.0.0.1:{service.gateway.port}", TOKEN, name="pytest")
    yield c
    await c.close()


def position(client: DeskClient, quantity: float | None = None, legs: int | None = None):
    for p in (client.snapshot or {}).get("positions", []):
        if p["open"] and p["status"] == "open" and quantity in (None, p["quantity"]) and (
                legs in (None, len(p["legs"]))):  # fmt: skip
            return p
    return None


def flat(client: DeskClient) -> bool:
    s = client.snapshot or {}
    return bool(s.get("positions")) and not any(p["open"] for p in s["positions"])


async def test_add_protection_then_close_all_keeps_the_engine_healthy(service, client) -> None:
    p = await until(lambda: position(client, 2.0))
    await client.command("add_protection", position=p["id"])
    condor = await until(lambda: position(client, legs=4))  # two wings added at once
    assert condor["strategy"] == "IRON_CONDOR"
    assert client.snapshot["engine_health"]["state"] == "OK"
    evaluations = service.desk.stats["evaluations"]
    await client.command("close_all")
    await until(lambda: flat(client))
    await asyncio.sleep(0.5)
    assert service.desk.stats["evaluations"] > evaluations  # the desk still runs its rules
    assert client.snapshot["engine_health"]["state"] == "OK"
    assert not service.desk.health.counts


async def test_a_failing_evaluation_degrades_freezes_and_close_all_still_works(
    service, client, monkeypatch, caplog
) -> None:
    p = await until(lambda: position(client, 2.0))
    await client.command("auto_manage", on=True)
    caplog.set_level(logging.ERROR, logger="kit.engine.health")

    def broken(ctx):
        raise IndexError("index 3 is out of bounds for axis 0 with size 3")

    monkeypatch.setattr(kit.engine.desk, "evaluate", broken)
    s = await until(lambda: client.snapshot["engine_health"]["state"] == "DEGRADED"
                    and client.snapshot)  # fmt: skip
    fault = s["engine_health"]["faults"][0]
    assert fault["stage"] == "evaluate" and "IndexError" in fault["error"]
    await until(lambda: service.desk.health.counts[("evaluate", fault["error"])] >= 20)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # logged once with its traceback, then only counted
    critical = [r for r in service.desk.alerts.history if r.alert.rule == "engine"]
    assert len(critical) == 1 and critical[0].alert.severity is Severity.CRITICAL
    assert "DEGRADED" in critical[0].alert.message
    # automation is frozen: no rule can act on a broken evaluation
    from kit.core.model import Action, ActionKind

    action = Action(0, ActionKind.CLOSE_ALL, "stop_loss", "test", p["id"])
    assert service.desk._veto(action, service.desk.view).startswith("proposed: engine degraded")
    # ... while the trader can still get out
    out = await client.command("close_all")
    assert out["intents"][0]["position"] == p["id"]
    await until(lambda: service.desk.book.held(p["id"]) is None)
    monkeypatch.undo()  # the fault is gone: healthy again, with an INFO alert saying so
    await until(lambda: client.snapshot["engine_health"]["state"] == "OK")
    assert any(r.alert.rule == "engine" and r.alert.severity is Severity.INFO
               for r in service.desk.alerts.history)  # fmt: skip
    await until(lambda: flat(client))


async def test_a_dead_feed_task_is_restarted_and_the_kill_switch_works(service, client) -> None:
    await until(lambda: position(client, 2.0))
    feed = service.feed
    real = feed.get_nowait
    calls = {"n": 0}

    def dies_once():
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("feed decoder crashed")
        return real()

    feed.get_nowait = dies_once
    await until(lambda: service.desk.health.restarts.get("desk:sim"))
    ticks = service.desk.stats["events"]
    await until(lambda: service.desk.stats["events"] > ticks + 10)  # data flows again
    await until(lambda: client.snapshot["engine_health"]["state"] == "OK")
    assert client.snapshot["engine_health"]["restarts"] == {"desk:sim": 1}
    await client.command("kill", on=True, reason="test")
    await until(lambda: client.snapshot["killed"])


async def test_a_failing_snapshot_is_counted_once_and_recovers(service, client, monkeypatch):
    await until(lambda: position(client))
    real = service.view.build
    failures = {"n": 0}

    def broken(*a, **kw):
        failures["n"] += 1
        if failures["n"] <= 5:
            raise KeyError("positions")
        return real(*a, **kw)

    monkeypatch.setattr(service.view, "build", broken)
    await until(lambda: failures["n"] > 5)
    snap = await until(lambda: client.snapshot["engine_health"]["state"] == "OK"
                       and client.snapshot)  # fmt: skip
    assert service.desk.health.counts[("snapshot", "KeyError: 'positions'")] == 5
    assert snap["positions"]


def test_health_logs_distinct_errors_once_and_counts_repeats(caplog) -> None:
    alerts = []
    h = Health(lambda sev, rule, msg: alerts.append((sev, msg)), lambda: 1)
    caplog.set_level(logging.ERROR, logger="kit.engine.health")
    for _ in range(250):
        try:
            raise ValueError("bad")
        except ValueError as exc:
            h.failed("evaluate", exc)
    assert h.degraded and h.state()["faults"][0]["count"] == 250
    assert len(alerts) == 1 and alerts[0][0] is Severity.CRITICAL
    assert len([r for r in caplog.records if r.exc_info]) == 1
    assert len(caplog.records) == 3  # the first, then at 10 and 100
    h.ok("evaluate")
    assert not h.degraded and alerts[-1][0] is Severity.INFO


async def test_supervisor_gives_up_after_repeated_deaths() -> None:
    h = Health(lambda *a: None, lambda: 1)
    halted = []

    async def always_dies():
        raise OSError("socket gone")

    await h.supervise("t", always_dies, max_restarts=3, backoff_s=0.001, on_give_up=halted.append)
    assert h.restarts["t"] == 4 and "died 4 times" in halted[0]


def test_banner_shows_degraded_and_the_pages_own_staleness() -> None:
    ok = {"engine_health": {"state": "OK", "faults": []}}
    assert banner_html(ok, 0.5, 1) == ""
    degraded = {"engine_health": {"state": "DEGRADED", "faults": [
        {"stage": "evaluate", "error": "IndexError: x", "count": 7, "since_ns": 0}]}}  # fmt: skip
    html = banner_html(degraded, 0.5, 1)
    assert "ENGINE DEGRADED" in html and "IndexError" in html and "×7" in html
    stale = banner_html(ok, 4.0, 1_700_000_000_000_000_000)  # the service still said OK
    assert "engine not updating since" in stale and "kit-banner-stale" in stale


async def test_monitor_shows_the_stale_banner_when_snapshots_stop(service) -> None:
    client = await kit.connect(f"ws://127.0.0.1:{service.gateway.port}", TOKEN, name="monitor")
    m = Monitor(client)
    m.start()
    try:
        await until(lambda: m.frames > 2)
        assert m.banner.value == ""
        for task in service._tasks:  # the snapshot loop stops (a hung service)
            if task.get_name() == "service:snapshots":
                task.cancel()
        await until(lambda: "engine not updating since" in m.banner.value, timeout_s=8)
    finally:
        await m.stop()
        await client.close()

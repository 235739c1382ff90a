"""One builder, any feed or broker: the desk service on a ThetaData Terminal (our loopback
emulator), `kit run` replaying a recorded Parquet day, and clear one-line refusals."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from service_helpers import TOKEN, until

import kit
from kit.adapters.replay.feed import record
from kit.adapters.sim.feed import SCRIPTS, SimFeed
from kit.adapters.sim.market import SimConfig
from kit.adapters.thetadata.emulator import ThetaDataEmulator
from kit.app.build import FeedSpec, RunSpec, build
from kit.app.service import DeskService, ServiceConfig
from kit.core.clock import NEW_YORK, SimClock
from kit.core.config import ConfigError
from kit.remote.gateway import GatewayConfig

DAY_10AM = datetime(2024, 3, 12, 10, 0, tzinfo=NEW_YORK)


def kit_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kit", *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


# --- the feed flag ---


def test_feed_specs_parse_and_bad_ones_say_what_to_use(tmp_path: Path) -> None:
    f = tmp_path / "day.parquet"
    f.write_bytes(b"x")
    assert FeedSpec.parse("sim") == FeedSpec("sim")
    assert FeedSpec.parse("thetadata") == FeedSpec("thetadata")
    assert FeedSpec.parse(f"replay:{f}") == FeedSpec("replay", f)
    with pytest.raises(ValueError, match="use one of sim, replay:PATH, thetadata"):
        FeedSpec.parse("bloomberg")
    with pytest.raises(ValueError, match="no such file"):
        FeedSpec.parse(f"replay:{tmp_path / 'nope.parquet'}")
    with pytest.raises(ValueError, match="replay:PATH"):
        FeedSpec.parse("replay")
    with pytest.raises(ValueError, match="--broker 'schwab'"):
        RunSpec(broker="schwab")
    with pytest.raises(ValueError, match="live trading is mode live with a live broker"):
        RunSpec(mode="live")  # live mode on the paper broker: a contradiction, refused
    with pytest.raises(ValueError, match="live trading is mode live with a live broker"):
        RunSpec(broker="ibkr-cpapi")  # a live broker never arrives by a default mode


@pytest.mark.parametrize("command", ["run", "serve", "monitor"])
def test_every_product_command_takes_the_same_feed_and_broker_flags(command: str) -> None:
    out = kit_cli(command, "--feed", "bloomberg", timeout=60)
    assert out.returncode == 2 and "use one of sim, replay:PATH, thetadata" in out.stderr
    assert "Traceback" not in out.stderr
    out = kit_cli(command, "--help", timeout=60)
    assert "--feed" in out.stdout and "--broker" in out.stdout and "ibkr-cpapi" in out.stdout


async def test_an_unreachable_terminal_is_one_line_naming_host_and_port(monkeypatch) -> None:
    monkeypatch.setenv("THETADATA_HOST", "127.0.0.1")
    monkeypatch.setenv("THETADATA_REST_PORT", "9")  # discard: nothing listens
    with pytest.raises(ConfigError, match=r"cannot reach the ThetaData Terminal at 127.0.0.1:9"):
        await build(RunSpec(feed=FeedSpec("thetadata")))


def test_kit_serve_on_an_unreachable_terminal_exits_with_one_line(monkeypatch) -> None:
    monkeypatch.setenv("THETADATA_REST_PORT", "9")
    monkeypatch.setenv("KIT_TOKEN", TOKEN)
    out = kit_cli("serve", "--feed", "thetadata", "--port", "0", timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "cannot reach the ThetaData Terminal at 127.0.0.1:9" in out.stderr


# --- kit serve --feed thetadata ---


@pytest.fixture
async def terminal(monkeypatch) -> AsyncIterator[ThetaDataEmulator]:
    """The emulator serving a simulated 2024-03-12 from 10:00 (seed 3, the demo market)."""
    clock = SimClock(DAY_10AM, speed=1.0)
    async with ThetaDataEmulator(clock=clock, config=SimConfig(seed=3)) as emu:
        monkeypatch.setenv("THETADATA_HOST", "127.0.0.1")
        monkeypatch.setenv("THETADATA_REST_PORT", str(emu.rest_port))
        monkeypatch.setenv("THETADATA_WS_PORT", str(emu.ws_port))
        yield emu


async def test_the_service_runs_on_the_vendors_feed_and_paper_trades_its_quotes(
    terminal: ThetaDataEmulator, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KIT_TOKEN", TOKEN)
    cfg = ServiceConfig(gateway=GatewayConfig(port=0), feed="thetadata",
                        manual=tmp_path / "m.json")  # fmt: skip
    async with DeskService(cfg) as svc:
        # the desk runs on the vendor's market time, not the wall's
        assert abs((svc.clock.now() - terminal.clock.now()).total_seconds()) < 5
        client = await kit.connect(f"ws://127.0.0.1:{svc.gateway.port}", TOKEN)
        try:
            await until(lambda: (client.snapshot or {}).get("feed", {}).get("feeds", {}).get(
                "thetadata") == "LIVE")  # fmt: skip
            spot = client.snapshot["spots"]["SPX"]["last"]
            assert spot == pytest.approx(terminal.market.spot("SPX"), rel=2e-3)

            def demo():
                return next((p for p in client.snapshot.get("positions", [])
                             if p["open"] and p["status"] == "open"), None)  # fmt: skip

            p = await until(demo, timeout_s=60)
            assert p["quantity"] == 2 and p["id"].startswith("demo-")
            await until(lambda: len([f for f in client.snapshot["fills"]
                                     if f["position_id"] == p["id"]]) >= 2)  # fmt: skip
            fills = [f for f in client.snapshot["fills"] if f["position_id"] == p["id"]]
            assert {f["side"] for f in fills} == {"sell"} and sum(f["qty"] for f in fills) >= 4
            # paper fills at the vendor's quotes: a sell at most a tick through that leg's bid
            for leg in p["legs"]:
                assert leg["bid"] is not None and leg["bid"] > 0
            assert all(f["price"] > 0 for f in fills)
        finally:
            await client.close()


# --- kit run --feed replay:PATH ---


@pytest.fixture
def recorded_day(tmp_path: Path) -> tuple[Path, int]:
    """Fifteen minutes of the simulated 2024-03-12 with the rapid-drop script, recorded."""

    async def capture() -> list:
        clock = SimClock(DAY_10AM)
        feed = SimFeed(clock, config=SimConfig(seed=0), script=SCRIPTS["rapid_drop"])
        await feed.start()
        await feed.subscribe(["SPX", "SPY", "VIX"])
        events = []
        for _ in range(900):
            await clock.run_until(clock.now() + timedelta(seconds=1))
            while (ev := feed.get_nowait()) is not None:
                events.append(ev)
        await feed.close()
        return events

    events = asyncio.run(capture())
    path = tmp_path / "day.parquet"
    return path, record(events, path)


def test_kit_run_replays_a_recorded_day_through_the_same_desk(recorded_day) -> None:
    path, rows = recorded_day
    out = kit_cli("run", "--feed", f"replay:{path}", "--jsonl")
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    summary = lines[-1]
    assert summary["kind"] == "summary" and summary["feed"] == f"replay:{path}"
    assert summary["events"] >= rows * 0.99  # every recorded row reached the desk
    assert summary["alerts"].get("rapid_move", 0) >= 1  # the recorded drop fires its rule
    assert summary["from"].startswith("2024-03-12T10:00")
    assert any(doc.get("kind") == "alert" and doc.get("rule") == "rapid_move" for doc in lines)


# --- alert sinks from the environment ---


async def test_every_built_desk_attaches_the_configured_email_and_webhook_sinks(monkeypatch):
    monkeypatch.setenv("KIT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("KIT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("KIT_SMTP_FROM", "desk@example.com")
    monkeypatch.setenv("KIT_SMTP_TO", "me@example.com, you@example.com")
    run = await build(RunSpec(mode="alert_only", speed=None))
    names = sorted(ch.sink.name for ch in run.desk.alerts._channels)
    assert names == ["email:127.0.0.1:25", "webhook:127.0.0.1"]
    await run.close()
    monkeypatch.delenv("KIT_SMTP_TO")  # half a configuration: one line at start-up, no desk
    with pytest.raises(ConfigError, match="alert sinks: KIT_SMTP_HOST is set but KIT_SMTP_TO"):
        await build(RunSpec(mode="alert_only", speed=None))

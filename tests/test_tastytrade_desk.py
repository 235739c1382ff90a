"""The desk service on ``--feed tastytrade`` against the emulator: the builder logs in with the
SDK, the desk runs at the vendor's market time, the feed is LIVE, the demo strangle opens on
paper at the vendor's quotes, the vendor's Greeks of its legs arrive beside the desk's own, and
missing credentials are one line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path

import pytest
from service_helpers import TOKEN, until

import kit
from kit.adapters.sim.market import SimConfig
from kit.adapters.tastytrade.emulator import TastytradeEmulator
from kit.app.build import FeedSpec, RunSpec, build
from kit.app.service import DeskService, ServiceConfig
from kit.core.clock import NEW_YORK, SimClock
from kit.core.config import ConfigError
from kit.core.model import Contract, Right
from kit.remote.gateway import GatewayConfig

DAY_10AM = datetime(2024, 3, 12, 10, 0, tzinfo=NEW_YORK)  # fixed: the same market at any hour


@pytest.fixture
async def vendor(monkeypatch) -> AsyncIterator[TastytradeEmulator]:
    clock = SimClock(DAY_10AM, speed=1.0)
    async with TastytradeEmulator(clock=clock, config=SimConfig(seed=3)) as emu:
        monkeypatch.setenv("TT_API_URL", emu.url)
        monkeypatch.setenv("TT_SECRET", "any-secret")
        monkeypatch.setenv("TT_REFRESH", "any-refresh")
        yield emu


async def test_the_service_runs_on_tastytrade_and_paper_trades_its_quotes(
    vendor: TastytradeEmulator, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KIT_TOKEN", TOKEN)
    cfg = ServiceConfig(gateway=GatewayConfig(port=0), feed="tastytrade",
                        manual=tmp_path / "m.json")  # fmt: skip
    async with DeskService(cfg) as svc:
        assert abs((svc.clock.now() - vendor.clock.now()).total_seconds()) < 5
        client = await kit.connect(f"ws://127.0.0.1:{svc.gateway.port}", TOKEN)
        try:
            await until(lambda: (client.snapshot or {}).get("feed", {}).get("feeds", {}).get(
                "tastytrade") == "LIVE")  # fmt: skip
            spot = client.snapshot["spots"]["SPX"]["last"]
            assert spot == pytest.approx(vendor.market.spot("SPX"), rel=2e-3)

            def demo():
                return next((p for p in client.snapshot.get("positions", [])
                             if p["open"] and p["status"] == "open"), None)  # fmt: skip

            p = await until(demo, timeout_s=60)
            assert p["quantity"] == 2
            await until(lambda: len([f for f in client.snapshot["fills"]
                                     if f["position_id"] == p["id"]]) >= 2)  # fmt: skip
            # the vendor's Greeks of the held legs arrive beside the desk's own (same model
            # behind the emulator: they agree closely; a stale or wrong vendor would not)
            feed = svc.run.feed
            legs = {Contract(leg["symbol"], date.fromisoformat(leg["expiry"]), leg["strike"],
                             Right.CALL if leg["is_call"] else Right.PUT): leg
                    for leg in p["legs"]}  # fmt: skip
            await until(lambda: all(c in feed.greeks for c in legs))
            for c, leg in legs.items():
                g = feed.greeks[c]
                assert g.source == "tastytrade"
                assert g.delta == pytest.approx(leg["delta"], abs=0.03)
            # ... and reach the monitor's snapshot beside the desk's delta of each leg
            await until(lambda: all((leg.get("vendor_delta") is not None)
                                    for leg in demo()["legs"]))  # fmt: skip
            for leg in demo()["legs"]:
                assert leg["vendor_delta"] == pytest.approx(leg["delta"], abs=0.03)
        finally:
            await client.close()


async def test_missing_credentials_are_one_line(monkeypatch) -> None:
    monkeypatch.setenv("TT_SECRET", "")
    monkeypatch.setenv("TT_REFRESH", "")
    with pytest.raises(ConfigError, match="TT_SECRET"):
        await build(RunSpec(feed=FeedSpec.parse("tastytrade")))


async def test_an_unreachable_host_is_one_line(monkeypatch) -> None:
    monkeypatch.setenv("TT_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TT_SECRET", "s")
    monkeypatch.setenv("TT_REFRESH", "r")
    with pytest.raises(ConfigError, match=r"cannot log in to tastytrade at http://127.0.0.1:9"):
        await build(RunSpec(feed=FeedSpec.parse("tastytrade")))

"""The desk on ``--feed ibkr-cpapi`` against ``kit emulate cpapi``'s gateway: the builder wires
feed, chain source and clock from the environment; the desk quotes an expiry from the socket,
keeps IBKR's Greeks beside its own, and the monitor's snapshot shows the difference. With
``--broker ibkr-cpapi`` the broker shares the feed's gateway session."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kit.adapters.cpapi.simulated import SimGateway
from kit.adapters.sim.market import SimConfig
from kit.app.build import FeedSpec, RunSpec, build
from kit.app.view import ViewBuilder
from kit.core.config import ConfigError
from kit.core.model import Fill, Leg, Position, Side, StrategyType
from kit.ui.panels import vendor_delta_cell


async def until(predicate: Any, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_desk_and_monitor_run_on_the_client_portal_feed(monkeypatch) -> None:
    async with SimGateway(config=SimConfig(seed=3), tick_s=0.05) as gw:
        monkeypatch.setenv("IBKR_CPAPI_URL", gw.emu.url)
        monkeypatch.setenv("IBKR_ACCOUNT_ID", gw.emu.account)
        monkeypatch.setenv("KIT_LIVE_TRADING", "yes")
        spec = RunSpec(mode="live", feed=FeedSpec.parse("ibkr-cpapi"), broker="ibkr-cpapi",
                       confirm_live=gw.emu.account, env_sinks=False)  # fmt: skip
        run = await build(spec)
        assert abs(run.clock.now_ns() - gw.clock.now_ns()) < 5e9  # the gateway's market time
        assert run.broker is not None and run.broker.session is run.feed.session  # one session
        async with run:
            chain = await run.subscribe_expiry("SPXW", 0)
            assert chain and all(c.root == "SPXW" for c in chain)
            desk, m = run.desk, run.desk.market
            assert desk.snapshot().positions == []  # an empty book has a snapshot too
            # IV rank: VIX's daily closes (marketdata/history) and its streamed level
            assert len(desk.iv_history["SPX"]) == 252
            await until(lambda: 0 <= (desk.iv_rank("SPX") or -1) <= 100)
            spot = gw.sim.spot("SPX")
            put = min((c for c in chain if not c.is_call and c.strike < spot * 0.99),
                      key=lambda c: abs(c.strike - spot * 0.99))  # fmt: skip
            call = min((c for c in chain if c.is_call and c.strike > spot * 1.01),
                       key=lambda c: abs(c.strike - spot * 1.01))  # fmt: skip
            rows = [m.index[put], m.index[call]]
            await until(lambda: all(m.vendor_ts[r] > 0 for r in rows) and m.spot_of("SPX") > 0
                        and all(m.delta[r] == m.delta[r] for r in rows))  # fmt: skip
            assert m.vendor_source[rows[0]] == "ibkr"
            now = desk.clock.now_ns()
            pos = Position("S1", StrategyType.STRANGLE, (Leg(put, -1), Leg(call, -1)), 1, now)
            desk.open_position(pos, [Fill(f"f{i}", "c1", c, Side.SELL, 1.0, 2.0, now)
                                     for i, c in enumerate((put, call))])  # fmt: skip
            gw.emu.stream.faults.delta_bias = 0.05  # the vendor's model goes wrong by 0.05
            await until(lambda: abs(m.vendor_delta[rows[1]] - m.delta[rows[1]]) > 0.03)
            desk.evaluate()
            row = next(p for p in desk.snapshot().positions if p["id"] == "S1")
            assert row["vendor"] == "ibkr" and row["vendor_delta_shares"] is not None
            assert row["vendor_delta_diff_shares"] == pytest.approx(-10.0, abs=3.0)  # 2 short legs
            doc = ViewBuilder(desk, {}).build(None, 0)
            leg = doc["positions"][0]["legs"][0]
            assert leg["vendor_delta"] is not None and leg["vendor_iv"] > 0
            cell = vendor_delta_cell(doc["positions"][0])
            assert "ibkr delta" in cell and "kit-vendor-diff" in cell
            assert desk.feed_states["ibkr-cpapi"].value == "LIVE"
            assert run.feed.stats.malformed == 0 and run.feed.bad_fields == 0
            # the daily expiry: the feed re-authenticates the one session the broker uses too
            gw.emu.stream.expire_session()
            await until(lambda: run.feed.session.reauths == 1 and not gw.emu.unauthenticated)
            assert run.broker.session.reauths == 1 and await run.broker.positions() == {}
        assert not run.feed.session.open  # closed by its last user


async def test_a_gateway_that_is_not_there_is_a_one_line_config_error(monkeypatch) -> None:
    monkeypatch.setenv("IBKR_CPAPI_URL", "http://127.0.0.1:9/v1/api")
    monkeypatch.setenv("IBKR_ACCOUNT_ID", "DU1234567")
    with pytest.raises(ConfigError, match="cannot use the IBKR gateway"):
        await build(RunSpec(feed=FeedSpec.parse("ibkr-cpapi"), env_sinks=False))


async def test_the_served_monitor_document_on_ibkr_cpapi(monkeypatch) -> None:
    """``kit serve --feed ibkr-cpapi`` (what ``make monitor FEED=ibkr-cpapi`` runs): the demo
    strangle opens on IBKR's quotes and a connected client sees IBKR's delta beside the desk's."""
    import kit
    from kit.app.service import DeskService, ServiceConfig
    from kit.remote.gateway import GatewayConfig

    async with SimGateway(config=SimConfig(seed=3), tick_s=0.05) as gw:
        monkeypatch.setenv("IBKR_CPAPI_URL", gw.emu.url)
        monkeypatch.setenv("IBKR_ACCOUNT_ID", gw.emu.account)
        monkeypatch.setenv("KIT_TOKEN", "cpapi-test-token")
        svc = DeskService(ServiceConfig(gateway=GatewayConfig(port=0), feed="ibkr-cpapi"))
        await svc.start()
        try:
            client = await kit.connect(f"ws://127.0.0.1:{svc.gateway.port}", "cpapi-test-token")
            try:

                def shown() -> dict | None:
                    for p in (client.snapshot or {}).get("positions", []):
                        if p["open"] and p["legs"] and p.get("vendor_delta_shares") is not None:
                            return p
                    return None

                await until(lambda: shown() is not None, timeout=30)
                p = shown()
                assert p is not None and p["vendor"] == "ibkr"
                assert all(leg["vendor_delta"] is not None for leg in p["legs"])
                assert abs(p["vendor_delta_diff_shares"]) < 0.2 * max(abs(p["delta_shares"]), 5)
                assert client.snapshot["feed"]["feeds"]["ibkr-cpapi"] == "LIVE"
            finally:
                await client.close()
        finally:
            await svc.close()

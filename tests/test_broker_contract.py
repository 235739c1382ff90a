"""The shared broker contract (:mod:`broker_contract`) on every Broker: the paper broker
(state in a JSON file, so a restart reloads it), the IBKR Client Portal adapter against its
gateway emulator, and the Delta Exchange adapter against its emulator (private socket on)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path

import pytest
from broker_contract import CHECKS, Venue
from venues import ORDERS, PUT, cpapi_desk, delta_config, delta_emulator, eth_call

from kit.adapters.cpapi.broker import CpApiBroker
from kit.adapters.delta.broker import DeltaBroker
from kit.adapters.paper.broker import PaperBroker, PaperConfig
from kit.core.clock import NEW_YORK, SimClock
from kit.core.model import Contract, Quote
from kit.execution.state import JsonStateStore
from kit.portfolio.market import MarketState

BROKERS = ("paper", "ibkr-cpapi", "delta")


async def paper_venue(tmp_path: Path) -> AsyncIterator[Venue]:
    clock = SimClock(datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK), speed=1.0)
    market, config = MarketState(), PaperConfig(latency_ms=1.0)
    store = JsonStateStore(tmp_path / "paper-state")
    put = Contract("SPXW", date(2024, 1, 19), 4700.0, "P")
    market.on_quote(Quote(put, 10.0, 10.5, 10, 10, clock.now_ns()))
    broker = PaperBroker(clock, market, config, store=store)

    async def restart() -> PaperBroker:
        other = PaperBroker(clock, market, config, store=store)
        await other.connect()
        return other

    def sent() -> int:
        doc = store.load(config.state_key)
        return 0 if doc is None else len(doc["orders"])

    await broker.connect()
    try:
        yield Venue(broker, put, Contract("SPXW", put.expiry, 5000.0, "C"),
                    touch=lambda: (10.0, 10.5), sent=sent, restart=restart,
                    nudge=broker.on_market, identity=("paper", False, True))  # fmt: skip
    finally:
        await broker.close()


async def cpapi_venue(tmp_path: Path) -> AsyncIterator[Venue]:
    async with cpapi_desk() as d:

        async def restart() -> CpApiBroker:
            other = CpApiBroker(d.config, d.clock)
            await other.connect()
            return other

        yield Venue(d.broker, PUT, Contract("SPXW", PUT.expiry, 5000.0, "C"),
                    touch=lambda: (10.0, 10.5), sent=lambda: d.emu.requests.count(ORDERS),
                    restart=restart, nudge=d.paper.on_market,
                    identity=("ibkr-cpapi", True, True), background=1)  # fmt: skip


async def delta_venue(tmp_path: Path) -> AsyncIterator[Venue]:
    async with delta_emulator() as emu:
        broker = DeltaBroker(delta_config(emu))
        await broker.connect()
        await broker.wait_stream()
        call, ticker = eth_call(emu)
        pid = ticker["product_id"]

        def touch() -> tuple[float, float]:
            quotes = emu.exchange.tickers([pid])[0]["quotes"]
            return float(quotes["best_bid"]), float(quotes["best_ask"])

        async def restart() -> DeltaBroker:
            other = DeltaBroker(delta_config(emu), stream=False)
            await other.connect()
            return other

        unlisted = Contract("ETH", call.expiry, call.strike + 1.0, "C")
        assert unlisted not in emu.exchange.ids
        try:
            yield Venue(broker, call, unlisted, touch=touch,
                        sent=lambda: len(emu.exchange.orders), restart=restart,
                        identity=("delta", True, False), background=1)  # fmt: skip
        finally:
            await broker.close()


VENUES = {"paper": paper_venue, "ibkr-cpapi": cpapi_venue, "delta": delta_venue}


async def tws_venue(tmp_path: Path) -> AsyncIterator[Venue]:
    """TWS / IB Gateway: the ib_async broker against the TWS API emulator."""
    from venues import tws_desk

    async with tws_desk() as d:
        unlisted = Contract("SPXW", d.put.expiry, d.put.strike + 1.0, "P")
        assert not d.emu.sim.is_listed(unlisted)
        restarts = iter(range(21, 40))
        yield Venue(d.broker, d.put, unlisted, touch=lambda: d.touch(d.put),
                    sent=lambda: d.emu.orders_received,
                    restart=lambda: d.restart(next(restarts)),
                    identity=("ibkr", True, True), background=0)  # fmt: skip


VENUES["ibkr"] = tws_venue
BROKERS = (*BROKERS, "ibkr")


async def tastytrade_venue(tmp_path: Path) -> AsyncIterator[Venue]:
    """tastytrade: the SDK-based broker against the tastytrade emulator (a paper engine on the
    simulator). Fees are off: tastytrade reports fees per transaction, not per fill, so the
    fills' cash flows are the whole cash movement only without them."""
    from kit.adapters.sim.market import SimConfig
    from kit.adapters.tastytrade.broker import TastytradeBroker
    from kit.adapters.tastytrade.config import TastyConfig
    from kit.adapters.tastytrade.emulator import TastytradeEmulator

    clock = SimClock(datetime(2024, 3, 12, 10, 0, tzinfo=NEW_YORK), speed=1.0)
    paper = PaperConfig(latency_ms=1.0, commission_per_contract=0.0,
                        commission_by_root={"SPXW": 0.0})  # fmt: skip
    async with TastytradeEmulator(clock=clock, config=SimConfig(seed=3), paper=paper) as emu:
        cfg = TastyConfig(api_url=emu.url, secret="s", refresh="r", account=emu.account)
        spot = emu.market.spot("SPX")
        chain = emu.market.chain("SPXW", core=True)
        first = min(c.expiry for c in chain)
        put = min((c for c in chain if c.expiry == first and not c.is_call),
                  key=lambda c: abs(c.strike - spot))  # fmt: skip

        def touch() -> tuple[float, float]:
            q = emu.market.quotes([put])[0]
            return q.bid, q.ask

        async def restart() -> TastytradeBroker:
            other = TastytradeBroker(cfg, clock, poll_s=0.02)
            await other.connect()
            return other

        orders = f"POST /accounts/{emu.account}/orders"
        broker = TastytradeBroker(cfg, clock, poll_s=0.02)
        await broker.connect()
        try:
            yield Venue(broker, put, Contract("SPXW", first, put.strike + 1.0, "P"), touch=touch,
                        sent=lambda: emu.requests.count(orders), restart=restart,
                        nudge=emu.on_step, identity=("tastytrade", True, True),
                        background=1)  # fmt: skip
        finally:
            await broker.close()


VENUES["tastytrade"] = tastytrade_venue
BROKERS = (*BROKERS, "tastytrade")


@pytest.fixture(params=BROKERS)
async def venue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Venue]:
    async for v in VENUES[request.param](tmp_path):
        yield v


@pytest.mark.parametrize("check", list(CHECKS))
async def test_broker_contract(venue: Venue, check: str) -> None:
    await CHECKS[check](venue)

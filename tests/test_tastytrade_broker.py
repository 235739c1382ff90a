"""The tastytrade broker through the real SDK against the emulator: every order dry-run first,
then placed; a short strangle (multi-leg, one order) fills with fills and states reported;
a single leg closes; idempotent on client id; cancel and replace of a resting order; a refused
order is an OrderRejectedError; the live gate asks for TT_ACCOUNT."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from kit.adapters.tastytrade.api import TastyApi
from kit.adapters.tastytrade.broker import TastytradeBroker
from kit.adapters.tastytrade.chains import TastytradeChainSource
from kit.adapters.tastytrade.config import TastyConfig
from kit.adapters.tastytrade.emulator import TastytradeEmulator
from kit.core.clock import SimClock
from kit.core.config import ConfigError
from kit.core.model import Contract, Fill, Leg, Order, OrderType, Right, Side
from kit.execution.broker import OrderRejectedError, OrderState, OrderStatus
from kit.execution.live import make_broker
from kit.portfolio.market import MarketState


@pytest.fixture
async def setup():
    async with TastytradeEmulator() as emu:
        cfg = TastyConfig(api_url=emu.url, secret="s", refresh="r", account=emu.account)
        broker = TastytradeBroker(cfg, SimClock(emu.clock.now(), speed=1.0), poll_s=0.1)
        await broker.connect()
        events: list[object] = []
        broker.subscribe(events.append)
        chains = TastytradeChainSource(broker.api)
        exp = (await chains.expirations("SPXW"))[0]
        chain = await chains.contracts("SPXW", exp)
        try:
            yield emu, broker, chain, events
        finally:
            await broker.close()


def pick(chain: list[Contract], right: Right, offset: int) -> Contract:
    side = [c for c in chain if c.right is right]
    return side[len(side) // 2 + offset]


async def until_done(broker: TastytradeBroker, cid: str) -> OrderState:
    async with asyncio.timeout(10):
        while not (st := broker.order(cid)).status.done:
            await asyncio.sleep(0.05)
    return st


async def test_strangle_dry_run_first_then_placed_filled_and_closed(setup):
    emu, broker, chain, events = setup
    put, call = pick(chain, Right.PUT, -3), pick(chain, Right.CALL, 3)
    now = broker.clock.now_ns()
    # sell the strangle: legs short, a BUY at a negative (credit) limit; 0.05 crosses the bids
    strangle = Order("strangle-1", (Leg(put, -1), Leg(call, -1)), Side.BUY, 2, OrderType.LIMIT,
                     now, limit_price=-0.05)  # fmt: skip
    state = await broker.place(strangle)
    posts = [r for r in emu.requests if r.startswith("POST /accounts")]
    assert posts == [f"POST /accounts/{emu.account}/orders/dry-run",
                     f"POST /accounts/{emu.account}/orders"]  # fmt: skip
    assert broker.dry_runs[-1].buying_power_effect.change_in_buying_power < 0
    assert await broker.place(strangle) is state  # idempotent: nothing sent again
    assert len([r for r in emu.requests if r.endswith("/orders")]) == 1
    done = await until_done(broker, "strangle-1")
    assert done.status is OrderStatus.FILLED and done.filled_qty == 2
    assert done.avg_price < 0  # a credit received
    fills = [e for e in events if isinstance(e, Fill)]
    sold = {(put, Side.SELL, 2.0), (call, Side.SELL, 2.0)}
    assert {(f.contract, f.side, f.quantity) for f in fills} == sold
    assert await broker.positions() == {put: -2, call: -2}
    close = Order("close-put", (Leg(put, 1),), Side.BUY, 2, OrderType.LIMIT,
                  broker.clock.now_ns(), limit_price=500.0)  # fmt: skip
    await broker.place(close)
    assert (await until_done(broker, "close-put")).status is OrderStatus.FILLED
    assert await broker.positions() == {call: -2}
    assert (await broker.account()).net_liquidation > 0


async def test_resting_order_replaced_then_cancelled(setup):
    _, broker, chain, _ = setup
    put = pick(chain, Right.PUT, -6)
    order = Order(
        "rest-1",
        (Leg(put, 1),),
        Side.BUY,
        1,
        OrderType.LIMIT,
        broker.clock.now_ns(),
        limit_price=0.05,
    )  # fmt: skip  (far under the ask: rests)
    st = await broker.place(order)
    assert st.status in (OrderStatus.PENDING, OrderStatus.WORKING)
    st = await broker.replace("rest-1", limit_price=0.10)
    assert st.order.limit_price == 0.10 and not st.status.done
    await broker.cancel("rest-1")
    assert (await until_done(broker, "rest-1")).status is OrderStatus.CANCELLED


async def test_unlisted_contract_is_rejected_before_placement(setup):
    emu, broker, chain, _ = setup
    bogus = Contract("SPXW", chain[0].expiry, 1.0, Right.CALL)
    order = Order("bad-1", (Leg(bogus, 1),), Side.BUY, 1, OrderType.LIMIT, broker.clock.now_ns(),
                  limit_price=1.0)  # fmt: skip
    with pytest.raises(OrderRejectedError, match="dry run"):
        await broker.place(order)
    assert not any(r.endswith("/orders") for r in emu.requests)  # never placed


def test_live_gate_needs_the_account_named():
    env = {"KIT_LIVE_TRADING": "yes", "TT_SECRET": "s", "TT_REFRESH": "r", "TT_ACCOUNT": "5WT1"}
    clock = SimClock(datetime.now(UTC))
    with pytest.raises(ConfigError, match="TT_ACCOUNT"):
        make_broker(clock, MarketState(), live=True, broker="tastytrade", confirm="other", env=env)
    broker = make_broker(clock, MarketState(), live=True, broker="tastytrade", confirm="5WT1",
                         env=env)  # fmt: skip
    assert isinstance(broker, TastytradeBroker) and broker.live


async def test_api_login_failure_is_one_line(setup):
    emu, *_ = setup
    emu.bad_auth = True
    with pytest.raises(ConfigError, match="cannot log in to tastytrade"):
        await TastyApi(TastyConfig(api_url=emu.url, secret="s", refresh="r")).open()

"""The paper broker against a real MarketState fed real quotes, on a stepped SimClock."""

from __future__ import annotations

import itertools
import logging
import math
from datetime import UTC, date, datetime, timedelta

import pytest

from kit.adapters.paper.broker import PaperBroker, PaperConfig
from kit.adapters.paper.matching import distribute
from kit.core.clock import SimClock, expiry_time, to_ns
from kit.core.model import Contract, Fill, Leg, Order, OrderType, Quote, Side
from kit.execution.broker import (
    SETTLEMENT,
    Broker,
    BrokerError,
    OrderRejectedError,
    OrderState,
    OrderStatus,
)
from kit.execution.costs import fees_per_contract
from kit.execution.state import JsonStateStore, MemoryStateStore, StateStore
from kit.portfolio.market import MarketState

START = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)  # a Monday, 10:00 New York
EXP = date(2025, 3, 21)
PUT = Contract("SPXW", EXP, 5800.0, "P")
CALL = Contract("SPXW", EXP, 6000.0, "C")
SPY = Contract("SPY", EXP, 600.0, "C")
BUY, SELL = Side.BUY, Side.SELL


class Env:
    """A broker, its market and clock, and every event it emitted."""

    def __init__(
        self,
        *,
        store: StateStore | None = None,
        combo: bool = True,
        clock: SimClock | None = None,
        **config,
    ) -> None:
        self.clock = clock or SimClock(START)
        self.market = MarketState()
        self.broker = PaperBroker(
            self.clock, self.market, PaperConfig(**config), store=store, combo=combo
        )
        self.events: list[OrderState | Fill] = []
        self.broker.subscribe(self.events.append)
        self._ts = itertools.count(1)

    def quote(self, c: Contract, bid: float, ask: float, bid_size=10, ask_size=10, *, end=True):
        """A new quote (a new quote_ts); ``end`` closes the batch with the desk's on_market."""
        ts = self.clock.now_ns() + next(self._ts)
        self.market.on_quote(Quote(c, bid, ask, bid_size, ask_size, ts))
        if end:
            self.broker.on_market()

    async def wait(self, ms: float = 50) -> None:
        await self.clock.run_until(self.clock.now() + timedelta(milliseconds=ms))

    def fills(self, client_id: str | None = None) -> list[Fill]:
        return [e for e in self.events if isinstance(e, Fill) and client_id in (None, e.client_id)]

    def states(self, client_id: str) -> list[OrderStatus]:
        return [
            e.status for e in self.events if isinstance(e, OrderState) and e.client_id == client_id
        ]


def order(cid, legs, side, qty=1, limit=None) -> Order:
    kind = OrderType.MARKET if limit is None else OrderType.LIMIT
    return Order(cid, tuple(Leg(c, r) for c, r in legs), side, qty, kind, 0, limit_price=limit)


def net(fills: list[Fill], legs) -> float:
    """Σ ratio x leg price of one execution (fills in leg order)."""
    return sum(r * f.price for (_, r), f in zip(legs, fills, strict=True))


@pytest.fixture
async def env():
    e = Env()
    yield e
    await e.broker.close()


STRANGLE = ((PUT, 1), (CALL, 1))
NO_CHANGE = {"limit_price": None, "quantity": None}


def test_the_paper_broker_is_a_broker():
    b = PaperBroker(SimClock(START), MarketState(), combo=False)
    assert isinstance(b, Broker)
    assert (b.name, b.live, b.supports_combo) == ("paper", False, False)


async def test_a_marketable_limit_fills_at_the_touch_only_after_the_latency(env):
    env.quote(CALL, 10.0, 10.2)
    state = await env.broker.place(order("a", [(CALL, 1)], BUY, 2, limit=10.5))
    assert state.status is OrderStatus.PENDING and state.broker_id
    await env.wait(49)
    assert env.broker.order("a").status is OrderStatus.PENDING and not env.fills()
    await env.wait(1)
    done = env.broker.order("a")
    assert (done.status, done.filled_qty, done.avg_price) == (OrderStatus.FILLED, 2, 10.2)
    (fill,) = env.fills("a")
    assert (fill.side, fill.quantity, fill.price, fill.client_id) == (BUY, 2, 10.2, "a")
    assert env.states("a") == [OrderStatus.PENDING, OrderStatus.WORKING, OrderStatus.FILLED]
    assert env.events.index(fill) < len(env.events) - 1  # the fill comes before its order state


async def test_a_sell_strangle_fills_each_leg_at_its_bid(env):
    env.quote(PUT, 4.0, 4.2)
    env.quote(CALL, 5.1, 5.3)
    await env.broker.place(order("s", STRANGLE, SELL, 1, limit=9.0))
    await env.wait()
    put, call = env.fills("s")
    assert (put.contract, put.side, put.price) == (PUT, SELL, 4.0)
    assert (call.contract, call.side, call.price) == (CALL, SELL, 5.1)
    state = env.broker.order("s")
    assert state.status is OrderStatus.FILLED
    assert net([put, call], STRANGLE) == pytest.approx(state.avg_price, abs=1e-9)
    assert state.avg_price == pytest.approx(9.1)


async def test_leg_sides_follow_the_order_side_times_the_ratio_sign(env):
    env.quote(PUT, 4.0, 4.2)
    env.quote(CALL, 5.1, 5.3)
    legs = ((PUT, -1), (CALL, 2))  # a BUY: sell the put, buy two calls
    await env.broker.place(order("r", legs, BUY, 1, limit=6.7))
    await env.wait()
    put, call = env.fills("r")
    assert (put.side, put.price, put.quantity) == (SELL, 4.0, 1)
    assert (call.side, call.price, call.quantity) == (BUY, 5.3, 2)
    assert env.broker.order("r").avg_price == pytest.approx(2 * 5.3 - 4.0)


async def test_the_quoted_size_limits_a_fill_until_a_new_quote_brings_more():
    env = Env(depth="rest")  # the rest of the order waits for new size instead of walking
    env.quote(CALL, 10.0, 10.2, ask_size=2)
    await env.broker.place(order("p", [(CALL, 1)], BUY, 5, limit=10.5))
    await env.wait()
    state = env.broker.order("p")
    assert (state.status, state.filled_qty, state.remaining) == (OrderStatus.PARTIAL, 2, 3)
    env.broker.on_market()  # same quote: its size is used up
    assert len(env.fills("p")) == 1
    env.quote(CALL, 10.0, 10.2, ask_size=10)  # the rest rests and is now crossed: at its limit
    state = env.broker.order("p")
    assert (state.status, state.filled_qty) == (OrderStatus.FILLED, 5)
    assert [f.quantity for f in env.fills("p")] == [2, 3]
    assert state.avg_price == pytest.approx((2 * 10.2 + 3 * 10.5) / 5)
    await env.broker.close()


async def test_a_ratio_leg_needs_its_ratio_of_size_per_unit():
    env = Env(depth="rest")
    env.quote(PUT, 4.0, 4.2, bid_size=10)
    env.quote(CALL, 5.1, 5.3, ask_size=5)
    await env.broker.place(order("r", ((PUT, -1), (CALL, 2)), BUY, 4, limit=7.0))
    await env.wait()
    assert env.broker.order("r").filled_qty == 2  # floor(5 / 2)
    assert [f.quantity for f in env.fills("r")] == [2, 4]
    await env.broker.close()


async def test_a_resting_limit_fills_only_when_crossed_and_at_its_limit(env):
    env.quote(CALL, 10.0, 10.2)
    await env.broker.place(order("b", [(CALL, 1)], BUY, 1, limit=10.0))
    await env.wait()
    assert env.broker.order("b").status is OrderStatus.WORKING
    env.quote(CALL, 9.95, 10.05)
    assert not env.fills()
    env.quote(CALL, 9.7, 9.9)
    (fill,) = env.fills("b")
    assert fill.price == 10.0 and env.broker.order("b").status is OrderStatus.FILLED


async def test_a_crossed_resting_combo_spreads_the_gap_over_the_legs_by_their_spread(env):
    env.quote(PUT, 4.0, 4.2)
    env.quote(CALL, 5.1, 5.3)
    await env.broker.place(order("s", STRANGLE, SELL, 1, limit=9.5))
    await env.wait()
    assert not env.fills()
    env.quote(PUT, 4.5, 4.6, end=False)  # spread 0.1
    env.quote(CALL, 5.2, 5.5)  # spread 0.3; the batch's natural 9.7 is 0.2 above the limit
    put, call = env.fills("s")
    assert net([put, call], STRANGLE) == pytest.approx(9.5, abs=1e-9)
    assert env.broker.order("s").avg_price == pytest.approx(9.5, abs=1e-9)
    assert put.price == pytest.approx(4.5 - 0.05) and call.price == pytest.approx(5.2 - 0.15)


async def test_the_first_crossing_quote_fills_a_resting_combo(env):
    env.quote(PUT, 4.0, 4.2)
    env.quote(CALL, 5.1, 5.3)
    await env.broker.place(order("s", STRANGLE, SELL, 1, limit=9.5))
    await env.wait()
    env.quote(PUT, 4.45, 4.6)  # natural 9.55: crossed
    assert net(env.fills("s"), STRANGLE) == pytest.approx(9.5, abs=1e-9)


def test_distribute_pins_a_leg_at_zero_and_spreads_the_rest():
    prices = distribute([0.05, 3.0], [-1, 1], [0.05, 0.05], target=3.5)
    assert prices is not None and prices[0] == 0.0 and min(prices) >= 0
    assert -prices[0] + prices[1] == pytest.approx(3.5, abs=1e-9)
    assert distribute([1.0, 1.0], [1, 1], [0.0, 0.0], target=3.0) == pytest.approx([1.5, 1.5])
    assert distribute([1.0, 1.0], [1, 1], [0.1, 0.1], target=-1.0) is None  # not reachable


async def test_nothing_happens_before_the_latency_and_a_cancel_then_cancels(env):
    env.quote(CALL, 10.0, 10.2)
    await env.broker.place(order("c", [(CALL, 1)], BUY, 1, limit=9.0))
    await env.wait()
    state = await env.broker.cancel("c")
    assert state.status is OrderStatus.WORKING
    await env.wait(49)
    assert env.broker.order("c").status is OrderStatus.WORKING
    await env.wait(1)
    assert env.broker.order("c").status is OrderStatus.CANCELLED
    env.quote(CALL, 8.0, 8.5)
    assert not env.fills()
    assert (await env.broker.cancel("c")).status is OrderStatus.CANCELLED  # done: unchanged
    with pytest.raises(BrokerError, match="unknown order 'nope'"):
        await env.broker.cancel("nope")


async def test_a_cancel_loses_the_race_with_a_fill_that_crosses_first(env):
    env.quote(CALL, 10.0, 10.2)
    await env.broker.place(order("c", [(CALL, 1)], BUY, 1, limit=10.0))
    await env.wait()
    await env.broker.cancel("c")
    await env.wait(20)
    env.quote(CALL, 9.8, 9.95)  # crosses while the cancel is on its way
    await env.wait(30)
    assert env.broker.order("c").status is OrderStatus.FILLED
    assert OrderStatus.CANCELLED not in env.states("c")
    assert len(env.fills("c")) == 1


async def test_replace_changes_the_price_after_the_latency_and_rematches(env):
    env.quote(CALL, 10.0, 10.2)
    await env.broker.place(order("r", [(CALL, 1)], BUY, 3, limit=10.0))
    await env.wait()
    state = await env.broker.replace("r", limit_price=10.3, quantity=4)
    assert state.order.limit_price == 10.0
    await env.wait(49)
    assert not env.fills()
    await env.wait(1)
    state = env.broker.order("r")
    assert (state.order.limit_price, state.order.quantity) == (10.3, 4)
    assert (state.status, state.avg_price) == (OrderStatus.FILLED, 10.2)  # took the touch
    with pytest.raises(OrderRejectedError, match="filled"):
        await env.broker.replace("r", limit_price=10.0)


async def test_replace_refuses_a_market_order_and_a_quantity_below_the_filled(env):
    env.quote(CALL, 10.0, 10.2, ask_size=2)
    env.quote(PUT, 4.0, 4.2)
    await env.broker.place(order("p", [(CALL, 1)], BUY, 5, limit=10.2))
    await env.broker.place(order("m", [(PUT, 1)], SELL, 1))
    with pytest.raises(OrderRejectedError, match="market order"):
        await env.broker.replace("m", limit_price=1.0)
    await env.wait()
    with pytest.raises(OrderRejectedError, match="quantity 1 is below 1 or the 2 filled"):
        await env.broker.replace("p", limit_price=10.1, quantity=1)
    with pytest.raises(OrderRejectedError, match="not finite"):
        await env.broker.replace("p", limit_price=math.nan)


async def test_market_orders_fill_at_the_touch_worsened_by_slippage():
    e = Env(slippage_per_contract=0.05)
    e.quote(CALL, 10.0, 10.2)
    e.quote(PUT, 4.0, 4.2)
    await e.broker.place(order("mb", [(CALL, 1)], BUY, 2))
    await e.broker.place(order("ms", [(PUT, 1)], SELL, 1))
    await e.wait()
    assert [f.price for f in e.fills()] == pytest.approx([10.25, 3.95])
    assert e.broker.order("mb").avg_price == pytest.approx(10.25)
    await e.broker.close()


async def test_slippage_never_pushes_a_limit_order_past_its_limit():
    e = Env(slippage_per_contract=0.10)
    e.quote(CALL, 10.0, 10.2)
    await e.broker.place(order("b", [(CALL, 1)], BUY, 1, limit=10.25))
    await e.wait()
    assert e.fills("b")[0].price == pytest.approx(10.25)
    await e.broker.close()


async def test_commissions_per_contract_with_a_root_override():
    e = Env(commission_per_contract=0.65, commission_by_root={"SPXW": 0.66})
    e.quote(CALL, 10.0, 10.2)
    e.quote(SPY, 3.0, 3.1)
    await e.broker.place(order("x", [(CALL, 1)], BUY, 3, limit=11.0))
    await e.broker.place(order("y", [(SPY, 1)], BUY, 4, limit=3.2))
    await e.wait()
    spy = 0.65 + 0.025 + 0.02815  # commission + OCC clearing + ORF: SPY has no Cboe fee
    assert [f.commission for f in e.fills()] == pytest.approx([3 * 0.66, round(4 * spy, 2)])
    assert (await e.broker.account()).commissions == pytest.approx(3 * 0.66 + round(4 * spy, 2))
    await e.broker.close()


async def test_cash_positions_and_account_reconcile_to_the_fills(env):
    env.quote(PUT, 4.0, 4.2)
    env.quote(CALL, 5.1, 5.3)
    await env.broker.place(order("open", STRANGLE, SELL, 3, limit=9.0))
    await env.wait()
    env.quote(CALL, 4.9, 5.0)
    await env.broker.place(order("close", [(CALL, 1)], BUY, 2, limit=5.0))
    await env.wait()
    fills = await env.broker.fills()
    assert len(fills) == 3
    acct = await env.broker.account()
    assert acct.cash == pytest.approx(100_000 + sum(f.cash_flow for f in fills), abs=0.005)
    assert await env.broker.positions() == {PUT: -3, CALL: -1}
    realized = 2 * (5.1 - 5.0) * 100  # sold calls at 5.1, bought two back at 5.0
    assert acct.realized_pnl == pytest.approx(realized, abs=0.005)
    fee = fees_per_contract("SPXW", premium=4.0)  # every premium here is >= $1: Cboe's $0.45
    assert fee == pytest.approx(0.65 + 0.45 + 0.025 + 0.02815)
    assert acct.commissions == pytest.approx(2 * round(3 * fee, 2) + round(2 * fee, 2))
    value = -3 * 4.1 * 100 - 1 * 4.95 * 100  # at the marks (mids)
    assert acct.net_liquidation == pytest.approx(acct.cash + value, abs=0.005)
    unrealized = -3 * (4.1 - 4.0) * 100 - (4.95 - 5.1) * 100
    expected = 100_000 + realized + unrealized - acct.commissions
    assert acct.net_liquidation == pytest.approx(expected, abs=0.005)


async def test_placing_a_known_client_id_again_sends_nothing(env):
    env.quote(CALL, 10.0, 10.2)
    o = order("same", [(CALL, 1)], BUY, 1, limit=10.5)
    first = await env.broker.place(o)
    again = await env.broker.place(o)
    assert again == first
    await env.wait()
    assert (await env.broker.place(o)).status is OrderStatus.FILLED
    await env.wait()
    assert len(await env.broker.orders()) == 1 and len(env.fills()) == 1
    assert env.states("same") == [OrderStatus.PENDING, OrderStatus.WORKING, OrderStatus.FILLED]


async def test_a_restart_restores_orders_fills_and_cash_and_resumes_working_orders(tmp_path):
    store = JsonStateStore(tmp_path)
    a = Env(store=store)
    a.quote(CALL, 10.0, 10.2)
    a.quote(PUT, 4.0, 4.2)
    await a.broker.place(order("done", [(CALL, 1)], BUY, 1, limit=10.5))
    await a.broker.place(order("rest", [(PUT, 1)], SELL, 2, limit=4.5))
    await a.wait()
    await a.broker.place(order("late", [(PUT, 1)], BUY, 1, limit=4.2))  # dies in flight
    acct = await a.broker.account()
    await a.broker.close()
    saved = store.load("paper_broker")
    in_flight = {r["state"]["order"]["client_id"]: r["pending"] for r in saved["orders"]}
    assert in_flight == {"done": [], "rest": [], "late": [{"kind": "activate"} | NO_CHANGE]}

    b = Env(store=store, clock=a.clock)
    b.market.on_quote(Quote(PUT, 4.0, 4.2, 10, 10, a.clock.now_ns()))
    assert b.broker.order("done").status is OrderStatus.FILLED
    assert b.broker.order("rest").status is OrderStatus.WORKING
    assert b.broker.order("late").status is OrderStatus.PENDING
    assert await b.broker.fills() == await a.broker.fills()
    assert (await b.broker.account()).cash == pytest.approx(acct.cash)
    assert await b.broker.place(order("rest", [(PUT, 1)], SELL, 2, limit=4.5)) == b.broker.order(
        "rest"
    )
    assert not b.events  # the re-place sent nothing
    await b.broker.connect()
    await b.wait()
    assert b.broker.order("late").status is OrderStatus.FILLED  # its latency re-applied
    b.quote(PUT, 4.6, 4.7)
    assert b.broker.order("rest").status is OrderStatus.FILLED
    ids = [f.fill_id for f in await b.broker.fills()]
    assert len(ids) == len(set(ids)) == 3
    await b.broker.close()


async def test_close_cancels_the_timers_and_connect_resumes_them(env):
    env.quote(CALL, 10.0, 10.2)
    await env.broker.place(order("a", [(CALL, 1)], BUY, 1, limit=10.5))
    await env.broker.close()
    await env.wait()
    assert env.broker.order("a").status is OrderStatus.PENDING
    with pytest.raises(BrokerError, match="closed"):
        await env.broker.place(order("b", [(CALL, 1)], BUY, 1, limit=10.5))
    await env.broker.connect()
    await env.wait()
    assert env.broker.order("a").status is OrderStatus.FILLED


async def test_memory_store_survives_a_new_broker_object():
    store = MemoryStateStore()
    a = Env(store=store)
    a.quote(CALL, 10.0, 10.2)
    await a.broker.place(order("a", [(CALL, 1)], BUY, 2, limit=10.5))
    await a.wait()
    await a.broker.close()
    b = Env(store=store, clock=a.clock, starting_cash=5.0)  # a restored account keeps its cash
    assert await b.broker.positions() == {CALL: 2}
    fees = round(2 * fees_per_contract("SPXW", premium=10.2), 2)
    assert (await b.broker.account()).cash == pytest.approx(100_000 - 2 * 10.2 * 100 - fees)
    await b.broker.close()


async def test_settlement_closes_expired_holdings_at_intrinsic(env):
    env.quote(PUT, 4.0, 4.2)
    env.quote(CALL, 5.1, 5.3)
    await env.broker.place(order("s", STRANGLE, SELL, 2, limit=9.0))
    await env.wait()
    await env.broker.place(order("w", [(CALL, 1)], SELL, 1, limit=50.0))  # still working at expiry
    await env.wait()
    before = to_ns(expiry_time(PUT)) - 1
    assert env.broker.settle({}, before) == []
    with pytest.raises(BrokerError, match="no spot for SPX "):
        env.broker.settle({"SPXW": 5750.0}, before + 1)
    fills = env.broker.settle({"SPX": 5750.0}, before + 1)
    put, call = fills
    assert (put.client_id, put.side, put.quantity, put.price) == (SETTLEMENT, BUY, 2, 50.0)
    assert (call.side, call.price, call.commission) == (BUY, 0.0, 0.0)
    assert env.fills(SETTLEMENT) == fills
    assert await env.broker.positions() == {}
    acct = await env.broker.account()
    assert acct.realized_pnl == pytest.approx(2 * 100 * (4.0 - 50.0) + 2 * 100 * 5.1)
    assert acct.net_liquidation == pytest.approx(acct.cash)
    assert env.broker.order("w").status is OrderStatus.CANCELLED
    assert env.broker.settle({"SPX": 5750.0}, before + 2) == []  # nothing left to settle


async def test_orders_the_venue_could_not_fill_are_rejected_with_a_reason():
    e = Env(combo=False)
    e.market.track(PUT)  # tracked, never quoted
    e.quote(CALL, 0.0, 0.5, bid_size=0)  # one-sided
    e.quote(SPY, 3.0, 3.1)
    cases = [
        (order("u", [(Contract("SPY", EXP, 610.0, "P"), 1)], BUY, 1, 1.0), "not tracked"),
        (order("n", [(PUT, 1)], BUY, 1, 1.0), "no ask to buy from"),
        (order("o", [(CALL, 1)], SELL, 1), "no bid to sell into"),
        (order("c", [(SPY, 1), (CALL, 1)], BUY, 1, 1.0), "single-leg orders only"),
    ]
    for o, reason in cases:
        with pytest.raises(OrderRejectedError, match=reason):
            await e.broker.place(o)
        assert e.broker.order(o.client_id) is None
    assert not e.events


async def test_an_order_on_an_expired_contract_is_rejected():
    e = Env(clock=SimClock(expiry_time(CALL)))
    e.quote(CALL, 10.0, 10.2)
    with pytest.raises(OrderRejectedError, match="expired"):
        await e.broker.place(order("x", [(CALL, 1)], BUY, 1, limit=10.5))


async def test_a_quote_going_one_sided_or_empty_fills_nothing_and_the_order_keeps_working(env):
    env.quote(CALL, 10.0, 10.2)
    await env.broker.place(order("m", [(CALL, 1)], BUY, 1))
    env.quote(CALL, 10.0, 0.0, ask_size=0)  # the offer is gone before the order arrives
    await env.wait()
    assert env.broker.order("m").status is OrderStatus.WORKING and not env.fills()
    env.quote(CALL, 10.0, 10.2, ask_size=0)  # an offer price with no size
    assert not env.fills()
    env.quote(CALL, 10.0, 10.2)
    assert env.broker.order("m").status is OrderStatus.FILLED


async def test_a_raising_listener_is_logged_and_the_others_still_hear(env, caplog):
    def boom(event):
        raise RuntimeError("listener bug")

    heard: list = []
    env.broker.subscribe(boom)
    env.broker.subscribe(heard.append)
    env.quote(CALL, 10.0, 10.2)
    with caplog.at_level(logging.ERROR, logger="kit.adapters.paper.broker"):
        await env.broker.place(order("a", [(CALL, 1)], BUY, 1, limit=10.5))
        await env.wait()
    assert env.broker.order("a").status is OrderStatus.FILLED
    assert len(heard) == 4  # pending, working, the fill, filled
    assert sum("listener" in r.getMessage() for r in caplog.records) == 4


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="latency_ms"):
        PaperConfig(latency_ms=-1)
    with pytest.raises(ValueError, match="commission_by_root"):
        PaperConfig(commission_by_root={"SPX": math.nan})


async def test_a_combo_naming_one_contract_twice_is_rejected(env):
    env.quote(SPY, 3.0, 3.1)
    with pytest.raises(OrderRejectedError, match="two legs"):
        await env.broker.place(order("d", [(SPY, 1), (SPY, -1)], BUY, 1, 0.0))


async def test_buying_power_used_is_a_reg_t_estimate_not_the_stress_loss(env):
    from kit.core.model import UnderlyingTick

    env.market.on_underlying(UnderlyingTick("SPX", 5900.0, env.clock.now_ns()))
    env.quote(PUT, 4.0, 4.2)
    env.quote(CALL, 5.1, 5.3)
    await env.broker.place(order("open", STRANGLE, SELL, 2, limit=9.0))
    await env.wait()
    assert await env.broker.positions() == {PUT: -2, CALL: -2}
    # Cboe, worked by hand: each side 15% of 5,900 less 100 out of the money = 785 (above the
    # 10% minimums) + its premium at the mark; the greater side + the other's premium; x100 x2
    put, call = 785 + 4.1, 785 + 5.2
    want = (max(put, call) + (4.1 if call >= put else 5.2)) * 100 * 2
    assert (await env.broker.account()).buying_power_used == pytest.approx(want)

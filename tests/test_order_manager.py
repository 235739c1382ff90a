"""The order manager end to end: a real Desk on a stepped SimClock, a real PaperBroker on the
desk's MarketState and hand-made SPXW quotes (0DTE, 2024-03-12, from 11:00 New York)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from kit.adapters.paper.broker import PaperBroker
from kit.core.clock import NEW_YORK, NS_PER_S, SimClock, expiry_time, to_ns
from kit.core.model import (
    Action,
    ActionKind,
    Contract,
    Decision,
    Leg,
    ModelError,
    Position,
    Quote,
    Right,
    Side,
    StrategyType,
    UnderlyingTick,
)
from kit.core.pricing import price
from kit.engine.desk import Desk
from kit.execution.broker import OrderRejectedError, OrderState, OrderStatus
from kit.execution.costs import fees_per_contract
from kit.execution.intents import (
    Intent,
    IntentKind,
    close_intent,
    intent_for_action,
    open_intent,
    roll_intent,
)
from kit.execution.manager import IntentRecord, ManagerConfig, OrderManager
from kit.execution.state import JsonStateStore, MemoryStateStore, StateStore
from kit.risk.rules import load_rules

DAY = date(2024, 3, 12)
START = datetime(2024, 3, 12, 11, 0, tzinfo=NEW_YORK)
PUT = Contract("SPXW", DAY, 4950.0, "P")
CALL = Contract("SPXW", DAY, 5050.0, "C")
WING_PUT = Contract("SPXW", DAY, 4900.0, "P")
WING_CALL = Contract("SPXW", DAY, 5100.0, "C")
# Rules that would act or freeze on their own are off unless a test is about them.
QUIET: dict[str, Any] = {
    rule: {"enabled": False}
    for rule in ("delta", "gamma", "liquidity", "strike_breach", "profit_target", "stop_loss",
                 "trailing_stop", "time_stop", "feed_stale")
}  # fmt: skip
BOOK = {"put": (1.90, 2.10), "call": (1.90, 2.10)}  # mid 4.00, natural 3.80 for the strangle


class Env:
    """A desk, its paper broker and order manager on one stepped clock, and what they did."""

    def __init__(
        self,
        *,
        store: StateStore | None = None,
        combo: bool = True,
        config: ManagerConfig | None = None,
        rules: dict[str, Any] | None = None,
        auto_manage: bool = False,
        clock: SimClock | None = None,
    ) -> None:
        self.clock = clock or SimClock(START)
        self.store = store or MemoryStateStore()
        self.desk = Desk(self.clock, rules=load_rules(overrides=QUIET | (rules or {})),
                         auto_manage=auto_manage)  # fmt: skip
        self.broker = PaperBroker(self.clock, self.desk.market, store=self.store, combo=combo)
        self.manager = OrderManager(self.desk, self.broker, config, store=self.store)
        self.events: list[Any] = []
        self.desk.listeners.append(self.events.append)
        self.spot = 5000.0
        self._ts = itertools.count(1)

    # --- the market ---

    def quote(self, *quotes: tuple[Any, ...]) -> None:
        """One batch: the SPX spot and ``(contract, bid, ask[, bid_size, ask_size])`` quotes,
        each a new quote (a new ``quote_ts``, so the paper venue's sizes refresh)."""
        now = self.clock.now_ns()
        events: list[Any] = [UnderlyingTick("SPX", self.spot, now)]
        for c, bid, ask, *sizes in quotes:
            bid_size, ask_size = sizes or (10, 10)
            events.append(Quote(c, bid, ask, bid_size, ask_size, now + next(self._ts)))
        self.desk.process(events)

    def strangle_quotes(
        self, put: tuple[float, float] = BOOK["put"], call: tuple[float, float] = BOOK["call"],
        size: float = 10, *, put_bid_size: float | None = None,
    ) -> None:  # fmt: skip
        bid_size = size if put_bid_size is None else put_bid_size
        self.quote((PUT, *put, bid_size, size), (CALL, *call, size, size))

    # --- time ---

    async def run(self, seconds: float, step: float = 0.5) -> None:
        end = self.clock.now() + timedelta(seconds=seconds)
        while self.clock.now() < end:
            await self.clock.run_until(min(end, self.clock.now() + timedelta(seconds=step)))

    async def until(self, done: Callable[[], bool], limit_s: float = 900, step: float = 1) -> None:
        """Step the clock until ``done()`` (failing after ``limit_s`` simulated seconds)."""
        deadline = self.clock.now() + timedelta(seconds=limit_s)
        while not done():
            assert self.clock.now() < deadline, "not done within the simulated time limit"
            await self.clock.run_until(self.clock.now() + timedelta(seconds=step))

    async def finish(self, rec: IntentRecord, limit_s: float = 900) -> IntentRecord:
        await self.until(lambda: not rec.active and rec.intent.id not in self.manager._tasks,
                         limit_s)  # fmt: skip
        return rec

    # --- records ---

    def states(self, client_id: str) -> list[OrderState]:
        return [e for e in self.events if isinstance(e, OrderState) and e.client_id == client_id]

    def placed(self) -> list[str]:
        """Client ids in the order the broker first reported them."""
        seen: dict[str, None] = {}
        for e in self.events:
            if isinstance(e, OrderState):
                seen.setdefault(e.client_id)
        return list(seen)

    def decisions(self, kind: str | None = None) -> list[Decision]:
        return [e for e in self.events
                if isinstance(e, Decision) and kind in (None, e.kind)]  # fmt: skip

    async def close(self) -> None:
        await self.manager.close()
        await self.desk.close()


@pytest.fixture
async def env():
    e = Env()
    e.strangle_quotes()
    yield e
    await e.close()


def strangle(env: Env, pid: str, quantity: int = 1) -> Position:
    legs = (Leg(PUT, -1), Leg(CALL, -1))
    return Position(pid, StrategyType.STRANGLE, legs, quantity, env.clock.now_ns())


def closing(env: Env, pid: str, sid: str, fraction: float = 1.0) -> Intent:
    held = env.desk.book.held(pid)
    assert held is not None
    return close_intent(held, sid, fraction, "test close", env.clock.now_ns(),
                        env.manager.next_id(pid, "close"))  # fmt: skip


async def hold(env: Env, pid: str, sid: str, quantity: int = 1) -> IntentRecord:
    """Enter a strangle through the manager; the ladder reaches the natural and fills."""
    rec = await env.finish(env.manager.submit(open_intent(strangle(env, pid, quantity), sid, "in")))
    assert rec.status == "done" and rec.filled == quantity
    return rec


def seconds(ns: int, t0: int) -> float:
    return (ns - t0) / NS_PER_S


# --- 1. the ladder ---


async def test_an_entry_walks_the_ladder_from_mid_toward_natural_and_fills_when_crossed(env):
    t0 = env.clock.now_ns()
    rec = env.manager.submit(open_intent(strangle(env, "S1"), "strat", "sell the strangle"))
    cid = "S1.open/C"
    await env.run(13)  # mid 4.00 at once, then 3.95 after 5 s, then 3.90 after 7.5 s more
    prices = []
    for s in env.states(cid):
        if not prices or s.order.limit_price != prices[-1][1]:
            prices.append((seconds(s.ts_ns, t0), s.order.limit_price))
    assert [p for _, p in prices] == [4.00, 3.95, 3.90]
    # sent at 0 (live 50 ms later), replaced after 5 s, then after 5 x 1.5 s (each replace
    # also takes the venue's 50 ms)
    assert [t for t, _ in prices] == pytest.approx([0.0, 5.05, 12.55], abs=1e-6)
    assert rec.status == "working" and rec.steps == {"C": 2}
    assert not env.desk.book.rows  # nothing filled yet: the position is not in the book

    env.strangle_quotes(put=(1.95, 2.15), call=(1.95, 2.15))  # the bids now add up to 3.90
    await env.finish(rec)
    state = env.broker.order(cid)
    assert state is not None and state.order.side == "sell"
    assert (state.status, state.filled_qty, state.avg_price) == (OrderStatus.FILLED, 1, 3.90)
    assert (rec.status, rec.quantity, rec.filled) == ("done", 1, 1)
    assert [f.client_id for f in await env.broker.fills()] == [cid, cid]
    held = env.desk.book.held("S1")
    assert held is not None and held.quantity == 1

    close = env.manager.submit(closing(env, "S1", "strat"))
    await env.run(1)
    env.strangle_quotes(put=(1.95, 2.05), call=(1.95, 2.05))  # crosses the close's 4.10 bid
    await env.finish(close)
    assert close.status == "done"
    assert env.broker.order(f"{close.intent.id}/C").avg_price == pytest.approx(4.10)
    assert env.desk.book.held("S1") is None
    fills = await env.broker.fills()
    cash = sum(f.cash_flow for f in fills)
    realized = float(env.desk.book.view(env.clock.now_ns()).realized.sum())
    fee = round(fees_per_contract("SPXW", premium=2.0), 2)  # commission + Cboe/OCC/ORF, per fill
    assert round(realized, 2) == round(cash, 2) == round((3.90 - 4.10) * 100 - 4 * fee, 2)
    assert [d.message for d in env.decisions("done")] == [
        "open S1: done, 1 of 1 units",
        "close S1: done, 1 of 1 units",
    ]


# --- 2. partial fills ---


async def test_quoted_sizes_below_the_order_fill_part_and_a_new_quote_fills_the_rest(env):
    rec = env.manager.submit(open_intent(strangle(env, "S1", 3), "strat", "three lots"))
    await env.run(0.5)
    env.strangle_quotes(put=(2.00, 2.20), call=(2.00, 2.20), size=2)  # crosses 4.00, 2 lots shown
    await env.run(0.5)
    state = env.broker.order("S1.open/C")
    assert (state.status, state.filled_qty) == (OrderStatus.PARTIAL, 2)
    held = env.desk.book.held("S1")
    assert held is not None and held.quantity == 2 and rec.active
    await env.run(0.5)
    assert env.broker.order("S1.open/C").filled_qty == 2  # the shown size is used up

    env.strangle_quotes(put=(2.00, 2.20), call=(2.00, 2.20), size=2)  # a new quote: 2 more shown
    await env.finish(rec)
    state = env.broker.order("S1.open/C")
    assert (state.status, state.filled_qty, state.avg_price) == (OrderStatus.FILLED, 3, 4.00)
    assert (rec.status, rec.quantity, rec.filled) == ("done", 3, 3)
    held = env.desk.book.held("S1")
    assert held is not None and held.quantity == 3
    assert held.legs == (Leg(PUT, -1), Leg(CALL, -1))
    assert sorted(f.quantity for f in await env.broker.fills()) == [1, 1, 2, 2]


# --- 3. an entry that does not fill ---


async def test_an_unfilled_entry_is_cancelled_without_chasing_and_the_strategy_may_enter_again():
    env = Env()
    env.strangle_quotes(put_bid_size=0)  # nobody bids for the put: nothing can be sold
    try:
        rec = env.manager.submit(open_intent(strangle(env, "S1"), "strat", "try"))
        await env.finish(rec)
        assert (rec.status, rec.filled, rec.steps) == ("failed", 0, {"C": 4})
        assert [s.client_id for s in await env.broker.orders()] == ["S1.open/C"]  # no /mkt
        state = env.broker.order("S1.open/C")
        assert (state.status, state.filled_qty) == (OrderStatus.CANCELLED, 0)
        assert state.order.limit_price == 3.80  # the ladder ended at the natural
        assert "strat" not in env.manager.strategies and "S1" not in env.desk.book.rows
        cancelled = env.events.index(env.states("S1.open/C")[-1])
        assert cancelled < env.events.index(env.decisions("done")[-1])
        again = env.manager.submit(open_intent(strangle(env, "S2"), "strat", "again"))
        assert again.active and env.manager.strategies["strat"] == "S2"
    finally:
        await env.close()


async def test_a_ladder_step_without_a_two_sided_quote_cancels_the_order_before_giving_up(env):
    rec = env.manager.submit(open_intent(strangle(env, "S1"), "strat", "in"))
    await env.run(2)
    env.quote((PUT, 0.0, 2.10, 0, 10), (CALL, 1.90, 2.10))  # the put's bid vanishes
    await env.finish(rec)  # the 5 s step cannot be priced
    assert rec.status == "failed" and "a leg sold a bid" in rec.message
    state = env.broker.order("S1.open/C")
    assert (state.status, state.order.limit_price) == (OrderStatus.CANCELLED, 4.00)
    env.strangle_quotes()
    again = env.manager.submit(open_intent(strangle(env, "S2"), "strat", "again"))
    env.strangle_quotes(put=(2.00, 2.20), call=(2.00, 2.20))  # would cross both entries at 4.00
    await env.finish(again)
    live = [s.client_id for s in await env.broker.orders() if not s.status.done]
    assert live == [] and env.desk.book.ids == ["S2"]  # one entry, never two


# --- 4. a close finishing with a market order ---


async def test_a_short_leg_quoted_without_a_bid_is_bought_back(env):
    """0DTE: the call far out of the money quotes 0.00 / 0.05. Buying it back needs only the
    ask, so the strangle closes (before, "no two-sided quote" held it to settlement); selling
    into no bid is still refused, for an entry as for any leg sold."""
    await hold(env, "S1", "strat")
    env.strangle_quotes(call=(0.0, 0.05))
    rec = await env.finish(env.manager.submit(closing(env, "S1", "strat")))
    assert rec.status == "done" and env.desk.book.held("S1") is None
    bought = [f for _, f in env.desk.book.fills if f.contract == CALL and f.side is Side.BUY]
    assert bought and all(f.price <= 0.05 for f in bought)
    with pytest.raises(OrderRejectedError, match="no two-sided quote"):
        env.manager.submit(open_intent(strangle(env, "S2"), "strat2", "in"))


async def test_a_close_whose_ladder_does_not_fill_finishes_with_a_market_order():
    env = Env(config=ManagerConfig(retries=1))  # mid, one step of 25%, then the market
    env.strangle_quotes()
    try:
        entry = env.manager.submit(open_intent(strangle(env, "S1", 2), "strat", "in"))
        await env.run(1)
        env.strangle_quotes(put=(2.00, 2.20), call=(2.00, 2.20))  # the bids reach the 4.00 mid
        await env.finish(entry)
        assert entry.status == "done"

        rec = env.manager.submit(closing(env, "S1", "strat"))
        await env.finish(rec)
        cid = f"{rec.intent.id}/C"
        assert env.placed() == ["S1.open/C", cid, f"{cid}/mkt"]
        ladder, market = env.broker.order(cid), env.broker.order(f"{cid}/mkt")
        assert (ladder.status, ladder.filled_qty) == (OrderStatus.CANCELLED, 0)
        limits = sorted({s.order.limit_price for s in env.states(cid)})
        assert limits == [4.20, 4.25]  # mid, then 25% of the way to the 4.40 natural
        assert market.order.order_type == "market" and market.order.quantity == 2
        assert (market.status, market.filled_qty, market.avg_price) == (OrderStatus.FILLED, 2, 4.4)
        assert (rec.status, rec.filled) == ("done", 2)
        assert env.desk.book.held("S1") is None and await env.broker.positions() == {}
    finally:
        await env.close()


# --- 5. a newer intent supersedes an older one ---


async def test_close_all_supersedes_a_working_close_half_and_ends_flat(env):
    await hold(env, "S1", "strat", 4)
    waiting = asyncio.ensure_future(env.manager.execute(closing(env, "S1", "strat", 0.5)))
    await env.run(2)
    (half,) = env.manager.pending("S1")
    old_cid = f"{half.intent.id}/C"
    assert half.quantity == 2 and env.broker.order(old_cid).status is OrderStatus.WORKING

    full = env.manager.submit(closing(env, "S1", "strat"))
    await env.finish(full)
    assert half.status == "superseded" and half.filled == 0
    new_cid = f"{full.intent.id}/C"
    old_done = env.states(old_cid)[-1]
    assert (old_done.status, old_done.filled_qty) == (OrderStatus.CANCELLED, 0)
    # the cancel was confirmed before the new order went out
    assert env.events.index(old_done) < env.events.index(env.states(new_cid)[0])
    assert (full.status, full.quantity, full.filled) == ("done", 4, 4)
    assert env.desk.book.held("S1") is None and await env.broker.positions() == {}
    assert "strat" not in env.manager.strategies
    assert await waiting is half  # whoever awaited the older intent learns it was superseded


# --- 6. duplicate-trade prevention ---


async def test_a_second_entry_for_a_strategy_is_refused_while_one_is_pending_or_held(env):
    first = open_intent(strangle(env, "S1"), "strat", "first")
    rec = env.manager.submit(first)
    await env.run(1)
    with pytest.raises(OrderRejectedError, match="duplicate-trade prevention"):
        env.manager.submit(open_intent(strangle(env, "S2"), "strat", "pending"))
    assert env.manager.submit(first) is rec  # the same intent again: the same record
    assert env.manager.submit(open_intent(strangle(env, "S1"), "strat", "dbl click")) is rec
    assert [s.client_id for s in await env.broker.orders()] == ["S1.open/C"]
    await env.finish(rec)
    assert rec.status == "done"

    with pytest.raises(OrderRejectedError, match="duplicate-trade prevention"):
        env.manager.submit(open_intent(strangle(env, "S2"), "strat", "held"))
    assert [d.kind for d in env.decisions()].count("rejected") == 2
    assert env.manager.submit(first) is rec and len(await env.broker.orders()) == 1

    await env.finish(env.manager.submit(closing(env, "S1", "strat")))
    assert env.desk.book.held("S1") is None
    assert env.manager.submit(open_intent(strangle(env, "S2"), "strat", "flat now")).active


async def test_a_position_settled_at_expiry_lets_its_strategy_enter_again(env):
    await hold(env, "S1", "strat")
    assert env.manager.strategies == {"strat": "S1"}
    spots = {"SPX": env.desk.market.spot_of("SPX")}
    assert env.broker.settle(spots, to_ns(expiry_time(PUT)))  # the expiry's settlement fills
    await env.run(1)
    assert env.desk.book.held("S1") is None and env.manager.strategies == {}
    assert env.manager.submit(open_intent(strangle(env, "S2"), "strat", "next day")).active


# --- 7. a restart resumes, never trades twice ---


async def test_a_restart_resumes_the_working_entry_and_fills_it_once(tmp_path):
    store = JsonStateStore(tmp_path)
    a = Env(store=store)
    a.strangle_quotes()
    rec = a.manager.submit(open_intent(strangle(a, "S1", 2), "strat", "before the restart"))
    await a.run(2)
    assert rec.status == "working" and a.broker.order("S1.open/C").status is OrderStatus.WORKING
    await a.manager.close()  # the order stays at the broker
    await a.desk.close()

    b = Env(store=store, clock=a.clock)
    b.strangle_quotes()
    assert b.broker.order("S1.open/C").status is OrderStatus.WORKING  # still at the broker
    await b.manager.start()
    try:
        resumed = b.manager.records["S1.open"]
        assert resumed.active and "S1.open" in b.manager._tasks
        assert [d.inputs["resumed"] for d in b.decisions("recovery")] == [["S1.open"]]
        with pytest.raises(OrderRejectedError, match="duplicate-trade prevention"):
            b.manager.submit(open_intent(strangle(b, "S2"), "strat", "after the restart"))
        await b.run(1)
        assert [s.client_id for s in await b.broker.orders()] == ["S1.open/C"]

        b.strangle_quotes(put=(2.00, 2.20), call=(2.00, 2.20))  # crosses the resting 4.00
        await b.finish(resumed)
        assert (resumed.status, resumed.filled) == ("done", 2)
        assert len(await b.broker.orders()) == 1 and len(await b.broker.fills()) == 2
        held = b.desk.book.held("S1")
        assert held is not None and held.quantity == 2
        assert len(b.desk.book.fills) == 2 and b.desk.book.ids == ["S1"]
    finally:
        await b.close()

    c = Env(store=store, clock=a.clock)  # once more: the book is rebuilt from the fills, once
    c.strangle_quotes()
    await c.manager.start()
    try:
        held = c.desk.book.held("S1")
        assert held is not None and held.quantity == 2 and not c.manager.pending()
        assert len(await c.broker.orders()) == 1
        with pytest.raises(OrderRejectedError, match="duplicate-trade prevention"):
            c.manager.submit(open_intent(strangle(c, "S2"), "strat", "held"))
    finally:
        await c.close()


async def test_after_a_restart_the_newer_of_two_unfinished_intents_wins(tmp_path):
    store = JsonStateStore(tmp_path)
    a = Env(store=store)
    a.strangle_quotes()
    await hold(a, "S1", "strat", 4)
    half = a.manager.submit(closing(a, "S1", "strat", 0.5))
    await a.run(2)
    full = a.manager.submit(closing(a, "S1", "strat"))
    await a.manager.close()  # before the close_all could start: both are unfinished
    await a.desk.close()

    b = Env(store=store, clock=a.clock)
    b.strangle_quotes()
    await b.manager.start()
    try:
        await b.until(lambda: not b.manager.pending())
        records = b.manager.records
        assert records[half.intent.id].status == "superseded"
        assert (records[full.intent.id].status, records[full.intent.id].filled) == ("done", 4)
        assert b.broker.order(f"{half.intent.id}/C").status is OrderStatus.CANCELLED
        assert b.desk.book.held("S1") is None and await b.broker.positions() == {}
    finally:
        await b.close()


# --- 8. risk limits ---


async def test_an_entry_above_the_position_limit_never_reaches_the_broker(env):
    with pytest.raises(OrderRejectedError, match="size 11 > the position limit 10"):
        env.manager.submit(open_intent(strangle(env, "S1", 11), "strat", "too big"))
    assert await env.broker.orders() == [] and env.manager.records == {}
    assert "strat" not in env.manager.strategies
    (refusal,) = env.decisions("rejected")
    assert "size 11 > the position limit 10" in refusal.message


async def close_goes_through(env: Env, pid: str, sid: str) -> None:
    rec = await env.finish(env.manager.submit(closing(env, pid, sid)))
    assert rec.status == "done" and env.desk.book.held(pid) is None


async def test_the_daily_loss_limit_refuses_entries_but_not_closes():
    env = Env(rules={"limits": {"daily_loss_limit": 100.0}})
    env.strangle_quotes()
    try:
        await hold(env, "S1", "a")  # sold at the 3.80 natural
        env.strangle_quotes(put=(2.40, 2.50), call=(2.40, 2.50))  # marked at 4.90: -$111 today
        assert float(env.desk.view.day_pnl.sum()) <= -100
        with pytest.raises(OrderRejectedError, match="is at the daily loss limit"):
            env.manager.submit(open_intent(strangle(env, "S2"), "b", "more"))
        assert {s.client_id for s in await env.broker.orders()} == {"S1.open/C"}
        await close_goes_through(env, "S1", "a")
    finally:
        await env.close()


async def test_the_total_risk_limit_refuses_entries_but_not_closes():
    env = Env(rules={"limits": {"max_total_risk": 60_000.0}})  # one 0DTE strangle: ~$44,600
    env.strangle_quotes()
    try:
        await hold(env, "S1", "a")
        with pytest.raises(OrderRejectedError, match=r"total risk \$8\d,\d{3} would exceed"):
            env.manager.submit(open_intent(strangle(env, "S2"), "b", "more"))
        await close_goes_through(env, "S1", "a")
        assert env.manager.submit(open_intent(strangle(env, "S2"), "b", "room again")).active
    finally:
        await env.close()


async def test_entries_still_being_worked_count_toward_total_risk():
    env = Env(rules={"limits": {"max_total_risk": 60_000.0}})
    env.strangle_quotes()
    try:
        env.manager.submit(open_intent(strangle(env, "S1"), "a", "resting"))
        await env.run(1)
        with pytest.raises(OrderRejectedError, match=r"total risk \$89,200 would exceed"):
            env.manager.submit(open_intent(strangle(env, "S2"), "b", "before S1 fills"))
    finally:
        await env.close()


async def test_a_partly_filled_entry_counts_once_toward_the_open_positions_limit(env):
    env.desk.rules = load_rules(overrides=QUIET | {"limits": {"max_open_positions": 2}})
    rec = env.manager.submit(open_intent(strangle(env, "S1", 3), "a", "three lots"))
    await env.run(0.5)
    env.strangle_quotes(put=(2.00, 2.20), call=(2.00, 2.20), size=1)  # one lot fills
    await env.run(0.5)
    assert rec.active and env.desk.book.held("S1") is not None
    assert env.manager.submit(open_intent(strangle(env, "S2"), "b", "second")).active
    with pytest.raises(OrderRejectedError, match="2 open or pending positions: the limit is 2"):
        env.manager.submit(open_intent(strangle(env, "S3"), "c", "third"))


async def test_the_kill_switch_refuses_entries_but_allows_closes(env):
    await hold(env, "S1", "a")
    env.desk.kill("test")
    with pytest.raises(OrderRejectedError, match="the kill switch is on"):
        env.manager.submit(open_intent(strangle(env, "S2"), "b", "while killed"))
    assert "b" not in env.manager.strategies
    await close_goes_through(env, "S1", "a")


async def test_the_kill_switch_cancels_every_working_order():
    env = Env()
    env.strangle_quotes(put_bid_size=0)  # the entry rests: nothing can be sold yet
    try:
        rec = env.manager.submit(open_intent(strangle(env, "S1"), "strat", "try"))
        await env.run(6)  # working, one ladder step in
        assert env.broker.order("S1.open/C").status is OrderStatus.WORKING
        env.desk.kill("test")
        await env.run(2)
        assert env.broker.order("S1.open/C").status is OrderStatus.CANCELLED
        assert (rec.status, rec.message) == ("failed", "kill switch: test")
        env.strangle_quotes()  # the market would now fill it: nothing is left to fill
        await env.run(30)
        assert env.desk.book.fills == [] and not env.manager.pending()
    finally:
        await env.close()


async def test_cancel_stops_one_working_intent_and_frees_its_strategy():
    env = Env()
    env.strangle_quotes(put_bid_size=0)  # the entry rests: nothing can be sold yet
    try:
        rec = env.manager.submit(open_intent(strangle(env, "S1"), "strat", "try"))
        await env.run(6)
        assert env.broker.order("S1.open/C").status is OrderStatus.WORKING
        cancelling = asyncio.ensure_future(
            env.manager.cancel(rec.intent.id, "trader changed their mind")
        )
        await env.until(cancelling.done)  # the venue confirms on the simulated clock
        assert env.broker.order("S1.open/C").status is OrderStatus.CANCELLED
        assert (rec.status, rec.message) == ("cancelled", "trader changed their mind")
        assert not env.manager.pending() and "strat" not in env.manager.strategies
        env.strangle_quotes()  # the market would now fill it: nothing is left to fill
        await env.run(30)
        assert env.desk.book.fills == []
        with pytest.raises(OrderRejectedError, match="is not working \\(cancelled\\)"):
            env.manager.cancel(rec.intent.id, "again")
        with pytest.raises(OrderRejectedError, match="'nope' is not working \\(unknown\\)"):
            env.manager.cancel("nope", "no such intent")
    finally:
        await env.close()


async def test_an_unexpected_error_fails_the_intent_instead_of_leaving_it_working(caplog):
    env = Env()
    env.strangle_quotes()

    async def broken(order: Any) -> None:
        raise KeyError("a bug in a venue adapter")

    env.broker.place = broken  # type: ignore[method-assign]
    try:
        rec = env.manager.submit(open_intent(strangle(env, "S1"), "strat", "try"))
        await env.finish(rec, limit_s=60)
        assert rec.status == "failed" and "internal error: KeyError" in rec.message
        assert "strat" not in env.manager.strategies  # the strategy may enter again
        assert "failed unexpectedly" in caplog.text
    finally:
        await env.close()


# --- 9. bad parameters never reach the broker ---


async def test_bad_parameters_are_refused_before_any_order(env):
    now = env.clock.now_ns()
    with pytest.raises(OrderRejectedError, match="'nope' is not held"):
        env.manager.submit(Intent("nope.close.1", IntentKind.CLOSE, "nope", "s", now, "x"))
    unquoted = Contract("SPXW", DAY, 4800.0, "P")
    env.quote((WING_CALL, 0.0, 0.10, 0, 10))  # no bid: one-sided
    for c in (unquoted, WING_CALL):
        pos = Position(f"X{c.strike:g}", StrategyType.CUSTOM, (Leg(c, -1),), 1, now)
        with pytest.raises(OrderRejectedError, match="no two-sided quote"):
            env.manager.submit(open_intent(pos, "s", "x"))
    with pytest.raises(ModelError, match="fraction"):
        Intent("S1.close.1", IntentKind.CLOSE, "S1", "s", now, "x", fraction=2)
    with pytest.raises(ModelError, match="fraction"):
        close_intent(strangle(env, "S1"), "s", 0.0, "x", now, "S1.close.2")
    with pytest.raises(ModelError, match="needs its target"):
        Intent("S1.open", IntentKind.OPEN, "S1", "s", now, "x")
    with pytest.raises(ModelError, match="needs its target"):
        Intent("S1.open", IntentKind.OPEN, "S1", "s", now, "x", target=strangle(env, "S9"))
    legs = (Leg(CALL, 1), Leg(WING_CALL, -1))
    with pytest.raises(ModelError, match="target: position 'S2' is not 'S1'"):  # would amend S2
        Intent("S1.roll.1", IntentKind.ROLL, "S1", "s", now, "x", target=strangle(env, "S2"),
               legs=legs)  # fmt: skip
    with pytest.raises(ModelError, match="a close intent takes a fraction"):
        Intent("S1.close.3", IntentKind.CLOSE, "S1", "s", now, "x", legs=legs)
    with pytest.raises(ModelError, match="id"):
        open_intent(strangle(env, "S1"), "s", "x", intent_id="S1/open")  # '/' splits client ids
    with pytest.raises(ModelError, match="unknown intent kind"):
        Intent("S1.buy", "buy", "S1", "s", now, "x")  # type: ignore[arg-type]
    assert await env.broker.orders() == [] and env.manager.records == {}
    assert not env.manager.strategies and len(env.decisions("rejected")) == 3


async def test_an_entry_is_refused_when_its_risk_cannot_be_measured():
    env = Env()
    now = env.clock.now_ns()
    env.desk.process([Quote(PUT, 1.90, 2.10, 10, 10, now), Quote(CALL, 1.90, 2.10, 10, 10, now)])
    try:  # quotes but no SPX spot yet: the stress loss cannot be computed
        with pytest.raises(OrderRejectedError, match="no SPX spot: the risk limits cannot"):
            env.manager.submit(open_intent(strangle(env, "S1", 10), "a", "blind"))
        assert await env.broker.orders() == []
    finally:
        await env.close()


# --- 10. protected legging without combos ---

CONDOR_QUOTES = {WING_PUT: (0.95, 1.05), PUT: (1.90, 2.10), CALL: (1.90, 2.10),
                 WING_CALL: (0.95, 1.05)}  # fmt: skip


def condor(env: Env, pid: str, quantity: int) -> Position:
    legs = (Leg(WING_PUT, 1), Leg(PUT, -1), Leg(CALL, -1), Leg(WING_CALL, 1))
    return Position(pid, StrategyType.IRON_CONDOR, legs, quantity, env.clock.now_ns())


def legging_env(sizes: dict[Contract, tuple[float, float]]) -> Env:
    env = Env(combo=False)
    env.quote(*((c, b, a, *sizes.get(c, (10, 10))) for c, (b, a) in CONDOR_QUOTES.items()))
    return env


async def test_legging_buys_the_wings_first_and_unwinds_them_when_a_short_leg_cannot_sell():
    env = legging_env({CALL: (0, 10)})  # nobody bids for the short call
    try:
        rec = await env.finish(env.manager.submit(open_intent(condor(env, "IC", 2), "ic", "in")))
        pid = "IC.open"
        assert env.placed() == [f"{pid}/{s}" for s in ("L0", "L3", "L1", "L2", "U0", "U3", "U1")]
        l3_filled = env.events.index(env.states(f"{pid}/L3")[-1])
        assert env.states(f"{pid}/L3")[-1].status is OrderStatus.FILLED
        assert l3_filled < env.events.index(env.states(f"{pid}/L1")[0])  # wings before shorts
        assert all(env.broker.order(f"{pid}/L{n}").order.quantity == 2 for n in range(4))
        short_call = env.broker.order(f"{pid}/L2")
        assert (short_call.status, short_call.filled_qty) == (OrderStatus.CANCELLED, 0)
        for n, side in ((0, "sell"), (3, "sell"), (1, "buy")):  # each filled leg undone
            u = env.broker.order(f"{pid}/U{n}")
            assert (u.order.side, u.order.quantity, u.status) == (side, 2, OrderStatus.FILLED)
        assert (rec.status, rec.filled) == ("failed", 0)
        assert env.desk.book.held("IC") is None and await env.broker.positions() == {}
        assert any("legging stopped at 0 of 2" in d.message for d in env.decisions("order"))
        assert "ic" not in env.manager.strategies
    finally:
        await env.close()


async def test_legging_sizes_later_legs_to_what_earlier_ones_filled():
    env = legging_env({WING_CALL: (10, 1)})  # one long call offered: one unit can be built
    try:
        rec = await env.finish(env.manager.submit(open_intent(condor(env, "IC", 2), "ic", "in")))
        pid = "IC.open"
        assert env.placed() == [f"{pid}/{s}" for s in ("L0", "L3", "L1", "L2", "U0")]
        assert env.broker.order(f"{pid}/L3").filled_qty == 1
        assert [env.broker.order(f"{pid}/L{n}").order.quantity for n in (1, 2)] == [1, 1]
        unwind = env.broker.order(f"{pid}/U0")
        assert (unwind.order.side, unwind.filled_qty) == ("sell", 1)  # the extra long put
        assert (rec.status, rec.filled) == ("partial", 1)
        held = env.desk.book.held("IC")
        assert held is not None and held.quantity == 1
        assert held.strategy is StrategyType.IRON_CONDOR
        assert await env.broker.positions() == {WING_PUT: 1, PUT: -1, CALL: -1, WING_CALL: 1}
        assert env.desk.book.positions["IC"].quantity == 1  # the record follows the fills
    finally:
        await env.close()


# --- 11. auto-manage ---


async def test_a_profit_target_closes_the_position_through_the_manager_when_auto_managed():
    target = {"enabled": True, "levels": [{"at": 50.0, "severity": "INFO", "action": "close_all"}]}
    env = Env(rules={"profit_target": target}, auto_manage=True)
    env.strangle_quotes()
    try:
        assert env.desk.executor == env.manager.on_action
        await hold(env, "S1", "strat")  # a $380 credit
        assert not [a for a in env.events if isinstance(a, Action)]
        env.strangle_quotes(put=(0.95, 1.05), call=(0.95, 1.05))  # marked at 2.00: 47%
        await env.run(1)
        assert not [a for a in env.events if isinstance(a, Action)]
        env.strangle_quotes(put=(0.70, 0.80), call=(0.70, 0.80))  # 1.50: 66% of the credit
        await env.run(1)
        (action,) = [a for a in env.events if isinstance(a, Action)]
        assert (action.kind, action.rule, action.params["status"]) == (
            "close_all", "profit_target", "executed")  # fmt: skip
        (rec,) = [r for r in env.manager.records.values() if r.intent.kind is IntentKind.CLOSE]
        assert rec.intent.source == "auto:profit_target" and rec.intent.fraction == 1.0
        await env.finish(rec)
        assert rec.status == "done" and env.desk.book.held("S1") is None
        assert env.broker.order(f"{rec.intent.id}/C").status is OrderStatus.FILLED
        mine = [d for d in env.decisions() if d.inputs.get("intent") == rec.intent.id]
        assert [d.kind for d in mine] == ["intent", "done"]
        assert mine[0].inputs["source"] == "auto:profit_target"
        assert mine[1].inputs["status"] == "done"
    finally:
        await env.close()


# --- 12. a roll ---

YEARS_LEFT = 5 / (365 * 24)  # 11:00 to the 16:00 expiry


def chain_quotes(env: Env, strikes: dict[Right, list[float]], iv: float = 0.25) -> None:
    """Quotes 0.10 wide around Black-Scholes prices at the env's spot, then Greeks for all."""
    quotes = []
    for right, ks in strikes.items():
        for k in ks:
            c = Contract("SPXW", DAY, k, right)
            p = float(price(env.spot, k, YEARS_LEFT, 0.045, 0.013, iv, c.is_call))
            mid = max(round(p / 0.05) * 0.05, 0.10)
            quotes.append((c, round(mid - 0.05, 2), round(mid + 0.05, 2)))
    env.quote(*quotes)
    env.desk.market.refresh(None, env.clock.now_ns())


async def test_rolling_the_untested_side_is_one_combo_order_and_the_book_holds_the_new_strike():
    env = Env()
    strikes = {Right.PUT: [4925.0, 4950.0, 4975.0], Right.CALL: [5000.0, 5025.0, 5050.0]}
    old_put, old_call = Contract("SPXW", DAY, 4975.0, "P"), Contract("SPXW", DAY, 5025.0, "C")
    chain_quotes(env, strikes)
    try:
        pos = Position("S1", StrategyType.STRANGLE, (Leg(old_put, -1), Leg(old_call, -1)), 2,
                       env.clock.now_ns())  # fmt: skip
        await env.finish(env.manager.submit(open_intent(pos, "strat", "in")))
        env.spot = 4980.0  # the put is tested: the call is rolled down
        chain_quotes(env, strikes)
        held = env.desk.book.held("S1")
        assert held is not None
        action = Action(env.clock.now_ns(), ActionKind.ROLL_CALL, "delta", "test", "S1")
        intent = intent_for_action(action, env.desk.book, env.desk.market, "strat", "S1.roll.1")
        untested = roll_intent(env.desk.market, held, "strat", None, "test", action.ts_ns, "x")
        assert intent.legs == untested.legs and intent.target == untested.target
        (buy_back, sell_new) = intent.legs
        new_call = sell_new.contract
        assert buy_back == Leg(old_call, 1) and sell_new.ratio == -1
        assert new_call == Contract("SPXW", DAY, 5000.0, "C")  # the nearest call to neutral

        rec = await env.finish(env.manager.submit(intent))
        assert (rec.status, rec.quantity, rec.filled) == ("done", 2, 2)
        (state,) = [s for s in await env.broker.orders() if s.client_id.startswith("S1.roll.1/")]
        assert state.client_id == "S1.roll.1/C" and state.order.side == "buy"
        assert state.order.legs == (Leg(old_call, 1), Leg(new_call, -1))
        assert state.status is OrderStatus.FILLED and state.avg_price < 0  # a net credit
        held = env.desk.book.held("S1")
        assert held is not None and held.quantity == 2
        assert set(held.legs) == {Leg(old_put, -1), Leg(new_call, -1)}
        assert set(env.desk.book.positions["S1"].legs) == set(held.legs)
        assert await env.broker.positions() == {old_put: -2, new_call: -2}
    finally:
        await env.close()


async def test_a_condor_close_buys_the_shorts_back_and_leaves_a_wing_nobody_bids_for():
    """0DTE afternoon: the call wing quotes 0.00 / 0.05. It cannot be sold, so the close buys
    back both shorts and sells the put wing, and the call wing is left to expire (before, the
    whole close was refused and the condor held to settlement); closing again says why not."""
    env = Env()
    env.quote(*((c, b, a) for c, (b, a) in CONDOR_QUOTES.items()))
    try:
        rec = await env.finish(env.manager.submit(open_intent(condor(env, "IC", 1), "ic", "in")))
        assert rec.status == "done"
        env.quote((WING_CALL, 0.0, 0.05, 0, 10))
        rec = await env.finish(env.manager.submit(closing(env, "IC", "ic")))
        assert rec.status == "done"
        assert await env.broker.positions() == {WING_CALL: 1}  # the worthless wing, kept
        held = env.desk.book.held("IC")
        assert held is not None and [leg.contract for leg in held.legs] == [WING_CALL]
        with pytest.raises(OrderRejectedError, match="nobody bids for, left to expire"):
            env.manager.submit(closing(env, "IC", "ic"))
    finally:
        await env.close()

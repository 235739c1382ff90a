"""The broker contract: what :mod:`kit.execution.broker` promises, checked the same way on every
Broker (paper, IBKR Client Portal, Delta Exchange) so the order manager can trust any of them.

A :class:`Venue` wraps one broker on its own market with the few venue-specific things a check
needs (a tradable contract and its touch, an unlisted one, how many orders the venue received, a
restart). Each ``check_*`` coroutine is one behaviour; ``test_broker_contract.py`` runs
every check on every venue. This module is a helper, not collected itself.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from venues import until

from kit.core.model import Contract, Fill, Leg, Order, OrderType, Side
from kit.execution.broker import (
    AccountSummary,
    Broker,
    BrokerError,
    OrderRejectedError,
    OrderState,
    OrderStatus,
)


@dataclass
class Venue:
    """One broker, connected, on a venue that quotes ``contract`` two-sided."""

    broker: Broker
    contract: Contract  # listed and quoted: the checks buy it
    unlisted: Contract  # not listed at the venue
    touch: Callable[[], tuple[float, float]]  # (bid, ask) of ``contract`` now
    sent: Callable[[], int]  # orders the venue itself has received so far
    restart: Callable[[], Awaitable[Broker]]  # a new broker process on the same account
    nudge: Callable[[], None] = lambda: None  # let resting orders match (a simulated venue)
    identity: tuple[str, bool, bool] = ("", False, False)  # (name, live, supports_combo)
    background: int = 0  # tasks the connected broker runs (a poll loop, a socket reader)
    events: list[OrderState | Fill] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.broker.subscribe(self.events.append)

    def states(self, cid: str) -> list[OrderState]:
        return [e for e in self.events if isinstance(e, OrderState) and e.client_id == cid]

    def fills(self, cid: str) -> list[Fill]:
        return [e for e in self.events if isinstance(e, Fill) and e.client_id == cid]

    async def settled(self, cid: str, status: OrderStatus) -> OrderState:
        """Wait until the broker reports ``status`` for ``cid`` (as its state and as an event)."""

        def reached() -> bool:
            self.nudge()
            state, heard = self.broker.order(cid), self.states(cid)
            return state is not None and state.status is status and heard[-1].status is status

        await until(reached, 10.0)
        state = self.broker.order(cid)
        assert state is not None
        return state

    def marketable(self) -> float:
        """A BUY limit well through the offer: fills now, whatever the venue's slippage."""
        return round(self.touch()[1] * 1.2, 2)

    def passive(self) -> float:
        """A BUY limit at half the bid: rests (positive, as every venue needs a price)."""
        return round(max(self.touch()[0] * 0.5, 0.05), 2)

    def buy(self, cid: str, qty: int, limit: float | None) -> Order:
        kind = OrderType.LIMIT if limit is not None else OrderType.MARKET
        return Order(cid, (Leg(self.contract, 1),), Side.BUY, qty, kind, 0, limit_price=limit)


def _fill_net(fills: list[Fill]) -> tuple[float, float]:
    """(quantity, quantity-weighted price) of one leg's fills."""
    qty = sum(f.quantity for f in fills)
    return qty, sum(f.quantity * f.price for f in fills) / qty


async def check_identity(v: Venue) -> None:
    """``name``, ``live`` and ``supports_combo`` as declared, and the protocol satisfied."""
    b = v.broker
    assert isinstance(b, Broker)
    assert (b.name, b.live, b.supports_combo) == v.identity
    assert isinstance(b.name, str) and b.name
    assert b.order("never-placed") is None


async def check_marketable_limit_fills(v: Venue) -> None:
    """A marketable BUY fills: an OrderState first, then fills that add up to the order, at or
    better than the limit, and a FILLED state whose average is the fills' average."""
    limit = v.marketable()
    placed = await v.broker.place(v.buy("take", 2, limit))
    assert placed.client_id == "take" and placed.broker_id
    assert placed.status in (OrderStatus.PENDING, OrderStatus.WORKING, OrderStatus.PARTIAL,
                             OrderStatus.FILLED)  # fmt: skip
    final = await v.settled("take", OrderStatus.FILLED)
    await until(lambda: sum(f.quantity for f in v.fills("take")) >= 2)
    mine = [e for e in v.events if e.client_id == "take"]
    assert isinstance(mine[0], OrderState)  # the acknowledgement precedes any execution
    fills = v.fills("take")
    assert all((f.contract, f.side) == (v.contract, Side.BUY) for f in fills)
    assert all(f.price <= limit + 1e-9 and f.commission >= 0 for f in fills)
    assert len({f.fill_id for f in fills}) == len(fills)
    qty, avg = _fill_net(fills)
    assert (qty, final.filled_qty, final.remaining) == (2.0, 2, 0)
    assert final.avg_price == pytest.approx(avg, rel=1e-9)
    assert final.broker_id == placed.broker_id
    filled = [s.filled_qty for s in v.states("take")]
    assert filled == sorted(filled) and filled[-1] == 2  # filled quantity never goes back


async def check_passive_limit_rests_and_cancels(v: Venue) -> None:
    """A BUY below the bid rests WORKING; cancel ends it CANCELLED with no fill; a second cancel
    sends nothing and answers CANCELLED; an unknown id is a BrokerError."""
    await v.broker.place(v.buy("rest", 1, v.passive()))
    working = await v.settled("rest", OrderStatus.WORKING)
    assert (working.filled_qty, working.remaining) == (0, 1)
    now = await v.broker.cancel("rest")
    assert now.status in (OrderStatus.WORKING, OrderStatus.CANCELLED)
    done = await v.settled("rest", OrderStatus.CANCELLED)
    assert (done.filled_qty, done.remaining) == (0, 0) and v.fills("rest") == []
    assert (await v.broker.cancel("rest")).status is OrderStatus.CANCELLED
    with pytest.raises(BrokerError, match="unknown order"):
        await v.broker.cancel("never-placed")


async def check_replace(v: Venue) -> None:
    """A resting order repriced through the offer with a larger quantity fills all of it;
    replacing a finished order is refused with a reason."""
    await v.broker.place(v.buy("move", 1, v.passive()))
    await v.settled("move", OrderStatus.WORKING)
    limit = v.marketable()
    new = await v.broker.replace("move", limit_price=limit, quantity=2)
    assert new.client_id == "move"
    final = await v.settled("move", OrderStatus.FILLED)
    await until(lambda: sum(f.quantity for f in v.fills("move")) >= 2)
    assert (final.order.quantity, final.filled_qty) == (2, 2)
    assert final.order.limit_price == pytest.approx(limit)
    assert all(f.price <= limit + 1e-9 for f in v.fills("move"))
    with pytest.raises(OrderRejectedError) as refused:
        await v.broker.replace("move", limit_price=limit)
    assert "filled" in str(refused.value)


async def check_idempotent_client_id(v: Venue) -> None:
    """Placing a known client id again returns its state and sends nothing, while working,
    once filled, and from a restarted broker on the same account."""
    resting = v.buy("once-rest", 1, v.passive())
    first = await v.broker.place(resting)
    await v.settled("once-rest", OrderStatus.WORKING)
    sent = v.sent()
    again = await v.broker.place(resting)
    assert again.broker_id == first.broker_id and v.sent() == sent
    taking = v.buy("once-take", 1, v.marketable())
    took = await v.broker.place(taking)
    await v.settled("once-take", OrderStatus.FILLED)
    sent = v.sent()
    repeat = await v.broker.place(taking)
    assert (repeat.status, repeat.broker_id) == (OrderStatus.FILLED, took.broker_id)
    assert v.sent() == sent
    other = await v.restart()
    try:
        for order, known in ((resting, first), (taking, took)):
            state = await other.place(order)
            assert state.broker_id == known.broker_id, order.client_id
        assert (await other.place(taking)).filled_qty == 1
        assert v.sent() == sent
    finally:
        await other.close()
    assert len(v.fills("once-take")) >= 1 and v.fills("once-rest") == []


async def check_queries_agree(v: Venue) -> None:
    """``orders()``, ``fills()``, ``positions()`` and ``account()`` tell what happened: the
    orders with their statuses, the executions heard, the contracts held, and cash moved by
    exactly the fills' cash flows (premium x multiplier, commissions included)."""
    before = await v.broker.account()
    assert isinstance(before, AccountSummary)
    await v.broker.place(v.buy("q-take", 3, v.marketable()))
    await v.broker.place(v.buy("q-rest", 1, v.passive()))
    await v.settled("q-take", OrderStatus.FILLED)
    await v.settled("q-rest", OrderStatus.WORKING)
    await v.broker.cancel("q-rest")
    await v.settled("q-rest", OrderStatus.CANCELLED)
    await until(lambda: sum(f.quantity for f in v.fills("q-take")) >= 3)
    statuses = {s.client_id: s.status for s in await v.broker.orders()}
    assert statuses == {"q-take": OrderStatus.FILLED, "q-rest": OrderStatus.CANCELLED}
    heard = v.fills("q-take")
    fills = await v.broker.fills()
    assert {f.fill_id for f in fills} == {f.fill_id for f in heard}
    assert await v.broker.positions() == {v.contract: 3}
    after = await v.broker.account()
    flow = sum(f.cash_flow for f in heard)
    fees = sum(f.commission for f in heard)
    assert after.cash - before.cash == pytest.approx(flow, abs=0.01)
    assert after.commissions - before.commissions == pytest.approx(fees, abs=0.01)
    for x in (after.cash, after.net_liquidation, after.realized_pnl, after.buying_power_used):
        assert math.isfinite(x)


async def check_bad_orders_are_refused(v: Venue) -> None:
    """Refused with OrderRejectedError and a one-line reason, nothing recorded or sent: an
    unlisted contract, a combo to a broker without combos, and (on a resting order) a replace to
    a quantity below 1 or a limit that is not a number, which leave the order as it was. (A
    quantity below 1 or a NaN limit cannot reach ``place``: :class:`Order` refuses them.)"""
    sent = v.sent()
    unlisted = Order("bad-c", (Leg(v.unlisted, 1),), Side.BUY, 1, OrderType.LIMIT, 0, 1.0)
    bad = [unlisted]
    if not v.broker.supports_combo:
        other = Contract(v.contract.root, v.contract.expiry, v.contract.strike,
                         "P" if v.contract.is_call else "C")  # fmt: skip
        legs = (Leg(v.contract, 1), Leg(other, 1))
        bad.append(Order("bad-combo", legs, Side.BUY, 1, OrderType.LIMIT, 0, 1.0))
    for order in bad:
        reason = await _refusal(v.broker.place(order))
        assert v.broker.order(order.client_id) is None, reason
    assert v.sent() == sent and await v.broker.orders() == []
    await v.broker.place(v.buy("bad-edit", 1, v.passive()))
    resting = await v.settled("bad-edit", OrderStatus.WORKING)
    for qty in (0, -1):
        reason = await _refusal(v.broker.replace("bad-edit", limit_price=1.0, quantity=qty))
        assert "quantity" in reason, reason
    await _refusal(v.broker.replace("bad-edit", limit_price=math.nan))
    await asyncio.sleep(0.05)
    v.nudge()
    now = v.broker.order("bad-edit")
    assert now is not None and now.status is OrderStatus.WORKING
    assert (now.order.quantity, now.order.limit_price) == (1, resting.order.limit_price)
    assert [e for e in v.events if isinstance(e, Fill)] == []


async def _refusal(request: Awaitable[object]) -> str:
    """The reason ``request`` was refused with (it must be: OrderRejectedError, one line)."""
    with pytest.raises(OrderRejectedError) as refused:
        await request
    reason = str(refused.value)
    assert len(reason) > 10 and "\n" not in reason, reason
    return reason


async def check_close_is_clean(v: Venue) -> None:
    """``close()`` with an order resting stops every task the broker runs (as many as the venue
    says it has, found by the coroutine's ``self``) and raises nothing; a second close is
    harmless."""
    await v.broker.place(v.buy("at-close", 1, v.passive()))
    await v.settled("at-close", OrderStatus.WORKING)
    owned = [t for t in asyncio.all_tasks() if _owned_by(t, v.broker)]
    assert len(owned) == v.background, owned
    await v.broker.close()
    await v.broker.close()
    assert all(t.done() for t in owned), owned
    assert [t for t in asyncio.all_tasks() if _owned_by(t, v.broker)] == []


def _owned_by(task: asyncio.Task[object], broker: Broker) -> bool:
    """Whether ``task`` runs a coroutine bound to ``broker`` (its poll loop, its socket)."""
    coro = task.get_coro()
    frame = getattr(coro, "cr_frame", None)
    return frame is not None and frame.f_locals.get("self") is broker


CHECKS = {
    "identity": check_identity,
    "marketable_limit_fills": check_marketable_limit_fills,
    "passive_limit_rests_and_cancels": check_passive_limit_rests_and_cancels,
    "replace": check_replace,
    "idempotent_client_id": check_idempotent_client_id,
    "queries_agree": check_queries_agree,
    "bad_orders_are_refused": check_bad_orders_are_refused,
    "close_is_clean": check_close_is_clean,
}

"""The IBKR Client Portal adapter end to end: real HTTP to the loopback gateway on 127.0.0.1,
which matches the orders on a real PaperBroker over a real MarketState fed with quotes."""

import asyncio
import logging
import socket
from datetime import datetime

import httpx
import pytest
from venues import ACCOUNT, AM_PUT, CALL, EXP, ORDERS, PUT, cpapi_desk, until
from venues import CpApiDesk as Desk

from kit.adapters.cpapi.broker import CpApiBroker, CpApiConfig
from kit.adapters.cpapi.emulator import COMBO_CONID
from kit.adapters.cpapi.parsing import map_status
from kit.core.clock import NEW_YORK, SimClock
from kit.core.config import ConfigError
from kit.core.model import Contract, Fill, Leg, Order, OrderType, Side
from kit.execution.broker import BrokerError, OrderRejectedError, OrderStatus
from kit.execution.costs import fees_per_contract

SPXW_FEE = fees_per_contract("SPXW", premium=5.0)  # $/contract at a premium of $1 or more


@pytest.fixture
async def desk():
    async with cpapi_desk() as d:
        yield d


def order(cid: str, legs: list[Leg], side: Side, qty: int, limit: float | None) -> Order:
    kind = OrderType.MARKET if limit is None else OrderType.LIMIT
    return Order(cid, tuple(legs), side, qty, kind, 0, limit_price=limit)


async def test_single_leg_limit_fills(desk: Desk) -> None:
    state = await desk.broker.place(order("buy-put", [Leg(PUT, 1)], Side.BUY, 2, 10.5))
    assert state.status is OrderStatus.PENDING and state.broker_id
    await until(lambda: desk.status("buy-put") is OrderStatus.FILLED)
    [fill] = desk.fills("buy-put")
    assert (fill.contract, fill.side, fill.quantity, fill.price) == (PUT, Side.BUY, 2.0, 10.5)
    assert fill.commission == pytest.approx(round(2 * fees_per_contract("SPXW", premium=10.5), 2))
    final = desk.broker.order("buy-put")
    assert (final.filled_qty, final.avg_price, final.remaining) == (2, 10.5, 0)
    # fill before the state that reports it; SPXW resolved, not the SPX class of the same month
    assert desk.events.index(fill) < desk.events.index(desk.states("buy-put")[-1])
    [ticket] = desk.emu.tickets
    assert ticket["conid"] == desk.emu.conid(PUT) != desk.emu.conid(AM_PUT)
    assert (ticket["side"], ticket["quantity"], ticket["orderType"], ticket["price"]) == (
        "BUY", 2, "LMT", 10.5)  # fmt: skip
    assert (ticket["cOID"], ticket["tif"], ticket["acctId"]) == ("buy-put", "DAY", ACCOUNT)


async def test_combo_sell_strangle_via_conidex(desk: Desk) -> None:
    strangle = order("strangle", [Leg(PUT, 1), Leg(CALL, 1)], Side.SELL, 1, 15.0)
    await desk.broker.place(strangle)
    await until(lambda: desk.status("strangle") is OrderStatus.FILLED)
    [ticket] = desk.emu.tickets
    put_id, call_id = desk.emu.conid(PUT), desk.emu.conid(CALL)
    assert ticket["conidex"] == f"{COMBO_CONID};;;{put_id}/1,{call_id}/1"
    assert (ticket["side"], ticket["quantity"], ticket["price"]) == ("SELL", 1, 15.0)
    got = {(f.contract, f.side, f.quantity, f.price) for f in desk.fills("strangle")}
    assert got == {(PUT, Side.SELL, 1.0, 10.0), (CALL, Side.SELL, 1.0, 5.0)}
    assert desk.broker.order("strangle").avg_price == pytest.approx(15.0)


async def test_a_short_leg_alone_goes_out_as_its_contract(desk: Desk) -> None:
    # BUY one unit of (-1 put) at -10.0 (a credit) is a SELL of the put at 10.0 or better
    await desk.broker.place(order("short-leg", [Leg(PUT, -1)], Side.BUY, 1, -10.0))
    await until(lambda: desk.status("short-leg") is OrderStatus.FILLED)
    [ticket] = desk.emu.tickets
    assert (ticket["side"], ticket["quantity"], ticket["price"]) == ("SELL", 1, 10.0)
    [fill] = desk.fills("short-leg")
    assert (fill.side, fill.price) == (Side.SELL, 10.0)
    assert desk.broker.order("short-leg").avg_price == -10.0  # net per unit, as placed


async def test_partial_fill_then_completion(desk: Desk) -> None:
    desk.quote(PUT, 10.0, 10.5, size=2)
    await desk.broker.place(order("partial", [Leg(PUT, 1)], Side.SELL, 5, 10.0))
    await until(lambda: desk.status("partial") is OrderStatus.PARTIAL)
    assert desk.states("partial")[-1].filled_qty == 2
    desk.quote(PUT, 10.0, 10.4, size=5)  # fresh size: the resting rest fills at its limit
    await until(lambda: desk.status("partial") is OrderStatus.FILLED)
    assert [(f.quantity, f.price) for f in desk.fills("partial")] == [(2.0, 10.0), (3.0, 10.0)]
    assert desk.broker.order("partial").filled_qty == 5


async def test_cancel(desk: Desk) -> None:
    await desk.broker.place(order("resting", [Leg(PUT, 1)], Side.BUY, 1, 9.0))
    await until(lambda: desk.status("resting") is OrderStatus.WORKING)
    state = await desk.broker.cancel("resting")  # the state now; the confirmation is an event
    assert state.status in (OrderStatus.WORKING, OrderStatus.CANCELLED)
    await until(lambda: desk.status("resting") is OrderStatus.CANCELLED)
    assert desk.fills("resting") == []
    assert f"DELETE /iserver/account/{ACCOUNT}/order/{state.broker_id}" in desk.emu.requests
    assert (await desk.broker.cancel("resting")).status is OrderStatus.CANCELLED  # no resend
    with pytest.raises(BrokerError, match="unknown order"):
        await desk.broker.cancel("never-placed")


async def test_modify_price_fills(desk: Desk) -> None:
    await desk.broker.place(order("modify", [Leg(PUT, 1)], Side.BUY, 1, 9.0))
    await until(lambda: desk.status("modify") is OrderStatus.WORKING)
    new = await desk.broker.replace("modify", limit_price=10.5, quantity=2)
    assert (new.order.limit_price, new.order.quantity) == (10.5, 2)
    await until(lambda: desk.status("modify") is OrderStatus.FILLED)
    assert sum(f.quantity for f in desk.fills("modify")) == 2.0
    modify = desk.emu.tickets[-1]
    assert (modify["price"], modify["quantity"], "cOID" in modify) == (10.5, 2, False)
    with pytest.raises(OrderRejectedError, match="filled"):
        await desk.broker.replace("modify", limit_price=10.0)


async def test_confirmation_replies(desk: Desk) -> None:
    desk.emu.require_confirmation = "p12"  # informational: confirmed automatically
    await desk.broker.place(order("confirmed", [Leg(PUT, 1)], Side.BUY, 1, 10.5))
    await until(lambda: desk.status("confirmed") is OrderStatus.FILLED)
    assert any(r.startswith("POST /iserver/reply/") for r in desk.emu.requests)
    desk.emu.require_confirmation = "o163"  # a price-limit warning: declined and raised
    with pytest.raises(OrderRejectedError, match=r"o163.*price percentage"):
        await desk.broker.place(order("warned", [Leg(PUT, 1)], Side.BUY, 1, 10.5))
    assert desk.paper.order("warned") is None and desk.broker.order("warned") is None


async def test_duplicate_client_id_sends_nothing_even_after_restart(desk: Desk) -> None:
    first = order("once", [Leg(PUT, 1)], Side.BUY, 1, 10.5)
    await desk.broker.place(first)
    await until(lambda: desk.status("once") is OrderStatus.FILLED)
    assert (await desk.broker.place(first)).status is OrderStatus.FILLED
    assert desk.emu.requests.count(ORDERS) == 1

    restarted = CpApiBroker(desk.config, desk.clock)  # a new process: empty maps
    events: list = []
    restarted.subscribe(events.append)
    await restarted.connect()
    try:
        state = await restarted.place(first)
        assert (state.status, state.filled_qty) == (OrderStatus.FILLED, 1)
        assert state.broker_id == desk.broker.order("once").broker_id
        assert desk.emu.requests.count(ORDERS) == 1
        await asyncio.sleep(0.05)  # a few polls: executions before connect are not re-emitted
        assert [e for e in events if isinstance(e, Fill)] == []
        assert [f.fill_id for f in await restarted.fills()] == [desk.fills("once")[0].fill_id]
        assert await restarted.positions() == {PUT: 1}  # conid read back via contract info
    finally:
        await restarted.close()


async def test_unauthenticated_gateway_is_a_clear_error(desk: Desk) -> None:
    desk.emu.unauthenticated = True
    other = CpApiBroker(desk.config, desk.clock)
    with pytest.raises(BrokerError, match=r"not authenticated.*log in"):
        await other.connect()
    with pytest.raises(BrokerError, match="not connected"):
        await other.place(order("x", [Leg(PUT, 1)], Side.BUY, 1, 10.5))


async def test_unreachable_gateway_names_the_endpoint() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = SimClock(datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK), speed=1.0)
    broker = CpApiBroker(CpApiConfig(f"http://127.0.0.1:{port}/v1/api", ACCOUNT), clock)
    with pytest.raises(BrokerError, match=r"GET /iserver/auth/status: gateway unreachable"):
        await broker.connect()


async def test_timeout_is_a_broker_error_naming_the_endpoint() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("emulated", request=request)

    clock = SimClock(datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK), speed=1.0)
    config = CpApiConfig("http://127.0.0.1:1/v1/api", ACCOUNT, timeout_s=0.5)
    broker = CpApiBroker(config, clock, transport=httpx.MockTransport(slow))
    with pytest.raises(BrokerError, match=r"GET /iserver/auth/status: no answer in 0.5 s"):
        await broker.connect()


async def test_http_500_on_a_poll_warns_and_recovers(
    desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kit.adapters.cpapi.broker")
    desk.emu.fail_next(1, status=500)
    await until(lambda: "recovered" in caplog.text)
    assert "poll failed" in caplog.text and "HTTP 500" in caplog.text
    assert "GET /iserver/account/orders" in caplog.text
    await desk.broker.place(order("after", [Leg(PUT, 1)], Side.BUY, 1, 10.5))
    await until(lambda: desk.status("after") is OrderStatus.FILLED)


async def test_order_errors_are_rejections(desk: Desk) -> None:
    unlisted = Contract("SPXW", EXP, 5000.0, "C")
    with pytest.raises(OrderRejectedError, match="no SPXW 2024-01-19 5000C"):
        await desk.broker.place(order("unlisted", [Leg(unlisted, 1)], Side.BUY, 1, 1.0))
    desk.quote(CALL, 0.0, 5.4)  # one-sided: the engine refuses, the gateway answers 400
    with pytest.raises(OrderRejectedError, match="no bid to sell into"):
        await desk.broker.place(order("one-sided", [Leg(CALL, 1)], Side.SELL, 1, 5.0))
    assert desk.broker.order("one-sided") is None


async def test_positions_and_account_summary(desk: Desk) -> None:
    await desk.broker.place(order("long", [Leg(PUT, 1)], Side.BUY, 2, 10.5))
    await desk.broker.place(order("short", [Leg(CALL, 1)], Side.SELL, 1, 5.0))
    await until(lambda: desk.status("long") is desk.status("short") is OrderStatus.FILLED)
    assert await desk.broker.positions() == {PUT: 2, CALL: -1}
    account, truth = await desk.broker.account(), await desk.paper.account()
    fees = round(2 * SPXW_FEE, 2) + round(SPXW_FEE, 2)  # commission + Cboe/OCC/ORF fees
    assert account.cash == pytest.approx(100_000 - 2 * 1050 + 500 - fees)
    assert account.cash == pytest.approx(truth.cash)
    assert account.net_liquidation == pytest.approx(truth.net_liquidation)
    assert account.commissions == pytest.approx(truth.commissions) == pytest.approx(fees)
    assert account.realized_pnl == pytest.approx(truth.realized_pnl)
    assert {s.client_id for s in await desk.broker.orders()} == {"long", "short"}


def test_config_from_env() -> None:
    with pytest.raises(ConfigError, match="IBKR_CPAPI_URL, IBKR_ACCOUNT_ID"):
        CpApiConfig.from_env({})
    env = {"IBKR_CPAPI_URL": "https://localhost:5000/v1/api", "IBKR_ACCOUNT_ID": ACCOUNT,
           "IBKR_CPAPI_VERIFY_TLS": "0"}  # fmt: skip
    config = CpApiConfig.from_env(env)
    assert (config.base_url, config.account_id, config.verify_tls) == (env["IBKR_CPAPI_URL"],
                                                                       ACCOUNT, False)  # fmt: skip


def test_status_mapping() -> None:
    assert map_status("PreSubmitted", 0) is OrderStatus.WORKING
    assert map_status("Submitted", 1) is OrderStatus.PARTIAL
    assert map_status("PendingCancel", 0) is OrderStatus.WORKING
    assert map_status("Filled", 3) is OrderStatus.FILLED
    assert map_status("Inactive", 0) is OrderStatus.REJECTED
    assert map_status("Inactive", 2) is OrderStatus.CANCELLED
    assert map_status("PendingSubmit", 0) is OrderStatus.PENDING

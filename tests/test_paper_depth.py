"""The paper broker beyond the shown size (impact, cancel, rest) and its fees by option root,
on a real MarketState and the stepped SimClock of tests/test_paper.py."""

from __future__ import annotations

import pytest
from test_paper import CALL, PUT, SPY, Env, order

from kit.adapters.paper.broker import PaperConfig
from kit.core.model import Side
from kit.execution.broker import OrderStatus
from kit.execution.costs import fees_per_contract

BUY, SELL = Side.BUY, Side.SELL


async def test_a_50_lot_against_5_shown_walks_the_book_a_tick_a_level():
    e = Env()  # the default: depth="impact", 10 hidden levels
    e.quote(CALL, 10.0, 10.2, ask_size=5)
    await e.broker.place(order("big", [(CALL, 1)], BUY, 50))
    await e.wait()
    state = e.broker.order("big")
    assert (state.status, state.filled_qty) == (OrderStatus.FILLED, 50)
    # 5 at the touch, then 5 at each of 10.3 ... 11.1 (ticks of $0.10 above $3)
    expected = sum(5 * (10.2 + 0.1 * k) for k in range(10)) / 50
    assert state.avg_price == pytest.approx(expected) == pytest.approx(10.65)
    assert state.avg_price > 10.2  # no longer all at the touch
    (fill,) = e.fills("big")
    assert (fill.quantity, fill.price) == (50, pytest.approx(10.65))
    # the book it ate stays eaten until a new quote: the next buyer starts 10 ticks up
    await e.broker.place(order("next", [(CALL, 1)], BUY, 1))
    await e.wait()
    assert e.fills("next")[0].price == pytest.approx(11.2)
    await e.broker.close()


async def test_impact_stops_at_the_limit_and_the_rest_rests():
    e = Env()
    e.quote(CALL, 10.0, 10.2, ask_size=5)
    await e.broker.place(order("lim", [(CALL, 1)], BUY, 50, limit=10.45))
    await e.wait()
    state = e.broker.order("lim")
    assert (state.status, state.filled_qty) == (OrderStatus.PARTIAL, 15)  # 10.2, 10.3, 10.4
    assert state.avg_price == pytest.approx(10.3)
    assert e.broker.order("lim").order.limit_price == 10.45  # the rest works at its limit
    await e.broker.close()


async def test_impact_levels_are_capped_and_a_sell_never_walks_to_zero():
    e = Env(depth_levels=3)
    e.quote(CALL, 10.0, 10.2, ask_size=5)
    e.quote(PUT, 0.10, 0.15, bid_size=5)
    await e.broker.place(order("cap", [(CALL, 1)], BUY, 50))
    await e.broker.place(order("dump", [(PUT, 1)], SELL, 20))
    await e.wait()
    assert e.broker.order("cap").filled_qty == 20  # the touch and 3 levels of 5
    dump = e.broker.order("dump")
    # 5 at 0.10, 5 at 0.05 (ticks of $0.05 below $3); a level at 0.00 is no bid
    assert (dump.status, dump.filled_qty) == (OrderStatus.PARTIAL, 10)
    assert dump.avg_price == pytest.approx(0.075)
    await e.broker.close()


async def test_a_combo_walks_each_leg_and_the_legs_sum_to_the_net():
    e = Env()
    e.quote(PUT, 4.0, 4.2, bid_size=4)
    e.quote(CALL, 5.1, 5.3, bid_size=6)
    await e.broker.place(order("s", ((PUT, 1), (CALL, 1)), SELL, 10))
    await e.wait()
    put, call = e.fills("s")
    assert put.price == pytest.approx((4 * 4.0 + 4 * 3.9 + 2 * 3.8) / 10)
    assert call.price == pytest.approx((6 * 5.1 + 4 * 5.0) / 10)
    assert e.broker.order("s").avg_price == pytest.approx(put.price + call.price)
    await e.broker.close()


async def test_cancel_mode_fills_the_shown_size_and_cancels_the_rest():
    e = Env(depth="cancel")
    e.quote(CALL, 10.0, 10.2, ask_size=5)
    await e.broker.place(order("ibkr", [(CALL, 1)], BUY, 50))
    await e.wait()
    state = e.broker.order("ibkr")
    assert (state.status, state.filled_qty, state.avg_price) == (OrderStatus.CANCELLED, 5, 10.2)
    assert state.reason == "cancelled beyond the shown size"
    assert e.states("ibkr")[-2:] == [OrderStatus.PARTIAL, OrderStatus.CANCELLED]
    e.quote(CALL, 10.0, 10.2, ask_size=50)  # new size: a cancelled order takes none
    assert len(e.fills("ibkr")) == 1
    small = order("fits", [(CALL, 1)], BUY, 5)
    await e.broker.place(small)
    await e.wait()
    assert e.broker.order("fits").status is OrderStatus.FILLED  # within the size: no cancel
    await e.broker.close()


async def test_rest_mode_leaves_the_rest_working():
    e = Env(depth="rest")
    e.quote(CALL, 10.0, 10.2, ask_size=5)
    await e.broker.place(order("old", [(CALL, 1)], BUY, 50))
    await e.wait()
    state = e.broker.order("old")
    assert (state.status, state.filled_qty, state.avg_price) == (OrderStatus.PARTIAL, 5, 10.2)
    await e.broker.close()


async def round_trip(root_contract, **config) -> tuple[float, float]:
    """Sell 2 at 0.80, buy them back at 0.40: (commissions, net P&L of the account)."""
    e = Env(**config)
    e.quote(root_contract, 0.80, 0.90)
    await e.broker.place(order("open", [(root_contract, 1)], SELL, 2, limit=0.80))
    await e.wait()
    e.quote(root_contract, 0.30, 0.40)
    await e.broker.place(order("close", [(root_contract, 1)], BUY, 2, limit=0.40))
    await e.wait()
    acct = await e.broker.account()
    await e.broker.close()
    assert acct.realized_pnl == pytest.approx(2 * (0.80 - 0.40) * 100)
    return acct.commissions, acct.net_liquidation - 100_000


async def test_fees_by_root_and_pnl_net_of_fees():
    spx_fees, spx_pnl = await round_trip(PUT)  # SPXW, premium < $1: Cboe's $0.36 tier
    spy_fees, spy_pnl = await round_trip(SPY)
    spx_rate = 0.65 + 0.36 + 0.025 + 0.02815
    spy_rate = 0.65 + 0.025 + 0.02815
    assert fees_per_contract("SPXW", premium=0.8) == pytest.approx(spx_rate)
    assert spx_fees == pytest.approx(2 * round(2 * spx_rate, 2)) == pytest.approx(4.26)
    assert spy_fees == pytest.approx(2 * round(2 * spy_rate, 2)) == pytest.approx(2.82)
    assert spx_pnl == pytest.approx(80 - 4.26) and spy_pnl == pytest.approx(80 - 2.82)
    # an override drops the root's default fee and its premium tier
    fees, pnl = await round_trip(PUT, exchange_fees={"SPXW": 0.0})
    assert fees == pytest.approx(4 * 0.65) and pnl == pytest.approx(80 - 2.6)


def test_bad_depth_config_is_refused():
    with pytest.raises(ValueError, match="depth: one of impact, cancel, rest"):
        PaperConfig(depth="walk")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="depth_levels"):
        PaperConfig(depth_levels=-1)
    with pytest.raises(ValueError, match=r"exchange_fees\[SPX\]"):
        PaperConfig(exchange_fees={"SPX": -0.1})

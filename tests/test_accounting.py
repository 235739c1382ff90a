"""Honest position accounting: original vs net credit, the stop on the net credit after a debit
roll, partial closes, breakevens and worst loss with realised P&L, per-unit Greeks on filled units.

Expected numbers are worked out by hand in the comments (premium x 100 per SPX contract), not
read back from the code.
"""

import itertools
import math
from datetime import date, datetime

import numpy as np
import pytest
from test_order_manager import DAY, Env, chain_quotes, closing

from kit.core import payoff
from kit.core.clock import NEW_YORK, to_ns
from kit.core.model import (
    Action,
    ActionKind,
    Contract,
    Fill,
    Leg,
    Position,
    Quote,
    Right,
    Side,
    StrategyType,
)
from kit.core.model import UnderlyingTick as Tick
from kit.execution.intents import intent_for_action, open_intent
from kit.portfolio.book import Book
from kit.portfolio.market import MarketState
from kit.risk import checks
from kit.risk.rules import load_rules

EXPIRY = date(2024, 3, 15)
NOW = to_ns(datetime(2024, 3, 13, 12, 0, tzinfo=NEW_YORK))
P4900, P4950, P5000 = (Contract("SPXW", EXPIRY, k, Right.PUT) for k in (4900.0, 4950.0, 5000.0))
C5050 = Contract("SPXW", EXPIRY, 5050.0, Right.CALL)
_ids = itertools.count()


def fill(contract: Contract, side: str, qty: int, price: float, fee: float = 0.0) -> Fill:
    return Fill(f"f{next(_ids)}", "c", contract, Side(side), qty, price, NOW, commission=fee)


def quote(market: MarketState, contract: Contract, mid: float) -> None:
    market.on_quote(Quote(contract, mid - 0.05, mid + 0.05, 10.0, 10.0, NOW))


@pytest.fixture
def market() -> MarketState:
    m = MarketState()
    m.on_underlying(Tick("SPX", 5010.0, NOW))
    return m


def strangle(book: Book, put: Contract, puts: list[float], calls: list[float], qty: int = 2):
    """Open a ``qty``-lot strangle, one fill per price given (each for qty / len(prices))."""
    book.open(Position("S", StrategyType.STRANGLE, (Leg(put, -1), Leg(C5050, -1)), qty, NOW))
    for contract, prices in ((put, puts), (C5050, calls)):
        for px in prices:
            book.apply_fill(fill(contract, "sell", qty // len(prices), px), "S")


def roll_put(book: Book, old: Contract, new: Contract, back: float, sell: float, qty: int = 2):
    """The desk's roll: the record drops the old leg first, then the two fills arrive."""
    legs = (Leg(new, -1), Leg(C5050, -1))
    book.amend(Position("S", StrategyType.STRANGLE, legs, qty, NOW))
    book.apply_fill(fill(old, "buy", qty, back), "S")
    book.apply_fill(fill(new, "sell", qty, sell), "S")


def test_the_reference_roll_nets_1200_not_1310(market):
    book = Book(market)
    strangle(book, P4950, [2.10], [1.90, 1.80])  # 420 + 190 + 180 = 790
    roll_put(book, P4950, P5000, back=0.55, sell=2.60)  # -110 + 520
    v = book.view(NOW)
    assert v.original_credit[0] == pytest.approx(790.0, abs=0.005)
    assert v.net_credit[0] == pytest.approx(1200.0, abs=0.005)  # the old book said 1,310
    assert v.credit[0] == pytest.approx(1200.0, abs=0.005)  # no reduction: the same
    assert v.realized[0] == pytest.approx((2.10 - 0.55) * 200, abs=0.005)  # 310
    assert v.units[0] == 2.0
    # at expiry: the net credit is 6.00 points a unit around the 5000/5050 strikes
    prof = book.profile("S", NOW)
    assert prof.breakevens_expiry == pytest.approx([4994.0, 5056.0], abs=0.005)
    exact = payoff.expiry_breakevens(book.legs("S", NOW), book.banked("S"))
    assert exact == pytest.approx([4994.0, 5056.0], abs=1e-9)


def test_the_stop_after_a_debit_roll_fires_at_200pct_of_the_net_credit(market):
    book = Book(market)
    strangle(book, P4950, [2.60], [2.35])  # 520 + 470 = 990
    roll_put(book, P4950, P4900, back=2.50, sell=1.50)  # pays 500, collects 300: net 790
    v = book.view(NOW)
    assert v.net_credit[0] == pytest.approx(790.0) and v.credit[0] == pytest.approx(790.0)
    rules = load_rules()

    def stop_at(put_mid: float, call_mid: float) -> list:
        quote(market, P4900, put_mid)
        quote(market, C5050, call_mid)
        view = book.view(NOW)
        ctx = checks.Context(view, market, rules, NOW, NOW)
        return [f for f in checks.stop_loss(ctx) if f.alert.position_id == "S"], view

    # value 2 x (6.00 + 5.80) x 100 = 2,360: P&L 790 - 2,360 = -1,570, 199% of 790: no stop
    found, view = stop_at(6.00, 5.80)
    assert view.total_pnl[0] == pytest.approx(-1570.0) and not found
    # 2 x (6.00 + 5.91) x 100 = 2,382: P&L -1,592 <= -1,580 = 200% of 790: the stop fires
    # (the old book divided by 1,290 and waited for -2,580)
    found, view = stop_at(6.00, 5.91)
    assert view.total_pnl[0] == pytest.approx(-1592.0)
    assert view.pnl_pct[0] == pytest.approx(-1592.0 / 790 * 100)
    assert found and found[0].alert.inputs["credit"] == pytest.approx(790.0)


def test_fees_come_out_of_the_net_credit_not_the_original(market):
    book = Book(market)
    book.open(Position("S", StrategyType.STRANGLE, (Leg(P4950, -1), Leg(C5050, -1)), 1, NOW))
    book.apply_fill(fill(P4950, "sell", 1, 2.10, fee=1.50), "S")
    book.apply_fill(fill(C5050, "sell", 1, 1.90, fee=1.50), "S")
    v = book.view(NOW)
    assert v.original_credit[0] == pytest.approx(400.0)  # as quoted: 4.00 points
    assert v.net_credit[0] == pytest.approx(397.0)  # the cash
    assert v.credit[0] == pytest.approx(397.0)
    quote(market, P4950, 2.10)
    quote(market, C5050, 1.90)
    v = book.view(NOW)
    assert v.held_pnl[0] == pytest.approx(-3.0) and v.total_pnl[0] == pytest.approx(-3.0)
    # the breakevens and worst loss carry the fees paid
    assert payoff.expiry_breakevens(book.legs("S", NOW), book.banked("S")) == pytest.approx(
        [4950 - 3.97, 5050 + 3.97]
    )


def test_a_partial_close_keeps_the_credit_per_unit_of_the_units_held(market):
    book = Book(market)
    strangle(book, P4950, [1.50], [1.50])  # 2 lots for 600: 300 a lot
    # close half at a loss: buy 1 put at 4.00 and 1 call at 0.20 (the manager's reshape after)
    book.apply_fill(fill(P4950, "buy", 1, 4.00), "S")
    book.apply_fill(fill(C5050, "buy", 1, 0.20), "S")
    book.amend(book.held("S"))
    v = book.view(NOW)
    assert v.units[0] == 1.0
    assert v.original_credit[0] == pytest.approx(600.0)
    assert v.net_credit[0] == pytest.approx(600.0 - 420.0)  # cash: 180
    assert v.credit[0] == pytest.approx(300.0)  # the lot held, sold for 300
    assert v.realized[0] == pytest.approx(-250.0 + 130.0)  # the closed lot's -120
    quote(market, P4950, 1.50)
    quote(market, C5050, 1.50)
    v = book.view(NOW)
    assert v.held_pnl[0] == pytest.approx(0.0)  # the held lot is flat at its entry
    assert v.pnl_pct[0] == pytest.approx(0.0)  # the closed lot's loss does not stop the rest
    assert v.total_pnl[0] == pytest.approx(-120.0)  # while the position's P&L keeps it


def test_a_roll_then_a_partial_close_carries_half_of_the_roll(market):
    book = Book(market)
    strangle(book, P4950, [2.10], [1.90, 1.80])
    roll_put(book, P4950, P5000, back=0.55, sell=2.60)  # credit 1,200 over 2 units
    book.apply_fill(fill(P5000, "buy", 1, 2.60), "S")  # close one unit at its entry prices
    book.apply_fill(fill(C5050, "buy", 1, 1.85), "S")
    v = book.view(NOW)
    assert v.units[0] == 1.0
    assert v.credit[0] == pytest.approx(600.0)  # half of 1,200: 6.00 points a unit
    assert v.net_credit[0] == pytest.approx(1200.0 - 260.0 - 185.0)
    assert book.banked("S") == pytest.approx(155.0)  # half of the roll's 310
    exact = payoff.expiry_breakevens(book.legs("S", NOW), book.banked("S"))
    assert exact == pytest.approx([4994.0, 5056.0])  # the unit held breaks even where it did


def test_per_unit_greeks_divide_by_filled_units_not_ordered(market):
    book = Book(market)
    book.open(Position("S", StrategyType.STRANGLE, (Leg(P4950, -1), Leg(C5050, -1)), 10, NOW))
    book.apply_fill(fill(P4950, "sell", 3, 2.10), "S")
    book.apply_fill(fill(C5050, "sell", 5, 1.90), "S")
    quote(market, P4950, 6.00)
    quote(market, C5050, 12.00)
    market.refresh(None, NOW)
    v = book.view(NOW)
    assert v.units[0] == 4.0  # 8 contracts over 2 per unit; 10 were ordered
    # independent Black-Scholes delta at the market's implied vols
    rows = market.rows([P4950, C5050])
    t = float(market.years_to_expiry(rows, NOW)[0])
    r, q = float(market.rate[rows[0]]), float(market.div_yield[rows[0]])
    s = 5010.0

    def bs_delta(k: float, iv: float, call: bool) -> float:
        d1 = (math.log(s / k) + (r - q + iv * iv / 2) * t) / (iv * math.sqrt(t))
        n = 0.5 * (1 + math.erf(d1 / math.sqrt(2)))
        return math.exp(-q * t) * (n if call else n - 1)

    dp = bs_delta(4950.0, float(market.iv[rows[0]]), False)
    dc = bs_delta(5050.0, float(market.iv[rows[1]]), True)
    assert v.delta_unit[0] == pytest.approx((-3 * dp - 5 * dc) / 4, rel=1e-6)


def test_expiry_breakevens_are_exact_beyond_any_chart_grid():
    # a 1x2 call ratio: long 1 5000C at 30, short 2 5050C at 20 (a 10-point credit)
    legs = payoff.Legs(strike=[5000.0, 5050.0], is_call=[True, True], qty=[1.0, -2.0],
                       multiplier=[100.0, 100.0], entry_price=[30.0, 20.0],
                       T_years=[0.01, 0.01], iv=[0.2, 0.2])  # fmt: skip
    # below 5000: +10 points; peak at 5050: 60; then falls 1 point per point: zero at 5110
    assert payoff.expiry_breakevens(legs) == pytest.approx([5110.0])
    # with 1,500 banked from a roll: zero at 5125, and nothing below (all profit there)
    assert payoff.expiry_breakevens(legs, 1500.0) == pytest.approx([5125.0])
    # with 1,500 lost on a roll: the flat -5 points below 5000 crosses up at 5005
    assert payoff.expiry_breakevens(legs, -1500.0) == pytest.approx([5005.0, 5095.0])


def test_stress_loss_counts_what_the_group_banked():
    args = ([5000.0], [5000.0], [False], [-100.0], [10.0])
    # a short 5000 put sold at 10: at -10% (4500) it loses (500 - 10) x 100 = 49,000
    assert payoff.stress_loss(*args, 10.0)[0] == pytest.approx(49000.0)
    assert payoff.stress_loss(*args, 10.0, realized=[-1000.0])[0] == pytest.approx(50000.0)
    assert payoff.stress_loss(*args, 10.0, realized=np.array([60000.0]))[0] == 0.0


# --- through the desk: the order manager's roll and close half ---


async def test_the_desks_roll_is_an_adjustment_and_its_close_half_keeps_the_credit_per_unit():
    env = Env()
    strikes = {Right.PUT: [4925.0, 4950.0, 4975.0], Right.CALL: [5000.0, 5025.0, 5050.0]}
    put, call = Contract("SPXW", DAY, 4975.0, "P"), Contract("SPXW", DAY, 5025.0, "C")
    chain_quotes(env, strikes)
    try:
        pos = Position("S1", StrategyType.STRANGLE, (Leg(put, -1), Leg(call, -1)), 2,
                       env.clock.now_ns())  # fmt: skip
        await env.finish(env.manager.submit(open_intent(pos, "strat", "in")))
        env.spot = 4980.0  # the put is tested: the call is rolled down
        chain_quotes(env, strikes)
        action = Action(env.clock.now_ns(), ActionKind.ROLL_CALL, "delta", "test", "S1")
        intent = intent_for_action(action, env.desk.book, env.desk.market, "strat", "S1.r")
        rec = await env.finish(env.manager.submit(intent))
        assert rec.status == "done"
        fills = [e for e in env.events if isinstance(e, Fill)]
        cash = sum(f.cash_flow for f in fills)
        entry = sum(f.cash_flow + f.commission for f in fills if f.client_id.startswith("S1.open"))
        book, i = env.desk.book, env.desk.book.rows["S1"]
        v = book.view(env.clock.now_ns())
        assert any(f.commission > 0 for f in fills) and entry > 0
        assert v.net_credit[i] == pytest.approx(cash)  # the buy-back came out of it
        assert v.credit[i] == pytest.approx(cash)  # a roll is an adjustment: all of it is held
        assert v.original_credit[i] == pytest.approx(entry)  # the roll did not touch it
        assert v.units[i] == 2.0

        rec = await env.finish(env.manager.submit(closing(env, "S1", "strat", 0.5)))
        assert (rec.status, rec.filled) == ("done", 1)
        v = book.view(env.clock.now_ns())
        assert v.units[i] == 1.0
        assert v.credit[i] == pytest.approx(cash / 2)  # the lot held keeps its credit per unit
        fills = [e for e in env.events if isinstance(e, Fill)]
        assert v.net_credit[i] == pytest.approx(sum(f.cash_flow for f in fills))
    finally:
        await env.close()

"""Book: fills, average prices, realised and day P&L, per-unit Greeks, distances, risk, profile."""

import itertools
import math
from datetime import date, datetime

import numpy as np
import pytest

from kit.core.clock import NEW_YORK, NS_PER_S, expiry_time, to_ns
from kit.core.model import Contract, Fill, Leg, Position, Quote, Right, Side, StrategyType
from kit.core.model import UnderlyingTick as Tick
from kit.portfolio.book import Book, BookConfig, BookError
from kit.portfolio.market import MarketState

EXPIRY = date(2024, 3, 15)
NOW = to_ns(datetime(2024, 3, 12, 11, 0, tzinfo=NEW_YORK))  # 15:00 UTC
SPOT, SPY = 5100.0, 510.0
PUT = Contract("SPXW", EXPIRY, 4900.0, Right.PUT)
CALL = Contract("SPXW", EXPIRY, 5300.0, Right.CALL)
WING_PUT = Contract("SPXW", EXPIRY, 4850.0, Right.PUT)
WING_CALL = Contract("SPXW", EXPIRY, 5350.0, Right.CALL)
_ids = itertools.count()


def fill(contract: Contract, side: Side, qty: float, price: float, **kw) -> Fill:
    fid = kw.pop("fill_id", f"f{next(_ids)}")
    return Fill(fid, "c1", contract, side, qty, price, NOW, **kw)


def strangle(pid: str = "S", quantity: int = 1) -> Position:
    legs = (Leg(PUT, -1), Leg(CALL, -1))
    return Position(pid, StrategyType.STRANGLE, legs, quantity, NOW)


def condor(pid: str = "IC") -> Position:
    legs = (Leg(WING_PUT, 1), Leg(PUT, -1), Leg(CALL, -1), Leg(WING_CALL, 1))
    return Position(pid, StrategyType.IRON_CONDOR, legs, 1, NOW)


def mark(market: MarketState, contract: Contract, mid: float, ts: int = NOW) -> int:
    """A tight quote whose mid is ``mid``."""
    half = 0.02 * mid
    return market.on_quote(Quote(contract, mid - half, mid + half, 10.0, 10.0, ts))


@pytest.fixture
def market() -> MarketState:
    m = MarketState()
    m.on_underlying(Tick("SPX", SPOT, NOW))
    m.on_underlying(Tick("SPY", SPY, NOW))
    return m


@pytest.fixture
def book(market) -> Book:
    return Book(market)


def sold_strangle(book: Book, pid: str = "S", quantity: int = 1) -> None:
    book.open(strangle(pid, quantity))
    book.apply_fill(fill(PUT, Side.SELL, quantity, 10.0), pid)
    book.apply_fill(fill(CALL, Side.SELL, quantity, 12.0), pid)


def leg(book: Book, pid: str, contract: Contract) -> int:
    legs = book.legs_of(pid)
    return int(legs[book.leg_row[legs] == book.market.index[contract]][0])


# --- fills and P&L ---


def test_selling_a_strangle_collects_its_credit_and_marks_give_open_pnl(book, market):
    sold_strangle(book)
    v = book.view(NOW)
    assert v.ids == ["S"] and len(v) == 1
    assert v.credit[0] == pytest.approx(2200.0)
    assert v.open_pnl[0] == 0.0  # no marks yet: legs are flat at their price
    assert v.is_open[0]
    mark(market, PUT, 8.0)
    mark(market, CALL, 13.0)
    v = book.view(NOW)
    expected = -(8.0 - 10.0) * 100 - (13.0 - 12.0) * 100
    assert v.open_pnl[0] == pytest.approx(expected)
    assert v.total_pnl[0] == pytest.approx(expected)
    assert v.realized[0] == 0.0
    assert v.pnl_pct[0] == pytest.approx(expected / 2200 * 100)
    assert v.quantity[0] == 1 and v.underlying == ["SPX"] and v.spot[0] == SPOT


def test_peak_pct_keeps_the_best_pnl_pct_seen(book, market):
    sold_strangle(book)
    mark(market, PUT, 6.0)
    mark(market, CALL, 8.0)
    first = book.view(NOW)
    assert first.peak_pct[0] == pytest.approx(800 / 2200 * 100)
    mark(market, PUT, 11.0)
    mark(market, CALL, 13.0)
    v = book.view(NOW + 1)
    assert v.pnl_pct[0] == pytest.approx(-200 / 2200 * 100)
    assert v.peak_pct[0] == pytest.approx(800 / 2200 * 100)
    assert first.peak_pct[0] == pytest.approx(800 / 2200 * 100)  # views are snapshots


def test_partial_fills_move_the_weighted_average(book, market):
    book.open(strangle("S", 5))
    book.apply_fill(fill(PUT, Side.SELL, 3, 10.0), "S")
    book.apply_fill(fill(PUT, Side.SELL, 2, 11.0), "S")
    j = leg(book, "S", PUT)
    assert book.leg_qty[j] == -5
    assert book.leg_avg[j] == pytest.approx((3 * 10.0 + 2 * 11.0) / 5)
    assert book.view(NOW).credit[0] == pytest.approx(5200.0)
    mark(market, PUT, 9.0)
    assert book.view(NOW).open_pnl[0] == pytest.approx(-5 * (9.0 - 10.4) * 100)


def test_buying_back_part_realises_against_the_average(book, market):
    book.open(strangle("S", 5))
    book.apply_fill(fill(PUT, Side.SELL, 3, 10.0), "S")
    book.apply_fill(fill(PUT, Side.SELL, 2, 11.0), "S")
    book.apply_fill(fill(PUT, Side.BUY, 2, 7.0), "S")
    j = leg(book, "S", PUT)
    assert book.leg_qty[j] == -3
    assert book.leg_avg[j] == pytest.approx(10.4)
    v = book.view(NOW)
    assert v.realized[0] == pytest.approx((10.4 - 7.0) * 2 * 100)
    # a reduction: the 3 puts held keep their 10.40 each; the cash fell by the buy-back
    assert v.credit[0] == pytest.approx(3 * 10.4 * 100)
    assert v.net_credit[0] == pytest.approx(5200.0 - 2 * 7.0 * 100)
    assert v.original_credit[0] == pytest.approx(5200.0)  # the entry's, for good
    mark(market, PUT, 7.0)
    v = book.view(NOW)
    assert v.open_pnl[0] == pytest.approx(-3 * (7.0 - 10.4) * 100)
    assert v.total_pnl[0] == pytest.approx((10.4 - 7.0) * 5 * 100)


def test_crossing_through_zero_realises_the_short_and_opens_a_long(book):
    book.open(strangle("S", 5))
    book.apply_fill(fill(PUT, Side.SELL, 5, 11.0), "S")
    book.apply_fill(fill(PUT, Side.BUY, 7, 8.0), "S")
    j = leg(book, "S", PUT)
    assert book.leg_qty[j] == 2
    assert book.leg_avg[j] == pytest.approx(8.0)
    v = book.view(NOW)
    assert v.realized[0] == pytest.approx((11.0 - 8.0) * 5 * 100)
    assert v.credit[0] == pytest.approx(-2 * 8.0 * 100)  # what is held: 2 long at 8.00
    assert v.net_credit[0] == pytest.approx(5 * 11.0 * 100 - 7 * 8.0 * 100)
    assert v.original_credit[0] == pytest.approx(5 * 11.0 * 100)
    assert v.is_open[0]


def test_a_long_leg_realises_with_the_right_sign(book):
    book.open(condor())
    book.apply_fill(fill(WING_PUT, Side.BUY, 2, 3.0), "IC")
    book.apply_fill(fill(WING_PUT, Side.SELL, 1, 4.5), "IC")
    v = book.view(NOW)
    assert v.realized[0] == pytest.approx(150.0)
    assert v.original_credit[0] == pytest.approx(-600.0)  # a debit
    assert v.net_credit[0] == pytest.approx(-600.0 + 450.0)
    assert v.credit[0] == pytest.approx(-300.0)  # the one wing held, at 3.00
    assert book.leg_avg[leg(book, "IC", WING_PUT)] == pytest.approx(3.0)


def test_commission_reduces_realised_pnl(book):
    book.open(strangle())
    book.apply_fill(fill(PUT, Side.SELL, 1, 10.0, commission=1.25), "S")
    assert book.view(NOW).realized[0] == pytest.approx(-1.25)
    book.apply_fill(fill(PUT, Side.BUY, 1, 8.0, commission=1.25), "S")
    v = book.view(NOW)
    assert v.realized[0] == pytest.approx(200.0 - 2.5)
    assert v.day_pnl[0] == pytest.approx(200.0 - 2.5)


def test_a_duplicate_fill_id_is_ignored(book):
    book.open(strangle())
    f = fill(PUT, Side.SELL, 1, 10.0, fill_id="dup")
    assert book.apply_fill(f, "S") is True
    again = fill(PUT, Side.SELL, 1, 99.0, fill_id="dup")
    assert book.apply_fill(again, "S") is False
    assert book.leg_qty[leg(book, "S", PUT)] == -1
    assert book.view(NOW).credit[0] == pytest.approx(1000.0)
    assert len(book.fills) == 1


def test_fills_for_unknown_positions_or_legs_raise(book, market):
    book.open(strangle())
    other = Contract("SPXW", EXPIRY, 4800.0, Right.PUT)
    with pytest.raises(BookError, match="not a leg"):
        book.apply_fill(fill(other, Side.SELL, 1, 5.0, fill_id="x1"), "S")
    market.track(other)  # known to the market, still not a leg of S
    with pytest.raises(BookError, match="not a leg"):
        book.apply_fill(fill(other, Side.SELL, 1, 5.0, fill_id="x1"), "S")
    with pytest.raises(BookError, match="unknown position"):
        book.apply_fill(fill(PUT, Side.SELL, 1, 5.0, fill_id="x2"), "NOPE")
    # a rejected fill is not remembered: the same id applies once it is valid
    assert book.apply_fill(fill(PUT, Side.SELL, 1, 5.0, fill_id="x2"), "S") is True
    with pytest.raises(BookError, match="already exists"):
        book.open(strangle())


def test_fills_apply_to_their_own_position_only(book):
    sold_strangle(book, "A")
    book.open(strangle("B"))
    book.apply_fill(fill(PUT, Side.SELL, 1, 20.0), "B")
    assert book.leg_qty[leg(book, "A", PUT)] == -1
    assert book.leg_qty[leg(book, "B", PUT)] == -1
    assert book.leg_qty[leg(book, "B", CALL)] == 0
    v = book.view(NOW)
    assert v.credit.tolist() == pytest.approx([2200.0, 2000.0])


def test_a_position_with_all_legs_flat_is_closed(book):
    sold_strangle(book)
    book.apply_fill(fill(PUT, Side.BUY, 1, 5.0), "S")
    assert book.view(NOW).is_open[0]
    book.apply_fill(fill(CALL, Side.BUY, 1, 6.0), "S")
    v = book.view(NOW)
    assert not v.is_open[0]
    assert v.realized[0] == pytest.approx(1100.0)
    assert v.pnl_pct[0] == pytest.approx(50.0)
    assert book.leg_avg[book.legs_of("S")].tolist() == [0.0, 0.0]


def test_roll_day_restarts_day_pnl_from_current_marks(book, market):
    sold_strangle(book)
    mark(market, PUT, 8.0)
    mark(market, CALL, 11.0)
    assert book.view(NOW).day_pnl[0] == pytest.approx(300.0)
    book.roll_day()
    v = book.view(NOW)
    assert v.day_pnl[0] == 0.0
    assert v.total_pnl[0] == pytest.approx(300.0)
    mark(market, PUT, 7.0)
    mark(market, CALL, 10.0)
    assert book.view(NOW).day_pnl[0] == pytest.approx(200.0)
    book.apply_fill(fill(PUT, Side.BUY, 1, 7.0), "S")  # realises 300 in total, 100 of it today
    v = book.view(NOW)
    assert v.realized[0] == pytest.approx(300.0)
    assert v.day_pnl[0] == pytest.approx(200.0)
    assert v.total_pnl[0] == pytest.approx(500.0)
    book.roll_day()
    v = book.view(NOW)
    assert v.day_pnl[0] == 0.0  # today's realised resets
    assert v.realized[0] == pytest.approx(300.0)


def test_roll_day_keeps_the_reference_of_unmarked_legs(book, market):
    sold_strangle(book)
    mark(market, CALL, 11.0)  # the put has no mark
    book.roll_day()
    mark(market, PUT, 9.0)
    assert book.view(NOW).day_pnl[0] == pytest.approx(100.0)  # vs the 10.0 fill price


# --- Greeks ---


def refreshed(market: MarketState) -> None:
    for c, mid in ((PUT, 10.0), (CALL, 12.0), (WING_PUT, 7.0), (WING_CALL, 5.0)):
        mark(market, c, mid)
    market.refresh(None, NOW)
    assert np.isfinite(market.delta[: market.size]).all()


def test_per_unit_delta_and_gamma_do_not_depend_on_the_lot(book, market):
    sold_strangle(book, "one", 1)
    sold_strangle(book, "two", 2)
    refreshed(market)
    v = book.view(NOW)
    p, c = market.index[PUT], market.index[CALL]
    d = -(market.delta[p] + market.delta[c])
    assert v.delta_unit.tolist() == pytest.approx([d, d], rel=1e-12)
    assert d != 0
    gamma = -(market.gamma[p] + market.gamma[c]) * SPOT * 0.01
    assert v.gamma_unit.tolist() == pytest.approx([gamma, gamma], rel=1e-12)
    assert gamma < 0
    assert v.delta_shares.tolist() == pytest.approx([100 * d, 200 * d], rel=1e-12)


def test_gamma_move_pct_scales_gamma_unit(market):
    a, b = Book(market), Book(market, BookConfig(gamma_move_pct=2.0))
    for bk in (a, b):
        sold_strangle(bk)
    refreshed(market)
    assert b.view(NOW).gamma_unit[0] == pytest.approx(2 * a.view(NOW).gamma_unit[0])


def test_position_greeks_in_dollars_and_shares(book, market):
    sold_strangle(book)
    refreshed(market)
    v = book.view(NOW)
    rows = market.rows([PUT, CALL])
    for field, column in (
        ("theta_per_day", "theta_per_day"),
        ("vega_per_point", "vega_per_point"),
        ("vanna_shares", "vanna_per_point"),
        ("charm_shares", "charm_per_day"),
        ("delta_shares", "delta"),
    ):
        expected = -100 * getattr(market, column)[rows].sum()
        assert getattr(v, field)[0] == pytest.approx(expected, rel=1e-12), field
    assert v.theta_per_day[0] > 0 > v.vega_per_point[0]


def test_beta_delta_is_in_spy_shares(market):
    plain, halved = Book(market), Book(market, BookConfig(betas={"SPX": 0.5}))
    for bk in (plain, halved):
        sold_strangle(bk)
    refreshed(market)
    v = plain.view(NOW)
    assert v.beta_delta_spy[0] == pytest.approx(v.delta_shares[0] * SPOT * 1.0 / SPY)
    assert v.beta_delta_spy[0] == pytest.approx(10 * v.delta_shares[0])
    assert halved.view(NOW).beta_delta_spy[0] == pytest.approx(5 * v.delta_shares[0])
    market.on_underlying(Tick("SPY", 2 * SPY, NOW + 1))
    assert plain.view(NOW).beta_delta_spy[0] == pytest.approx(5 * v.delta_shares[0])


def test_legs_without_greeks_add_nothing(book):
    sold_strangle(book)
    v = book.view(NOW)
    for name in ("delta_unit", "gamma_unit", "delta_shares", "theta_per_day", "vega_per_point"):
        assert getattr(v, name)[0] == 0.0, name


# --- distances, staleness, expiries ---


@pytest.mark.parametrize(
    ("spot", "tested", "dist"),
    [
        (4950.0, 1, 50 / 4950 * 100),  # near the put
        (5250.0, -1, 50 / 5250 * 100),  # near the call
        (4850.0, 1, -50 / 4850 * 100),  # put breached: negative distance
        (5400.0, -1, -100 / 5400 * 100),
    ],
)
def test_short_distance_and_tested_side(book, market, spot, tested, dist):
    sold_strangle(book)
    market.on_underlying(Tick("SPX", spot, NOW + 1))
    v = book.view(NOW + 1)
    assert v.tested[0] == tested
    assert v.short_dist_pct[0] == pytest.approx(dist)


def test_without_short_legs_nothing_is_tested(book):
    book.open(condor())
    book.apply_fill(fill(WING_PUT, Side.BUY, 1, 3.0), "IC")
    v = book.view(NOW)
    assert v.tested[0] == 0
    assert v.short_dist_pct[0] == math.inf


def test_stale_and_max_spread_pct(book, market):
    sold_strangle(book)
    v = book.view(NOW)
    assert v.stale[0]  # no marks at all
    assert v.max_spread_pct[0] == np.inf  # no two-sided quote: infinite, not 1.8e308
    mark(market, PUT, 10.0)  # 4 % spread
    market.on_quote(Quote(CALL, 11.7, 12.3, 10.0, 10.0, NOW))  # 5 % spread
    v = book.view(NOW)
    assert not v.stale[0]
    assert v.max_spread_pct[0] == pytest.approx(5.0)
    market.on_quote(Quote(CALL, 10.0, 14.0, 10.0, 10.0, NOW + 1))  # wide: 4.0 on mark 12.0
    v = book.view(NOW + 1)
    assert v.stale[0]
    assert v.max_spread_pct[0] == pytest.approx(4.0 / 12.0 * 100)
    book.apply_fill(fill(CALL, Side.BUY, 1, 12.0), "S")  # a flat leg no longer counts
    v = book.view(NOW + 1)
    assert not v.stale[0]
    assert v.max_spread_pct[0] == pytest.approx(4.0)


def test_nearest_expiry_counts_only_legs_with_contracts(book):
    near = Contract("SPXW", date(2024, 3, 13), 5100.0, Right.CALL)
    far = Contract("SPXW", date(2024, 3, 22), 5100.0, Right.CALL)
    legs = (Leg(near, -1), Leg(far, 1))
    book.open(Position("CAL", StrategyType.RATIO_CALENDAR, legs, 1, NOW))
    assert book.view(NOW).nearest_expiry_ns[0] == math.inf
    book.apply_fill(fill(near, Side.SELL, 1, 20.0), "CAL")
    book.apply_fill(fill(far, Side.BUY, 1, 40.0), "CAL")
    assert book.view(NOW).nearest_expiry_ns[0] == to_ns(expiry_time(near))
    book.apply_fill(fill(near, Side.BUY, 1, 15.0), "CAL")
    assert book.view(NOW).nearest_expiry_ns[0] == to_ns(expiry_time(far))


# --- risk and profile ---


def test_iron_condor_risk_is_width_minus_credit(book):
    book.open(condor())
    for c, side, price in (
        (WING_PUT, Side.BUY, 3.0),
        (PUT, Side.SELL, 6.0),
        (CALL, Side.SELL, 7.0),
        (WING_CALL, Side.BUY, 4.0),
    ):
        book.apply_fill(fill(c, side, 1, price), "IC")
    v = book.view(NOW)
    assert v.credit[0] == pytest.approx(600.0)
    assert v.risk[0] == pytest.approx(50 * 100 - 600.0)


def test_short_strangle_risk_is_the_worst_loss_within_ten_percent(book, market):
    sold_strangle(book)
    market.on_underlying(Tick("SPX", 5000.0, NOW + 1))
    v = book.view(NOW + 1)
    low, high = 5000.0 * 0.9, 5000.0 * 1.1
    at_low = -(PUT.strike - low - 10.0) * 100 + 12.0 * 100
    at_high = -(high - CALL.strike - 12.0) * 100 + 10.0 * 100
    assert v.risk[0] == pytest.approx(-min(at_low, at_high))
    assert v.risk[0] == pytest.approx(37800.0)


def test_risk_is_zero_when_no_move_loses(book, market):
    book.open(condor())
    book.apply_fill(fill(WING_CALL, Side.BUY, 1, 0.0), "IC")  # a free call cannot lose
    sold_strangle(book, "S")
    v = book.view(NOW)
    assert v.risk[0] == 0.0
    assert v.risk[1] > 0


def test_risk_is_per_position(book):
    sold_strangle(book, "A")
    book.open(condor())
    for c, side, price in (
        (WING_PUT, Side.BUY, 3.0),
        (PUT, Side.SELL, 6.0),
        (CALL, Side.SELL, 7.0),
        (WING_CALL, Side.BUY, 4.0),
    ):
        book.apply_fill(fill(c, side, 1, price), "IC")
    sold_strangle(book, "B", 2)
    v = book.view(NOW)
    single = v.risk[0]
    assert single > 5000
    assert v.risk[1] == pytest.approx(4400.0)
    assert v.risk[2] == pytest.approx(2 * single)


def test_profile_of_a_strangle(book, market):
    sold_strangle(book)
    prof = book.profile("S", NOW)
    assert len(prof.grid) == 201 == len(prof.pnl_expiry) == len(prof.pnl_t0)
    assert prof.grid[100] == pytest.approx(SPOT)
    assert prof.breakevens_expiry.tolist() == pytest.approx([4900 - 22, 5300 + 22])
    assert prof.extremes.max_pnl == pytest.approx(2200.0)
    assert prof.extremes.unbounded_loss_below and prof.extremes.unbounded_loss_above
    # without market IVs the legs use 20 %; the expected move follows from that and the days left
    days = (to_ns(expiry_time(PUT)) - NOW) / NS_PER_S / 86400
    assert prof.expected_move == pytest.approx(SPOT * 0.2 * math.sqrt(days / 365), rel=1e-9)
    legs = book.legs("S", NOW)
    assert legs.qty.tolist() == [-1.0, -1.0]
    assert legs.entry_price.tolist() == [10.0, 12.0]
    refreshed(market)
    assert book.legs("S", NOW).iv.tolist() == pytest.approx(
        market.iv[market.rows([PUT, CALL])].tolist()
    )


def test_an_empty_book_has_an_empty_view(book):
    v = book.view(NOW)
    assert len(v) == 0
    assert v.risk.shape == v.delta_unit.shape == v.tested.shape == (0,)


def test_wings_that_never_filled_leave_the_strangle_it_was(book):
    """Add Protection amends the record to a condor before its fills; superseded before any
    wing filled, the position is still a strangle (not a CUSTOM record with empty wings)."""
    sold_strangle(book, "S", 2)
    book.amend(Position("S", StrategyType.IRON_CONDOR, condor("S").legs, 2, NOW))
    held = book.held("S")
    assert held is not None and held.strategy is StrategyType.STRANGLE
    assert [leg.contract for leg in held.legs] == [PUT, CALL] and held.quantity == 2
    book.apply_fill(fill(WING_PUT, Side.BUY, 2, 1.0), "S")
    assert book.held("S").strategy is StrategyType.CUSTOM  # one wing filled: no named shape
    book.apply_fill(fill(WING_CALL, Side.BUY, 2, 1.0), "S")
    assert book.held("S").strategy is StrategyType.IRON_CONDOR


def test_a_held_mark_never_blinds_the_stop(book, market):
    """A put's quote goes wide (the market keeps its last good mark): P&L % still reads the
    held mark, but the stop reads what closing the leg would cost now, the ask."""
    from kit.core.model import Quote
    from kit.risk.checks import Context, stop_loss
    from kit.risk.rules import load_rules

    sold_strangle(book, "S", 1)  # put 10.00, call 12.00: credit $2,200
    mark(market, PUT, 10.0)
    mark(market, CALL, 12.0)
    market.on_quote(Quote(PUT, 5.0, 60.0, 10.0, 10.0, NOW + 1))  # wide: the mark is held
    v = book.view(NOW + 1)
    assert v.pnl_pct[0] == pytest.approx(0.0, abs=1e-9)
    assert v.stop_pct[0] == pytest.approx((10.0 - 60.0) * 100 / 2200 * 100)  # -227%
    found = stop_loss(Context(v, market, load_rules(), NOW + 1, NOW + 1))
    assert [f.rule for f in found] == ["stop_loss"] and "227%" in found[0].alert.message
    mark(market, PUT, 10.0, NOW + 2)  # a tight quote again: the stop reads the mark
    assert book.view(NOW + 2).stop_pct[0] == pytest.approx(0.0, abs=1e-9)

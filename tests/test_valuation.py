"""The book's cached valuation (kit.portfolio.valuation) against an uncached one, bit for bit,
through quotes, fills, spot moves, a new position, an amendment and a new day."""

import itertools
from dataclasses import fields
from datetime import date, datetime

import numpy as np
import pytest

from kit.core.clock import NEW_YORK, to_ns
from kit.core.model import Contract, Fill, Leg, Position, Quote, Side, StrategyType
from kit.core.model import UnderlyingTick as Tick
from kit.portfolio import jit_switch
from kit.portfolio.book import Book
from kit.portfolio.market import MarketState
from kit.portfolio.valuation import PositionView, Valuation, compile_tick_path

EXPIRY = date(2024, 3, 15)
NOW = to_ns(datetime(2024, 3, 12, 11, 0, tzinfo=NEW_YORK))
_ids = itertools.count()


def _c(strike: float, right: str) -> Contract:
    return Contract("SPXW", EXPIRY, strike, right)


def _same(book: Book, now: int) -> PositionView:
    """The book's (cached, compiled) view equals one computed from scratch in NumPy, NaN and
    -0.0 included."""
    fresh = Valuation(book)
    fresh._legs = fresh._legs_numpy  # type: ignore[method-assign]  # the reference
    got, ref = book.view(now), fresh.view(now)
    for f in fields(PositionView):
        a, b = getattr(got, f.name), getattr(ref, f.name)
        if isinstance(a, np.ndarray):
            assert np.array_equal(a, b, equal_nan=True), f.name
            if a.dtype.kind == "f":
                assert np.array_equal(np.signbit(a), np.signbit(b)), f.name
        else:
            assert a == b, f.name
    return got


def _fill(book: Book, pid: str, c: Contract, side: Side, qty: float, px: float) -> None:
    book.apply_fill(Fill(f"f{next(_ids)}", pid, c, side, qty, px, NOW, commission=0.65), pid)


def test_cached_view_equals_a_fresh_one_through_the_book_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jit_switch, "ON", False)
    assert compile_tick_path()  # numba is in the dev extra: the compiled loop is compared
    m = MarketState()
    m.on_underlying(Tick("SPX", 5000.0, NOW))
    m.on_underlying(Tick("SPY", 500.0, NOW))
    book = Book(m)
    strikes = [(4900.0, "P"), (5100.0, "C"), (4850.0, "P"), (5150.0, "C")]
    for k, r in strikes:
        m.on_quote(Quote(_c(k, r), 4.0, 4.2, 5, 5, NOW))
    m.refresh(None, NOW)
    legs = tuple(Leg(_c(k, r), -1 if i < 2 else 1) for i, (k, r) in enumerate(strikes))
    book.open(Position("IC", StrategyType.IRON_CONDOR, legs, 2, NOW))
    book.open(Position("S", StrategyType.STRANGLE, legs[:2], 1, NOW))
    _same(book, NOW)  # nothing filled yet
    for leg in legs:
        _fill(book, "IC", leg.contract, Side.SELL if leg.ratio < 0 else Side.BUY, 2, 4.1)
    _fill(book, "S", legs[0].contract, Side.SELL, 1, 4.1)
    t = NOW
    for step in range(40):
        t += 1_000_000
        k, r = strikes[step % 4]
        mid = 4.1 + 0.05 * ((step * 7) % 9 - 4)
        wide = 2.0 if step % 11 == 0 else 0.1  # now and then a wide quote: the mark is held
        m.on_quote(Quote(_c(k, r), mid - wide, mid + wide, 5, 5, t))
        if step % 5 == 0:
            m.on_underlying(Tick("SPX", 5000.0 + step, t))
        m.refresh(np.arange(m.size), t)
        if step == 10:
            _fill(book, "S", legs[1].contract, Side.SELL, 1, 4.0)
        if step == 20:
            _fill(book, "IC", legs[0].contract, Side.BUY, 1, 3.5)  # close half of a leg
        if step == 25:
            book.open(Position("P", StrategyType.CUSTOM, (Leg(_c(4800.0, "P"), -1),), 1, t))
            _fill(book, "P", _c(4800.0, "P"), Side.SELL, 1, 1.0)
        if step == 30:
            book.amend(
                Position("S", StrategyType.CUSTOM, (legs[0], Leg(_c(5200.0, "C"), -1)), 1, t)
            )
        if step == 35:
            book.roll_day()
        view = _same(book, t)
    assert len(view) == 3 and view.units[0] > 0
    assert view.stale.any() or view.max_spread_pct.max() > 0  # the wide quotes were seen


def test_short_delta_is_the_largest_short_legs_own_delta() -> None:
    """What ``leg_delta`` (the grid's exit_delta) reads: long legs never count, a position
    without a short leg has none (NaN)."""
    m = MarketState()
    m.on_underlying(Tick("SPX", 5000.0, NOW))
    for k, r in ((4900.0, "P"), (4950.0, "P"), (5100.0, "C")):
        m.on_quote(Quote(_c(k, r), 20.0, 20.4, 5, 5, NOW))
    m.refresh(None, NOW)
    book = Book(m)
    ratio = (Leg(_c(4950.0, "P"), 1), Leg(_c(4900.0, "P"), -2))  # the long leg's |delta| is larger
    book.open(Position("R", StrategyType.CUSTOM, ratio, 1, NOW))
    book.open(Position("L", StrategyType.CUSTOM, (Leg(_c(5100.0, "C"), 1),), 1, NOW))
    _fill(book, "R", _c(4950.0, "P"), Side.BUY, 1, 20.2)
    _fill(book, "R", _c(4900.0, "P"), Side.SELL, 2, 20.2)
    _fill(book, "L", _c(5100.0, "C"), Side.BUY, 1, 20.2)
    view = _same(book, NOW)
    rows = {c: m.index[c] for c in (_c(4900.0, "P"), _c(4950.0, "P"))}
    d_short, d_long = abs(m.delta[rows[_c(4900.0, "P")]]), abs(m.delta[rows[_c(4950.0, "P")]])
    assert 0 < d_short < d_long < 1
    assert view.short_delta[0] == d_short and np.isnan(view.short_delta[1])

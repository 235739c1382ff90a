"""Delta and gamma in 1-sigma units (kit.risk.tenor): the same strangle reads the same at 0 and at
45 days to expiry, the at-the-money IV comes from the expiry's own quotes, and the levels are
validated as deltas per unit."""

from __future__ import annotations

import math
from datetime import date, datetime

import numpy as np
import pytest

from kit.core.clock import NEW_YORK, NS_PER_S, expiry_time, to_ns
from kit.core.config import ConfigError
from kit.core.model import Contract, Fill, Leg, Position, Quote, Right, Side, StrategyType
from kit.core.model import UnderlyingTick as Tick
from kit.core.payoff import expected_move
from kit.core.pricing import greeks
from kit.portfolio.book import Book
from kit.portfolio.market import MarketState
from kit.risk import checks as risk
from kit.risk.rules import load_rules
from kit.risk.tenor import FRESH_S, atm_iv, sigma_greeks

NOW = to_ns(datetime(2024, 3, 12, 10, 0, tzinfo=NEW_YORK))  # 6 hours before a 0DTE's close
SPOT, IV, R, Q = 5000.0, 0.15, 0.045, 0.013
TENORS = {"0DTE": date(2024, 3, 12), "45DTE": date(2024, 4, 26)}


def _years(expiry: date) -> float:
    return (to_ns(expiry_time(Contract("SPXW", expiry, SPOT, Right.CALL))) - NOW) / (
        365 * 86400 * NS_PER_S
    )


def _quote(m: MarketState, c: Contract, iv: float, ts: int = NOW, spot: float = SPOT) -> None:
    """A one-cent market around the Black-Scholes price at ``iv`` (the desk inverts it back)."""
    price = float(greeks(spot, c.strike, _years(c.expiry), R, Q, iv, c.is_call).price)
    m.on_quote(Quote(c, price - 0.005, price + 0.005, 10.0, 10.0, ts))


def _strangle_book(expiry: date, z: float = 1.15) -> tuple[Book, MarketState]:
    """A one-lot short strangle with both strikes z standard deviations out (|delta| ~0.125)."""
    m = MarketState()
    m.on_underlying(Tick("SPX", SPOT, NOW))
    width = IV * math.sqrt(_years(expiry))
    put = Contract("SPXW", expiry, round(SPOT * math.exp(-z * width), 2), Right.PUT)
    call = Contract("SPXW", expiry, round(SPOT * math.exp(z * width), 2), Right.CALL)
    for c in (put, call):
        _quote(m, c, IV)
    book = Book(m)
    book.open(Position("S", StrategyType.STRANGLE, (Leg(put, -1), Leg(call, -1)), 1, NOW))
    for i, c in enumerate((put, call)):
        price = float(m.mark[m.index[c]])
        book.apply_fill(Fill(f"f{i}", "S", c, Side.SELL, 1, price, NOW), "S")
    m.refresh(None, NOW)
    return book, m


def test_a_strangle_reads_the_same_at_0dte_and_45dte_in_sigma_units():
    metrics = {}
    for name, expiry in TENORS.items():
        book, m = _strangle_book(expiry)
        view = book.view(NOW)
        s = sigma_greeks(view, m, NOW)
        assert s.atm_iv[0] == pytest.approx(IV, abs=1e-4)  # the legs bracket the money
        days = _years(expiry) * 365
        assert s.move_pct[0] == pytest.approx(expected_move(100.0, IV, days), rel=1e-3)
        metrics[name] = (abs(view.gamma_unit[0]), s.gamma_1s[0], s.delta_1s[0])
    per_1pct = metrics["0DTE"][0] / metrics["45DTE"][0]
    assert per_1pct > 10  # the old unit: a 1% move is ~2.5 sd of a 0DTE's day, ~0.3 of 45 days
    for _, gamma_1s, delta_1s in metrics.values():
        assert 0.35 < gamma_1s < 0.5  # 2 x phi(1.15) = 0.41 for a strike pair 1.15 sd out
        # centred (log-symmetric strikes carry a little delta over 45 days: the sigma^2/2 drift)
        assert delta_1s < 0.15
    assert metrics["0DTE"][1] == pytest.approx(metrics["45DTE"][1], rel=0.08)
    rules = load_rules()  # a centred strangle trips neither rule's first level
    assert max(d for _, _, d in metrics.values()) < rules.delta.levels[0].at
    assert max(g for _, g, _ in metrics.values()) < rules.gamma.levels[0].at


def _neutral_spot(m: MarketState, rows: np.ndarray, expiry: date, spot: float) -> float:
    """Where the legs' net delta is zero, by bisection on an exact reprice (pricing module)."""

    def net(s: float) -> float:
        d = greeks(s, m.strike[rows], _years(expiry), R, Q, m.iv[rows], m.is_call[rows]).delta
        return float(-np.sum(d))  # short legs

    lo, hi = spot * 0.7, spot * 1.3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if net(mid) * net(lo) > 0 else (lo, mid)
    return 0.5 * (lo + hi)


@pytest.mark.parametrize("expiry", TENORS.values())
def test_delta_1s_is_the_distance_to_delta_neutral_in_sigmas(expiry):
    """delta_1s is first order (|delta| / gamma_1s); the reference finds the delta-neutral spot
    by repricing both legs with the pricing module and measures spot's distance to it in 1-sigma
    moves."""
    book, m = _strangle_book(expiry)
    rows = book.leg_row[book.legs_of("S")]
    width = IV * math.sqrt(_years(expiry))
    for shift in (0.0, 0.4, 0.8):  # spot walks towards the put, in sigmas of the time left
        spot = SPOT * math.exp(-shift * width)
        m.on_underlying(Tick("SPX", spot, NOW))
        for c in m.contracts:  # the market moves with spot: quotes at the same 15% IV
            _quote(m, c, IV, spot=spot)
        m.refresh(None, NOW)
        view = book.view(NOW)
        s = sigma_greeks(view, m, NOW)
        exact = abs(_neutral_spot(m, rows, expiry, spot) / spot - 1) * 100 / s.move_pct[0]
        assert s.delta_1s[0] == pytest.approx(exact, abs=0.1 + 0.25 * exact), shift
    assert s.delta_1s[0] > load_rules().delta.levels[0].at  # 0.8 sigma off: past the warning


def test_atm_iv_interpolates_at_spot_from_fresh_quotes_and_falls_back_to_stale_ones():
    m = MarketState()
    m.on_underlying(Tick("SPX", SPOT, NOW))
    expiry = TENORS["45DTE"]
    put = Contract("SPXW", expiry, 4900.0, Right.PUT)
    call = Contract("SPXW", expiry, 5150.0, Right.CALL)
    atm = Contract("SPXW", expiry, 5000.0, Right.CALL)
    for c, iv in ((put, 0.20), (call, 0.12)):
        _quote(m, c, iv)
    stale = NOW - int((FRESH_S + 1) * NS_PER_S)
    _quote(m, atm, 0.50, ts=stale)  # a strike nobody quoted for minutes: its IV is history
    m.refresh(None, NOW)
    und, exp_ns = m.underlyings["SPX"], float(m.expiry_ns[m.index[put]])
    # linear in strike between 4900 (0.20) and 5150 (0.12) at 5000: 0.20 - 0.08 x 100/250
    assert atm_iv(m, und, exp_ns, SPOT, NOW) == pytest.approx(0.168, abs=1e-4)
    only_stale = MarketState()
    only_stale.on_underlying(Tick("SPX", SPOT, NOW))
    _quote(only_stale, atm, 0.50, ts=stale)
    only_stale.refresh(None, NOW)
    assert atm_iv(only_stale, und, exp_ns, SPOT, NOW) == pytest.approx(0.50, abs=1e-4)
    assert math.isnan(atm_iv(MarketState(), 0, exp_ns, SPOT, NOW))  # nothing priced


def test_rules_fire_on_the_sigma_metric_and_carry_its_inputs():
    book, m = _strangle_book(TENORS["0DTE"], z=0.3)  # strikes 0.3 sd out: as convex as a straddle
    view = book.view(NOW)
    ctx = risk.Context(view, m, load_rules(), NOW, NOW)
    s = ctx.sigma
    assert s.gamma_1s[0] > 0.6  # 2 x phi(0.3) = 0.76
    findings = risk.gamma(ctx)
    levels = [
        lv.at
        for lv in load_rules().gamma.levels
        if lv.at <= s.gamma_1s[0] and not lv.profitable_only
    ]  # flat P&L: no reduce yet
    assert [f.alert.key for f in findings] == [f"{at:g}" for at in levels]
    inputs = findings[0].alert.inputs
    assert inputs["gamma_1s"] == pytest.approx(s.gamma_1s[0], abs=1e-6)
    assert inputs["move_pct"] == pytest.approx(s.move_pct[0], abs=1e-6)
    assert "1σ move" in findings[0].alert.message
    # no IV at the expiry: the metric is unknown and the rules stay silent (not a zero)
    blind = MarketState()
    blind.on_underlying(Tick("SPX", SPOT, NOW))
    assert risk.gamma(risk.Context(view, blind, load_rules(), NOW, NOW)) == []
    assert risk.delta(risk.Context(view, blind, load_rules(), NOW, NOW)) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"delta": {"levels": [{"at": 60, "severity": "WARNING"}]}},
         r"delta.levels\[0\].at: a level in 1-sigma units, > 0 and <= 3 \(0.60, not 60\), "
         r"got 60"),
        ({"gamma": {"levels": [{"at": 0.0, "severity": "WARNING"}]}},
         r"gamma.levels\[0\].at: a level in 1-sigma units"),
        ({"gamma": {"levels": [{"at": -0.5, "severity": "WARNING"}]}}, r"gamma.levels\[0\].at"),
        ({"delta": {"levels": [{"at": math.nan, "severity": "WARNING"}]}},
         r"delta.levels\[0\].at: must be a finite number"),
        ({"delta": {"levels": [{"at": 0.6, "severity": "WARNING"},
                               {"at": math.inf, "severity": "CRITICAL"}]}},
         r"delta.levels\[1\].at: must be a finite number"),
    ],
)  # fmt: skip
def test_sigma_levels_are_finite_positive_fractions(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_rules(overrides=overrides)

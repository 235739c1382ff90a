import math

import numpy as np
import pytest
import QuantLib as ql
from hypothesis import given
from hypothesis import strategies as st
from reference_pricing import bsm

from kit.core import pricing
from kit.core.pricing import (
    IVStatus,
    black76_greeks,
    black76_implied_vol,
    black76_price,
    greeks,
    implied_vol,
    price,
)

GREEKS = ("price", "delta", "gamma", "theta", "vega", "rho", "vanna", "charm", "vomma")


# --- reference values ---


def test_hull_textbook_call():
    # Hull, Options Futures and Other Derivatives: S 49, K 50, T 20 weeks, r 5%, sigma 20%
    g = greeks(49.0, 50.0, 0.3846, 0.05, 0.0, 0.20, True)
    assert round(float(g.price), 4) == 2.4005
    assert round(float(g.delta), 4) == 0.5216
    assert round(float(g.gamma), 4) == 0.0655
    assert round(float(g.vega), 3) == 12.105
    assert round(float(g.theta), 4) == -4.3054
    assert round(float(g.rho), 4) == 8.9066
    assert g.theta_per_day == pytest.approx(-4.3054 / 365, abs=1e-6)
    assert g.vega_per_point == pytest.approx(0.12105, abs=1e-5)


def test_haug_textbook_put():
    # Haug, The Complete Guide to Option Pricing Formulas: generalised BSM put with yield
    assert round(float(price(100.0, 95.0, 0.5, 0.10, 0.05, 0.20, False)), 4) == 2.4648


def _quantlib(S, K, days, r, q, sigma, is_call):
    today = ql.Date(15, 1, 2024)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(S)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, q, dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), sigma, dc)),
    )
    option = ql.EuropeanOption(
        ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, K),
        ql.EuropeanExercise(today + int(days)),
    )
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return option.NPV(), option.delta(), option.gamma(), option.theta(), option.vega(), option.rho()


def test_matches_quantlib_analytic_engine_on_random_inputs():
    rng = np.random.default_rng(7)
    n = 400
    S = rng.uniform(20, 200, n)
    K = S * np.exp(rng.uniform(-0.5, 0.5, n))
    days = rng.integers(1, 3 * 365, n)
    r, q = rng.uniform(-0.01, 0.08, n), rng.uniform(0.0, 0.05, n)
    sigma = rng.uniform(0.05, 1.2, n)
    is_call = rng.random(n) < 0.5
    g = greeks(S, K, days / 365.0, r, q, sigma, is_call)
    ref = np.array(
        [_quantlib(*args) for args in zip(S, K, days, r, q, sigma, is_call, strict=True)]
    )
    for col, name in enumerate(("price", "delta", "gamma", "theta", "vega", "rho")):
        err = np.abs(getattr(g, name) - ref[:, col])
        assert err.max() <= 1e-10, f"{name}: max abs error {err.max():.3e} vs QuantLib"


@given(
    S=st.floats(1.0, 1e4),
    moneyness=st.floats(-1.0, 1.0),
    T=st.floats(1e-4, 5.0),
    r=st.floats(-0.02, 0.2),
    q=st.floats(0.0, 0.1),
    sigma=st.floats(0.01, 3.0),
    is_call=st.booleans(),
)
def test_vectorised_matches_the_scalar_reference(S, moneyness, T, r, q, sigma, is_call):
    K = S * math.exp(moneyness)
    ref = bsm(S, K, T, r, q, sigma, is_call)
    g = greeks(S, K, T, r, q, sigma, is_call)
    for name in GREEKS:
        scale = max(1.0, abs(ref[name]), S / 100)
        assert abs(float(getattr(g, name)) - ref[name]) <= 1e-10 * scale, name
    assert float(price(S, K, T, r, q, sigma, is_call)) == float(g.price)


@pytest.mark.parametrize("is_call", [True, False])
@pytest.mark.parametrize(
    ("S", "K", "T", "sigma"),
    [(100, 100, 0.5, 0.25), (100, 80, 0.1, 0.4), (4800, 5000, 7 / 365, 0.15)],
)
def test_second_order_greeks_agree_with_finite_differences(S, K, T, sigma, is_call):
    r, q = 0.045, 0.013
    g = greeks(S, K, T, r, q, sigma, is_call)

    def at(**kw):
        args = {"S": S, "K": K, "T": T, "r": r, "q": q, "sigma": sigma} | kw
        return greeks(args["S"], args["K"], args["T"], args["r"], args["q"], args["sigma"], is_call)

    hs, ht, hv = 1e-4 * S, 1e-5, 1e-5
    fd = {
        "delta": (at(S=S + hs).price - at(S=S - hs).price) / (2 * hs),
        "gamma": (at(S=S + hs).delta - at(S=S - hs).delta) / (2 * hs),
        "vega": (at(sigma=sigma + hv).price - at(sigma=sigma - hv).price) / (2 * hv),
        "theta": -(at(T=T + ht).price - at(T=T - ht).price) / (2 * ht),
        "rho": (at(r=r + hv).price - at(r=r - hv).price) / (2 * hv),
        "vanna": (at(sigma=sigma + hv).delta - at(sigma=sigma - hv).delta) / (2 * hv),
        "charm": -(at(T=T + ht).delta - at(T=T - ht).delta) / (2 * ht),
        "vomma": (at(sigma=sigma + hv).vega - at(sigma=sigma - hv).vega) / (2 * hv),
    }
    for name, value in fd.items():
        assert float(getattr(g, name)) == pytest.approx(float(value), rel=2e-5, abs=1e-7), name


# --- implied volatility ---


def _iv_grid():
    S, r, q = 100.0, 0.05, 0.02
    T = np.array([30 / 525_600, 2 / (24 * 365), 1 / 365, 7 / 365, 30 / 365, 0.25, 1.0, 3.0])
    sigma = np.geomspace(0.01, 5.0, 60)
    K = S * np.exp(np.linspace(-1.0, 1.0, 81))
    TT, VV, KK, CC = (a.ravel() for a in np.meshgrid(T, sigma, K, [True, False], indexing="ij"))
    return S, KK, TT, r, q, VV, CC


def test_implied_vol_round_trips_on_the_wide_grid():
    S, K, T, r, q, sigma, is_call = _iv_grid()
    g = greeks(S, K, T, r, q, sigma, is_call)
    iv, status = implied_vol(g.price, S, K, T, r, q, is_call, return_status=True)
    err = np.abs(iv - sigma)
    strong, weak = g.vega >= 1e-3 * S, g.vega >= 1e-6 * S
    assert strong.sum() > 10_000 and weak.sum() > strong.sum()
    assert not np.isnan(iv[weak]).any()
    assert err[strong].max() <= 1e-12, f"max error {err[strong].max():.3e} where vega >= 1e-3 S"
    assert err[weak].max() <= 1e-9, f"max error {err[weak].max():.3e} where vega >= 1e-6 S"
    # no NaN for any price strictly inside the no-arbitrage bounds
    sdq, kdr = S * np.exp(-q * T), K * np.exp(-r * T)
    lower = np.maximum(np.where(is_call, sdq - kdr, kdr - sdq), 0.0)
    inside = (g.price > lower) & (g.price < np.where(is_call, sdq, kdr))
    assert inside.sum() > 40_000
    assert not np.isnan(iv[inside]).any()
    assert (status[inside] == IVStatus.OK).all()


@given(
    moneyness=st.floats(-1.0, 1.0),
    T=st.floats(30 / 525_600, 3.0),
    sigma=st.floats(0.01, 5.0),
    q=st.floats(-0.02, 0.1),
    is_call=st.booleans(),
)
def test_implied_vol_round_trip_property(moneyness, T, sigma, q, is_call):
    S, r = 250.0, 0.04
    K = S * math.exp(moneyness)
    g = greeks(S, K, T, r, q, sigma, is_call)
    iv = float(implied_vol(g.price, S, K, T, r, q, is_call))
    if g.vega >= 1e-3 * S:
        assert abs(iv - sigma) <= 1e-12
    elif g.vega >= 1e-6 * S:
        assert abs(iv - sigma) <= 1e-9
    else:
        assert not math.isnan(iv) or g.price <= 0


def test_implied_vol_reason_codes():
    S, K, T, r, q = 100.0, 100.0, 0.5, 0.03, 0.01
    call_bound, put_bound = S * math.exp(-q * T), K * math.exp(-r * T)
    deep_itm_intrinsic = S * math.exp(-q * T) - 80.0 * math.exp(-r * T)
    cases = [  # (price, K, is_call, T, expected status)
        (5.0, K, True, T, IVStatus.OK),
        (deep_itm_intrinsic - 0.01, 80.0, True, T, IVStatus.BELOW_INTRINSIC),
        (call_bound, K, True, T, IVStatus.ABOVE_BOUND),
        (put_bound + 1.0, K, False, T, IVStatus.ABOVE_BOUND),
        (math.nan, K, True, T, IVStatus.BAD_INPUT),
        (-1.0, K, True, T, IVStatus.BAD_INPUT),
        (5.0, -K, True, T, IVStatus.BAD_INPUT),
        (5.0, K, True, 0.0, IVStatus.BAD_INPUT),
        (5.0, K, True, math.inf, IVStatus.BAD_INPUT),
    ]
    prices, strikes, calls, Ts, expected = (np.array(c) for c in zip(*cases, strict=True))
    iv, status = implied_vol(prices, S, strikes, Ts, r, q, calls, return_status=True)
    assert status.tolist() == expected.tolist()
    assert np.isnan(iv[1:]).all()
    assert float(price(S, K, T, r, q, iv[0], True)) == pytest.approx(5.0, abs=1e-13)


def test_price_at_intrinsic_has_zero_vol():
    intrinsic = 100.0 * math.exp(-0.01) - 90.0 * math.exp(-0.03)
    assert float(implied_vol(intrinsic, 100.0, 90.0, 1.0, 0.03, 0.01, True)) == 0.0
    assert float(implied_vol(0.0, 100.0, 120.0, 1.0, 0.03, 0.01, True)) == 0.0


def test_exhausted_iterations_are_flagged_not_wrong(monkeypatch):
    sigma = np.geomspace(0.02, 3.0, 50)
    g = greeks(100.0, 160.0, 0.5, 0.0, 0.0, sigma, True)
    monkeypatch.setattr(pricing, "_MAX_ITER", 2)
    iv, status = implied_vol(g.price, 100.0, 160.0, 0.5, 0.0, 0.0, True, return_status=True)
    flagged = status == IVStatus.NO_CONVERGENCE
    assert 5 < flagged.sum() < 45
    assert np.isnan(iv[flagged]).all()
    solved = ~flagged & (g.vega >= 0.1)
    assert solved.any()
    assert np.abs(iv[solved] - sigma[solved]).max() < 1e-12  # the others are right


# --- edges, bad input, shapes ---


def test_expiry_gives_intrinsic_value_and_limiting_greeks():
    S = np.array([110.0, 90.0, 100.0, 110.0, 90.0])
    is_call = np.array([True, True, True, False, False])
    g = greeks(S, 100.0, 0.0, 0.05, 0.02, 0.3, is_call)
    assert g.price.tolist() == [10.0, 0.0, 0.0, 0.0, 10.0]
    assert g.delta.tolist() == [1.0, 0.0, 0.5, 0.0, -1.0]
    for name in ("gamma", "vega", "vanna", "vomma", "rho"):
        assert (getattr(g, name) == 0).all(), name
    assert g.theta[0] == pytest.approx(0.02 * 110 - 0.05 * 100)  # carry of the ITM call


def test_zero_vol_is_the_discounted_forward_payoff():
    S, K, T, r, q = 100.0, 95.0, 0.5, 0.05, 0.01
    g = greeks(S, np.array([K, 110.0]), T, r, q, 0.0, True)
    fwd_value = S * math.exp(-q * T) - K * math.exp(-r * T)
    assert g.price[0] == pytest.approx(fwd_value, rel=1e-15)
    assert g.price[1] == 0.0
    assert g.delta[0] == pytest.approx(math.exp(-q * T))
    assert g.gamma.tolist() == [0.0, 0.0]
    # and it is the limit of small vols
    assert float(price(S, K, T, r, q, 1e-6, True)) == pytest.approx(fwd_value, rel=1e-12)


def test_bad_inputs_are_nan_per_element_and_never_raise():
    S = np.array([100.0, np.nan, -5.0, 100.0, 100.0, 100.0, np.inf])
    sigma = np.array([0.2, 0.2, 0.2, -0.1, np.nan, 0.2, 0.2])
    T = np.array([0.5, 0.5, 0.5, 0.5, 0.5, -1.0, 0.5])
    g = greeks(S, 100.0, T, 0.03, 0.0, sigma, True)
    for name in GREEKS:
        values = getattr(g, name)
        assert np.isfinite(values[0]), name
        assert np.isnan(values[1:]).all(), name
    assert np.isnan(price(100.0, 100.0, 0.5, np.nan, 0.0, 0.2, True))


def test_broadcasting_and_scalar_results():
    strikes = np.array([[90.0], [100.0], [110.0]])
    vols = np.array([[0.1, 0.2, 0.3, 0.4]])
    g = greeks(100.0, strikes, 0.25, 0.02, 0.0, vols, True)
    assert g.price.shape == (3, 4)
    assert g.price[1, 2] == pytest.approx(float(price(100.0, 100.0, 0.25, 0.02, 0.0, 0.3, True)))
    assert isinstance(price(100.0, 100.0, 0.25, 0.02, 0.0, 0.3, True), np.floating)
    iv = implied_vol(g.price, 100.0, strikes, 0.25, 0.02, 0.0, True)
    assert iv.shape == (3, 4)
    np.testing.assert_allclose(iv, np.broadcast_to(vols, (3, 4)), atol=1e-12)


def test_threads_give_identical_results():
    rng = np.random.default_rng(3)
    n = 10 * pricing.CHUNK + 17
    args = (
        rng.uniform(50, 150, n),
        rng.uniform(50, 150, n),
        rng.uniform(0.01, 2, n),
        0.03,
        0.01,
        rng.uniform(0.05, 0.8, n),
        rng.random(n) < 0.5,
    )
    one, many = greeks(*args, threads=1), greeks(*args, threads=4)
    for name in GREEKS:
        np.testing.assert_array_equal(getattr(one, name), getattr(many, name))


# --- Black-76 ---


def test_black76_matches_its_formula_and_differences():
    F, K, T, r, sigma = 5000.0, 4900.0, 30 / 365, 0.05, 0.18
    d1 = (math.log(F / K) + 0.5 * sigma**2 * T) / (sigma * math.sqrt(T))
    d2 = d1 - sigma * math.sqrt(T)
    N = lambda x: 0.5 * math.erfc(-x / math.sqrt(2))  # noqa: E731
    call = math.exp(-r * T) * (F * N(d1) - K * N(d2))
    put = math.exp(-r * T) * (K * N(-d2) - F * N(-d1))
    assert float(black76_price(F, K, T, r, sigma, True)) == pytest.approx(call, rel=1e-14)
    assert float(black76_price(F, K, T, r, sigma, False)) == pytest.approx(put, rel=1e-14)
    g = black76_greeks(F, K, T, r, sigma, True)
    h = 1e-3
    up, dn = black76_price(F + h, K, T, r, sigma, True), black76_price(F - h, K, T, r, sigma, True)
    assert float(g.delta) == pytest.approx(float(up - dn) / (2 * h), rel=1e-7)
    dr = (
        black76_price(F, K, T, r + 1e-6, sigma, True)
        - black76_price(F, K, T, r - 1e-6, sigma, True)
    ) / 2e-6
    assert float(g.rho) == pytest.approx(float(dr), rel=1e-6)
    assert float(g.rho) == pytest.approx(-T * call, rel=1e-14)
    assert float(black76_implied_vol(call, F, K, T, r, True)) == pytest.approx(sigma, abs=1e-13)


def test_black76_agrees_with_quantlib_black_formula():
    F, K, T, r, sigma = 100.0, 104.0, 0.75, 0.03, 0.25
    std = sigma * math.sqrt(T)
    disc = math.exp(-r * T)
    for is_call in (True, False):
        kind = ql.Option.Call if is_call else ql.Option.Put
        ref = ql.blackFormula(kind, K, F, std, disc)
        assert float(black76_price(F, K, T, r, sigma, is_call)) == pytest.approx(ref, abs=1e-12)


def test_implied_vol_near_matches_the_cold_solver_from_a_nearby_guess():
    rng = np.random.default_rng(7)
    n = 2000
    S = np.full(n, 5000.0)
    K, T = rng.uniform(4000, 6000, n), rng.uniform(0.0005, 1.0, n)
    is_call, sigma = rng.random(n) < 0.5, rng.uniform(0.05, 1.0, n)
    r, q = np.full(n, 0.045), np.full(n, 0.013)
    p = pricing.price(S, K, T, r, q, sigma, is_call)
    guess = sigma * rng.uniform(0.8, 1.2, n)
    guess[:50] = np.nan  # no previous IV: the cold solver answers
    near = pricing.implied_vol_near(p, S, K, T, r, q, is_call, guess)
    cold = pricing.implied_vol(p, S, K, T, r, q, is_call)
    identified = pricing.greeks(S, K, T, r, q, sigma, is_call).vega >= 1e-6 * S
    assert identified.sum() > 1500
    np.testing.assert_allclose(near[identified], cold[identified], rtol=0, atol=1e-9)
    np.testing.assert_allclose(near[:50], cold[:50], rtol=0, atol=0, equal_nan=True)

"""The compiled refresh (kit.portfolio.refresh_jit) against the NumPy path it replaces on small
batches: warm-started IV and the nine Greeks, edge rows included, and the fallback."""

import numpy as np
import pytest

from kit.core import pricing
from kit.portfolio import jit_switch, refresh_jit
from kit.portfolio.market import MarketState


@pytest.fixture(autouse=True)
def compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled path switched on, as a desk does when built (and off again after)."""
    monkeypatch.setattr(jit_switch, "ON", True)


def _rows(n: int = 400, seed: int = 3) -> tuple[np.ndarray, ...]:
    """Prices of known IVs, guesses near them (a tick later), and rows with no IV to find."""
    rng = np.random.default_rng(seed)
    S = rng.uniform(80, 120, n)
    K = S * rng.uniform(0.7, 1.3, n)
    T = rng.uniform(1e-4, 1.0, n)
    r, q = rng.uniform(0, 0.06, n), rng.uniform(0, 0.03, n)
    is_call = rng.random(n) < 0.5
    true = rng.uniform(0.05, 1.2, n)
    price = pricing.greeks(S, K, T, r, q, true, is_call).price
    guess = true * rng.uniform(0.9, 1.1, n)
    price[:5] = [np.nan, 0.0, -1.0, 1e9, price[4]]  # no price, zero, negative, above the bound
    guess[4:8] = [np.nan, 0.0, -0.2, np.inf]  # no usable guess: the cold solve
    T[8] = 0.0  # expiring now
    S[9] = np.nan  # no spot
    guess[10:20] = true[10:20] * 3  # far guesses: Newton does not settle in four steps
    return price, S, K, T, r, q, is_call, guess


def test_compiled_iv_and_greeks_match_the_numpy_path() -> None:
    price, S, K, T, r, q, is_call, guess = rows = _rows()
    got = refresh_jit.iv_and_greeks(*rows)
    assert got is not None, "numba is in the dev extra: the compiled path must be there"
    iv_ref = pricing.implied_vol_near(price, S, K, T, r, q, is_call, guess)
    iv_ref = np.where(np.isfinite(iv_ref), iv_ref, guess)
    g_ref = pricing.greeks(S, K, T, r, q, iv_ref, is_call)
    iv, g = got
    np.testing.assert_allclose(iv, iv_ref, rtol=1e-10, atol=0)
    assert np.array_equal(np.isnan(iv), np.isnan(iv_ref))
    for row, ref in zip(g, g_ref, strict=True):
        np.testing.assert_allclose(row, ref, rtol=1e-9, atol=1e-12)


def test_market_refresh_is_the_same_with_and_without_the_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import date

    from kit.core.model import Contract, Quote, UnderlyingTick

    def market() -> MarketState:
        m = MarketState()
        m.on_underlying(UnderlyingTick("SPX", 5000.0, 1))
        for k in range(4800, 5205, 25):
            c = Contract("SPXW", date(2030, 1, 18), float(k), "P" if k < 5000 else "C")
            mid = 20.0 + abs(k - 5000) * 0.05
            m.on_quote(Quote(c, mid - 0.1, mid + 0.1, 1, 1, 1))
        return m

    fast, slow = market(), market()
    rows = np.arange(fast.size)
    fast.refresh(rows, 10)
    monkeypatch.setattr(refresh_jit, "iv_and_greeks", lambda *a: None)
    monkeypatch.setattr("kit.portfolio.market.iv_and_greeks", lambda *a: None)
    slow.refresh(rows, 10)
    for name in ("iv", "model_price", "delta", "gamma", "theta_per_day", "vega_per_point",
                 "vanna_per_point", "charm_per_day"):  # fmt: skip
        np.testing.assert_allclose(getattr(fast, name)[rows], getattr(slow, name)[rows],
                                   rtol=1e-9, atol=1e-12, err_msg=name)  # fmt: skip
    assert np.isfinite(fast.delta[rows]).sum() >= 8  # the puts priced; deep calls have no IV


def test_without_numba_the_market_keeps_the_numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    refresh_jit.kernels.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "kit.portfolio.refresh_numba", None)
    try:
        assert refresh_jit.iv_kernel() is None
        assert refresh_jit.iv_and_greeks(*_rows(40)) is None
    finally:
        refresh_jit.kernels.cache_clear()


def test_switched_off_the_market_keeps_the_numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until a desk switches it on (kit book values a book once: no numba import for that)."""
    monkeypatch.setattr(jit_switch, "ON", False)
    assert refresh_jit.iv_and_greeks(*_rows(40)) is None

"""The compiled Greeks kernel (numba) against the NumPy path it replaces on large batches.

NumPy stays the reference: both must give the same nine outputs to rounding, the same limits at
T = 0 and sigma = 0, NaN for the same bad rows, scalars broadcast the same way, and pricing must
keep working (on NumPy) when numba is missing."""

import numpy as np
import pytest

from kit.core import pricing, pricing_jit

N = pricing_jit.MIN_N + 1000  # large enough for the compiled path


def _inputs(seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = {
        "S": rng.uniform(50.0, 150.0, N),
        "K": 100.0 * np.exp(rng.uniform(-0.5, 0.5, N)),
        "T": rng.uniform(1 / 365 / 24, 2.0, N),
        "r": rng.uniform(-0.01, 0.08, N),
        "q": rng.uniform(0.0, 0.05, N),
        "sigma": rng.uniform(0.01, 2.0, N),
        "is_call": rng.random(N) < 0.5,
    }
    x["T"][:50] = 0.0  # expired: the limits
    x["sigma"][50:100] = 0.0  # no vol: the limits
    x["S"][100], x["K"][101], x["T"][102], x["sigma"][103] = -1.0, np.nan, -0.1, np.inf
    # the same in later blocks of 1,024, the last one partial: the rows the SIMD loop leaves
    x["T"][5000:5010], x["sigma"][20_000], x["K"][N - 5], x["r"][N - 3] = 0.0, 0.0, np.nan, np.nan
    return x


def _numpy(monkeypatch: pytest.MonkeyPatch, *args, **kw) -> pricing.GreekArrays:
    with monkeypatch.context() as m:
        m.setattr(pricing_jit, "MIN_N", 10**12)
        return pricing.greeks(*args, **kw)


def _same(got: pricing.GreekArrays, ref: pricing.GreekArrays) -> None:
    for name, a, b in zip(got._fields, got, ref, strict=True):
        assert a.shape == b.shape, name
        assert np.array_equal(np.isnan(a), np.isnan(b)), name
        err = np.nanmax(np.abs(a - b) / np.maximum(1.0, np.abs(b)))
        # measured: price 3e-14 here, up to 1.7e-13 on 1M wider options (the kernel before this
        # one: 1.4e-13; NumPy's own rounding of S N(d1) - K N(d2)); the rest below 2e-14
        assert err < 2e-13, (name, err)


def test_the_compiled_kernel_is_there_and_matches_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pricing_jit.kernel() is not None  # numba is in the dev extra: this path is tested
    x = _inputs()
    args = (x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"], x["is_call"])
    got = pricing.greeks(*args)
    _same(got, _numpy(monkeypatch, *args))
    bad = np.zeros(N, dtype=bool)
    bad[[100, 101, 102, 103, N - 5, N - 3]] = True
    assert np.isnan(got.price[bad]).all() and np.isfinite(got.price[~bad]).all()
    assert got.gamma[:100].tolist() == [0.0] * 100  # the limits, not NaN
    assert got.gamma[5000:5010].tolist() == [0.0] * 10 and got.gamma[20_000] == 0.0


def test_scalars_broadcast_and_shape_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _inputs(3)
    grid = x["K"].reshape(-1, 1)[: N // 2 * 2].reshape(N // 2, 2)  # a 2-D strike grid
    args = (100.0, grid, 0.25, 0.045, 0.013, 0.2, True)
    got = pricing.greeks(*args)
    assert got.price.shape == grid.shape
    _same(got, _numpy(monkeypatch, *args))
    one = pricing.greeks(*args, threads=1)  # one thread of the same kernel: the same bits
    for a, b in zip(got, one, strict=True):
        np.testing.assert_array_equal(a, b)


def test_without_numba_pricing_falls_back_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _inputs(5)
    args = (x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"], x["is_call"])
    fused = pricing.greeks(*args)
    monkeypatch.setattr(pricing_jit, "kernel", lambda: None)
    assert pricing_jit.greeks_into(list(args), N, None) is None
    _same(pricing.greeks(*args), fused)


def test_the_kernels_normal_cdf_matches_scipy_in_the_body_and_the_tails() -> None:
    from scipy.special import ndtr

    from kit.core.greeks_numba import _ncdf

    x = np.concatenate([np.linspace(-40.0, 40.0, 20_001), [-1e-300, 0.0, 1e-300, np.inf, -np.inf]])
    got = np.array([_ncdf(v, np.exp(-0.5 * v * v)) for v in x])
    ref = ndtr(x)
    normal = ref > 1e-300  # below: SciPy flushes to 0, the kernel keeps a subnormal
    rel = np.abs(got - ref)[normal] / ref[normal]
    assert rel[np.abs(x[normal]) < 8].max() < 2e-14  # the body: a few ulp
    assert rel.max() < 1e-12  # the far tails: exp(-x²/2) carries x² ulp of error, as SciPy's
    assert np.abs(got - ref)[~normal].max() < 1e-300
    assert np.isnan(_ncdf(np.nan, np.nan))


def test_absurd_rates_give_what_numpy_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _inputs(11)
    x["r"][:200], x["q"][200:400] = 800.0, 800.0  # discounts under- and overflow
    x["r"][400:600], x["q"][600:800] = -800.0, -800.0
    args = (x["S"], x["K"], x["T"], x["r"], x["q"], x["sigma"], x["is_call"])
    got, ref = pricing.greeks(*args), _numpy(monkeypatch, *args)
    for name, a, b in zip(got._fields, got, ref, strict=True):
        inf = np.isinf(b)
        assert np.array_equal(np.isinf(a), inf) and np.array_equal(a[inf], b[inf]), name
        a[inf] = b[inf] = 0.0  # equal infinities: the rest is held to 2e-13 below
    _same(got, ref)


def test_the_simd_exp_and_log_match_libm_over_the_whole_range() -> None:
    """vexp and vlog replace libm inside the kernel's SIMD loop: within 2 and 1 ulp of NumPy's
    exp and log, and the same at the edges (overflow, underflow to subnormals, 0, inf, NaN)."""
    import numba

    from kit.core.vmath_numba import vexp, vlog

    @numba.njit(error_model="numpy")
    def both(x: np.ndarray, e: np.ndarray, lg: np.ndarray) -> None:
        for i in range(x.shape[0]):
            e[i], lg[i] = vexp(x[i]), vlog(abs(x[i]))

    rng = np.random.default_rng(1)
    edges = [0.0, -0.0, 709.78, 709.79, -708.4, -745.1, -745.2, 1e-300, 5e-324, 1e308]
    x = np.concatenate([rng.uniform(-750, 750, 100_000), rng.uniform(-2, 2, 100_000), edges])
    x = np.concatenate([x, np.exp(rng.uniform(-700, 700, 100_000)), [np.inf, -np.inf, np.nan]])
    e, lg = np.empty_like(x), np.empty_like(x)
    both(x, e, lg)
    with np.errstate(all="ignore"):
        ref_e, ref_lg = np.exp(x), np.log(np.abs(x))
    for got, ref, ulps in ((e, ref_e, 2), (lg, ref_lg, 1)):
        finite = np.isfinite(ref) & (ref != 0.0)
        assert np.array_equal(got[~finite], ref[~finite], equal_nan=True)  # inf, 0, NaN
        err = np.abs(got[finite] - ref[finite]) / np.spacing(np.abs(ref[finite]))  # 5e-324 min
        assert err.max() <= ulps

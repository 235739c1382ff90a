"""Vectorised Black-Scholes-Merton and Black-76: prices, Greeks and implied volatility.

Several feeds never stream Greeks (ThetaData) or stream them late (IBKR), so the desk computes IV
and Greeks itself for every tracked contract, many times a second. Everything here is a pure
function over NumPy arrays (scalars broadcast), with no I/O.

Conventions (continuous compounding, T in years, sigma and rates as decimals):

- ``theta`` is ``-dV/dT`` per year (the value lost as a year passes); ``theta_per_day`` = /365.
- ``vega``, ``vanna`` (d delta / d sigma) and ``vomma`` (d vega / d sigma) are per 1.00 of sigma;
  ``*_per_point`` are per vol point (0.01).
- ``charm`` is ``-d delta / dT`` per year (delta drift as time passes); ``charm_per_day`` = /365.
- ``rho`` is ``dV/dr`` per 1.00 of rate (for Black-76, with the forward held fixed: ``-T * V``).
- At T = 0 or sigma = 0 prices are the discounted forward intrinsic value and Greeks their
  limits: delta is 0 or +/-exp(-qT) (half of it exactly at the forward), gamma, vega, vanna and
  vomma are 0, theta, rho and charm keep only their deterministic carry terms.
- Bad inputs (S <= 0, K <= 0, T < 0, sigma < 0, non-finite) give NaN for that element only; a
  batch never raises because one row is wrong.

Speed: work is done in cache-sized chunks (temporaries stay in L2) spread over a thread pool (NumPy
ufuncs release the GIL); batches >= 32k use a fused numba kernel when installed (pricing_jit).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import IntEnum
from functools import cache
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr, ndtri

from kit.core.pricing_jit import greeks_into

F64 = NDArray[np.float64]
CHUNK = 16384  # elements per kernel call: measured best; its temporaries stay in L2 cache
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class GreekArrays(NamedTuple):
    """Price and Greeks, raw derivatives in the units of the module docstring."""

    price: F64
    delta: F64
    gamma: F64
    theta: F64
    vega: F64
    rho: F64
    vanna: F64
    charm: F64
    vomma: F64

    @property
    def theta_per_day(self) -> F64:
        return self.theta / 365.0

    @property
    def vega_per_point(self) -> F64:
        return self.vega / 100.0

    @property
    def vanna_per_point(self) -> F64:
        return self.vanna / 100.0

    @property
    def vomma_per_point(self) -> F64:
        return self.vomma / 100.0

    @property
    def charm_per_day(self) -> F64:
        return self.charm / 365.0


class IVStatus(IntEnum):
    """Why an implied vol is NaN (or OK). One code per element of ``implied_vol``."""

    OK = 0
    BELOW_INTRINSIC = 1
    ABOVE_BOUND = 2
    NO_CONVERGENCE = 3
    BAD_INPUT = 4


# --- batching ---


CPUS = os.cpu_count() or 1  # read once: the call costs ~14 us, a third of a small batch


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=CPUS, thread_name_prefix="pricing")


def _flatten(args: tuple[ArrayLike, ...]) -> tuple[tuple[int, ...], list[float | F64 | NDArray]]:
    """Broadcast shape and flat 1-D views; 0-d inputs stay Python scalars (cheaper in ufuncs)."""
    arrays = [np.asarray(a) for a in args]
    shape = np.broadcast_shapes(*(a.shape for a in arrays))
    flat: list[float | F64 | NDArray] = []
    for a in arrays:
        if a.ndim == 0:
            flat.append(a.item() if a.dtype == bool else float(a))
        else:
            a = a if a.dtype == bool else a.astype(np.float64, copy=False)
            flat.append(_as_n(a, shape).ravel())  # copies only if really broadcast
    return shape, flat


def _run_chunks(n: int, kernel: Callable[[slice], None], threads: int | None) -> None:
    """Run ``kernel`` over [0, n) in CHUNK slices, on the thread pool when it pays off."""
    slices = [slice(i, min(i + CHUNK, n)) for i in range(0, n, CHUNK)]
    workers = threads if threads is not None else CPUS
    if workers <= 1 or len(slices) < 4:
        for s in slices:
            kernel(s)
        return
    per = -(-len(slices) // workers)
    groups = [slices[i : i + per] for i in range(0, len(slices), per)]
    for f in [_pool().submit(lambda g=g: [kernel(s) for s in g]) for g in groups]:
        f.result()


def _as_n(x: float | NDArray, shape: tuple[int, ...]) -> NDArray:  # broadcast_to: 7 us
    return x if isinstance(x, np.ndarray) and x.shape == shape else np.broadcast_to(x, shape)


def _part(x: float | NDArray, s: slice) -> float | NDArray:
    return x if isinstance(x, float | bool) else x[s]


def _shape_out(arrays: list[F64], shape: tuple[int, ...]) -> list:
    return [a.reshape(shape)[()] if shape == () else a.reshape(shape) for a in arrays]


# --- prices and Greeks ---


def _greeks_kernel(S, K, T, r, q, sigma, is_call, out: list[F64] | None, price_out: F64 | None):
    """All outputs for one chunk: shared d1/d2/pdf/cdf, then each Greek from them."""
    w = (1.0 if is_call else -1.0) if isinstance(is_call, bool) else np.where(is_call, 1.0, -1.0)
    with np.errstate(all="ignore"):
        sqrt_t = np.sqrt(T)
        sst = sigma * sqrt_t
        dfq = np.exp(-q * T)
        dfr = np.exp(-r * T)
        sdq = S * dfq
        kdr = K * dfr
        # log(S/K) + carry, not log(sdq/kdr): two exp roundings in d1 cost charm ~1e-9 near expiry
        d1 = (np.log(S / K) + (r - q + 0.5 * sigma * sigma) * T) / sst
        d2 = d1 - sst
        nd1 = ndtr(w * d1)
        nd2 = ndtr(w * d2)
        price = w * (sdq * nd1 - kdr * nd2)
        if out is None:
            price_out[:] = price
            _fix_edges(S, K, T, sigma, w, sdq, kdr, dfq, q, r, [price_out])
            return
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
        dfq_pdf = dfq * pdf
        vega = sdq * pdf * sqrt_t
        w_nd1_dfq = w * dfq * nd1
        w_kdr_nd2 = w * kdr * nd2
        values = (
            price,
            w_nd1_dfq,
            dfq_pdf / (S * sst),
            -0.5 * sdq * pdf * sigma / sqrt_t - r * w_kdr_nd2 + q * S * w_nd1_dfq,
            vega,
            w_kdr_nd2 * T,
            -dfq_pdf * d2 / sigma,
            q * w_nd1_dfq - dfq_pdf * ((r - q) * T - 0.5 * d2 * sst) / (T * sst),
            vega * d1 * d2 / sigma,
        )
    for o, v in zip(out, values, strict=True):
        o[:] = v
    _fix_edges(S, K, T, sigma, w, sdq, kdr, dfq, q, r, out)


def _fix_edges(S, K, T, sigma, w, sdq, kdr, dfq, q, r, out: list[F64]) -> None:
    """Overwrite bad inputs with NaN and T = 0 / sigma = 0 elements with their limits."""
    n = len(out[0])
    S, K, T, sigma = (_as_n(x, (n,)) for x in (S, K, T, sigma))
    finite = np.isfinite(S) & np.isfinite(K) & np.isfinite(T) & np.isfinite(sigma)
    with np.errstate(invalid="ignore"):
        bad = ~(finite & (S > 0) & (K > 0) & (T >= 0) & (sigma >= 0))
        degenerate = ~bad & (sigma * np.sqrt(T) == 0)
    if degenerate.any():
        idx = np.flatnonzero(degenerate)
        w, sdq, kdr, dfq, q, r, T_d = (_as_n(x, (n,))[idx] for x in (w, sdq, kdr, dfq, q, r, T))
        moneyness = w * (sdq - kdr)
        ind = np.where(moneyness > 0, 1.0, np.where(moneyness == 0, 0.5, 0.0))
        limits = [np.maximum(moneyness, 0.0)]
        if len(out) > 1:
            zero = np.zeros(len(idx))
            limits += [
                w * dfq * ind,
                zero,
                w * ind * (q * sdq - r * kdr),
                zero,
                w * kdr * T_d * ind,
                zero,
                w * q * dfq * ind,
                zero,
            ]
        for o, v in zip(out, limits, strict=True):
            o[idx] = v
    if bad.any():
        for o in out:
            o[bad] = np.nan


def greeks(S, K, T, r, q, sigma, is_call, *, threads: int | None = None) -> GreekArrays:
    """Price, delta, gamma, theta, vega, rho, vanna, charm and vomma in one pass (BSM, yield q)."""
    shape, flat = _flatten((S, K, T, r, q, sigma, is_call))
    n = math.prod(shape)
    if (fused := greeks_into(flat, n, threads)) is not None:  # numba, large batches
        return GreekArrays(*_shape_out(list(fused), shape))
    S, K, T, r, q, sigma, is_call = flat
    out = [np.empty(n) for _ in GreekArrays._fields]

    def kernel(s: slice) -> None:
        args = [_part(x, s) for x in (S, K, T, r, q, sigma, is_call)]
        _greeks_kernel(*args, [o[s] for o in out], None)

    _run_chunks(n, kernel, threads)
    return GreekArrays(*_shape_out(out, shape))


def price(S, K, T, r, q, sigma, is_call, *, threads: int | None = None) -> F64:
    """Black-Scholes-Merton price with continuous dividend yield ``q``."""
    shape, (S, K, T, r, q, sigma, is_call) = _flatten((S, K, T, r, q, sigma, is_call))
    n = math.prod(shape)
    out = np.empty(n)

    def kernel(s: slice) -> None:
        args = [_part(x, s) for x in (S, K, T, r, q, sigma, is_call)]
        _greeks_kernel(*args, None, out[s])

    _run_chunks(n, kernel, threads)
    return _shape_out([out], shape)[0]


# --- implied volatility ---
#
# Every input is reduced to one normalised problem: find the total volatility s = sigma * sqrt(T)
# with b(x, s) = beta, where x = -|ln(F/K)| <= 0, b is the Black price of the out-of-the-money
# call divided by sqrt(F K), and beta is the option's time value divided by sqrt(F K) (put-call
# parity makes the time value of the ITM option the price of the OTM one). b rises from 0 to
# b_max = exp(x/2), convex below s_c = sqrt(2|x|) and concave above it. Below s_c we iterate on
# 1/ln(b), above it on ln(b_max - b) (computed without cancellation): both are close to linear in
# s there, so third-order Householder steps from a closed-form guess converge in a few iterations.

_MAX_ITER = 40
_STEP_TOL = 1e-6  # a third-order step of relative size d leaves ~d**3: full precision


def _normalised_b(x: F64, s: F64) -> F64:
    h, t = x / s, 0.5 * s
    ex = np.exp(0.5 * x)
    return ex * ndtr(h + t) - ndtr(h - t) / ex


def _curvature(x: F64, s: F64) -> tuple[F64, F64]:
    """b''/b' and b'''/b' of the normalised call, in closed form."""
    u = x * x / (s * s * s) - 0.25 * s
    return u, u * u - 3.0 * x * x / s**4 - 0.25


def _lower_objective(x: F64, s: F64, log_beta: F64) -> tuple[F64, F64, F64, F64]:
    """f = 1/ln b - 1/ln beta and its first three derivatives (f falls with s)."""
    h, t = x / s, 0.5 * s
    ex = np.exp(0.5 * x)
    b = ex * ndtr(h + t) - ndtr(h - t) / ex
    L1 = ex * _INV_SQRT_2PI * np.exp(-0.5 * (h + t) ** 2) / b  # (ln b)' = b'/b
    u, v = _curvature(x, s)
    L2 = L1 * (u - L1)
    L3 = L1 * (v - 3.0 * u * L1 + 2.0 * L1 * L1)
    iL = 1.0 / np.log(b)
    g1 = -L1 * iL * iL
    g2 = (-L2 + 2.0 * L1 * L1 * iL) * iL * iL
    g3 = (-L3 + (6.0 * L1 * L2 - 6.0 * L1**3 * iL) * iL) * iL * iL
    return iL - 1.0 / log_beta, g1, g2, g3


def _upper_objective(x: F64, s: F64, log_target: F64) -> tuple[F64, F64, F64, F64]:
    """f = ln(b_max - b) - ln(b_max - beta) and derivatives; b_max - b has no cancellation."""
    h, t = x / s, 0.5 * s
    ex = np.exp(0.5 * x)
    comp = ex * ndtr(-(h + t)) + ndtr(h - t) / ex
    k1 = -ex * _INV_SQRT_2PI * np.exp(-0.5 * (h + t) ** 2) / comp  # (ln C)' with C' = -b'
    u, v = _curvature(x, s)
    k2 = k1 * (u - k1)
    k3 = k1 * (v - 3.0 * u * k1 + 2.0 * k1 * k1)
    return np.log(comp) - log_target, k1, k2, k3


def _householder(nu: F64, h2: F64, h3: F64) -> F64:
    """Third-order step from Newton step ``nu`` and f''/f', f'''/f' (Jaeckel's form)."""
    return nu * (1.0 + 0.5 * h2 * nu) / (1.0 + nu * (h2 + h3 * nu / 6.0))


def _initial_guess(x: F64, beta: F64, s_c: F64, lower: NDArray[np.bool_]) -> F64:
    """Closed-form starting points: small-s asymptotics below s_c, a symmetric tail above."""
    s = np.empty_like(x)
    # lower: b ~ phi(x/s + s/2) e^{x/2} s^3 / x^2  ->  fixed point on s (logs only)
    xl, bl = np.abs(x[lower]), beta[lower]
    sl = xl / np.sqrt(-2.0 * np.log(bl))
    for _ in range(3):
        rhs = -np.log(bl) + 3.0 * np.log(sl) - 2.0 * np.log(xl) - 0.5 * np.log(2 * np.pi)
        sl = xl / np.sqrt(2.0 * np.maximum(rhs - sl * sl / 8.0, 1e-300))
    s[lower] = sl
    # upper: b_max - b ~ 2 cosh(x/2) N(-s/2)
    up = ~lower
    tail = (np.exp(0.5 * x[up]) - beta[up]) / (2.0 * np.cosh(0.5 * x[up]))
    s[up] = -2.0 * ndtri(np.minimum(tail, 0.5))
    lo, hi = np.where(lower, 0.0, s_c), np.where(lower, s_c, np.inf)
    s = np.where(np.isfinite(s), s, np.where(lower, 0.5 * s_c, s_c))
    return np.clip(s, lo, hi)


def _iterate(objective, x: F64, s: F64, target: F64, lo: F64, hi: F64) -> NDArray[np.bool_]:
    """Bracketed Householder(3) on a falling objective; updates ``s`` in place, returns done."""
    done = np.zeros(len(x), dtype=bool)
    act = np.arange(len(x))
    for _ in range(_MAX_ITER):
        if act.size == 0:
            break
        sa = s[act]
        f, f1, f2, f3 = objective(x[act], sa, target[act])
        new = sa + _householder(-f / f1, f2 / f1, f3 / f1)
        above = f < 0  # the objective falls with s: f < 0 means s is past the root
        lo_a = np.where(above, lo[act], sa)
        hi_a = np.where(above, sa, hi[act])
        outside = ~((new >= lo_a) & (new <= hi_a))  # also catches NaN steps
        if outside.any():
            fallback = np.where(np.isfinite(hi_a), 0.5 * (lo_a + hi_a), 2.0 * sa)
            new = np.where(outside, fallback, new)
        conv = (np.abs(new - sa) <= _STEP_TOL * sa) | (f == 0)
        s[act], lo[act], hi[act] = new, lo_a, hi_a
        done[act[conv]] = True
        act = act[~conv]
    return done


def _solve_total_vol(x: F64, beta: F64) -> tuple[F64, NDArray[np.bool_]]:
    """s with b(x, s) = beta for x <= 0 and 0 < beta < e^{x/2}; and a converged flag."""
    s_c = np.sqrt(-2.0 * x)
    with np.errstate(all="ignore"):
        lower = beta < np.where(s_c > 0, _normalised_b(x, np.maximum(s_c, 1e-300)), 0.0)
        s = _initial_guess(x, beta, s_c, lower)
        done = np.empty(len(x), dtype=bool)
        regions = (
            (lower, _lower_objective, np.log(beta), np.zeros_like(x), s_c),
            (
                ~lower,
                _upper_objective,
                np.log(np.exp(0.5 * x) - beta),
                s_c,
                np.full_like(x, np.inf),
            ),
        )
        for region, objective, target, lo, hi in regions:
            idx = np.flatnonzero(region)
            if idx.size:
                sr = s[idx]
                done[idx] = _iterate(objective, x[idx], sr, target[idx], lo[idx], hi[idx])
                s[idx] = sr
    return s, done


def _solve_parallel(x: F64, beta: F64) -> tuple[F64, NDArray[np.bool_]]:
    """One block per worker: the iteration is ufunc-bound, so threads scale."""
    workers = CPUS
    if workers <= 1 or len(x) < 4 * CHUNK:
        return _solve_total_vol(x, beta)
    s, done = np.empty_like(x), np.empty(len(x), dtype=bool)
    bounds = np.linspace(0, len(x), workers + 1).astype(int)

    def block(a: int, b: int) -> None:
        s[a:b], done[a:b] = _solve_total_vol(x[a:b], beta[a:b])

    for f in [_pool().submit(block, a, b) for a, b in itertools.pairwise(bounds)]:
        f.result()
    return s, done


def implied_vol(
    price: ArrayLike,
    S: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    is_call: ArrayLike,
    *,
    return_status: bool = False,
):
    """Black-Scholes-Merton implied volatility; NaN where there is none.

    With ``return_status=True`` returns ``(iv, status)`` where status holds an :class:`IVStatus`
    per element: a price below intrinsic value, at or above the no-arbitrage bound (S e^{-qT} for
    calls, K e^{-rT} for puts), non-convergence or bad input each get their own code. A price
    exactly at intrinsic value has an implied vol of 0.
    """
    shape, flat = _flatten((price, S, K, T, r, q, is_call))
    n = math.prod(shape)
    prices, S, K, T, r, q = (np.broadcast_to(a, (n,)).astype(np.float64) for a in flat[:6])
    w = np.broadcast_to(np.where(flat[6], 1.0, -1.0), (n,))
    iv = np.full(n, np.nan)
    status = np.full(n, IVStatus.OK, dtype=np.int8)
    with np.errstate(all="ignore"):
        sdq, kdr = S * np.exp(-q * T), K * np.exp(-r * T)
        finite = np.isfinite(prices) & np.isfinite(sdq) & np.isfinite(kdr) & np.isfinite(T)
        bad = ~(finite & (S > 0) & (K > 0) & (T > 0) & (prices >= 0))
        intrinsic = np.maximum(w * (sdq - kdr), 0.0)
        bound = np.where(w > 0, sdq, kdr)
        below = ~bad & (prices < intrinsic)
        above = ~bad & ~below & (prices >= bound)
        status[bad] = IVStatus.BAD_INPUT
        status[below] = IVStatus.BELOW_INTRINSIC
        status[above] = IVStatus.ABOVE_BOUND
        solve = np.flatnonzero(status == IVStatus.OK)
        # normalised OTM problem, in discounted terms: sqrt(F K) D = sqrt(sdq kdr)
        norm = np.sqrt(sdq[solve] * kdr[solve])
        x = -np.abs(np.log(sdq[solve] / kdr[solve]))
        beta = (prices[solve] - intrinsic[solve]) / norm
        b_max = np.exp(0.5 * x)
        beta = np.minimum(beta, b_max * (1.0 - 4.0 * np.finfo(float).eps))  # rounding at bound
        zero = beta <= 0
        s, done = np.zeros(len(solve)), np.ones(len(solve), dtype=bool)
        pos = np.flatnonzero(~zero)
        if pos.size:
            s[pos], done[pos] = _solve_parallel(x[pos], beta[pos])
        iv[solve] = np.where(done, s / np.sqrt(T[solve]), np.nan)
        status[solve[~done]] = IVStatus.NO_CONVERGENCE
    iv_out = _shape_out([iv], shape)[0]
    return (iv_out, status.reshape(shape)) if return_status else iv_out


def implied_vol_near(
    price: F64, S: F64, K: F64, T: F64, r: F64, q: F64, is_call: NDArray[np.bool_], guess: F64
) -> F64:
    """Implied vol of 1-D arrays starting from ``guess`` (the previous tick's IV): Newton on
    price with vega, a few steps, then :func:`implied_vol` for the rows that did not settle.

    A tick moves IV very little, so two or three Newton steps reach full precision; on a handful
    of rows that is several times cheaper than the cold bracketed solve, whose fixed per-call cost
    dominates small batches (the desk's per-tick refresh of position legs).
    """
    sigma = np.where(np.isfinite(guess) & (guess > 0), guess, np.nan)
    w = np.where(is_call, 1.0, -1.0)
    done = np.zeros(len(price), dtype=bool)
    with np.errstate(all="ignore"):
        sqrt_t, sdq, kdr = np.sqrt(T), S * np.exp(-q * T), K * np.exp(-r * T)
        log_fk = np.log(sdq / kdr)
        for _ in range(4):
            sst = sigma * sqrt_t
            d1 = log_fk / sst + 0.5 * sst
            model = w * (sdq * ndtr(w * d1) - kdr * ndtr(w * (d1 - sst)))
            vega = sdq * _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1) * sqrt_t
            step = (model - price) / vega
            sigma = sigma - step
            done = np.abs(step) <= 1e-12 * sigma
            if done.all():
                break
        # outside the no-arbitrage bounds there is no IV to find: say so without a cold solve
        intrinsic, bound = np.maximum(w * (sdq - kdr), 0.0), np.where(w > 0, sdq, kdr)
        outside = ~((price > intrinsic) & (price < bound))
    sigma[outside] = np.nan
    bad = ~(done & np.isfinite(sigma) & (sigma > 0)) & ~outside
    if bad.any():
        sigma[bad] = implied_vol(price[bad], S[bad], K[bad], T[bad], r[bad], q[bad], is_call[bad])
    return sigma


# --- Black-76 on the forward ---


def black76_greeks(F, K, T, r, sigma, is_call, *, threads: int | None = None) -> GreekArrays:
    """Black-76 (options on futures / index forwards): BSM with S = F and q = r.

    Delta and gamma are with respect to the forward; rho holds the forward fixed (``-T * V``).
    """
    g = greeks(F, K, T, r, r, sigma, is_call, threads=threads)
    with np.errstate(invalid="ignore"):
        return g._replace(rho=-np.asarray(T, dtype=float) * g.price)


def black76_price(F, K, T, r, sigma, is_call, *, threads: int | None = None) -> F64:
    return price(F, K, T, r, r, sigma, is_call, threads=threads)


def black76_implied_vol(price_, F, K, T, r, is_call, *, return_status: bool = False):
    return implied_vol(price_, F, K, T, r, r, is_call, return_status=return_status)

"""The numba kernel behind :mod:`kit.core.pricing_jit` (imported only when numba is installed).

One fused loop per option: d1, d2, the normal cdf/pdf and the nine outputs of
:func:`kit.core.pricing.greeks` in registers, with the same formulas, the same limits at T = 0
or sigma = 0 (``pricing._fix_edges``) and NaN for bad inputs. Inputs are 1-D arrays of length n,
or of length 1 for an argument that was a scalar; ``out`` is (9, n).

Why two loops: the options are cut into blocks of 1,024 (run in parallel). Each block first runs
:func:`_lanes`, a loop with no calls and no branches (:mod:`kit.core.vmath_numba`'s exp, log and
normal cdf, selects for the rest), which LLVM runs in SIMD lanes, several options per
instruction. It prices every row by the general formula and marks the rows it cannot price (bad
inputs, T = 0 or sigma = 0, an over- or underflowed discount) with a NaN price; those rows, and
only those, are redone by :func:`_row`, the one-option-at-a-time code with libm's exp and log.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

from kit.core.vmath_numba import ncdf as _ncdf
from kit.core.vmath_numba import vexp, vlog

F64 = NDArray[np.float64]
B = NDArray[np.bool_]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
BLOCK = 1024  # options per block: scalar inputs are spread over one block, not over n


@numba.njit(cache=True, error_model="numpy")
def _lanes(
    S: F64, K: F64, T: F64, r: F64, q: F64, sigma: F64, is_call: B, out: F64, lo: int
) -> int:
    """The general formula for rows lo .. lo + len(S) of ``out``; returns how many rows it left
    to :func:`_row` (their price is NaN). All inputs are contiguous blocks of the same length."""
    o0, o1, o2 = out[0, lo : lo + S.shape[0]], out[1, lo:], out[2, lo:]
    o3, o4, o5 = out[3, lo:], out[4, lo:], out[5, lo:]
    o6, o7, o8 = out[6, lo:], out[7, lo:], out[8, lo:]
    left = 0
    for i in range(S.shape[0]):
        s, k, t, rr, qq, sig = S[i], K[i], T[i], r[i], q[i], sigma[i]
        w = 1.0 if is_call[i] else -1.0
        sqrt_t = math.sqrt(t)
        sst = sig * sqrt_t
        dfq = vexp(-qq * t)
        sdq = s * dfq
        kdr = k * vexp(-rr * t)
        d1 = (vlog(s / k) + (rr - qq + 0.5 * sig * sig) * t) / sst
        d2 = d1 - sst
        e1 = vexp(-0.5 * d1 * d1)
        nd1 = _ncdf(w * d1, e1)
        e2 = e1 * (sdq / kdr)  # exp(-d2²/2) = exp(-d1²/2) S e^-qT / K e^-rT: no 4th exp
        nd2 = _ncdf(w * d2, e2)
        pdf = _INV_SQRT_2PI * e1
        dfq_pdf = dfq * pdf
        vega = sdq * pdf * sqrt_t
        w_nd1_dfq = w * dfq * nd1
        w_kdr_nd2 = w * kdr * nd2
        finite = abs(s) < math.inf and abs(k) < math.inf and abs(t) < math.inf
        ok = finite and abs(sig) < math.inf and s > 0.0 and k > 0.0 and t >= 0.0
        ok = ok and sig >= 0.0 and sst != 0.0 and e2 <= 1.0  # e2 > 1: a discount overflowed
        o0[i] = w * (sdq * nd1 - kdr * nd2) if ok else math.nan
        left += 0 if ok else 1
        o1[i] = w_nd1_dfq
        o2[i] = dfq_pdf / (s * sst)
        o3[i] = -0.5 * sdq * pdf * sig / sqrt_t - rr * w_kdr_nd2 + qq * s * w_nd1_dfq
        o4[i] = vega
        o5[i] = w_kdr_nd2 * t
        o6[i] = -dfq_pdf * d2 / sig
        o7[i] = qq * w_nd1_dfq - dfq_pdf * ((rr - qq) * t - 0.5 * d2 * sst) / (t * sst)
        o8[i] = vega * d1 * d2 / sig
    return left


@numba.njit(cache=True, error_model="numpy")
def _row(
    s: float, k: float, t: float, rr: float, qq: float, sig: float, call: bool, out: F64, i: int
) -> None:
    """One option with libm: the limits at T = 0 or sigma = 0, NaN for bad inputs, and the
    exact exp(-d2²/2) where a discount over- or underflowed."""
    w = 1.0 if call else -1.0
    finite = math.isfinite(s) and math.isfinite(k) and math.isfinite(t)
    if not (finite and math.isfinite(sig) and s > 0 and k > 0 and t >= 0 and sig >= 0):
        for j in range(9):
            out[j, i] = np.nan
        return
    sqrt_t = math.sqrt(t)
    sst = sig * sqrt_t
    dfq = math.exp(-qq * t)
    sdq = s * dfq
    kdr = k * math.exp(-rr * t)
    if sst == 0.0:  # the limits, as pricing._fix_edges sets them
        m = w * (sdq - kdr)
        ind = 1.0 if m > 0 else (0.5 if m == 0 else 0.0)
        out[0, i] = max(m, 0.0)
        out[1, i] = w * dfq * ind
        out[2, i] = 0.0
        out[3, i] = w * ind * (qq * sdq - rr * kdr)
        out[4, i] = 0.0
        out[5, i] = w * kdr * t * ind
        out[6, i] = 0.0
        out[7, i] = w * qq * dfq * ind
        out[8, i] = 0.0
        return
    d1 = (math.log(s / k) + (rr - qq + 0.5 * sig * sig) * t) / sst
    d2 = d1 - sst
    e1 = math.exp(-0.5 * d1 * d1)
    nd1 = _ncdf(w * d1, e1)
    e2 = e1 * (sdq / kdr)
    if not e2 <= 1.0:  # an overflowed discount (absurd r or q) or rounding past 1
        e2 = math.exp(-0.5 * d2 * d2)
    nd2 = _ncdf(w * d2, e2)
    pdf = _INV_SQRT_2PI * e1
    dfq_pdf = dfq * pdf
    vega = sdq * pdf * sqrt_t
    w_nd1_dfq = w * dfq * nd1
    w_kdr_nd2 = w * kdr * nd2
    out[0, i] = w * (sdq * nd1 - kdr * nd2)
    out[1, i] = w_nd1_dfq
    out[2, i] = dfq_pdf / (s * sst)
    out[3, i] = -0.5 * sdq * pdf * sig / sqrt_t - rr * w_kdr_nd2 + qq * s * w_nd1_dfq
    out[4, i] = vega
    out[5, i] = w_kdr_nd2 * t
    out[6, i] = -dfq_pdf * d2 / sig
    out[7, i] = qq * w_nd1_dfq - dfq_pdf * ((rr - qq) * t - 0.5 * d2 * sst) / (t * sst)
    out[8, i] = vega * d1 * d2 / sig


@numba.njit(cache=True)
def _spread(x: NDArray, n: int) -> NDArray:
    """An input of n as it is; a scalar's array of one spread over a block, once per call (a
    block reads it as a contiguous array, which the SIMD loop needs)."""
    return x if x.shape[0] == n else np.full(min(n, BLOCK), x[0])


@numba.njit(cache=True)
def _part(x: NDArray, n: int, lo: int, hi: int) -> NDArray:
    """Rows lo..hi of an input of n, or the first hi - lo of a spread scalar."""
    return x[lo:hi] if x.shape[0] == n else x[: hi - lo]


@numba.njit(cache=True)
def _block(
    S: F64, K: F64, T: F64, r: F64, q: F64, sigma: F64, is_call: B, out: F64, lo: int
) -> None:
    n = out.shape[1]
    hi = min(lo + BLOCK, n)
    s, k, t = _part(S, n, lo, hi), _part(K, n, lo, hi), _part(T, n, lo, hi)
    rr, qq, sig, c = (
        _part(r, n, lo, hi),
        _part(q, n, lo, hi),
        _part(sigma, n, lo, hi),
        _part(is_call, n, lo, hi),
    )
    if _lanes(s, k, t, rr, qq, sig, c, out, lo) == 0:
        return
    for j in range(hi - lo):
        if math.isnan(out[0, lo + j]):  # a row the lanes left (or a NaN from NaN r or q)
            _row(s[j], k[j], t[j], rr[j], qq[j], sig[j], c[j], out, lo + j)


@numba.njit(parallel=True, cache=True)
def greeks9(S: F64, K: F64, T: F64, r: F64, q: F64, sigma: F64, is_call: B, out: F64) -> None:
    """The nine outputs into ``out`` (9, n), blocks in parallel (``numba.set_num_threads``;
    numba gives each thread a contiguous run of blocks). Every row is computed the same way on
    any number of threads. Threads taking the next block from a shared counter were tried and
    taken back: under load they used ~25% more CPU for the same work (README, Performance)."""
    n = out.shape[1]
    S, K, T, r, q = _spread(S, n), _spread(K, n), _spread(T, n), _spread(r, n), _spread(q, n)
    sigma, is_call = _spread(sigma, n), _spread(is_call, n)
    for b in numba.prange((n + BLOCK - 1) // BLOCK):
        _block(S, K, T, r, q, sigma, is_call, out, b * BLOCK)

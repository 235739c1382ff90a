"""The numba kernel behind :mod:`kit.core.pricing_jit` (imported only when numba is installed).

One fused loop per option: d1, d2, the normal cdf/pdf and the nine outputs of
:func:`kit.core.pricing.greeks` in registers, with the same formulas, the same limits at T = 0
or sigma = 0 (``pricing._fix_edges``) and NaN for bad inputs. Inputs are 1-D arrays of length n,
or of length 1 for an argument that was a scalar; ``out`` is (9, n).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
B = NDArray[np.bool_]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def _fit_erfcx() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Polynomials for erfcx(z) = exp(z²) erfc(z), z >= 0, fitted at import to SciPy's erfcx
    (the library of the NumPy reference): 48 pieces of width 1/8 on [0, 6) in t = 16 z - 2k - 1,
    degree 8, and z erfcx(z) in t = 72 u - 1, u = 1/z², for z >= 6, degree 10; Chebyshev-fitted,
    relative error below 2e-15. Why: erfc(z) = erfcx(z) exp(-z²), and exp(-d²/2) is the normal
    pdf the kernel needs anyway, so N(d1) and N(d2) cost a polynomial each instead of libm's
    erfc (with its own exp inside)."""
    from numpy.polynomial import chebyshev as cheb
    from scipy.special import erfcx

    nodes = np.cos(np.pi * (np.arange(64) + 0.5) / 64)
    pieces = np.empty((48, 9))
    for k in range(48):
        z = (k + 0.5) / 8 + nodes / 16
        pieces[k] = cheb.cheb2poly(cheb.chebfit(nodes, erfcx(z), 8))
    u = (nodes + 1) / 72
    z = 1 / np.sqrt(u)
    return pieces, cheb.cheb2poly(cheb.chebfit(nodes, z * erfcx(z), 10))


_PIECES, _TAIL = _fit_erfcx()


@numba.njit(cache=True, inline="always")
def _ncdf(x: float, e: float) -> float:
    """N(x), given e = exp(-x²/2)."""
    z = abs(x) * _INV_SQRT2
    if z < 6.0:
        k = int(z * 8.0)
        c = _PIECES[k]
        t = z * 16.0 - (2 * k + 1)
        t2 = t * t
        t4 = t2 * t2  # Estrin's scheme: a dependency chain of 4 multiply-adds, not 8
        p = (c[0] + c[1] * t + t2 * (c[2] + c[3] * t)) + t4 * (
            c[4] + c[5] * t + t2 * (c[6] + c[7] * t) + t4 * c[8]
        )
    else:
        t = 72.0 / (z * z) - 1.0
        p = _TAIL[10]
        for j in range(9, -1, -1):
            p = p * t + _TAIL[j]
        p = p / z
    tail = 0.5 * p * e
    return tail if x < 0.0 else 1.0 - tail


@numba.njit(parallel=True, cache=True, error_model="numpy")
def greeks9(S: F64, K: F64, T: F64, r: F64, q: F64, sigma: F64, is_call: B, out: F64) -> None:
    n = out.shape[1]
    # step 1 through an array of n, 0 through a scalar's array of one
    a, b, c = min(S.shape[0] - 1, 1), min(K.shape[0] - 1, 1), min(T.shape[0] - 1, 1)
    d, e, f = min(r.shape[0] - 1, 1), min(q.shape[0] - 1, 1), min(sigma.shape[0] - 1, 1)
    g = min(is_call.shape[0] - 1, 1)
    for i in numba.prange(n):
        s, k, t, rr, qq, sig = S[i * a], K[i * b], T[i * c], r[i * d], q[i * e], sigma[i * f]
        w = 1.0 if is_call[i * g] else -1.0
        finite = math.isfinite(s) and math.isfinite(k) and math.isfinite(t)
        if not (finite and math.isfinite(sig) and s > 0 and k > 0 and t >= 0 and sig >= 0):
            for j in range(9):
                out[j, i] = np.nan
            continue
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
            continue
        d1 = (math.log(s / k) + (rr - qq + 0.5 * sig * sig) * t) / sst
        d2 = d1 - sst
        e1 = math.exp(-0.5 * d1 * d1)
        nd1 = _ncdf(w * d1, e1)
        e2 = e1 * (sdq / kdr)  # exp(-d2²/2) = exp(-d1²/2) S e^-qT / K e^-rT: no 4th exp
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

"""exp, log and the normal cdf for numba loops that LLVM can vectorise (SIMD lanes, not libm).

Why: numba lowers ``math.exp``/``math.log`` to libm calls, and LLVM vectorises no loop that
calls them (this llvmlite has no SVML vector library), so the Greeks kernel ran one option at a
time. These are straight-line float and integer arithmetic (no calls, no branches: selects), so
a loop built from them runs 4-8 options per instruction (AVX2/AVX-512). Each is exact to ~1 ulp
against libm over the whole double range (infinities, zeros, subnormals, NaN), tested in
``tests/test_pricing_jit.py``:

- :func:`vexp`: x = n ln2 + r (Cody-Waite split of ln2), e^r by its Taylor series to r^13
  (|r| <= ln2/2, truncation 4e-18), times 2^n built from the exponent bits in two halves so
  results down to the subnormals and up to the overflow are right.
- :func:`vlog`: x = 2^e m, m in [sqrt(2)/2, sqrt(2)), log m by fdlibm's ``e_log.c`` polynomial.
- :func:`ncdf`: N(x) = erfcx(|x|/sqrt 2) exp(-x²/2) / 2, erfcx one polynomial in 3/(3 + z)
  fitted at import to SciPy's erfcx, the NumPy reference's library; past z = 27.3 exp(-z²)
  is 0, so no tail formula is needed.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic
from numpy.typing import NDArray


@intrinsic
def f2i(typingctx, x):
    """The bits of a float64 as an int64 (a register move, not a call)."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def i2f(typingctx, x):
    """The float64 whose bits are an int64."""
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


_SHIFT = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer in the low bits
_SHIFT_BITS = int(np.array(_SHIFT).view(np.int64))
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # fdlibm's split: n * _LN2_HI is exact for |n| < 2**20
_LN2_LO = 1.90821492927058770002e-10
_C = [1.0 / math.factorial(k) for k in range(14)]
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = _C[2:]


@numba.njit(inline="always")
def vexp(x: float) -> float:
    """e^x, vectorisable: inf above 709.78, 0 below -745.2, NaN for NaN."""
    xc = 710.0 if x > 710.0 else x  # NaN stays NaN through both selects
    xc = -746.0 if xc < -746.0 else xc
    kf = xc * _LOG2E + _SHIFT
    nf = kf - _SHIFT  # round(x / ln2) as a float
    n = f2i(kf) - _SHIFT_BITS  # ... and as an int, from the bits
    r = (xc - nf * _LN2_HI) - nf * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    p = (1.0 + r + r2 * (_C2 + _C3 * r)) + r4 * (
        (_C4 + _C5 * r + r2 * (_C6 + _C7 * r))
        + r4 * ((_C8 + _C9 * r + r2 * (_C10 + _C11 * r)) + r4 * (_C12 + _C13 * r))
    )
    h = n >> 1  # 2^n in two factors: each stays a normal float from n = -1076 to 1024
    return p * i2f((h + 1023) << 52) * i2f((n - h + 1023) << 52)


_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_MANT = (1 << 52) - 1
_ONE_BITS = 1023 << 52
_SQRT2 = 1.4142135623730951
_TINY = 2.2250738585072014e-308  # the smallest normal float
_TWO54 = 18014398509481984.0


@numba.njit(inline="always", error_model="numpy")
def vlog(x: float) -> float:
    """log x, vectorisable: -inf at 0, inf at inf, NaN below 0 and for NaN."""
    sub = x < _TINY  # subnormal: scale into the normals first
    bits = f2i(x * _TWO54 if sub else x)
    m = i2f((bits & _MANT) | _ONE_BITS)  # in [1, 2)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    dk = float((bits >> 52) - 1023) + (1.0 if big else 0.0) - (54.0 if sub else 0.0)
    f = m - 1.0
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    res = dk * _LN2_HI - ((hfsq - (s * (hfsq + (t1 + t2)) + dk * _LN2_LO)) - f)
    res = x if x == math.inf else res
    res = -math.inf if x == 0.0 else res
    return res if x >= 0.0 else math.nan


_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_ZMAX = 28.0  # exp(-z²) is 0 from z = 27.3: past it the polynomial only has to stay finite
_C_T = 3.0  # t = 3 / (3 + z) maps z in [0, 28] to [3/31, 1]
_T0 = _C_T / (_C_T + _ZMAX)
_U_A = 2.0 / (1.0 - _T0)  # u = t _U_A + _U_B in [-1, 1]
_U_B = -2.0 * _T0 / (1.0 - _T0) - 1.0


def _fit_erfcx() -> NDArray[np.float64]:
    """erfcx(z) = exp(z²) erfc(z) on [0, 28] as t P(u), t = 3 / (3 + z), u linear in t on
    [-1, 1], P of degree 22, Chebyshev-fitted to SciPy's erfcx (the NumPy reference's library)
    at import (~2 ms): relative error below 4e-15 evaluated in float64 (the power-basis
    coefficients stay below 0.4, so no cancellation). Why erfcx: erfc(z) = erfcx(z) exp(-z²),
    and exp(-d²/2) is the normal pdf the kernel needs anyway, so N(d) costs a polynomial. Why
    one polynomial in t, not pieces in z: a piece is a gather per coefficient in SIMD lanes
    (18 of them per option were 9 of the kernel's 20 ns); 1/(3 + z) is one division."""
    from numpy.polynomial import chebyshev as cheb
    from scipy.special import erfcx

    nodes = np.cos(np.pi * (np.arange(400) + 0.5) / 400)
    t = _T0 + (nodes + 1.0) / 2.0 * (1.0 - _T0)
    coef = cheb.cheb2poly(cheb.chebfit(nodes, erfcx(_C_T / t - _C_T) / t, 22))
    return np.concatenate([coef, [0.0]]).reshape(6, 4)  # rows of 4: the 4-way split below


_P = _fit_erfcx()


@numba.njit(cache=True, inline="always")
def ncdf(x: float, e: float) -> float:
    """N(x), given e = exp(-x²/2); NaN for NaN. No calls, no branches, no table look-ups."""
    z = abs(x) * _INV_SQRT2
    zc = z if z < _ZMAX else _ZMAX  # the far tails read a finite value (times e = 0)
    t = _C_T / (_C_T + zc)
    u = t * _U_A + _U_B
    u2 = u * u
    u4 = u2 * u2
    a0, a1, a2, a3 = _P[5, 0], _P[5, 1], _P[5, 2], _P[5, 3]
    for j in range(4, -1, -1):  # four Horner chains in u^4 (a quarter of the latency)
        a0, a1 = a0 * u4 + _P[j, 0], a1 * u4 + _P[j, 1]
        a2, a3 = a2 * u4 + _P[j, 2], a3 * u4 + _P[j, 3]
    tail = 0.5 * t * ((a0 + u * a1) + u2 * (a2 + u * a3)) * e
    return tail if x < 0.0 else 1.0 - tail

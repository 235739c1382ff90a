"""The numba kernel behind :class:`kit.portfolio.valuation.Valuation` (only with numba installed).

One loop over the legs does what the NumPy path does in ~40 calls on arrays of tens of elements:
each leg's ten per-tick values (open and day P&L, the stop's worse-side adjustment, seven
Greeks), summed per position in leg order, plus the widest spread and the stale flag of each
position's held legs. The arithmetic is the NumPy path's, operation for operation and in the
same order, so the sums are the same bits (``tests/test_valuation.py`` compares the two).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]


@numba.njit(cache=True, error_model="numpy")
def leg_sums(
    lp: I64, lr: I64, qty: F64, avg: F64, day_ref: F64, realized_day: F64, mult: F64,
    leg_spot: F64, mark: F64, ask: F64, bid: F64, wide: B, delta: F64, gamma: F64, theta: F64,
    vega: F64, vanna: F64, charm: F64, tight: float, sums: F64, max_spread: F64, stale: B,
) -> None:  # fmt: skip
    """``sums`` (10, n), ``max_spread`` (n) and ``stale`` (n) come in zeroed (False)."""
    x = np.empty(10)
    for j in range(lp.shape[0]):
        p, r, q, m = lp[j], lr[j], qty[j], mult[j]
        raw = mark[r]
        marked = math.isfinite(raw)
        mk = raw if marked else avg[j]
        a, b = ask[r], bid[r]
        close_px = a if q < 0 else b
        unmarked = wide[r] or not marked
        active = q != 0
        x[0] = q * (mk - avg[j]) * m
        x[1] = q * (mk - day_ref[j]) * m + realized_day[j]
        x[2] = 0.0
        if unmarked and close_px >= 0 and active:
            if q < 0:  # np.fmax / np.fmin: a NaN side gives the other
                worse = close_px if (close_px > mk or math.isnan(mk)) else mk
            else:
                worse = close_px if (close_px < mk or math.isnan(mk)) else mk
            x[2] = q * (worse - mk) * m
        d = delta[r]
        x[3] = q * d * m
        x[4] = q * d
        x[5] = q * gamma[r] * leg_spot[j]
        x[6] = q * theta[r] * m
        x[7] = q * vega[r] * m
        x[8] = q * vanna[r] * m
        x[9] = q * charm[r] * m
        for k in range(10):
            v = x[k]
            if not math.isnan(v):
                sums[k, p] += v
        if active:
            mid = 0.5 * (a + b)
            width = a - b
            spread = width / mid * 100 if mid > 0 else np.inf
            if width <= tight:
                spread = 0.0
            if math.isnan(spread):
                spread = np.inf
            if spread > max_spread[p]:
                max_spread[p] = spread
            if unmarked:
                stale[p] = True

"""The numba kernel behind :mod:`kit.portfolio.refresh_jit` (imported only when numba is installed).

Warm-started implied vol of a few rows, one fused loop per row: the Newton steps of
:func:`kit.core.pricing.implied_vol_near` (same start, same four steps, same stopping test and
no-arbitrage bounds), in registers instead of ~50 NumPy calls on arrays of a handful of elements.
A row that does not settle is flagged for the NumPy path's cold solve, as there.
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


@numba.njit(cache=True, error_model="numpy")
def iv_near(
    price: F64, S: F64, K: F64, T: F64, r: F64, q: F64, is_call: B, guess: F64, out: F64, bad: B
) -> None:
    """``out``: the implied vol of each row (NaN outside the bounds); ``bad``: rows the Newton
    steps did not settle, for the cold solve (their ``out`` is meaningless)."""
    for i in range(price.shape[0]):
        p, t, g = price[i], T[i], guess[i]
        w = 1.0 if is_call[i] else -1.0
        sig = g if (math.isfinite(g) and g > 0) else np.nan
        sqrt_t = math.sqrt(t)
        sdq = S[i] * math.exp(-q[i] * t)
        kdr = K[i] * math.exp(-r[i] * t)
        log_fk = math.log(sdq / kdr)
        done = False
        for _ in range(4):
            sst = sig * sqrt_t
            d1 = log_fk / sst + 0.5 * sst
            nd1 = 0.5 * math.erfc(-w * d1 * _INV_SQRT2)
            nd2 = 0.5 * math.erfc(-w * (d1 - sst) * _INV_SQRT2)
            model = w * (sdq * nd1 - kdr * nd2)
            vega = sdq * _INV_SQRT_2PI * math.exp(-0.5 * d1 * d1) * sqrt_t
            step = (model - p) / vega
            sig = sig - step
            done = abs(step) <= 1e-12 * sig
            if done:
                break
        intrinsic = max(w * (sdq - kdr), 0.0)
        bound = sdq if w > 0 else kdr
        if not (p > intrinsic and p < bound):  # no IV to find (NaN inputs land here too)
            out[i] = np.nan
            bad[i] = False
        else:
            out[i] = sig
            bad[i] = not (done and math.isfinite(sig) and sig > 0)


@numba.njit(cache=True)
def scatter(
    idx: NDArray[np.int64], iv: F64, out: F64, S: F64, iv_col: F64, price_col: F64,
    delta_col: F64, gamma_col: F64, theta_col: F64, vega_col: F64, vanna_col: F64,
    charm_col: F64, fresh: B,
) -> None:  # fmt: skip
    """Write the rows' IV and Greeks (``out`` in ``GreekArrays`` order) into the market's
    columns in the units they keep (per day, per vol point), as the NumPy path's assignments
    do; a row with a spot is no longer fresh."""
    for i in range(idx.shape[0]):
        r = idx[i]
        iv_col[r] = iv[i]
        price_col[r] = out[0, i]
        delta_col[r] = out[1, i]
        gamma_col[r] = out[2, i]
        theta_col[r] = out[3, i] / 365.0
        vega_col[r] = out[4, i] / 100.0
        vanna_col[r] = out[6, i] / 100.0
        charm_col[r] = out[7, i] / 365.0
        if math.isfinite(S[i]):
            fresh[r] = False

"""Compiled IV and Greeks for the desk's per-tick refresh of a few rows (numba, optional).

Why: the tick path reprices the open legs (tens of rows) after every batch. On so few rows the
NumPy path is all fixed cost, ~50 calls for the warm-started IV and ~50 for the Greeks, about
150 us of a tick's budget; compiled loops do the same in a few microseconds. The Greeks are the
existing kernel (:mod:`kit.core.greeks_numba`, held to the NumPy path by tests); the IV is
:mod:`kit.portfolio.refresh_numba`'s Newton steps, the same as
:func:`kit.core.pricing.implied_vol_near`'s, with rows that do not settle sent to the same cold
solve. NumPy stays the reference: ``tests/test_refresh_jit.py`` holds this path to it.

Until a desk switches the compiled path on (:mod:`kit.portfolio.jit_switch`), without numba or
when it fails to compile, :func:`iv_and_greeks` returns None and the market takes the NumPy path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache

import numpy as np
from numpy.typing import NDArray

from kit.core.pricing import implied_vol
from kit.core.pricing_jit import kernel as greeks_kernel
from kit.portfolio import jit_switch

log = logging.getLogger(__name__)

F64 = NDArray[np.float64]
MAX_N = 4096  # above this the NumPy path's chunks (and the parallel kernel) take over


@cache
def kernels() -> tuple[Callable[..., None], Callable[..., None]] | None:
    """The compiled IV and write-back kernels, or None without numba (or if compiling fails)."""
    try:
        from kit.portfolio.refresh_numba import iv_near, scatter
    except ImportError:
        return None
    try:  # compile (or load from the disk cache) now, on one option
        one, yes = np.ones(1), np.ones(1, dtype=np.bool_)
        iv_near(one, one, one, one, one, one, yes, one, np.empty(1), yes.copy())
        scatter(np.zeros(1, dtype=np.int64), one, np.ones((9, 1)), *(np.ones(1) for _ in
                range(9)), yes.copy())  # fmt: skip
    except Exception as exc:  # a broken numba/llvmlite install must not take the desk down
        log.warning("market: numba IV kernel unavailable (%s); using NumPy", exc)
        return None
    return iv_near, scatter


def iv_kernel() -> Callable[..., None] | None:
    """The compiled IV kernel, or None without numba."""
    k = kernels()
    return None if k is None else k[0]


def scatter_kernel() -> Callable[..., None] | None:
    """The compiled write-back of a refresh into the market's columns, or None without numba."""
    k = kernels()
    return None if k is None else k[1]


def iv_and_greeks(
    price: F64, S: F64, K: F64, T: F64, r: F64, q: F64, is_call: NDArray[np.bool_], guess: F64
) -> tuple[F64, F64] | None:
    """(implied vol, the nine Greeks as a (9, n) array in ``GreekArrays`` order) of 1-D float
    rows, the IV warm-started from ``guess`` and kept at ``guess`` where there is none; None to
    take the NumPy path (not switched on, no numba, or too many rows)."""
    n = len(price)
    if not jit_switch.ON or n > MAX_N:
        return None
    iv_fn, g_fn = iv_kernel(), greeks_kernel()
    if iv_fn is None or g_fn is None:
        return None
    iv, bad = np.empty(n), np.empty(n, dtype=np.bool_)
    iv_fn(price, S, K, T, r, q, is_call, guess, iv, bad)
    if bad.any():  # did not settle from the guess: the cold bracketed solve, as implied_vol_near
        iv[bad] = implied_vol(price[bad], S[bad], K[bad], T[bad], r[bad], q[bad], is_call[bad])
    iv = np.where(np.isfinite(iv), iv, guess)
    out = np.empty((9, n))
    import numba  # present: the kernels above compiled

    before = numba.get_num_threads()  # one thread: waking OpenMP workers for tens of rows costs
    numba.set_num_threads(1)  # more than the work, and their spin-wait steals the loop's core
    try:
        g_fn(S, K, T, r, q, iv, is_call, out)
    finally:
        numba.set_num_threads(before)
    return iv, out

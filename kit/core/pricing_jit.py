"""A compiled Greeks kernel (numba), used by :func:`kit.core.pricing.greeks` on large batches.

Why: the NumPy path makes ~40 passes over memory per chunk (one temporary per operation) and
stops near 20M options/s on two cores; one fused loop computes d1, d2, the normal cdf/pdf and
all nine outputs in registers, in SIMD lanes (several options per instruction), with threads
taking blocks of 1,024 as they finish (:mod:`kit.core.greeks_numba`). NumPy stays the
reference: the same formulas, edges (T = 0, sigma = 0) and NaN rules, and tests hold this
kernel to it.

numba is optional (``pip install numba``; the ``dev`` and ``bench`` extras have it). Without it,
or when it fails to compile, :func:`kernel` returns None and pricing keeps the NumPy path.
Compilation happens on the first large batch and is cached on disk (``cache=True``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MIN_N = 32_768  # below this the NumPy path is as fast (thread start-up, no compile on tiny batches)


@cache
def kernel() -> Callable[..., None] | None:
    """The compiled parallel kernel, or None without numba (or if compiling fails)."""
    try:
        from kit.core.greeks_numba import greeks9
    except ImportError:
        return None
    try:  # compile (or load from the disk cache) now, on two options
        greeks9(*(np.ones(2) for _ in range(6)), np.ones(2, dtype=np.bool_), np.empty((9, 2)))
    except Exception as exc:  # a broken numba/llvmlite install must not take pricing down
        log.warning("pricing: numba kernel unavailable (%s); using NumPy", exc)
        return None
    return greeks9


def threads() -> int:
    """How many threads the kernel runs on when ``threads`` is None (numba's setting for the
    calling thread: all cores unless set lower)."""
    import numba

    return int(numba.get_num_threads())


def greeks_into(args: list[Any], n: int, threads: int | None) -> np.ndarray | None:
    """All nine outputs of ``pricing.greeks`` as a (9, n) array, or None to take the NumPy path.

    ``args`` are the flat inputs ``pricing._flatten`` makes (1-D arrays of n, or scalars)."""
    if n < MIN_N:  # threads only sets how many: results never depend on it
        return None
    fn = kernel()
    if fn is None:
        return None
    arrays = [
        np.ascontiguousarray(a, dtype=np.bool_ if j == 6 else np.float64)
        if isinstance(a, np.ndarray)
        else np.array([a], dtype=np.bool_ if j == 6 else np.float64)
        for j, a in enumerate(args)
    ]
    out = np.empty((9, n))
    if threads is None:
        fn(*arrays, out)
        return out
    import numba

    before = numba.get_num_threads()  # per calling thread: other callers keep theirs
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        fn(*arrays, out)
    finally:
        numba.set_num_threads(before)
    return out

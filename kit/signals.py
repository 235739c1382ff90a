"""Market signals computed from the desk's own data: IV rank and VIX regime bands so far.

Issue 9 adds gamma exposure, walls, vanna/charm flows and regimes here.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def iv_rank(history: ArrayLike, current: float) -> float:
    """Where ``current`` sits between the history's low (0) and high (100); NaN without range.

    Rank (not percentile) is what premium sellers quote: 30 means IV is 30% of the way from its
    one-year low to its high. ``current`` outside the range is clipped to 0 or 100.
    """
    h = np.asarray(history, dtype=float)
    h = h[np.isfinite(h)]
    if h.size == 0 or not np.isfinite(current):
        return float("nan")
    lo, hi = float(h.min()), float(h.max())
    if hi <= lo:
        return float("nan")
    return float(np.clip((current - lo) / (hi - lo) * 100, 0.0, 100.0))


VIX_BANDS: tuple[tuple[float, str], ...] = (
    (12.0, "very_low"), (16.0, "low"), (22.0, "medium"), (30.0, "high"), (float("inf"), "extreme"),
)  # fmt: skip


def vix_regime(vix: float, bands: tuple[tuple[float, str], ...] = VIX_BANDS) -> str | None:
    """The absolute VIX band ``vix`` falls in (the first whose upper bound exceeds it), None
    when unknown. The defaults follow common desk usage: below 12 very low, 12–16 low, 16–22
    medium, 22–30 high, 30 and above extreme."""
    if not np.isfinite(vix):
        return None
    return next(name for upper, name in bands if vix < upper)

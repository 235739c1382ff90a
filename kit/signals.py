"""Market signals computed from the desk's own data: IV rank so far.

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

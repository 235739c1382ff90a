"""How the simulator quotes around its model price: spreads by delta, tenor and market state."""

from __future__ import annotations

import numpy as np


def spread(
    mid: np.ndarray,
    delta: np.ndarray,
    tick: np.ndarray,
    to_expiry_s: np.ndarray,
    move_5m: np.ndarray,
    intrinsic: np.ndarray | float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Bid and ask around ``mid``: (ask - bid) / mid is 0.9% + 0.8% x exp(-days / 10) at the
    money (real SPX: 1.8% a few days out, 1.3% a month out), times (0.5 / |delta|)^0.85 out of
    the money (25-delta 3.8%, 10-delta 6.7% on the real chain), half that on the expiry day
    (0DTE SPXW: one or two ticks near the money), wider in fast moves (up to 5x
    after a 1% move in 5 minutes) and into the close; a whole number of ticks (CBOE: 0.05
    below $3, 0.10 above), at least one. In the money, the spread is the out-of-the-money
    counterpart's on the time value plus 0.5% of ``intrinsic`` (a deep ITM SPX call is quoted
    about $20 wide on $3,200, not 1.7% of it)."""
    tick = np.where((mid > 3) & (tick >= 0.05), 2 * tick, tick)
    days = np.maximum(to_expiry_s, 0.0) / 86400
    a = np.abs(delta)
    d = np.clip(np.where(a > 0.5, 1 - a, a), 0.01, 0.5)  # ITM: the OTM counterpart's delta
    frac = (0.009 + 0.008 * np.exp(-days / 10)) * (0.5 / d) ** 0.85
    frac *= np.where(days < 1, 0.5, 1.0)  # 0DTE: the most traded options, one or two ticks
    time_value = np.maximum(mid - intrinsic, 0.0)
    width = np.where(intrinsic > 0, frac * time_value + 0.005 * intrinsic, frac * mid)
    width *= 1 + 4 * np.minimum(1.0, move_5m / 0.01)
    width *= np.where(to_expiry_s < 300, 2.0, np.where(to_expiry_s < 900, 1.5, 1.0))
    n = np.maximum(1.0, np.round(width / tick))
    bid = np.maximum(np.round((mid - n * tick / 2) / tick), 0.0) * tick
    ask = np.maximum(bid + n * tick, tick)
    return np.round(bid, 4), np.round(ask, 4)

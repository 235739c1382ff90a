"""A Reg-T style margin estimate for short index-option structures: what a broker holds as
buying power, as distinct from the stress loss (the worst expiry loss within ±N%), which is a
risk measure. A trader sizing a strangle needs both: the first says how much capital the trade
ties up, the second how much it can lose.

The rules (Cboe's margin manual for broad-based index options, customer accounts; brokers
often add house requirements on top, so treat this as a floor):

- a naked short option: 100% of its premium plus 15% of the underlying's value less the amount
  out of the money, at least the premium plus 10% of the underlying's value (calls) or of the
  strike (puts);
- a short covered by a long of the same right and expiry further out of the money (a vertical
  credit spread): the difference between the strikes;
- a short strangle: the greater of the put side's and the call side's requirement, plus the
  premium of the other side; an iron condor: the greater of its two spreads' widths (both sides
  cannot lose at once);
- per unit of the structure times its units, in dollars (strike points times the multiplier).

Pure functions of the legs, their prices and spot: no market state, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from kit.core.model import Leg, Right

NAKED_PCT = 0.15  # of the underlying's value, less the out-of-the-money amount
MINIMUM_PCT = 0.10  # of the underlying (calls) or the strike (puts)


def naked_requirement(is_call: bool, strike: float, spot: float, premium: float) -> float:
    """Per contract, in points (multiply by the multiplier for dollars)."""
    otm = max(0.0, strike - spot) if is_call else max(0.0, spot - strike)
    floor = MINIMUM_PCT * (spot if is_call else strike)
    return premium + max(NAKED_PCT * spot - otm, floor)


def _side(legs: Sequence[Leg], prices: Sequence[float], spot: float, right: Right) -> tuple[
        float, float, bool]:  # fmt: skip
    """(requirement in points per unit, premium of its shorts, whether it is fully covered)."""
    shorts = [(g, p) for g, p in zip(legs, prices, strict=True)
              if g.contract.right is right and g.ratio < 0]  # fmt: skip
    longs = sorted(((g.contract.strike, g.ratio) for g in legs
                    if g.contract.right is right and g.ratio > 0),
                   key=lambda x: x[0], reverse=right is Right.PUT)  # fmt: skip
    available = dict(longs)
    need = premium = 0.0
    covered = True
    for leg, price in shorts:
        k, count = leg.contract.strike, -leg.ratio
        premium += price * count
        for strike in list(available):  # the nearest long beyond the short covers it first
            beyond = strike > k if right is Right.CALL else strike < k
            if count and beyond and available[strike] > 0:
                used = min(count, available[strike])
                need += abs(strike - k) * used
                available[strike] -= used
                count -= used
        if count:
            covered = False
            need += naked_requirement(right is Right.CALL, k, spot, price) * count
    return need, premium, covered


def reg_t_margin(legs: Sequence[Leg], prices: Sequence[float], spot: float,
                 quantity: int = 1) -> float:  # fmt: skip
    """Dollars of buying power ``quantity`` units of ``legs`` need at these leg ``prices``
    (per-contract premiums, e.g. mids) and ``spot``; NaN when a price or spot is unknown."""
    if not legs:
        return 0.0
    if not math.isfinite(spot) or not all(math.isfinite(p) and p >= 0 for p in prices):
        return math.nan
    mult = legs[0].contract.multiplier
    put, call = (_side(legs, prices, spot, r) for r in (Right.PUT, Right.CALL))
    first, (small, small_premium, small_covered) = sorted((put, call), key=lambda s: -s[0])
    # a strangle adds the other side's premium; spreads on both sides (a condor) do not
    extra = small_premium if small > 0 and not small_covered else 0.0
    return (first[0] + extra) * mult * quantity

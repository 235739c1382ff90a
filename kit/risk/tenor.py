"""Greeks in units of the move the market expects over a position's remaining life.

Why: "net delta 0.10" or "gamma 0.10 per 1% move" mean very different things at 0 and at 45
days to expiry. A 1% SPX move is about 2.5 standard deviations of what is left of a 0DTE day but
a fifth of one over 45 days, so a gamma threshold in "per 1%" fires from the first second on
every short 0DTE strangle and never on a 45-day one. Scaled by the 1-sigma move over the time to
the position's nearest expiry (at-the-money IV x sqrt(T)), a threshold means the same at every
tenor: for the same strikes in delta terms the metrics below take the same values.

- ``move_pct``: the 1-sigma move over the time left, % of spot
  (:func:`kit.core.payoff.expected_move` at the expiry's at-the-money IV);
- ``gamma_1s``: how much the net delta per unit changes for that move: ``|gamma per 1%| x
  move_pct`` (the book reports gamma per unit as the delta change for a 1% move);
- ``delta_1s``: how many of those moves spot sits from where the position is delta-neutral, to
  first order: ``|delta per unit| / max(gamma_1s, GAMMA_FLOOR)``. Direction, not convexity: a
  centred strangle reads 0 however narrow, so a roll back to neutral is not re-triggered by its
  own gamma; the floor keeps a position with little gamma (a vertical between its strikes, far
  wings, the last minutes) from dividing by ~0 (it reads its delta x 4).

The at-the-money IV is read from the market's own implied vols of that expiry (interpolated at
spot between the nearest strikes below and above it, out-of-the-money side preferred), using the
contracts quoted within :data:`FRESH_S`: the whole chain when it is subscribed (the autopilot),
else the position's own legs, whose IVs bracket the money like a strangle's wings do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from weakref import WeakKeyDictionary

import numpy as np
from numpy.typing import NDArray

from kit.core.clock import NS_PER_S
from kit.core.payoff import expected_move
from kit.portfolio.book import PositionView
from kit.portfolio.market import MarketState

F64 = NDArray[np.float64]
NS_PER_DAY = 86_400 * NS_PER_S
GAMMA_FLOOR = 0.25  # gamma_1s below this counts as this in delta_1s (a power of 2: exact division)
FRESH_S = 300.0  # a contract quoted this recently carries a current IV; older ones are a fallback
REUSE_S = 1.0  # an expiry's ATM IV is looked up again after this much market time (the desk's
# heartbeat reprices the chain once a second, so a fresher look-up would read the same IVs)
_memo: WeakKeyDictionary[MarketState, dict[tuple[int, float], tuple[int, float, float]]] = (
    WeakKeyDictionary()
)
_group_memo: WeakKeyDictionary[MarketState, tuple[tuple[object, ...], list, np.ndarray]] = (
    WeakKeyDictionary()
)


@dataclass(frozen=True)
class SigmaGreeks:
    """Per position (NaN where unknown: no IV at the expiry, no spot, or closed)."""

    atm_iv: F64  # decimal
    move_pct: F64  # 1-sigma move over the time to the nearest expiry, % of spot
    gamma_1s: F64  # |net delta change per unit| for that move
    delta_1s: F64  # 1-sigma moves from the delta-neutral spot: |delta| / max(gamma_1s, floor)


def atm_iv(market: MarketState, und: int, expiry_ns: float, spot: float, now_ns: int) -> float:
    """At-the-money IV of one expiry of underlying row ``und``, or NaN when none is priced."""
    m, n = market, market.size
    rows = np.flatnonzero(m.expiry_ns[:n] == expiry_ns)
    rows = rows[(m.und[rows] == und) & (m.iv[rows] > 0)]  # NaN compares False
    if not rows.size or not spot > 0:
        return math.nan
    recent = rows[m.mark_ts[rows] >= now_ns - FRESH_S * NS_PER_S]
    rows = recent if recent.size else rows
    strike, is_call, iv = m.strike[rows], m.is_call[rows], m.iv[rows]
    ends: list[tuple[float, float]] = []
    for side, otm, nearest in ((strike <= spot, ~is_call, np.argmax),
                               (strike >= spot, is_call, np.argmin)):  # fmt: skip
        k = np.flatnonzero(side & otm)  # puts below spot, calls above: their marks carry the IV
        k = k if k.size else np.flatnonzero(side)
        if k.size:
            j = k[nearest(strike[k])]
            ends.append((float(strike[j]), float(iv[j])))
    if len(ends) == 1 or ends[0][0] == ends[1][0]:
        return ends[0][1]
    (k0, v0), (k1, v1) = ends
    return v0 + (v1 - v0) * (spot - k0) / (k1 - k0)


def _atm_iv_memo(market: MarketState, und: int, expiry: float, spot: float, now_ns: int) -> float:
    """:func:`atm_iv`, reused for :data:`REUSE_S` of market time while spot stays within 0.1%:
    the desk evaluates after every batch of ticks, and the look-up is its costliest step."""
    memo = _memo.setdefault(market, {})
    hit = memo.get((und, expiry))
    if (hit is not None and 0 <= now_ns - hit[0] < REUSE_S * NS_PER_S
            and abs(spot - hit[1]) < 1e-3 * spot):  # fmt: skip
        return hit[2]
    iv = atm_iv(market, und, expiry, spot, now_ns)
    memo[(und, expiry)] = (now_ns, spot, iv)
    return iv


def _groups(view: PositionView, market: MarketState) -> list[tuple[float, int, NDArray[np.int64]]]:
    """The live positions grouped by (nearest expiry, underlying row), in the order of
    :func:`sigma_greeks`. Reused while the view's book arrays are the same objects and the same
    positions are live: consecutive views of an unchanged book share them
    (:mod:`kit.portfolio.valuation`), so a tick does not regroup 50 positions."""
    n, names = len(view), view.underlying
    hit = _group_memo.get(market)
    if hit is not None and hit[0][0] is names and hit[0][2] == (n, len(market.underlyings)):
        und = hit[2]
    else:
        und = np.fromiter((market.underlyings.get(u, -1) for u in names), np.int64, n)
    live = view.is_open & (und >= 0) & np.isfinite(view.nearest_expiry_ns) & (view.spot > 0)
    key = (names, view.nearest_expiry_ns, (n, len(market.underlyings)), live.tobytes())
    if hit is not None and hit[0][0] is key[0] and hit[0][1] is key[1] and hit[0][2:] == key[2:]:
        return hit[1]
    idx = np.flatnonzero(live)
    expiries, group = np.unique(view.nearest_expiry_ns[idx], return_inverse=True)
    out = []
    for g, expiry in enumerate(expiries.tolist()):
        same = idx[group.ravel() == g]
        for u in np.unique(und[same]).tolist():
            out.append((expiry, u, same[und[same] == u]))
    _group_memo[market] = (key, out, und)  # holds the keyed objects: ids cannot be reused
    return out


def sigma_greeks(view: PositionView, market: MarketState, now_ns: int) -> SigmaGreeks:
    """:class:`SigmaGreeks` of every position of ``view``: one IV look-up and one expected move
    per (underlying, expiry), broadcast to its positions (a book of 500 strangles on one expiry
    costs one look-up, not 500)."""
    n = len(view)
    iv, move = np.full(n, np.nan), np.full(n, np.nan)
    for expiry, u, members in _groups(view, market):
        days = max(expiry - now_ns, 0) / NS_PER_DAY
        sigma = _atm_iv_memo(market, u, expiry, float(view.spot[members[0]]), now_ns)
        iv[members] = sigma
        if np.isfinite(sigma):
            move[members] = expected_move(100.0, sigma, days)
    gamma_1s = np.abs(view.gamma_unit) * move
    delta_1s = np.abs(view.delta_unit) / np.fmax(gamma_1s, GAMMA_FLOOR)  # NaN stays NaN
    return SigmaGreeks(iv, move, gamma_1s, delta_1s)

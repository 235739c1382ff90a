"""Strategy construction and adjustment: pick strikes by delta from the desk's own Greeks.

Premium sellers choose strikes by delta ("the 10-delta strangle"), not by price, so selection
reads the market state's Greeks, computed by the desk the same way live, in replay and in a
backtest. Every function is pure (market state in, records out) and vectorised over a chain's rows.

Conventions, and why:

* **Midpoint of a delta band.** A trader asks for "10 to 15 delta", not one exact delta: strikes
  rarely land on 0.10, and a band says how far off is acceptable. The contract closest to the
  midpoint wins, so Greek noise cannot push the choice to an edge strike, and a band means the
  same thing on both sides.
* **Liquidity first.** A strike that cannot be traded near its mid is no choice: one-sided, wide,
  tiny-bid or thin-OI contracts are dropped *before* the delta match, and an empty result names
  the contract that came nearest and why it failed.
* **Roll the untested side.** When spot runs toward one short strike, the classic defence is to
  roll the *other* (untested) short leg toward spot: it collects more credit and brings the
  position's delta back toward zero without buying back the leg that is losing. The untested leg is
  the one farthest out of the money (in % of spot, signed, so a short leg in the money is never
  "far"). The new strike is the one that makes net delta closest to zero.
* **Never cross strikes.** A rolled call stays at or above the short put strike (and a put at or
  below the short call): crossing makes an inverted strangle that owes at least the strike gap at
  expiry whatever happens, and the strangle would no longer be a valid shape. A short leg also
  stays inside its own wing, so an iron condor stays an iron condor.
* **Wing delta.** Protection is bought by delta (0.05 by default) rather than at a fixed width: the
  same delta gives a comparable cost and tail cover across expiries and vol regimes, where a fixed
  number of points would be far too wide in a calm 0DTE and too narrow in a month-out crash.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kit.core.model import Contract, Leg, ModelError, Position, Right, StrategyType
from kit.portfolio.market import MarketState
from kit.risk.rules import EntryRule

Mask = NDArray[np.bool_]
Why = Callable[[int], str]


class StrategyError(ValueError):
    """A selection that cannot be made; the message says why in trader terms."""


@dataclass(frozen=True)
class DeltaBand:
    """Acceptable |delta| of a short strike: ``low`` to ``high`` inclusive."""

    low: float = 0.10
    high: float = 0.15

    def __post_init__(self) -> None:
        if not (0 < self.low <= self.high < 0.5):
            raise ValueError(f"delta band needs 0 < low <= high < 0.5, got {self.low}-{self.high}")

    @property
    def mid(self) -> float:
        return 0.5 * (self.low + self.high)


@dataclass(frozen=True)
class LiquidityFilter:
    """Which contracts are tradeable: two-sided, ``bid >= min_bid``, spread at most
    ``max_spread_pct`` of mid or at most ``max_spread`` wide (a one- or two-tick market is as
    tight as a cheap option gets), open interest at least ``min_open_interest`` (unknown OI fails
    only when a minimum is set) and a finite delta (the desk could not price it otherwise)."""

    max_spread_pct: float = 10.0
    min_open_interest: float = 0.0
    min_bid: float = 0.05
    max_spread: float = 0.10

    def __post_init__(self) -> None:
        if not (self.max_spread_pct > 0 and self.min_open_interest >= 0 and self.min_bid >= 0):
            raise ValueError(f"liquidity filter needs a positive spread, minimums >= 0: {self}")

    @classmethod
    def for_entry(cls, entry: EntryRule, *, min_bid: float = 0.05) -> LiquidityFilter:
        """The filter matching the desk's entry check, so a selection is not then refused."""
        return cls(entry.max_spread_pct, entry.min_open_interest, min_bid, entry.max_spread)

    def _checks(self, market: MarketState, rows: NDArray[np.int64]) -> list[tuple[Mask, Why]]:
        """(passes, why it fails) per check; NaN (never quoted, unknown OI) compares False."""
        bid, ask, oi, d = (x[rows] for x in (market.bid, market.ask, market.open_interest,
                                             market.delta))  # fmt: skip
        quoted = (bid > 0) & (ask > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            spread = (ask - bid) / (0.5 * (bid + ask)) * 100
        return [
            (quoted, lambda i: "no two-sided quote"),
            (~quoted | (bid >= self.min_bid), lambda i: f"bid {bid[i]:.2f} < {self.min_bid:.2f}"),
            # relative slack: a spread of exactly the limit passes despite float rounding
            (~quoted | (spread <= self.max_spread_pct * (1 + 1e-9))
             | (ask - bid <= self.max_spread + 1e-9),
             lambda i: f"spread {spread[i]:.0f}% of mid"),
            ((oi >= self.min_open_interest) | (self.min_open_interest == 0),
             lambda i: f"open interest {oi[i]:.0f}" if oi[i] >= 0 else "open interest unknown"),
            (np.isfinite(d), lambda i: "no delta"),
        ]  # fmt: skip

    def passes(self, market: MarketState, rows: NDArray[np.int64]) -> Mask:
        """One boolean per row: does the contract pass every check."""
        return np.logical_and.reduce([ok for ok, _ in self._checks(market, rows)])

    def reasons(self, market: MarketState, row: int) -> list[str]:
        """Why one contract fails, in trader terms (empty when it passes)."""
        return [why(0) for ok, why in self._checks(market, np.array([row])) if not ok[0]]


DEFAULT_BAND = DeltaBand()
DEFAULT_LIQUIDITY = LiquidityFilter()


def _label(c: Contract) -> str:  # "5050 C": how a trader names a strike
    return f"{c.strike:g} {c.right.value}"


def _rows(market: MarketState, contracts: Sequence[Contract]) -> NDArray[np.int64]:
    try:
        return market.rows(contracts)
    except KeyError as exc:
        c = exc.args[0]
        raise StrategyError(
            f"{c.root} {c.expiry} {_label(c)} is not tracked: quote it first"
        ) from None


def _one_expiry(chain: Sequence[Contract], what: str) -> None:
    expiries = sorted({c.expiry for c in chain})
    if len(expiries) != 1:
        raise StrategyError(f"{what}'s chain must hold one expiry, got {len(expiries)}: {expiries}")


def _pick(
    market: MarketState,
    candidates: Sequence[Contract],
    target: float,
    liquidity: LiquidityFilter,
    what: str,
    *,
    within: tuple[float, float] = (0.0, 1.0),
    allowed: NDArray[np.bool_] | None = None,
) -> Contract:
    """The candidate passing ``liquidity`` and ``allowed`` with |delta| in ``within`` whose signed
    delta is closest to ``target``; else a StrategyError naming the nearest contract and why."""
    if not candidates:
        raise StrategyError(f"no {what}: the chain has no candidates")
    rows = _rows(market, candidates)
    d = market.delta[rows]
    allowed = np.ones(len(rows), dtype=bool) if allowed is None else allowed
    inside = (np.abs(d) >= within[0]) & (np.abs(d) <= within[1])
    ok = liquidity.passes(market, rows) & allowed & inside
    if ok.any():
        return candidates[int(np.argmin(np.where(ok, np.abs(d - target), np.inf)))]
    priced = np.flatnonzero(allowed & np.isfinite(d))
    if not priced.size:
        raise StrategyError(f"no {what}: no candidate has a delta yet (quotes and a spot needed)")
    # nearest: smallest distance to the band, then to the target
    off = np.maximum(np.maximum(within[0] - np.abs(d), np.abs(d) - within[1]), 0.0)
    j = priced[np.lexsort((np.abs(d - target)[priced], off[priced]))[0]]
    why = [*liquidity.reasons(market, int(rows[j])), *([] if inside[j] else ["outside the band"])]
    near = f"{_label(candidates[j])}, |delta| {abs(d[j]):.2f}, {', '.join(why)}"
    raise StrategyError(f"no {what} passes the liquidity filters (nearest: {near})")


def nearest_delta(market: MarketState, contracts: Sequence[Contract], target: float) -> Contract:
    """The contract whose delta is closest to ``target`` (signed: puts negative), unfiltered."""
    if not contracts:
        raise StrategyError("no contracts to choose from")
    rows = market.rows(contracts)
    gap = np.abs(market.delta[rows] - target)
    if not np.isfinite(gap).any():
        raise StrategyError("no Greeks for these contracts yet: quotes and a spot are needed")
    return contracts[int(np.nanargmin(gap))]


def nearest_otm(market: MarketState, contracts: Sequence[Contract], kind: str, x: float,
                x2: float = math.nan) -> Contract:  # fmt: skip
    """The research grid's other strike rules, for one side: of the out-of-the-money contracts
    quoted on both sides, the one nearest ``x`` % from spot (``otm_pct``), whose mid is nearest
    ``x`` dollars (``premium``), or nearest beyond the move band (``band``: spot x (1 + x) for
    a put, spot x (1 + x2) for a call, the grid's P-band edges)."""
    if not contracts:
        raise StrategyError("no contracts to choose from")
    rows = market.rows(contracts)
    call = np.array([c.is_call for c in contracts])
    k = np.array([c.strike for c in contracts])
    spot, bid, ask = market.spot[market.und[rows]], market.bid[rows], market.ask[rows]
    with np.errstate(invalid="ignore"):
        ok = np.where(call, k > spot, k < spot) & (bid > 0) & (ask > 0)
        if kind == "otm_pct":
            gap = np.abs(k - spot * (1 + np.where(call, x, -x) / 100))
        elif kind == "premium":
            gap = np.abs(0.5 * (bid + ask) - x)
        elif kind == "band":
            edge = spot * (1 + np.where(call, x2, x))
            ok &= np.where(call, k >= edge, k <= edge)
            gap = np.abs(k - edge)
        else:
            raise StrategyError(f"unknown strike rule {kind!r} (otm_pct, premium or band)")
    gap = np.where(ok, gap, np.inf)
    if not np.isfinite(gap).any():
        raise StrategyError("no out-of-the-money contract quoted on both sides with a spot")
    return contracts[int(np.argmin(gap))]


def short_strangle(
    market: MarketState,
    chain: Sequence[Contract],
    position_id: str,
    opened_ts_ns: int,
    *,
    delta: float = 0.10,
    quantity: int = 1,
    rule: tuple[Any, ...] | None = None,
) -> Position:
    """Sell the put and the call nearest ``delta`` (absolute) from one expiry's ``chain``, with no
    liquidity filter (the demo scenarios' original selection; :func:`strangle` filters); or,
    with ``rule`` (``("otm_pct", 1.0)``, ``("premium", 2.5)``, ``("band", -0.012, 0.011)``),
    by :func:`nearest_otm`."""
    _one_expiry(chain, "a strangle")
    puts, calls = [c for c in chain if not c.is_call], [c for c in chain if c.is_call]
    if rule is None:
        put, call = (
            nearest_delta(market, puts, -abs(delta)),
            nearest_delta(market, calls, abs(delta)),
        )
        note = f"short {abs(delta):g}-delta strangle"
    else:
        put, call = nearest_otm(market, puts, *rule), nearest_otm(market, calls, *rule)
        if rule[0] == "otm_pct":
            note = f"short {rule[1]:g}% OTM strangle"
        elif rule[0] == "premium":
            note = f"short ${rule[1]:.2f}-premium strangle"
        else:
            note = f"short strangle beyond the move band {rule[1]:+.2%}/{rule[2]:+.2%}"
    return Position(position_id, StrategyType.STRANGLE, (Leg(put, -1), Leg(call, -1)), quantity,
                    opened_ts_ns, note=note)  # fmt: skip


def strangle_strikes(
    market: MarketState,
    chain: Sequence[Contract],
    band: DeltaBand = DEFAULT_BAND,
    liquidity: LiquidityFilter = DEFAULT_LIQUIDITY,
) -> tuple[Contract, Contract]:
    """(put, call) of one expiry: of the liquid contracts with |delta| in ``band``, the pair whose
    deltas cancel best, then the one closest to the band's midpoint.

    Why balance first: 5-point 0DTE strikes sit about 0.06 delta apart, so picking each side on
    its own can pair a 0.15 call with a 0.09 put and fail the entry's net-delta check."""
    _one_expiry(chain, "a strangle")
    sides = []
    for right, sign in ((Right.PUT, -1.0), (Right.CALL, 1.0)):
        side = [c for c in chain if c.right is right]
        what = f"{right.name.lower()} with |delta| in {band.low:.2f}-{band.high:.2f}"
        _pick(market, side, sign * band.mid, liquidity, what, within=(band.low, band.high))
        rows = _rows(market, side)
        d = market.delta[rows]
        ok = liquidity.passes(market, rows) & (np.abs(d) >= band.low) & (np.abs(d) <= band.high)
        sides.append(([side[i] for i in np.flatnonzero(ok)], d[ok]))
    (puts, dp), (calls, dc) = sides
    net = np.abs(dp[:, None] + dc[None, :])
    off = np.abs(np.abs(dp) - band.mid)[:, None] + np.abs(dc - band.mid)[None, :]
    order = np.lexsort((off.ravel(), np.round(net.ravel(), 6)))
    i, j = np.unravel_index(order[0], net.shape)
    return puts[i], calls[j]


def strangle(
    market: MarketState,
    chain: Sequence[Contract],
    position_id: str,
    opened_ts_ns: int,
    *,
    band: DeltaBand = DEFAULT_BAND,
    liquidity: LiquidityFilter = DEFAULT_LIQUIDITY,
    quantity: int = 1,
) -> Position:
    """A short strangle on the strikes of :func:`strangle_strikes`; the note names the band."""
    put, call = strangle_strikes(market, chain, band, liquidity)
    if put.strike > call.strike:
        raise StrategyError(f"the band's put {_label(put)} is above its call {_label(call)}")
    note = f"short {band.low:g}-{band.high:g} delta strangle"
    return Position(position_id, StrategyType.STRANGLE, (Leg(put, -1), Leg(call, -1)), quantity,
                    opened_ts_ns, note=note)  # fmt: skip


def _same_series(chain: Sequence[Contract], k: Contract) -> list[Contract]:
    """Contracts of ``chain`` with ``k``'s root, expiry and right (``k`` itself included)."""
    same = [c for c in chain if (c.root, c.expiry, c.right) == (k.root, k.expiry, k.right)]
    return same if k in same else [*same, k]


def _beyond(c: Contract, k: Contract) -> bool:
    """Is ``c`` the same series as ``k`` and strictly further out of the money."""
    if (c.root, c.expiry, c.right) != (k.root, k.expiry, k.right):
        return False
    return c.strike > k.strike if k.is_call else c.strike < k.strike


def _delta_of(market: MarketState, legs: Sequence[Leg]) -> float:
    """Net delta per unit of ``legs`` (sum of ratio x delta); StrategyError if any is unpriced."""
    d = market.delta[_rows(market, [leg.contract for leg in legs])]
    if not np.isfinite(d).all():
        missing = [
            _label(leg.contract) for leg, x in zip(legs, d, strict=True) if not np.isfinite(x)
        ]
        raise StrategyError(f"no delta for {', '.join(missing)} yet: quotes and a spot are needed")
    return float(sum(leg.ratio * x for leg, x in zip(legs, d, strict=True)))


def _untested(market: MarketState, shorts: Sequence[Leg]) -> Right:
    """Right of the short leg farthest out of the money, in signed % of spot."""
    spot = market.spot_of(shorts[0].contract.underlying)
    if not math.isfinite(spot):
        raise StrategyError(f"no spot for {shorts[0].contract.underlying}: cannot tell the sides")
    otm = [
        (leg.contract.strike - spot) / spot * (1 if leg.contract.is_call else -1) for leg in shorts
    ]
    return shorts[int(np.argmax(otm))].contract.right


def roll_target(
    market: MarketState,
    chain: Sequence[Contract],
    position: Position,
    side: Right | None = None,
    *,
    liquidity: LiquidityFilter = DEFAULT_LIQUIDITY,
) -> tuple[Leg, Leg]:
    """(old short leg, new short leg) rolling one side (default: the untested one) to the strike of
    the same expiry that brings net delta closest to zero, without crossing strikes."""
    shorts = [leg for leg in position.legs if leg.ratio < 0]
    if not shorts:
        raise StrategyError(f"{position.id} has no short leg to roll")
    right = Right(side) if side is not None else _untested(market, shorts)
    mine = [leg for leg in shorts if leg.contract.right is right]
    if len(mine) != 1:
        raise StrategyError(f"{position.id} has {len(mine)} short {right.name.lower()}s, not one")
    old, net = mine[0], _delta_of(market, position.legs)
    k, others = old.contract, [leg for leg in position.legs if leg is not mine[0]]
    d_old = float(market.delta[market.index[k]])
    target = d_old - net / old.ratio  # the new leg's delta that zeroes the net: -others / ratio
    candidates = _same_series(chain, k)
    strikes = np.array([c.strike for c in candidates])
    allowed = np.ones(len(candidates), dtype=bool)
    for leg in others:  # never cross the other short strike, never pass our own wing
        s = leg.contract.strike
        if leg.ratio < 0 and leg.contract.right is not right:
            allowed &= strikes >= s if k.is_call else strikes <= s
        elif leg.ratio > 0 and _beyond(leg.contract, k):
            allowed &= strikes < s if k.is_call else strikes > s
    what = f"{right.name.lower()} to roll to (target delta {target:+.2f})"
    new = _pick(market, candidates, target, liquidity, what, allowed=allowed)
    if abs(d_old - target) <= abs(market.delta[market.index[new]] - target):  # staying is as good
        why = f"no liquid {right.name.lower()} within the strikes beats {_label(k)}"
        raise StrategyError(f"already delta-neutral for this side: {why} (net delta {net:+.3f})")
    return old, Leg(new, old.ratio)


def rolled(position: Position, old: Leg, new: Leg) -> Position:
    """``position`` with ``old`` replaced by ``new``: same id, quantity and opening time; the
    strategy is kept when the legs still form it, else the position becomes CUSTOM."""
    if old not in position.legs:
        raise StrategyError(f"{position.id} has no leg {old.ratio:+d} {_label(old.contract)}")
    legs = tuple(new if leg == old else leg for leg in position.legs)
    args = (position.id, position.strategy, legs, position.quantity, position.opened_ts_ns)
    try:
        return Position(*args, note=position.note)
    except ModelError:
        return Position(position.id, StrategyType.CUSTOM, *args[2:], note=position.note)


def wings(
    market: MarketState,
    chain: Sequence[Contract],
    position: Position,
    *,
    wing_delta: float = 0.05,
    liquidity: LiquidityFilter = DEFAULT_LIQUIDITY,
) -> tuple[Leg, ...]:
    """Long legs protecting each short leg that has none beyond it: the same right and expiry,
    strictly further out of the money, |delta| closest to ``wing_delta``, as many contracts as
    the short leg (ordered by strike)."""
    if not 0 < wing_delta < 0.5:
        raise ValueError(f"wing_delta must be in (0, 0.5), got {wing_delta}")
    shorts = [leg for leg in position.legs if leg.ratio < 0]
    if not shorts:
        raise StrategyError(f"{position.id} has no short leg to protect")
    longs = [leg.contract for leg in position.legs if leg.ratio > 0]
    naked = [s for s in shorts if not any(_beyond(c, s.contract) for c in longs)]
    if not naked:
        raise StrategyError(f"{position.id} already has wings beyond every short leg")
    out = []
    for short in naked:
        k = short.contract
        same = _same_series(chain, k)
        allowed = np.array([_beyond(c, k) for c in same], dtype=bool)
        what = f"{k.right.name.lower()} wing beyond {_label(k)} near {wing_delta:.2f} delta"
        target = wing_delta if k.is_call else -wing_delta
        out.append(Leg(_pick(market, same, target, liquidity, what, allowed=allowed), -short.ratio))
    return tuple(sorted(out, key=lambda leg: leg.contract.strike))


def wings_at_width(
    market: MarketState, chain: Sequence[Contract], position: Position, width: float, *,
    tolerance: float = 0.5,
) -> tuple[Leg, ...]:  # fmt: skip
    """Long legs ``width`` points beyond each short leg: the nearest quoted strike (ask > 0)
    beyond it, within ``tolerance`` x width of the target; StrategyError when a side has none.
    The backtest grid's wing rule (its ``wings`` axis), so a desk replaying a grid row buys
    the grid's wings."""
    out = []
    for short in (leg for leg in position.legs if leg.ratio < 0):
        k = short.contract
        same = [c for c in _same_series(chain, k) if _beyond(c, k)]
        rows = _rows(market, same) if same else np.zeros(0, dtype=np.int64)
        target = k.strike + width if k.is_call else k.strike - width
        gap = np.array([abs(c.strike - target) for c in same])
        gap = np.where(market.ask[rows] > 0, gap, np.inf) if same else gap
        if not same or not np.isfinite(gap).any() or gap.min() > tolerance * width:
            raise StrategyError(f"no quoted {k.right.name.lower()} wing {width:g} points "
                                f"beyond {_label(k)}")  # fmt: skip
        out.append(Leg(same[int(np.argmin(gap))], -short.ratio))
    return tuple(sorted(out, key=lambda leg: leg.contract.strike))


def protected(position: Position, wing_legs: Sequence[Leg]) -> Position:
    """A short strangle plus its wings as an IRON_CONDOR (long put, short put, short call, long
    call); StrategyError when the legs together are not one."""
    legs = sorted(
        [*position.legs, *wing_legs], key=lambda g: (g.contract.strike, g.contract.is_call)
    )
    note = f"{position.note} + wings" if position.note else "protected with wings"
    try:
        return Position(position.id, StrategyType.IRON_CONDOR, tuple(legs), position.quantity,
                        position.opened_ts_ns, note=note)  # fmt: skip
    except ModelError as exc:
        raise StrategyError(f"{position.id} plus these wings is no iron condor: {exc}") from None


def units_to_close(quantity: int, fraction: float) -> int:
    """Units to close for "close ``fraction``" of ``quantity``: rounded half up (Python's
    ``round`` closes 2 of both 3 and 5 lots at 50%), at least 1 so "close half" of a 1-lot acts,
    at most all of them."""
    if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
        raise ValueError(f"quantity must be a positive integer, got {quantity!r}")
    if not (0 < fraction <= 1):  # also rejects NaN
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    return min(quantity, max(1, math.floor(quantity * fraction + 0.5 + 1e-9)))

"""How a manual trade's description becomes legs, leg prices and a max loss.

A trader logs "sold the 5000/5200 strangle for 4.20": a strategy name, strikes and one net price.
The desk's book wants legs (:class:`~kit.core.model.Leg`) and per-leg fills. This module holds those
conventions, pure and separate from the journal file (:mod:`kit.positions.manual`): which strikes
each strategy takes, which root an underlying means (SPX -> SPXW), how a net price is split across
the
legs and how large a structure's loss can get.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from dataclasses import replace as dc_replace
from datetime import date
from itertools import pairwise

import numpy as np

from kit.core.clock import us_session
from kit.core.model import (
    ROOT_UNDERLYING,
    Contract,
    Leg,
    ModelError,
    Right,
    StrategyType,
    _check_price,
)
from kit.core.payoff import MIN_SPOT_FRACTION, Legs, max_profit_loss, pnl_at_expiry

# The command line's strategy names and the book's shapes. A single short option has no shape
# of its own in the model, so it is a CUSTOM position with one short leg.
STRATEGIES: dict[str, StrategyType] = {
    "strangle": StrategyType.STRANGLE,
    "iron_condor": StrategyType.IRON_CONDOR,
    "put_spread": StrategyType.VERTICAL,
    "call_spread": StrategyType.VERTICAL,
    "short_put": StrategyType.CUSTOM,
    "short_call": StrategyType.CUSTOM,
}
# Which strikes each strategy is given by (an iron condor's wings may come as ``wings``).
_STRIKES_NEEDED: dict[str, tuple[str, ...]] = {
    "strangle": ("put", "call"),
    "iron_condor": ("put", "call", "long_put", "long_call"),
    "put_spread": ("short", "long"),
    "call_spread": ("short", "long"),
    "short_put": ("put",),
    "short_call": ("call",),
}
SINGLE_RIGHT = {"short_put": Right.PUT, "short_call": Right.CALL}
# Index underlyings default to their weekly (PM-settled) root: SPX -> SPXW, NDX -> NDXP, ...
DEFAULT_ROOTS: dict[str, str] = {und: root for root, und in ROOT_UNDERLYING.items()}


def default_root(underlying: str) -> str:
    """The option root a trader means by an underlying: the weeklies for indices (SPXW)."""
    return DEFAULT_ROOTS.get(underlying, underlying)


@dataclass(frozen=True)
class Strikes:
    """Strikes as typed on the command line; :func:`legs_for` checks which a strategy takes.

    ``put``/``call``: the short strikes of a strangle or iron condor (or a single short option);
    ``short``/``long``: a vertical's; ``long_put``/``long_call`` or ``wings`` (points from the
    short strikes): an iron condor's bought wings.
    """

    put: float | None = None
    call: float | None = None
    short: float | None = None
    long: float | None = None
    long_put: float | None = None
    long_call: float | None = None
    wings: float | None = None


def _flags(names: Sequence[str]) -> str:
    return ", ".join("--" + name.replace("_", "-") for name in names)


# Underlyings a manual trade may be logged on and the strike grid of each one's options (points):
# measured on real CBOE chains (SPX, NDX strikes are multiples of 5, SPY's of 0.5; crypto on
# Delta Exchange lists much coarser strikes, so any multiple of 1 passes).
STRIKE_GRID: dict[str, float] = {
    "SPX": 5.0, "NDX": 5.0, "RUT": 5.0, "XSP": 1.0, "VIX": 0.5,
    "SPY": 0.5, "QQQ": 0.5, "IWM": 0.5, "BTC": 1.0, "ETH": 1.0,
}  # fmt: skip
CRYPTO = frozenset({"BTC", "ETH"})


def check_listing(underlying: str, legs: Sequence[Leg]) -> None:
    """Refuse what no exchange lists: an unknown underlying, an expiry on a day without a US
    options session (weekends, holidays; crypto expires daily), a strike off the grid.

    A typo in a journal entry is otherwise watched for weeks as a position nobody holds."""
    if underlying not in STRIKE_GRID:
        known = ", ".join(sorted(STRIKE_GRID))
        raise ModelError(f"underlying: unknown {underlying!r} (expected one of {known})")
    expiry = legs[0].contract.expiry
    if underlying not in CRYPTO and us_session(expiry) is None:
        raise ModelError(f"expiry {expiry.isoformat()} ({expiry:%A}) is not a US options "
                         "session day: no option expires then")  # fmt: skip
    grid = STRIKE_GRID[underlying]
    for leg in legs:
        k = leg.contract.strike
        if abs(k / grid - round(k / grid)) > 1e-9:
            raise ModelError(f"strike {k:g} is not listed: {underlying} strikes are multiples "
                             f"of {grid:g}")  # fmt: skip


def legs_for(strategy: str, root: str, expiry: date, strikes: Strikes) -> tuple[Leg, ...]:
    """The legs of one unit of ``strategy``; every strike mistake is named, flag by flag."""
    if strategy not in STRATEGIES:
        known = ", ".join(STRATEGIES)
        raise ModelError(f"strategy: unknown {strategy!r} (expected one of {known})")
    given = [name for name, value in asdict(strikes).items() if value is not None]
    for name in given:
        _check_price(_flags([name]), getattr(strikes, name), positive=True)
    needed = _STRIKES_NEEDED[strategy]
    if strategy == "iron_condor" and strikes.wings is not None:
        if strikes.long_put is not None or strikes.long_call is not None:
            raise ModelError("give --wings or --long-put/--long-call, not both")
        needed = ("put", "call", "wings")
    if missing := [name for name in needed if name not in given]:
        raise ModelError(f"{strategy} needs {_flags(missing)}")
    if extra := [name for name in given if name not in needed]:
        raise ModelError(f"{strategy} does not take {_flags(extra)}")
    s = strikes
    if s.wings is not None and s.put is not None and s.call is not None:
        s = dc_replace(s, long_put=s.put - s.wings, long_call=s.call + s.wings)
    P, C = Right.PUT, Right.CALL

    # every strike a strategy takes is given (checked above): no None below
    def leg(strike: float, right: Right, ratio: int) -> Leg:
        return Leg(Contract(root, expiry, strike, right), ratio)

    def ascending(*pairs: tuple[str, float], why: str = "") -> None:
        for (lo_name, lo), (hi_name, hi) in pairwise(pairs):
            if not lo < hi:
                raise ModelError(f"{why}{_flags([lo_name])} ({lo:g}) must be below "
                                 f"{_flags([hi_name])} ({hi:g})")  # fmt: skip

    if strategy == "strangle":
        ascending(("put", s.put), ("call", s.call))
        return (leg(s.put, P, -1), leg(s.call, C, -1))
    if strategy == "iron_condor":
        ascending(("long_put", s.long_put), ("put", s.put), ("call", s.call),
                  ("long_call", s.long_call))  # fmt: skip
        return (leg(s.long_put, P, 1), leg(s.put, P, -1), leg(s.call, C, -1),
                leg(s.long_call, C, 1))  # fmt: skip
    if strategy == "put_spread":
        ascending(("long", s.long), ("short", s.short), why="a credit put spread sells the "
                  "higher strike: ")  # fmt: skip
        return (leg(s.short, P, -1), leg(s.long, P, 1))
    if strategy == "call_spread":
        ascending(("short", s.short), ("long", s.long), why="a credit call spread sells the "
                  "lower strike: ")  # fmt: skip
        return (leg(s.short, C, -1), leg(s.long, C, 1))
    right = SINGLE_RIGHT[strategy]
    return (leg(s.put if right is P else s.call, right, -1),)


def leg_prices(legs: Sequence[Leg], net: float) -> list[float]:
    """Per-share price of each leg for a net per-unit price (a credit, or a closing debit).

    The trader reports one net price, so the split is a convention: the short legs share the net
    price in proportion to their ratios and bought legs (wings) are booked at 0. Every price is
    non-negative (a fill cannot be negative) and the legs net to exactly the reported price, so
    the position's credit, open and realised P&L, max loss and breakevens are exact; only the P&L
    of a single leg is not (a wing shows its whole value as profit, the shorts carry its cost).
    """
    short_units = sum(-leg.ratio for leg in legs if leg.ratio < 0)
    return [net / short_units if leg.ratio < 0 else 0.0 for leg in legs]


def max_loss_usd(legs: Legs) -> float | None:
    """Worst expiry loss of ``legs`` in dollars (>= 0), or None when the loss is undefined.

    The expiry P&L is piecewise linear with kinks at the strikes, so its minimum is at a strike
    or an edge; a grid of the strikes plus one level beyond each side finds it exactly, and a
    loss still growing past an edge (a naked short leg) makes the risk undefined.
    """
    strikes = np.unique(legs.strike)
    grid = np.concatenate([[strikes[0] * MIN_SPOT_FRACTION], strikes, [strikes[-1] * 2]])
    extremes = max_profit_loss(grid, pnl_at_expiry(legs, grid))
    if extremes.unbounded_loss_below or extremes.unbounded_loss_above:
        return None
    return max(0.0, -extremes.min_pnl)


def width_usd(legs: Sequence[Leg]) -> float | None:
    """Max loss of one unit bought for nothing (dollars): a spread's width, which its credit
    must stay below; None for an undefined-risk structure."""
    zero = np.zeros(len(legs))
    return max_loss_usd(Legs(
        strike=[leg.contract.strike for leg in legs],
        is_call=[leg.contract.is_call for leg in legs],
        qty=[leg.ratio for leg in legs],
        multiplier=[leg.contract.multiplier for leg in legs],
        entry_price=zero, T_years=zero, iv=zero,
    ))  # fmt: skip

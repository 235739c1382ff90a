"""How the paper venue prices an execution, and how much the quoted sizes let it fill.

The rules (the module docstring of :mod:`kit.adapters.paper.broker` tells them in full): each
leg trades at its touch; an arriving marketable order takes liquidity at the touch worsened by
the slippage, never past its limit; a resting order that the market crosses fills at its limit,
the gap to the natural spread over the legs in proportion to their quoted widths. An order
taking liquidity beyond the shown size walks hidden levels (:meth:`Liquidity.walk`, the impact
model). Pure functions of the quotes, except :class:`Liquidity`, which remembers the sizes
already taken from a quote.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from kit.core.model import Order
from kit.execution.costs import tick_size
from kit.portfolio.market import MarketState

EPS = 1e-9  # price tolerance: float sums of quotes must not make a marketable order rest


def positive(x: float) -> bool:
    """A usable price or size: finite and above zero."""
    return math.isfinite(x) and x > 0


def distribute(
    base: Sequence[float], ratios: Sequence[int], weights: Sequence[float], target: float
) -> list[float] | None:
    """Leg prices moved from ``base`` so that ``Σ ratio x price == target``, each leg taking a
    share of the gap proportional to its weight; None when no non-negative prices reach it."""
    prices = list(base)
    free = list(range(len(prices)))
    while True:
        gap = target - sum(r * p for r, p in zip(ratios, prices, strict=True))
        if abs(gap) <= 1e-12:
            return prices
        if not free:
            return None
        total = sum(weights[i] for i in free)
        if total > 0:
            share = {i: weights[i] / total for i in free}
        else:  # every spread is zero: evenly per contract
            n = sum(abs(ratios[i]) for i in free)
            share = {i: abs(ratios[i]) / n for i in free}
        for i in free:
            prices[i] += gap * share[i] / ratios[i]
        pinned = [i for i in free if prices[i] < 0]
        if not pinned:
            return prices
        for i in pinned:
            prices[i] = 0.0
            free.remove(i)


class Priced(NamedTuple):
    """An execution's legs: market rows, whether each leg buys, and its price."""

    rows: list[int]
    buys: list[bool]
    prices: list[float]


def price_order(
    m: MarketState, order: Order, *, aggressive: bool, slippage: float
) -> Priced | None:
    """The leg prices ``order`` executes at on the current quotes, or None when it cannot fill
    now (an untracked, one-sided or NaN quote; a limit the natural does not reach).
    ``aggressive``: the order just arrived (or was replaced) and takes liquidity at the touch;
    otherwise it rests and fills at its limit."""
    found = [m.index.get(leg.contract) for leg in order.legs]
    ratios = [leg.ratio for leg in order.legs]
    buys = [order.side.sign * r > 0 for r in ratios]
    if any(r is None or not m.tradable(r, b) for r, b in zip(found, buys, strict=True)):
        return None
    rows = [r for r in found if r is not None]
    touch = [float(m.ask[r] if b else m.bid[r]) for r, b in zip(rows, buys, strict=True)]
    natural = sum(r * p for r, p in zip(ratios, touch, strict=True))
    sign, limit = order.side.sign, order.limit_price
    if limit is not None and sign * (limit - natural) < -EPS:
        return None
    weights = [abs(q) * float(m.ask[r] - m.bid[r]) for q, r in zip(ratios, rows, strict=True)]
    if limit is None or aggressive:
        prices = [max(0.0, p + slippage if b else p - slippage)
                  for p, b in zip(touch, buys, strict=True)]  # fmt: skip
        net = sum(r * p for r, p in zip(ratios, prices, strict=True))
        if limit is not None and sign * (net - limit) > EPS:  # slippage stops at the limit
            prices = distribute(prices, ratios, weights, limit) or touch
    else:
        prices = distribute(touch, ratios, weights, limit) or touch
    return Priced(rows, buys, prices)


class Liquidity:
    """The quoted sizes an execution may take. With ``quoted_size_only`` a fill takes at most
    the size quoted on the side it trades, and that size stays used up until a new quote (a new
    ``quote_ts``) arrives for the contract; without it every order fills in full."""

    def __init__(self, market: MarketState, quoted_size_only: bool) -> None:
        self.market, self.quoted_size_only = market, quoted_size_only
        self._consumed: dict[tuple[int, bool], tuple[int, float]] = {}  # (row, buy) → (ts, qty)

    def fillable(self, rows: list[int], buys: list[bool], ratios: list[int], remaining: int) -> int:
        """Whole units the quoted sizes allow: min over legs of available // |ratio|."""
        if not self.quoted_size_only:
            return remaining
        m, units = self.market, remaining
        for row, buy, ratio in zip(rows, buys, ratios, strict=True):
            size = float(m.ask_size[row] if buy else m.bid_size[row])
            available = (size if math.isfinite(size) else 0.0) - self.used(row, buy)
            units = min(units, math.floor(available / abs(ratio) + EPS))
        return max(units, 0)

    def used(self, row: int, buy: bool) -> float:
        """Contracts already taken from the current quote on one side (0 once it is requoted)."""
        ts, used = self._consumed.get((row, buy), (-1, 0.0))
        return used if ts == self.market.quote_ts[row] else 0.0

    def take(self, row: int, buy: bool, qty: float) -> None:
        """``qty`` contracts were just filled against the current quote on one side."""
        self._consumed[(row, buy)] = (int(self.market.quote_ts[row]), self.used(row, buy) + qty)

    def walk(
        self, order: Order, priced: Priced, remaining: int, *, slippage: float, levels: int
    ) -> tuple[int, list[float]]:
        """The impact model: whole units and each leg's average price when the order takes the
        shown size at the touch and then hidden levels, level ``k`` being ``k`` ticks worse than
        the touch (plus the slippage) and as large as the shown size, up to ``levels`` levels.

        Units fill one at a time while every leg has contracts left within the levels (a sell
        level must stay above zero) and the unit's net price is within the limit, so the
        average never passes it. Level 0 is ``priced.prices`` (the touch with slippage, already
        held to the limit). What is taken counts against the quote like any fill."""
        m = self.market
        legs = list(zip(order.legs, priced.rows, priced.buys, priced.prices, strict=True))
        shown, cursor, touch = [], [], []
        for _, row, buy, _ in legs:
            size = float(m.ask_size[row] if buy else m.bid_size[row])
            shown.append(math.floor(size + EPS) if math.isfinite(size) else 0)
            cursor.append(round(self.used(row, buy)))
            touch.append(float(m.ask[row] if buy else m.bid[row]))
        totals = [0.0] * len(legs)
        units, limit, sign = 0, order.limit_price, order.side.sign
        while units < remaining:
            costs = []
            for j, (leg, _, buy, level0) in enumerate(legs):
                cost = 0.0
                for c in range(cursor[j], cursor[j] + abs(leg.ratio)):
                    k = c // shown[j] if shown[j] > 0 else levels + 1
                    if k > levels:
                        return units, self._average(totals, legs, units, priced)
                    if k == 0:
                        price = level0
                    else:
                        step = k * tick_size(leg.contract.root, touch[j])
                        price = touch[j] + step + slippage if buy else touch[j] - step - slippage
                    if price <= 0:
                        return units, self._average(totals, legs, units, priced)
                    cost += price
                costs.append(cost)
            net = sum(math.copysign(c, leg.ratio) for c, (leg, *_) in zip(costs, legs, strict=True))
            if limit is not None and sign * (net - limit) > EPS:
                break
            for j, (leg, *_) in enumerate(legs):
                totals[j] += costs[j]
                cursor[j] += abs(leg.ratio)
            units += 1
        return units, self._average(totals, legs, units, priced)

    @staticmethod
    def _average(totals: list[float], legs: list, units: int, priced: Priced) -> list[float]:
        """Each leg's average price over ``units`` units (the level-0 prices when none)."""
        if units == 0:
            return list(priced.prices)
        return [t / (units * abs(leg.ratio)) for t, (leg, *_) in zip(totals, legs, strict=True)]

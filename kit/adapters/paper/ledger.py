"""The paper account's ledger: cash, positions, average costs and realized P&L, from the fills.

The fills are the truth: the broker persists them and rebuilds the ledger by posting them again
on load, so the ledger itself is never stored and cannot disagree with them.
"""

from __future__ import annotations

import math

import numpy as np

from kit.adapters.paper.matching import positive
from kit.core.model import Contract, Fill
from kit.core.payoff import stress_loss
from kit.portfolio.market import MarketState


class Ledger:
    """Posts fills; values the holdings at ``market``'s marks."""

    def __init__(self, market: MarketState, cash: float) -> None:
        self.market = market
        self.cash, self.realized, self.commissions = cash, 0.0, 0.0
        self.pos: dict[Contract, float] = {}
        self.cost: dict[Contract, float] = {}  # average open price per contract
        self.last: dict[Contract, float] = {}  # last fill price: the mark of last resort

    def post(self, f: Fill) -> None:
        """Post a fill: cash, position, average cost and realized P&L (gross of commissions,
        which are reported on their own)."""
        c, signed = f.contract, f.side.sign * f.quantity
        pos, cost = self.pos.get(c, 0.0), self.cost.get(c, 0.0)
        if pos * signed < 0:  # reduces (or flips) the position
            closed = min(abs(pos), abs(signed))
            self.realized += closed * (f.price - cost) * math.copysign(1, pos) * c.multiplier
            if abs(signed) > abs(pos):
                cost = f.price
        else:
            cost = (abs(pos) * cost + abs(signed) * f.price) / (abs(pos) + abs(signed))
        self.pos[c], self.cost[c], self.last[c] = pos + signed, cost, f.price
        self.cash += f.cash_flow
        self.commissions += f.commission

    def held(self) -> list[tuple[Contract, float]]:
        """Holdings that are not flat (whole contracts, as a venue counts them)."""
        return [(c, q) for c, q in self.pos.items() if round(q) != 0]

    def value(self) -> float:
        """The holdings at their marks (dollars)."""
        return sum(q * self.mark(c) * c.multiplier for c, q in self.pos.items() if q)

    def mark(self, c: Contract) -> float:
        """The market's mark, else the mid, else the last fill price: never NaN in the value."""
        m, row = self.market, self.market.index.get(c)
        if row is not None:
            if math.isfinite(mark := float(m.mark[row])):
                return mark
            if positive(m.bid[row]) and positive(m.ask[row]):
                return float(m.bid[row] + m.ask[row]) / 2
        return self.last.get(c, 0.0)

    def margin(self, move_pct: float) -> float:
        """A portfolio-margin-style requirement: per underlying, the worst loss from today's
        marks if every held option expired after a spot move within ±``move_pct``
        (:func:`kit.core.payoff.stress_loss`, the book's risk measure, so paper margin and the
        desk's risk agree)."""
        held = self.held()
        total = 0.0
        for und in {c.underlying for c, _ in held}:
            legs = [(c, q) for c, q in held if c.underlying == und]
            spot = self.market.spot_of(und)
            if not math.isfinite(spot):
                continue
            loss = stress_loss(
                np.full(len(legs), spot), [c.strike for c, _ in legs],
                [c.is_call for c, _ in legs], [q * c.multiplier for c, q in legs],
                [self.mark(c) for c, _ in legs], move_pct,
            )  # fmt: skip
            total += float(loss[0])
        return round(total, 2)

"""The paper account's ledger: cash, positions, average costs and realized P&L, from the fills.

The fills are the truth: the broker persists them and rebuilds the ledger by posting them again
on load, so the ledger itself is never stored and cannot disagree with them.
"""

from __future__ import annotations

import math

from kit.adapters.paper.matching import positive
from kit.core.model import Contract, Fill, Leg
from kit.portfolio.market import MarketState
from kit.risk.margin import reg_t_margin


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

    def margin(self) -> float:
        """Buying power the holdings tie up: a Reg-T style estimate per underlying and expiry
        (:func:`kit.risk.margin.reg_t_margin` at today's marks: naked shorts at premium + 15%
        of the underlying less the out-of-the-money amount, spreads at their width, a strangle
        at its greater side + the other premium). Not the stress loss: that is the risk limits'
        measure, and a broker holds margin, not a scenario."""
        held = self.held()
        total = 0.0
        for und, expiry in {(c.underlying, c.expiry) for c, _ in held}:
            group = [(c, round(q)) for c, q in held if (c.underlying, c.expiry) == (und, expiry)]
            spot = self.market.spot_of(und)
            if not math.isfinite(spot):
                continue
            legs = [Leg(c, q) for c, q in group]
            need = reg_t_margin(legs, [self.mark(c) for c, _ in group], spot)
            if math.isfinite(need):
                total += need
        return round(total, 2)

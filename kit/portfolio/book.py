"""The book: positions as strategies, their fills, marks, P&L and Greeks.

Legs of every position live in flat NumPy arrays (position row, market row, signed filled
contracts, average price, ...), so a portfolio view is a handful of ``np.bincount`` reductions
over legs whatever the number of positions: that is what keeps a full re-evaluation of 500
positions inside the desk's millisecond budget.

Conventions: quantities are signed contracts (negative = short); prices are per share (the quote
currency); P&L and cash are dollars (price x multiplier). Greeks per unit are the position's
Greeks divided by its *filled* units, so thresholds ("delta 0.10") mean the same for one lot and
for ten, and for a 10-lot order of which 3 filled.

Credit, three ways (README "Accounting"):

- ``original_credit``: the premium the entry collected, as quoted (before fees): opening fills on
  the legs the position was opened with, until its first closing fill. Never changes after.
- ``net_credit``: the cash so far, every premium sold minus every premium bought back, minus all
  fees. A roll's buy-back lowers it; once flat it equals the realised P&L.
- ``credit``: the net credit of the units still held, what P&L %, profit targets and the stop
  read. Equal to ``net_credit`` until a reduction: a fill that closes part of a leg the position
  still lists (close half, reduce 25%) retires the closed units with their share of everything,
  so the units left keep their credit per unit. A leg the position no longer lists (a roll's
  old leg) or its last contracts are an *adjustment*: its P&L stays with the units held.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from kit.core.model import Fill, Leg, Position, shape_of
from kit.core.payoff import Legs, Profile, profile
from kit.portfolio.market import MarketState
from kit.portfolio.valuation import PositionView, Valuation

F64 = NDArray[np.float64]


class BookError(ValueError):
    """A fill or a position the book cannot accept; the message says which and why."""


@dataclass(frozen=True)
class BookConfig:
    """Beta of each underlying to SPY, for beta-weighted delta. Rough defaults: override them."""

    betas: Mapping[str, float] = field(
        default_factory=lambda: {"SPX": 1.0, "SPY": 1.0, "NDX": 1.15, "BTC": 1.6, "ETH": 2.0}
    )
    benchmark: str = "SPY"
    gamma_move_pct: float = 1.0  # gamma is reported as the change of delta for this move
    stress_move_pct: float = 10.0  # risk = worst expiry loss within +/- this spot move


# fee: opening commissions still in the leg (scaled down as it is reduced); entry: 1 for the
# legs the position was opened with (their opening fills make its original credit)
_LEG_FLOAT = ("ratio", "qty", "avg", "day_ref", "realized", "realized_day", "fee", "entry")
# carried: P&L of adjustments (rolled-out legs) kept by the units held; entering: 1 until the
# position's first closing fill
_POS_FLOAT = ("quantity", "original", "carried", "entering", "peak_pct", "opened_ns")


class Book:
    """Positions and fills; marks and Greeks are read from a :class:`MarketState`."""

    def __init__(self, market: MarketState, config: BookConfig | None = None) -> None:
        self.market = market
        self.config = config or BookConfig()
        self.positions: dict[str, Position] = {}
        self.rows: dict[str, int] = {}
        self.ids: list[str] = []
        self._fill_ids: set[str] = set()
        self.fills: list[tuple[str, Fill]] = []
        self.n_legs = 0
        self.leg_pos = np.zeros(0, dtype=np.int64)
        self.leg_row = np.zeros(0, dtype=np.int64)
        for name in _LEG_FLOAT:
            setattr(self, f"leg_{name}", np.zeros(0))
        for name in _POS_FLOAT:
            setattr(self, f"pos_{name}", np.zeros(0))
        self.pos_open = np.zeros(0, dtype=bool)
        self.pos_und: list[str] = []
        self.version = 0  # bumped by every change to positions or legs: valuation caches on it
        self._valuation = Valuation(self)

    # --- positions and fills ---

    def open(self, position: Position) -> int:
        """Register a position (no fills yet); returns its row. Ids are unique for the book."""
        if position.id in self.positions:
            raise BookError(f"position {position.id!r} already exists")
        row = len(self.ids)
        self.version += 1
        self.positions[position.id] = position
        self.rows[position.id] = row
        self.ids.append(position.id)
        self.pos_und.append(position.underlying)
        n = len(position.legs)
        m = self.market
        self.leg_pos = np.append(self.leg_pos, np.full(n, row))
        self.leg_row = np.append(self.leg_row, m.track_all(leg.contract for leg in position.legs))
        self.leg_ratio = np.append(self.leg_ratio, [leg.ratio for leg in position.legs])
        for name in _LEG_FLOAT[1:]:
            setattr(self, f"leg_{name}", np.append(getattr(self, f"leg_{name}"), np.zeros(n)))
        self.leg_entry[-n:] = 1.0
        self.n_legs += n
        self.pos_quantity = np.append(self.pos_quantity, position.quantity)
        self.pos_original = np.append(self.pos_original, 0.0)
        self.pos_carried = np.append(self.pos_carried, 0.0)
        self.pos_entering = np.append(self.pos_entering, 1.0)
        self.pos_peak_pct = np.append(self.pos_peak_pct, 0.0)
        self.pos_opened_ns = np.append(self.pos_opened_ns, position.opened_ts_ns)
        self.pos_open = np.append(self.pos_open, True)
        return row

    def legs_of(self, position_id: str) -> NDArray[np.int64]:
        return np.flatnonzero(self.leg_pos == self.rows[position_id])

    def amend(self, position: Position) -> None:
        """Replace a position's record after a roll, added wings or a partial close.

        Legs the new record lists that the book lacks are added, flat until their fills arrive;
        legs it no longer lists keep their fills and realised P&L (a rolled-out leg's history is
        part of the position's P&L). Legs stay contiguous per position, as valuation requires.
        """
        row = self.rows.get(position.id)
        if row is None:
            raise BookError(f"cannot amend unknown position {position.id!r}")
        self.version += 1
        legs = self.legs_of(position.id)
        ratio = {self.market.track(leg.contract): leg.ratio for leg in position.legs}
        self.leg_ratio[legs] = [ratio.pop(int(r), 0) for r in self.leg_row[legs]]
        if ratio:  # new legs, inserted right after the position's last leg
            at, n = int(legs[-1]) + 1, len(ratio)
            self.leg_pos = np.insert(self.leg_pos, at, np.full(n, row))
            self.leg_row = np.insert(self.leg_row, at, list(ratio))
            self.leg_ratio = np.insert(self.leg_ratio, at, list(ratio.values()))
            for name in _LEG_FLOAT[1:]:  # one zero per new leg, not one in all
                column = getattr(self, f"leg_{name}")
                setattr(self, f"leg_{name}", np.insert(column, at, np.zeros(n)))
            self.n_legs += n
        self.positions[position.id] = position
        self.pos_quantity[row] = position.quantity
        self.pos_open[row] = True

    def check(self) -> None:
        """Raise :class:`BookError` if the leg and position arrays disagree (a desynchronised
        book values the wrong legs; the stateful test calls this after every step)."""
        n, legs = len(self.ids), self.n_legs
        for name in ("pos", "row", *_LEG_FLOAT):
            if len(getattr(self, f"leg_{name}")) != legs:
                raise BookError(f"leg_{name} has {len(getattr(self, f'leg_{name}'))} of {legs}")
        for name in (*_POS_FLOAT, "open"):
            if len(getattr(self, f"pos_{name}")) != n:
                raise BookError(f"pos_{name} has {len(getattr(self, f'pos_{name}'))} of {n}")
        if len(self.pos_und) != n or len(self.rows) != n:
            raise BookError("position index out of step")
        if legs and (np.any(np.diff(self.leg_pos) < 0) or self.leg_pos[-1] >= n):
            raise BookError("legs are not contiguous per position")
        if legs and int(self.leg_row.max()) >= len(self.market.contracts):
            raise BookError("a leg points past the market's contracts")
        for pid, row in self.rows.items():
            j = self.legs_of(pid)
            if len(np.unique(self.leg_row[j])) != len(j):
                raise BookError(f"{pid}: a contract appears twice among its legs")
            if not self.pos_open[row] and np.any(self.leg_qty[j] != 0):
                raise BookError(f"{pid}: marked closed with legs still held")

    def held(self, position_id: str) -> Position | None:
        """The position as its fills left it: its non-flat legs, ``units`` their common factor.

        A partial close of a 4-lot strangle is a 2-lot strangle; a roll that filled half leaves
        legs no named strategy describes, so the record becomes CUSTOM; wings that never filled
        leave the strangle it was (:func:`~kit.core.model.shape_of`). None when flat.
        """
        old = self.positions[position_id]
        j = self.legs_of(position_id)
        j = j[self.leg_qty[j] != 0]
        if not j.size:
            return None
        qty = [round(float(q)) for q in self.leg_qty[j]]
        units = math.gcd(*qty)
        legs = tuple(
            Leg(self.market.contracts[int(r)], q // units)
            for r, q in zip(self.leg_row[j], qty, strict=True)
        )
        return Position(old.id, shape_of(legs, old.strategy), legs, units, old.opened_ts_ns,
                        old.note)  # fmt: skip

    def apply_fill(self, fill: Fill, position_id: str) -> bool:
        """Apply one execution to the position's matching leg; False for a repeated fill id.

        Adding to a leg moves its weighted average price; reducing realises P&L against the
        average; crossing through zero realises the closed part and opens the rest at the fill
        price. A position whose every leg is flat after fills is closed. The closed part is an
        adjustment (its P&L stays with the units held) on a leg the record no longer lists, a
        reduction (the units it closes leave with their share of the carried P&L) otherwise.
        """
        if fill.fill_id in self._fill_ids:
            return False
        if position_id not in self.rows:
            raise BookError(f"fill {fill.fill_id}: unknown position {position_id!r}")
        legs = self.legs_of(position_id)
        contract_row = self.market.index.get(fill.contract)
        match = legs[self.leg_row[legs] == contract_row] if contract_row is not None else legs[:0]
        if not match.size:
            raise BookError(
                f"fill {fill.fill_id}: {fill.contract} is not a leg of position {position_id!r}"
            )
        j = int(match[0])
        self.version += 1
        self._fill_ids.add(fill.fill_id)
        self.fills.append((position_id, fill))
        row, mult = self.rows[position_id], fill.contract.multiplier
        f = fill.side.sign * fill.quantity
        q, avg = float(self.leg_qty[j]), float(self.leg_avg[j])
        self.leg_realized[j] -= fill.commission
        self.leg_realized_day[j] -= fill.commission
        closing = min(abs(f), abs(q)) if q * f < 0 else 0.0
        opening = abs(f) - closing
        units_before = self._units(legs)
        if closing:
            sign = np.sign(q)
            gain = closing * (fill.price - avg) * mult * sign
            self.leg_realized[j] += gain
            self.leg_realized_day[j] += closing * (fill.price - self.leg_day_ref[j]) * mult * sign
            fee = self.leg_fee[j] * closing / abs(q)  # the closed contracts' opening fees
            self.leg_fee[j] -= fee
            if self.leg_ratio[j] == 0:  # adjustment: what it made stays with the units held
                self.pos_carried[row] += gain - fee - fill.commission * closing / abs(f)
            self.pos_entering[row] = 0.0
        if opening:
            base = abs(q) if not closing else 0.0
            w = base + opening
            self.leg_avg[j] = (base * avg + opening * fill.price) / w
            self.leg_day_ref[j] = (base * self.leg_day_ref[j] + opening * fill.price) / w
            fee = fill.commission * opening / abs(f)
            self.leg_fee[j] += fee
            if self.pos_entering[row] and self.leg_entry[j]:
                self.pos_original[row] -= np.sign(f) * opening * fill.price * mult
        self.leg_qty[j] = q + f
        if q + f == 0:
            self.leg_avg[j] = self.leg_day_ref[j] = 0.0
        if closing and self.leg_ratio[j] != 0 and units_before > 0:  # reduction
            self.pos_carried[row] *= self._units(legs) / units_before
        self.pos_open[row] = bool(np.any(self.leg_qty[legs] != 0))
        return True

    def _units(self, legs: NDArray[np.int64]) -> float:
        """Filled units of a position: contracts held over contracts per unit, across the legs
        its record lists that hold contracts (a 10-lot strangle with 3 puts and 5 calls sold is
        4 units; legs rolled out or not filled yet do not count)."""
        q, r = np.abs(self.leg_qty[legs]), np.abs(self.leg_ratio[legs])
        held = (q != 0) & (r != 0)
        return float(q[held].sum() / r[held].sum()) if held.any() else 0.0

    def roll_day(self) -> None:
        """A new session: today's P&L restarts from the current marks."""
        self.version += 1
        marks = self.market.mark[self.leg_row]
        self.leg_day_ref = np.where(np.isfinite(marks), marks, self.leg_day_ref)
        self.leg_realized_day[:] = 0.0

    # --- valuation ---

    def view(self, now_ns: int) -> PositionView:
        """Every position's P&L, Greeks and distances (:mod:`kit.portfolio.valuation`, which
        keeps what a tick leaves unchanged until :attr:`version` moves). Valuing also advances
        each open position's peak P&L %, the trailing stop's memory."""
        return self._valuation.view(now_ns)

    # --- risk profile ---

    def legs(self, position_id: str, now_ns: int) -> Legs:
        """The position's filled legs as payoff inputs (IV from the market, else 20%)."""
        m, j = self.market, self.legs_of(position_id)
        r = self.leg_row[j]
        iv = m.iv[r]
        return Legs(
            strike=m.strike[r],
            is_call=m.is_call[r],
            qty=self.leg_qty[j],
            multiplier=m.multiplier[r],
            entry_price=self.leg_avg[j],
            T_years=m.years_to_expiry(r, now_ns),
            iv=np.where(np.isfinite(iv), iv, 0.2),
        )

    def banked(self, position_id: str) -> float:
        """Dollars the held units have already made outside their legs' payoff: rolled-out legs'
        P&L, less the opening fees still in the legs (the ``credit`` minus the held premium)."""
        j = self.legs_of(position_id)
        return float(self.pos_carried[self.rows[position_id]] - self.leg_fee[j].sum())

    def profile(self, position_id: str, now_ns: int, points: int = 201) -> Profile:
        """P&L at expiry and T+0 over ~201 spots, breakevens and the expected move, of the
        units held including what they :meth:`banked` (a roll's realised P&L moves them)."""
        legs = self.legs(position_id, now_ns)
        m, j = self.market, self.legs_of(position_id)
        r = self.leg_row[j][0]
        days = float(np.min(legs.T_years)) * 365
        spot = m.spot_of(self.positions[position_id].underlying)
        return profile(legs, spot, float(m.rate[r]), float(m.div_yield[r]), days, points,
                       realized=self.banked(position_id))  # fmt: skip

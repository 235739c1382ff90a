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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from kit.core.model import Fill, Leg, Position, shape_of
from kit.core.payoff import Legs, Profile, profile, stress_loss
from kit.portfolio.market import MarketState

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


@dataclass(frozen=True)
class PositionView:
    """Per-position metrics, one array element per position row: what rules read.

    Dollar fields: ``open_pnl``, ``realized``, ``total_pnl``, ``day_pnl``, ``credit``,
    ``theta_per_day``, ``vega_per_point``. Per-unit (divided by quantity, dimensionless):
    ``delta_unit`` and ``gamma_unit`` (delta change per ``gamma_move_pct`` move). Share
    equivalents: ``delta_shares``, ``vanna_shares`` (per vol point), ``charm_shares`` (per day),
    ``beta_delta_spy`` (SPY shares). ``short_dist_pct`` is the signed distance of spot to the
    nearest short strike in % of spot (positive = out of the money); ``tested`` is +1 when that
    strike is a put (spot fell towards it), -1 for a call, 0 without short legs.

    ``credit`` is the net credit of the units held and ``held_pnl`` their P&L (open P&L plus
    what rolled-out legs banked, less the fees still in the legs); ``pnl_pct`` is ``held_pnl`` in
    % of ``|credit|`` while open, the total P&L in % of ``|original_credit|`` once flat.
    ``net_credit`` (cash) and ``original_credit`` are dollars; ``units`` the filled units. The
    last four default to ``credit``/``total_pnl``/``quantity`` for views built by hand.
    """

    ts_ns: int
    ids: list[str]
    is_open: NDArray[np.bool_]
    quantity: F64
    spot: F64
    open_pnl: F64
    realized: F64
    total_pnl: F64
    day_pnl: F64
    credit: F64
    pnl_pct: F64
    peak_pct: F64
    delta_unit: F64
    gamma_unit: F64
    delta_shares: F64
    beta_delta_spy: F64
    theta_per_day: F64
    vega_per_point: F64
    vanna_shares: F64
    charm_shares: F64
    short_dist_pct: F64
    tested: NDArray[np.int64]
    stale: NDArray[np.bool_]
    max_spread_pct: F64
    nearest_expiry_ns: F64
    risk: F64
    underlying: list[str]
    net_credit: F64 | None = None
    original_credit: F64 | None = None
    held_pnl: F64 | None = None
    units: F64 | None = None
    stop_pct: F64 | None = None  # pnl_pct with held marks at the worse side (the stop reads it)

    def __post_init__(self) -> None:
        for name, default in (("net_credit", self.credit), ("original_credit", self.credit),
                              ("held_pnl", self.total_pnl), ("units", self.quantity),
                              ("stop_pct", self.pnl_pct)):  # fmt: skip
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)

    def __len__(self) -> int:
        return len(self.ids)


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

    # --- positions and fills ---

    def open(self, position: Position) -> int:
        """Register a position (no fills yet); returns its row. Ids are unique for the book."""
        if position.id in self.positions:
            raise BookError(f"position {position.id!r} already exists")
        row = len(self.ids)
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
        marks = self.market.mark[self.leg_row]
        self.leg_day_ref = np.where(np.isfinite(marks), marks, self.leg_day_ref)
        self.leg_realized_day[:] = 0.0

    # --- valuation ---

    def view(self, now_ns: int) -> PositionView:
        """Every position's P&L, Greeks and distances, vectorised over legs.

        Valuing also advances each open position's peak P&L %, the trailing stop's memory: the
        peak is a fact about the position's history, so the book keeps it and rules stay pure.
        """
        m, n = self.market, len(self.ids)
        lp, lr, qty = self.leg_pos, self.leg_row, self.leg_qty
        mult = m.multiplier[lr]

        def per_pos(values: F64) -> F64:
            values[np.isnan(values)] = 0.0  # a leg without Greeks yet adds nothing
            return np.bincount(lp, weights=values, minlength=n)

        mark = m.mark[lr]
        mark = np.where(np.isfinite(mark), mark, self.leg_avg)  # unmarked legs: flat P&L
        open_pnl = per_pos(qty * (mark - self.leg_avg) * mult)
        realized = per_pos(self.leg_realized)
        day_pnl = per_pos(qty * (mark - self.leg_day_ref) * mult + self.leg_realized_day)
        total = open_pnl + realized
        basis = per_pos(-qty * self.leg_avg * mult)  # premium of the contracts held
        net_credit = basis + realized  # cash: sold - bought - fees (realised holds every fee)
        units = self._view_units(per_pos)
        carried = self.pos_carried.copy()
        held_fees = per_pos(self.leg_fee.copy())
        credit = basis - held_fees + carried
        held_pnl = open_pnl - held_fees + carried
        # a held mark (wide or no quote) must not blind a stop: such legs are valued at the
        # worse of the held mark and the price to close them now (shorts' ask, longs' bid)
        close_px = np.where(qty < 0, m.ask[lr], m.bid[lr])
        held = (m.wide[lr] | ~np.isfinite(m.mark[lr])) & (close_px >= 0) & (qty != 0)
        worse = np.where(qty < 0, np.fmax(mark, close_px), np.fmin(mark, close_px))
        stop_pnl = held_pnl + per_pos(np.where(held, qty * (worse - mark) * mult, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            pnl_pct = np.where(
                self.pos_open,
                np.where(credit != 0, held_pnl / np.abs(credit) * 100, np.nan),
                np.where(self.pos_original != 0, total / np.abs(self.pos_original) * 100, np.nan),
            )
            stop_pct = np.where(self.pos_open & (credit != 0), stop_pnl / np.abs(credit) * 100,
                                pnl_pct)  # fmt: skip
        live = self.pos_open & np.isfinite(pnl_pct)
        self.pos_peak_pct = np.where(live, np.fmax(self.pos_peak_pct, pnl_pct), self.pos_peak_pct)
        und_row = np.array([m.underlyings.get(u, -1) for u in self.pos_und], dtype=np.int64)
        spot = np.where(und_row >= 0, m.spot[np.maximum(und_row, 0)], np.nan) if n else np.zeros(0)
        leg_spot = spot[lp]
        delta_shares = per_pos(qty * m.delta[lr] * mult)
        bench = m.spot_of(self.config.benchmark)
        betas = np.array([self.config.betas.get(u, 1.0) for u in self.pos_und])
        # per-unit delta: contracts x delta / filled units (the multiplier cancels out)
        per_unit = np.maximum(units, 1e-12)  # a flat position's Greeks are 0 whatever divides
        delta_unit = per_pos(qty * m.delta[lr]) / per_unit
        move = self.config.gamma_move_pct / 100
        gamma_unit = per_pos(qty * m.gamma[lr] * leg_spot) * move / per_unit
        dist, tested = self._short_distances(spot)
        mid = 0.5 * (m.ask[lr] + m.bid[lr])  # the latest quote's, as the liquidity guard reads it
        width = m.ask[lr] - m.bid[lr]
        spread = np.where(mid > 0, width / mid * 100, np.inf)
        spread[width <= m.config.max_spread + 1e-9] = 0.0  # a one- or two-tick market is liquid
        active = qty != 0
        max_spread = np.full(n, 0.0)
        # no two-sided quote is an infinite spread (nan_to_num would make it 1.8e308)
        np.maximum.at(max_spread, lp[active], np.where(np.isnan(spread[active]), np.inf,
                                                       spread[active]))  # fmt: skip
        stale = np.zeros(n, dtype=bool)
        np.logical_or.at(stale, lp[active], m.wide[lr][active] | ~np.isfinite(m.mark[lr][active]))
        nearest = np.full(n, np.inf)
        np.minimum.at(nearest, lp[active], m.expiry_ns[lr][active])
        return PositionView(
            ts_ns=now_ns,
            ids=list(self.ids),  # a snapshot: positions opened later must not join this view
            is_open=self.pos_open.copy(),
            quantity=self.pos_quantity,
            spot=spot,
            open_pnl=open_pnl,
            realized=realized,
            total_pnl=total,
            day_pnl=day_pnl,
            credit=credit,
            pnl_pct=pnl_pct,
            peak_pct=self.pos_peak_pct.copy(),
            delta_unit=delta_unit,
            gamma_unit=gamma_unit,
            delta_shares=delta_shares,
            beta_delta_spy=delta_shares * spot * betas / bench,
            theta_per_day=per_pos(qty * m.theta_per_day[lr] * mult),
            vega_per_point=per_pos(qty * m.vega_per_point[lr] * mult),
            vanna_shares=per_pos(qty * m.vanna_per_point[lr] * mult),
            charm_shares=per_pos(qty * m.charm_per_day[lr] * mult),
            short_dist_pct=dist,
            tested=tested,
            stale=stale,
            max_spread_pct=max_spread,
            nearest_expiry_ns=nearest,
            risk=self._stress_loss(spot, carried - held_fees),
            underlying=self.pos_und,
            net_credit=net_credit,
            original_credit=self.pos_original.copy(),
            held_pnl=held_pnl,
            units=units,
            stop_pct=stop_pct,
        )

    def _view_units(self, per_pos: Callable[[F64], F64]) -> F64:
        """:meth:`_units` of every position at once (see there)."""
        q, r = np.abs(self.leg_qty), np.abs(self.leg_ratio)
        held = (q != 0) & (r != 0)
        num, den = per_pos(np.where(held, q, 0.0)), per_pos(np.where(held, r, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / den, 0.0)

    def _stress_loss(self, spot: F64, banked: F64) -> F64:
        """Worst expiry loss (dollars, >= 0) of each position's held units for spots within the
        stress move, counting what they ``banked`` (rolled-out legs' P&L less the fees in the
        legs) (:func:`kit.core.payoff.stress_loss`, legs grouped by position as stored)."""
        n = len(self.ids)
        if not n:
            return np.zeros(0)
        m, lr = self.market, self.leg_row
        return stress_loss(spot[self.leg_pos], m.strike[lr], m.is_call[lr],
                           self.leg_qty * m.multiplier[lr], self.leg_avg,
                           self.config.stress_move_pct, self.leg_pos, n,
                           realized=banked)  # fmt: skip

    def _short_distances(self, spot: F64) -> tuple[F64, NDArray[np.int64]]:
        """Signed % distance of spot to the nearest short strike, and which side that is."""
        m, n = self.market, len(self.ids)
        short = self.leg_qty < 0
        lp, lr = self.leg_pos[short], self.leg_row[short]
        s = spot[lp]
        is_call = m.is_call[lr]
        dist = np.where(is_call, m.strike[lr] - s, s - m.strike[lr]) / s * 100
        best = np.full(n, np.inf)
        np.minimum.at(best, lp, np.nan_to_num(dist, nan=np.inf))
        tested = np.zeros(n, dtype=np.int64)
        at_best = dist == best[lp]
        tested[lp[at_best]] = np.where(is_call[at_best], -1, 1)
        return best, tested

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

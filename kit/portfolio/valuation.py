"""The book's valuation: every position's P&L, Greeks and distances as a :class:`PositionView`.

Why a module of its own: the view is the desk's per-tick cost. A tick changes marks and Greeks,
rarely the book (fills, new positions, a new day) and only sometimes spot, so
:class:`Valuation` splits the work by what it depends on:

- *book* (positions, fills, the day): realised P&L, net credit, units, fees, betas, each
  position's nearest expiry, and the bin layout of the per-leg sums. Kept until the book's
  version changes (:class:`~kit.portfolio.book.Book` bumps it on every mutation);
- *book and spot*: the stress loss (a 21-point expiry P&L grid over every leg) and the distance
  to the nearest short strike. Kept while neither the book nor any position's spot moved;
- *marks and Greeks*: everything else, each tick. The ten per-leg sums (open and day P&L, the
  stop's worse-side adjustment, seven Greeks) are one ``np.bincount`` over a stacked (10, legs)
  matrix with bin ``k * n + position``: the same sequential sums, in the same leg order, as ten
  separate ``bincount`` calls, for the cost of one.

The results are those of the straightforward computation (``tests/test_book*.py`` hold the
book to its accounting; ``tests/test_valuation.py`` holds the cached view to an uncached one
through fills, spot moves and new positions).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from kit.core.payoff import stress_loss
from kit.portfolio import jit_switch
from kit.portfolio.refresh_jit import kernels

if TYPE_CHECKING:
    from kit.portfolio.book import Book

log = logging.getLogger(__name__)
F64 = NDArray[np.float64]


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
    ``short_delta`` is the largest |delta| of a held short leg (an option's own delta, 0-1).

    ``credit`` is the net credit of the units held and ``held_pnl`` their P&L (open P&L plus
    what rolled-out legs banked, less the fees still in the legs); ``pnl_pct`` is ``held_pnl`` in
    % of ``|credit|`` while open, the total P&L in % of ``|original_credit|`` once flat.
    ``net_credit`` (cash) and ``original_credit`` are dollars; ``units`` the filled units. The
    last four default to ``credit``/``total_pnl``/``quantity`` for views built by hand.

    Arrays of a view are read-only by convention: consecutive views may share the ones that did
    not change (realised P&L, credit, the stress loss).
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
    short_delta: F64 | None = None  # the largest |delta| of a held short leg (NaN: none)

    def __post_init__(self) -> None:
        for name, default in (("net_credit", self.credit), ("original_credit", self.credit),
                              ("held_pnl", self.total_pnl), ("units", self.quantity),
                              ("stop_pct", self.pnl_pct)):  # fmt: skip
            if getattr(self, name) is None:
                object.__setattr__(self, name, default)
        if self.short_delta is None:
            object.__setattr__(self, "short_delta", np.full(len(self.ids), np.nan))

    def __len__(self) -> int:
        return len(self.ids)


@cache
def leg_kernel() -> Callable[..., None] | None:
    """The compiled per-leg loop (:mod:`kit.portfolio.valuation_numba`), or None without numba
    or if it fails to compile: then the NumPy path, which is also the reference."""
    try:
        from kit.portfolio.valuation_numba import leg_sums
    except ImportError:
        return None
    try:  # compile (or load from the disk cache) now, on one leg
        f, i, z = np.ones(1), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.bool_)
        leg_sums(i, i, f, f, f, f, f, f, f, f, f, z, f, f, f, f, f, f, 0.1, np.zeros((10, 1)),
                 np.zeros(1), z.copy())  # fmt: skip
    except Exception as exc:  # a broken numba/llvmlite install must not take the desk down
        log.warning("valuation: numba kernel unavailable (%s); using NumPy", exc)
        return None
    return leg_sums


def compile_tick_path() -> bool:
    """Switch the tick path to its compiled kernels (the refresh's and the per-leg loop), loading
    them now, ~1 s once per process, instead of on a tick (:mod:`kit.portfolio.jit_switch`).
    False, and the NumPy path kept, without numba."""
    jit_switch.ON = kernels() is not None and leg_kernel() is not None
    return jit_switch.ON


class Valuation:
    """The view of one book, with what a tick leaves unchanged kept between views."""

    def __init__(self, book: Book) -> None:
        self.book = book
        self._key: tuple[int, int] | None = None  # (book version, underlyings known)
        self._s: dict[str, Any] = {}  # book-dependent values
        self._spot_key: tuple[tuple[int, int], F64] | None = None
        self._by_spot: tuple[F64, F64, NDArray[np.int64], F64] | None = None

    def _static(self) -> dict[str, Any]:
        b, m = self.book, self.book.market
        key = (b.version, len(m.underlyings))
        if key == self._key:
            return self._s
        n, lp, lr, qty = len(b.ids), b.leg_pos, b.leg_row, b.leg_qty
        mult = m.multiplier[lr]

        def per_pos(values: F64) -> F64:
            values[np.isnan(values)] = 0.0  # a leg without a number adds nothing
            return np.bincount(lp, weights=values, minlength=n)

        realized = per_pos(b.leg_realized.copy())
        basis = per_pos(-qty * b.leg_avg * mult)  # premium of the contracts held
        q, r = np.abs(qty), np.abs(b.leg_ratio)
        held = (q != 0) & (r != 0)
        num, den = per_pos(np.where(held, q, 0.0)), per_pos(np.where(held, r, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            units = np.where(den > 0, num / den, 0.0)  # Book._units of every position
        carried = b.pos_carried.copy()
        held_fees = per_pos(b.leg_fee.copy())
        active = qty != 0
        nearest = np.full(n, np.inf)
        np.minimum.at(nearest, lp[active], m.expiry_ns[lr][active])
        und_row = np.array([m.underlyings.get(u, -1) for u in b.pos_und], dtype=np.int64)
        k = 10  # stacked per-leg sums per tick (see tick())
        self._s = {
            "n": n, "mult": mult, "realized": realized, "net_credit": basis + realized,
            "units": units, "per_unit": np.maximum(units, 1e-12), "carried": carried,
            "held_fees": held_fees, "credit": basis - held_fees + carried,
            "banked": carried - held_fees, "active": active, "lp_active": lp[active],
            "nearest": nearest, "und_row": und_row, "has_und": bool(np.all(und_row >= 0)),
            "betas": np.array([b.config.betas.get(u, 1.0) for u in b.pos_und]),
            "bins": (np.arange(k)[:, None] * n + lp).ravel(), "k": k,
            "qty_neg": qty < 0, "ids": list(b.ids), "und": list(b.pos_und),
            "short_rows": lr[qty < 0], "short_pos": lp[qty < 0],
        }  # fmt: skip
        self._key, self._spot_key, self._by_spot = key, None, None
        return self._s

    def _spot_parts(self, s: dict[str, Any], spot: F64) -> tuple[F64, F64, NDArray[np.int64], F64]:
        """(leg spot, short distance, tested side, stress loss): kept while spot holds."""
        key = self._key
        assert key is not None
        if (self._spot_key is not None and self._spot_key[0] == key
                and np.array_equal(self._spot_key[1], spot, equal_nan=True)):  # fmt: skip
            assert self._by_spot is not None
            return self._by_spot
        b = self.book
        dist, tested = short_distances(b, spot)
        risk = stress_risk(b, spot, s["banked"])
        self._spot_key, self._by_spot = (key, spot.copy()), (spot[b.leg_pos], dist, tested, risk)
        return self._by_spot

    def _legs(self, s: dict[str, Any], leg_spot: F64) -> tuple[F64, F64, NDArray[np.bool_]]:
        """Per position: the ten per-leg sums (10, n), the widest spread of its held legs (% of
        mid) and whether one of them has a held mark; compiled when numba is installed."""
        b, m = self.book, self.book.market
        n = s["n"]
        kernel = leg_kernel() if jit_switch.ON else None
        if kernel is None or not b.n_legs:
            return self._legs_numpy(s, leg_spot)
        sums, max_spread, stale = np.zeros((s["k"], n)), np.zeros(n), np.zeros(n, dtype=bool)
        kernel(b.leg_pos, b.leg_row, b.leg_qty, b.leg_avg, b.leg_day_ref, b.leg_realized_day,
               s["mult"], leg_spot, m.mark, m.ask, m.bid, m.wide, m.delta, m.gamma,
               m.theta_per_day, m.vega_per_point, m.vanna_per_point, m.charm_per_day,
               m.config.max_spread + 1e-9, sums, max_spread, stale)  # fmt: skip
        return sums, max_spread, stale

    def _legs_numpy(self, s: dict[str, Any], leg_spot: F64) -> tuple[F64, F64, NDArray[np.bool_]]:
        """:meth:`_legs` in NumPy: the reference, and the path without numba."""
        b, m = self.book, self.book.market
        n, lr, qty, mult = s["n"], b.leg_row, b.leg_qty, s["mult"]
        raw_mark = m.mark[lr]
        marked = np.isfinite(raw_mark)
        mark = np.where(marked, raw_mark, b.leg_avg)  # unmarked legs: flat P&L
        ask, bid, wide = m.ask[lr], m.bid[lr], m.wide[lr]
        qty_neg = s["qty_neg"]
        close_px = np.where(qty_neg, ask, bid)  # the price to close now: shorts' ask, longs' bid
        # a held mark (wide or no quote) must not blind a stop: such legs are valued at the
        # worse of the held mark and the price to close them now
        unmarked = wide | ~marked
        held = unmarked & (close_px >= 0) & s["active"]
        worse = np.where(qty_neg, np.fmax(mark, close_px), np.fmin(mark, close_px))
        delta = m.delta[lr]
        x = np.empty((s["k"], len(lr)))
        x[0] = qty * (mark - b.leg_avg) * mult
        x[1] = qty * (mark - b.leg_day_ref) * mult + b.leg_realized_day
        x[2] = np.where(held, qty * (worse - mark) * mult, 0.0)
        x[3] = qty * delta * mult
        x[4] = qty * delta
        x[5] = qty * m.gamma[lr] * leg_spot
        x[6] = qty * m.theta_per_day[lr] * mult
        x[7] = qty * m.vega_per_point[lr] * mult
        x[8] = qty * m.vanna_per_point[lr] * mult
        x[9] = qty * m.charm_per_day[lr] * mult
        x[np.isnan(x)] = 0.0  # a leg without Greeks yet adds nothing
        sums = np.bincount(s["bins"], weights=x.ravel(), minlength=s["k"] * n).reshape(s["k"], n)
        mid = 0.5 * (ask + bid)  # the latest quote's, as the liquidity guard reads it
        width = ask - bid
        with np.errstate(divide="ignore", invalid="ignore"):
            spread = np.where(mid > 0, width / mid * 100, np.inf)
        spread[width <= m.config.max_spread + 1e-9] = 0.0  # a one- or two-tick market is liquid
        active, lp_active = s["active"], s["lp_active"]
        max_spread = np.full(n, 0.0)
        # no two-sided quote is an infinite spread (nan_to_num would make it 1.8e308)
        spread_a = spread[active]
        np.maximum.at(max_spread, lp_active, np.where(np.isnan(spread_a), np.inf, spread_a))
        stale = np.zeros(n, dtype=bool)
        np.logical_or.at(stale, lp_active, unmarked[active])
        return sums, max_spread, stale

    def view(self, now_ns: int) -> PositionView:
        """Every position's P&L, Greeks and distances, vectorised over legs.

        Valuing also advances each open position's peak P&L %, the trailing stop's memory: the
        peak is a fact about the position's history, so the book keeps it and rules stay pure.
        """
        b, m = self.book, self.book.market
        s = self._static()
        n, und_row = s["n"], s["und_row"]
        if not n:
            spot = np.zeros(0)
        elif s["has_und"]:
            spot = m.spot[und_row]
        else:
            spot = np.where(und_row >= 0, m.spot[np.maximum(und_row, 0)], np.nan)
        leg_spot, dist, tested, risk = self._spot_parts(s, spot)
        sums, max_spread, stale = self._legs(s, leg_spot)
        open_pnl, day_pnl = sums[0], sums[1]
        realized, credit, carried, held_fees = (s["realized"], s["credit"], s["carried"],
                                                s["held_fees"])  # fmt: skip
        total = open_pnl + realized
        held_pnl = open_pnl - held_fees + carried
        stop_pnl = held_pnl + sums[2]
        pos_open, original = b.pos_open, b.pos_original
        with np.errstate(divide="ignore", invalid="ignore"):
            pnl_pct = np.where(
                pos_open,
                np.where(credit != 0, held_pnl / np.abs(credit) * 100, np.nan),
                np.where(original != 0, total / np.abs(original) * 100, np.nan),
            )
            stop_pct = np.where(pos_open & (credit != 0), stop_pnl / np.abs(credit) * 100,
                                pnl_pct)  # fmt: skip
        live = pos_open & np.isfinite(pnl_pct)
        b.pos_peak_pct = np.where(live, np.fmax(b.pos_peak_pct, pnl_pct), b.pos_peak_pct)
        delta_shares = sums[3]
        bench = m.spot_of(b.config.benchmark)
        per_unit = s["per_unit"]  # per-unit delta: contracts x delta / units (multiplier cancels)
        move = b.config.gamma_move_pct / 100
        return PositionView(
            ts_ns=now_ns,
            ids=s["ids"],  # a snapshot: positions opened later must not join this view
            is_open=pos_open.copy(),
            quantity=b.pos_quantity,
            spot=spot,
            open_pnl=open_pnl,
            realized=realized,
            total_pnl=total,
            day_pnl=day_pnl,
            credit=credit,
            pnl_pct=pnl_pct,
            peak_pct=b.pos_peak_pct.copy(),
            delta_unit=sums[4] / per_unit,
            gamma_unit=sums[5] * move / per_unit,
            delta_shares=delta_shares,
            beta_delta_spy=delta_shares * spot * s["betas"] / bench,
            theta_per_day=sums[6],
            vega_per_point=sums[7],
            vanna_shares=sums[8],
            charm_shares=sums[9],
            short_dist_pct=dist,
            tested=tested,
            stale=stale,
            max_spread_pct=max_spread,
            nearest_expiry_ns=s["nearest"],
            risk=risk,
            underlying=s["und"],
            net_credit=s["net_credit"],
            original_credit=original.copy(),
            held_pnl=held_pnl,
            units=s["units"],
            stop_pct=stop_pct,
            short_delta=_short_delta(n, s["short_pos"], m.delta[s["short_rows"]]),
        )


def _short_delta(n: int, pos: NDArray[np.int64], delta: F64) -> F64:
    """Per position, the largest |delta| among its held short legs (the grid's ``exit_delta``
    reads the same); NaN without short legs, and a leg without Greeks yet is skipped."""
    out = np.full(n, np.nan)
    if len(pos):
        np.fmax.at(out, pos, np.abs(delta))
    return out


def stress_risk(b: Book, spot: F64, banked: F64) -> F64:
    """Worst expiry loss (dollars, >= 0) of each position's held units for spots within the
    stress move, counting what they ``banked`` (rolled-out legs' P&L less the fees in the
    legs) (:func:`kit.core.payoff.stress_loss`, legs grouped by position as stored)."""
    n = len(b.ids)
    if not n:
        return np.zeros(0)
    m, lr = b.market, b.leg_row
    return stress_loss(spot[b.leg_pos], m.strike[lr], m.is_call[lr],
                       b.leg_qty * m.multiplier[lr], b.leg_avg, b.config.stress_move_pct,
                       b.leg_pos, n, realized=banked)  # fmt: skip


def short_distances(b: Book, spot: F64) -> tuple[F64, NDArray[np.int64]]:
    """Signed % distance of spot to the nearest short strike, and which side that is."""
    m, n = b.market, len(b.ids)
    short = b.leg_qty < 0
    lp, lr = b.leg_pos[short], b.leg_row[short]
    s = spot[lp]
    is_call = m.is_call[lr]
    dist = np.where(is_call, m.strike[lr] - s, s - m.strike[lr]) / s * 100
    best = np.full(n, np.inf)
    np.minimum.at(best, lp, np.nan_to_num(dist, nan=np.inf))
    tested = np.zeros(n, dtype=np.int64)
    at_best = dist == best[lp]
    tested[lp[at_best]] = np.where(is_call[at_best], -1, 1)
    return best, tested

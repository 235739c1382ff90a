"""What a dashboard renders of the desk: the book, totals and switches at one instant.

Built from the desk's latest :class:`~kit.portfolio.book.PositionView` (never re-evaluated here),
so a snapshot costs a copy of numbers already computed and can be taken as often as viewers ask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.engine.alerts import AlertRecord
from kit.risk.tenor import sigma_greeks

if TYPE_CHECKING:
    from kit.engine.desk import Desk

# the per-position numbers summed over open positions into the snapshot's totals
TOTALS = ("total_pnl", "open_pnl", "beta_delta_spy", "theta_per_day", "vega_per_point",
          "vanna_shares", "charm_shares", "risk")  # fmt: skip
# ... and those summed over every position: a position closed today made part of today's P&L
# (realised today + the change in open P&L since the day began)
DAY_TOTALS = ("day_pnl",)


@dataclass(frozen=True)
class Snapshot:
    """What a dashboard renders: the book, totals and the desk's switches, at ``ts_ns``."""

    ts_ns: int
    spots: dict[str, float]
    positions: list[dict[str, Any]]
    totals: dict[str, float]
    feeds: dict[str, str]
    auto_manage: bool
    killed: bool
    frozen: bool
    blocked_by: dict[str, str]
    alerts: list[AlertRecord] = field(default_factory=list)
    log: list[AlertRecord] = field(default_factory=list)  # recent, incl. cleared / acknowledged
    engine: dict[str, Any] = field(default_factory=lambda: {"state": "OK", "faults": []})


def vendor_deltas(desk: Desk, n: int) -> tuple[Any, Any, list[str]]:
    """Per position: delta in shares by the vendor's Greeks (NaN until every held leg has
    one), its difference from the desk's own over the legs both price, and the vendor."""
    b, m = desk.book, desk.market
    lr, qty = b.leg_row, b.leg_qty
    vd, dd, mult = m.vendor_delta[lr], m.delta[lr], m.multiplier[lr]
    both = np.isfinite(vd) & np.isfinite(dd)

    def per_pos(values: Any) -> Any:  # float even for an empty book (bincount gives ints)
        return np.bincount(b.leg_pos, weights=values, minlength=n)[:n].astype(float)

    diff = per_pos(np.where(both, qty * (vd - dd) * mult, 0.0))
    shares = per_pos(np.where(np.isfinite(vd), qty * vd * mult, 0.0))
    shares[per_pos((qty != 0) & ~np.isfinite(vd)) > 0] = np.nan
    diff[per_pos(both) == 0] = np.nan
    source = [""] * n
    for p, r in zip(b.leg_pos.tolist(), lr.tolist(), strict=True):
        if p < n and not source[p]:
            source[p] = m.vendor_source.get(r, "")
    return shares, diff, source


def _opt(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def build_snapshot(desk: Desk) -> Snapshot:
    v, m = desk.view, desk.market
    sigma = sigma_greeks(v, m, v.ts_ns)  # the rules' units: Greeks per 1-sigma move left
    vendor_shares, vendor_diff, vendor = vendor_deltas(desk, len(v.ids))
    rows = []
    for i, pid in enumerate(v.ids):
        rows.append({
            "id": pid, "strategy": desk.book.positions[pid].strategy.value,
            "underlying": v.underlying[i], "open": bool(v.is_open[i]),
            "quantity": float(v.quantity[i]), "spot": float(v.spot[i]),
            "pnl": float(v.total_pnl[i]), "pnl_pct": float(v.pnl_pct[i]),
            "open_pnl": float(v.open_pnl[i]), "realized_pnl": float(v.realized[i]),
            "day_pnl": float(v.day_pnl[i]), "credit": float(v.credit[i]),
            "net_credit": float(v.net_credit[i]) if v.net_credit is not None else None,
            "original_credit": (float(v.original_credit[i])
                                if v.original_credit is not None else None),
            "delta_unit": float(v.delta_unit[i]), "gamma_unit": float(v.gamma_unit[i]),
            "delta_1s": float(sigma.delta_1s[i]), "gamma_1s": float(sigma.gamma_1s[i]),
            "move_pct": float(sigma.move_pct[i]),
            "delta_shares": float(v.delta_shares[i]),
            "beta_delta_spy": float(v.beta_delta_spy[i]),
            "theta_per_day": float(v.theta_per_day[i]),
            "vega_per_point": float(v.vega_per_point[i]),
            "vanna_shares": float(v.vanna_shares[i]), "charm_shares": float(v.charm_shares[i]),
            "short_dist_pct": float(v.short_dist_pct[i]), "stale": bool(v.stale[i]),
            "risk": float(v.risk[i]),
            "vendor": vendor[i], "vendor_delta_shares": _opt(vendor_shares[i]),
            "vendor_delta_diff_shares": _opt(vendor_diff[i]),
        })  # fmt: skip
    live = v.is_open
    totals = {name: float(np.nansum(getattr(v, name)[live])) for name in TOTALS}
    totals.update({name: float(np.nansum(getattr(v, name))) for name in DAY_TOTALS})
    return Snapshot(
        ts_ns=v.ts_ns,
        spots={s: float(m.spot[u]) for s, u in m.underlyings.items()},
        positions=rows,
        totals=totals,
        feeds={f: s.value for f, s in desk.feed_states.items()},
        auto_manage=desk.auto_manage,
        killed=desk.killed,
        frozen=desk.frozen,
        blocked_by=dict(desk.blocked_by),
        alerts=desk.alerts.unacknowledged(),
        log=desk.alerts.recent(30),
        engine=desk.health.state(),
    )

"""What fills cost beyond the mid, measured on live fills and fitted, so backtests pay it.

Each fill is measured against the quote it met (the bid/ask its audit row keeps): ``slip`` is
the price paid beyond the mid (a sale at the bid of a 0.05-wide quote slips 0.025), in dollars
per contract (× the multiplier) and as a fraction of the spread, the unit of the grid's cost
model (:class:`kit.execution.costs.CostModel` ``slippage_frac``). Positive is worse than the mid.

Over many fills :func:`fit` regresses the fraction on DTE, |delta|, hours since the open and
spread width (least squares; with fewer fills than terms only the mean). The grid prices
slippage by an order's leg count alone, so :meth:`SlippageModel.cost_model` gives each leg count
the model's mean prediction over the fills of orders with that many legs (the overall mean for
leg counts not seen), and :meth:`SlippageModel.toml` writes it as a ``[costs.NAME]`` table a grid
file can name in its ``costs`` axis: the live fills make the backtest's costs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from kit.core.clock import NEW_YORK, from_ns, us_session
from kit.core.symbology import from_occ
from kit.execution.costs import DEFAULT_COSTS, CostModel

FEATURES = ("dte", "abs_delta", "hours", "spread")
SCHEMA = {"ts": pl.Datetime("us", "UTC"), "contract": pl.Utf8, "side": pl.Utf8,
          "qty": pl.Float64, "price": pl.Float64, "bid": pl.Float64, "ask": pl.Float64,
          "mid": pl.Float64, "spread": pl.Float64, "slip": pl.Float64,
          "slip_dollars": pl.Float64, "frac": pl.Float64, "dte": pl.Float64,
          "abs_delta": pl.Float64, "hours": pl.Float64, "legs": pl.Int64}  # fmt: skip


def fill_table(records: Iterable[dict[str, Any]]) -> pl.DataFrame:
    """One row per fill that met a two-sided quote (settlements at intrinsic value are not
    trades and are left out): its quote, slip in price units, dollars per contract and as a
    fraction of the spread, with the fit's features and the leg count of its order."""
    fills = [r for r in records if r["kind"] == "fill" and r["client_id"] != "settlement"]
    legs: dict[str, set[str]] = {}
    for r in fills:
        legs.setdefault(r["client_id"], set()).add(r["contract"])
    rows = []
    for r in fills:
        bid, ask = r.get("bid"), r.get("ask")
        if bid is None or ask is None or ask < bid:
            continue
        c = from_occ(r["contract"])
        when: datetime = from_ns(r["ts_ns"])
        local = when.astimezone(NEW_YORK)
        session = us_session(local.date())
        hours = (when - session.open).total_seconds() / 3600 if session else np.nan
        mid, spread = (bid + ask) / 2, ask - bid
        slip = (r["price"] - mid) if r["side"] == "buy" else (mid - r["price"])
        delta = r.get("recorded_delta")
        rows.append({
            "ts": when, "contract": r["contract"], "side": r["side"], "qty": r["qty"],
            "price": r["price"], "bid": bid, "ask": ask, "mid": mid, "spread": spread,
            "slip": round(slip, 6), "slip_dollars": round(slip * (r.get("multiplier") or 100), 4),
            "frac": slip / spread if spread > 0 else np.nan,
            "dte": float((c.expiry - local.date()).days),
            "abs_delta": abs(delta) if delta is not None else np.nan, "hours": hours,
            "legs": len(legs[r["client_id"]]),
        })  # fmt: skip
    return pl.DataFrame(rows, schema=SCHEMA)


def mean_dollars(table: pl.DataFrame) -> float | None:
    """Slippage in dollars per contract, weighted by contracts; None without fills."""
    if table.is_empty():
        return None
    return round(float((table["slip_dollars"] * table["qty"]).sum() / table["qty"].sum()), 4)


@dataclass(frozen=True)
class SlippageModel:
    """``frac = intercept + Σ coef[f] × f`` over :data:`FEATURES`, fitted on ``n`` fills."""

    intercept: float
    coef: dict[str, float] = field(default_factory=dict)
    n: int = 0
    by_legs: dict[int, float] = field(default_factory=dict)  # mean prediction per leg count

    def predict(self, **features: float) -> float:
        return self.intercept + sum(self.coef.get(k, 0.0) * v for k, v in features.items())

    def surface(self, x: str, y: str, xs: Iterable[float], ys: Iterable[float],
                at: dict[str, float] | None = None) -> pl.DataFrame:  # fmt: skip
        """The predicted fraction over a grid of two features, the others held at ``at``."""
        base = dict(at or {})
        return pl.DataFrame([{x: a, y: b, "frac": self.predict(**{**base, x: a, y: b})}
                             for a in xs for b in ys])  # fmt: skip

    def cost_model(self, base: CostModel = DEFAULT_COSTS) -> CostModel:
        """``base`` with the fitted slippage by leg count (never below zero: a cost model does
        not pay the trader)."""
        overall = max(self.intercept, 0.0) if not self.by_legs else float(
            np.mean(list(self.by_legs.values())))  # fmt: skip
        fracs = {k: round(max(v, 0.0), 4) for k, v in self.by_legs.items()}
        for k in (1, 2, 4):
            fracs.setdefault(k, round(max(overall, 0.0), 4))
        return replace(base, slippage_frac=dict(sorted(fracs.items())))

    def toml(self, name: str = "live") -> str:
        """A ``[costs.NAME]`` table for a grid file (README "Backtest grid")."""
        fracs = self.cost_model().slippage_frac
        body = ", ".join(f"{k} = {v}" for k, v in fracs.items())
        head = f"# fitted by kit validate on {self.n} live fills: the spread paid beyond the mid"
        return f"{head}\n[costs.{name}]\nslippage_frac = {{ {body} }}\n"

    def to_json(self) -> dict[str, Any]:
        return {"intercept": round(self.intercept, 6), "n": self.n,
                "coef": {k: round(v, 6) for k, v in self.coef.items()},
                "by_legs": {str(k): v for k, v in self.by_legs.items()}}  # fmt: skip


def fit(table: pl.DataFrame) -> SlippageModel | None:
    """Least squares of the spread fraction on :data:`FEATURES`; the mean alone when there
    are not more fills than terms; None without a usable fill."""
    usable = table.drop_nans(["frac"]).drop_nulls(["frac"])
    if usable.is_empty():
        return None
    y = usable["frac"].to_numpy()
    x = usable.select(FEATURES).to_numpy().astype(float)
    keep = np.isfinite(x).all(axis=1)
    if keep.sum() > len(FEATURES) + 1:
        a = np.column_stack([np.ones(keep.sum()), x[keep]])
        beta, *_ = np.linalg.lstsq(a, y[keep], rcond=None)
        model = SlippageModel(float(beta[0]), dict(zip(FEATURES, map(float, beta[1:]),
                                                       strict=True)), len(y))  # fmt: skip
        pred = np.where(keep, np.column_stack([np.ones(len(y)), np.nan_to_num(x)]) @ beta, y)
    else:
        model = SlippageModel(float(y.mean()), {}, len(y))
        pred = np.full(len(y), y.mean())
    legs = usable["legs"].to_numpy()
    by_legs = {int(k): round(float(pred[legs == k].mean()), 4) for k in np.unique(legs)}
    return replace(model, by_legs=by_legs)

"""What dealer positioning implies into expiry: vanna and charm flows, max pain, pinning.

Vanna and charm exposure per contract come from :func:`kit.signals.gex.exposures` (same sign
model and conventions as GEX):

- vanna exposure, $ delta per vol point: how much dealers' dollar delta changes when every IV
  rises one point. When IV falls (after an event, into OpEx) dealers re-hedge by trading the
  opposite of that change: ``vanna_flow_per_point_drop`` = +vanna exposure dollars bought.
- charm exposure, $ delta per day: how much dealers' dollar delta drifts as one day passes.
  ``charm_flow_to_expiry`` is the exact version through each expiry: the dollars of underlying
  dealers buy (+) or sell (-) as those contracts' deltas decay to 0 or +/-1 at settlement, spot
  and IV unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import polars as pl

from kit.core.clock import expiry_time
from kit.core.model import Contract, Right
from kit.signals.chains import Chain
from kit.signals.config import DESK, GexConfig
from kit.signals.gex import exposures, is_monthly


def expiry_flows(chain: Chain, cfg: GexConfig = DESK) -> pl.DataFrame:
    """Per expiry, ascending: days to expiry, GEX, vanna and charm exposure, dealers' dollar
    delta now and at expiry (spot unchanged), the charm flow to expiry and its running total,
    and the vanna re-hedge per one-point IV drop."""
    ex = exposures(chain, cfg)
    S, K, call = chain.spot, ex["strike"].to_numpy(), ex["is_call"].to_numpy()
    w = np.where(call, 1.0, -1.0)  # settled delta: +1 ITM call, -1 ITM put, half at the money
    at_expiry = w * np.where(w * (S - K) > 0, 1.0, np.where(S == K, 0.5, 0.0))
    ex = ex.with_columns(pl.Series("delta_at_expiry", ex["weight"].to_numpy() * at_expiry * S))
    return (
        ex.group_by("expiry")
        .agg(
            (pl.col("years").min() * (1 / cfg.years_per_day)).alias("days_to_expiry"),
            pl.col("gex").sum(),
            pl.col("vanna_exposure").sum(),
            pl.col("charm_exposure").sum(),
            pl.col("dollar_delta").sum(),
            pl.col("delta_at_expiry").sum(),
        )
        .sort("expiry")
        .with_columns(
            (pl.col("dollar_delta") - pl.col("delta_at_expiry")).alias("charm_flow_to_expiry"),
            pl.col("vanna_exposure").alias("vanna_flow_per_point_drop"),
        )
        .with_columns(pl.col("charm_flow_to_expiry").cum_sum().alias("cum_charm_flow"))
    )


def max_pain(chain: Chain) -> pl.DataFrame:
    """Per expiry date (all roots together): the listed strike at which the options' holders
    would collect the least at settlement, and that payout in $ (OI x multiplier x intrinsic).

    Payout is piecewise linear in the settlement price with kinks at strikes, so its minimum is
    at a strike; cumulative sums give every strike's payout in one pass. Ties go to the lower
    strike."""
    f = chain.frame.with_columns(
        (pl.col("open_interest").fill_null(0.0) * pl.col("multiplier")).alias("units")
    )
    rows = []
    for (day,), g in f.group_by(["expiry"], maintain_order=True):
        by = (g.group_by("strike")
              .agg(pl.col("units").filter(pl.col("is_call")).sum().alias("c"),
                   pl.col("units").filter(~pl.col("is_call")).sum().alias("p"))
              .sort("strike"))  # fmt: skip
        s, c, p = by["strike"].to_numpy(), by["c"].to_numpy(), by["p"].to_numpy()
        # calls below x pay (x - K): x * sum(c) - sum(c K) over K < x; puts above pay (K - x)
        c_below = np.concatenate([[0.0], np.cumsum(c)[:-1]])
        ck_below = np.concatenate([[0.0], np.cumsum(c * s)[:-1]])
        p_above = np.concatenate([np.cumsum(p[::-1])[::-1][1:], [0.0]])
        pk_above = np.concatenate([np.cumsum((p * s)[::-1])[::-1][1:], [0.0]])
        payout = s * c_below - ck_below + pk_above - s * p_above
        i = int(payout.argmin())
        rows.append({"expiry": day, "max_pain": float(s[i]), "payout": float(payout[i]),
                     "open_interest": float(g["open_interest"].fill_null(0.0).sum())})  # fmt: skip
    return pl.DataFrame(rows, schema={"expiry": pl.Date, "max_pain": pl.Float64,
                                      "payout": pl.Float64, "open_interest": pl.Float64}
                        ).sort("expiry")  # fmt: skip


@dataclass(frozen=True)
class PinConfig:
    """When a pin is likely: the OpEx is within ``max_hours`` and spot is within
    ``max_distance_pct`` of one of the expiry's ``top_n`` strikes by open interest (calls and
    puts together). ``monthly_only`` looks only at monthly OpEx (else every expiry, 0DTE too)."""

    max_hours: float = 48.0
    max_distance_pct: float = 0.5
    top_n: int = 3
    monthly_only: bool = False


@dataclass(frozen=True)
class PinSignal:
    """``active`` when a pin is likely. ``strength`` is 0 when inactive, else
    (1 - distance / max distance) x (1 - hours / max hours): 1 at the strike at settlement."""

    active: bool
    expiry: date | None
    strike: float | None
    distance_pct: float
    hours_to_expiry: float
    open_interest: float
    oi_share: float  # the strike's share of the expiry's open interest
    strength: float


def _settles(root: str, day: date) -> datetime:
    return expiry_time(Contract(root, day, 1.0, Right.CALL))


def pinning(chain: Chain, cfg: PinConfig = PinConfig()) -> PinSignal:
    """The pinning signal on the next expiry (the next monthly with ``monthly_only``)."""
    f = chain.frame.with_columns(pl.col("open_interest").fill_null(0.0))
    pairs = f.select("root", "expiry").unique()
    settle = {(r, d): _settles(r, d) for r, d in pairs.iter_rows()}
    alive = [(t, d) for (_, d), t in settle.items()
             if t > chain.asof and (not cfg.monthly_only or is_monthly(d))]  # fmt: skip
    none = PinSignal(False, None, None, float("nan"), float("nan"), 0.0, 0.0, 0.0)
    if not alive:
        return none
    when, day = min(alive)
    hours = (when - chain.asof).total_seconds() / 3600
    by = (f.filter(pl.col("expiry") == day).group_by("strike")
          .agg(pl.col("open_interest").sum()).sort("open_interest", "strike",
                                                   descending=[True, False]))  # fmt: skip
    total = float(by["open_interest"].sum())
    top = by.head(cfg.top_n).filter(pl.col("open_interest") > 0)
    if top.height == 0:
        return PinSignal(False, day, None, float("nan"), hours, 0.0, 0.0, 0.0)
    dist = np.abs(top["strike"].to_numpy() / chain.spot - 1) * 100
    i = int(dist.argmin())
    oi = float(top["open_interest"][i])
    active = hours <= cfg.max_hours and dist[i] <= cfg.max_distance_pct
    strength = (1 - dist[i] / cfg.max_distance_pct) * (1 - hours / cfg.max_hours) if active else 0
    return PinSignal(bool(active), day, float(top["strike"][i]), float(dist[i]), hours, oi,
                     oi / total, float(strength))  # fmt: skip

"""GEX levels through a session: zero gamma, walls and spot over time, for charts and research.

The simulator replays a seeded day (the same path every run), and the levels are recomputed from
its full chain every few minutes, exactly as they would be live.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from kit.adapters.sim.market import MarketSim, SimConfig
from kit.core.clock import to_ns, us_session
from kit.signals.chains import sim_chain
from kit.signals.config import DESK, GexConfig
from kit.signals.gex import gex_levels
from kit.signals.regimes import gamma_regime


def sim_day_levels(
    day: date,
    underlying: str = "SPX",
    *,
    every_min: float = 10.0,
    seed: int = 0,
    step_s: float = 5.0,
    cfg: GexConfig = DESK,
) -> pl.DataFrame:
    """One row per ``every_min`` minutes from the open to the close of ``day``: time (UTC),
    spot, VIX, total GEX ($ per 1% move), zero gamma, call and put walls and the gamma regime."""
    session = us_session(day)
    if session is None:
        raise ValueError(f"{day} is not a trading session")
    if every_min <= 0:
        raise ValueError(f"every_min must be positive, got {every_min}")
    market = MarketSim(session.open, SimConfig(seed=seed, step_s=step_s))
    rows, t = [], session.open
    while t < session.close:
        market.advance_to(to_ns(t))
        lv = gex_levels(sim_chain(market, underlying), cfg)
        vix = market.spot("VIX")
        rows.append({"ts": t, "spot": lv.spot, "vix": vix, "total_gex": lv.total_gex,
                     "zero_gamma": lv.zero_gamma, "call_wall": lv.call_wall,
                     "put_wall": lv.put_wall,
                     "regime": gamma_regime(lv.spot, lv.zero_gamma, total_gex=lv.total_gex,
                                            vix=vix).value})  # fmt: skip
        t += timedelta(minutes=every_min)
    return pl.DataFrame(rows, schema={"ts": pl.Datetime("us", "UTC"), "spot": pl.Float64,
                                      "vix": pl.Float64, "total_gex": pl.Float64,
                                      "zero_gamma": pl.Float64, "call_wall": pl.Float64,
                                      "put_wall": pl.Float64, "regime": pl.String})  # fmt: skip

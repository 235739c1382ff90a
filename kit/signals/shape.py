"""Shape statistics of an option chain: what makes a chain look like a real one.

Pure functions of a :class:`~kit.signals.chains.Chain` (the polars table every loader produces,
from CBOE files and from the simulator alike), so the same numbers are measured on the real
downloads in ``../shared/data/`` and on simulated chains, side by side
(``benchmarks/chain_shape.py``, ``tests/test_chain_shape.py``). Each statistic is one float
(NaN when the chain has nothing to measure it on):

- listings: how far out of the money strikes go on near expiries (``strike_lo``/``strike_hi``,
  fraction of spot, median over expiries 1-35 days out);
- volatility: at-the-money IV by tenor (``atm_iv_*``), 25-delta skew (put IV minus call IV) by
  tenor (``skew_*``);
- spreads: (ask - bid) / mid near the money on near expiries, and dollars (``spread_*``);
- open interest: put/call below and call/put above spot, the share of put OI more than 20% out
  of the money, the share of OI in the nearest non-monthly expiries (``oi_*``);
- exposure: total GEX and the zero-gamma level from :func:`kit.signals.gex.gex_levels`.

Why these: they are the properties a premium seller's tools react to (walls, regime, flip,
credit received, cost of adjusting), and they are what the simulator got wrong before.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from kit.adapters.sim.chains import is_quarter_end
from kit.core.clock import NEW_YORK
from kit.core.pricing import greeks
from kit.signals.chains import Chain, years_to_expiry
from kit.signals.gex import gex_levels, is_monthly

# Bands a simulated SPX chain on a calm-to-normal day must sit in: set from the real chains in
# ../shared/data/ (SPX and SPY 2023-09-14, NDX 2022-02-04; measured values in the README table),
# widened to cover all three files where the statistic is not SPX-specific.
BANDS: dict[str, tuple[float, float]] = {
    "strike_lo": (-0.80, -0.60),  # SPX -0.73 (SPY -0.18 and NDX -0.32 list less far)
    "strike_hi": (0.20, 0.35),  # SPX 0.29, NDX 0.33
    "atm_iv_1m": (0.08, 0.35),  # SPX 0.106, NDX 0.280
    "term_1y_minus_1m": (0.0, 0.08),  # calm: rises with tenor (SPX +0.055; stressed NDX -0.022)
    "skew_1m": (0.015, 0.07),  # SPX 0.030, SPY 0.029, NDX 0.066
    "skew_3m_minus_1w": (0.01, 0.12),  # skew grows with tenor: SPX 0.036, SPY 0.041, NDX 0.105
    "spread_atm_near": (0.01, 0.03),  # SPX 0.018, SPY 0.011 (NDX 0.055)
    "spread_atm_near_usd": (0.10, 1.00),  # SPX $0.40: a few tenths of a dollar
    "spread_d25_near": (0.012, 0.07),  # SPX 0.038, SPY 0.012, NDX 0.064
    "spread_d10_near": (0.03, 0.12),  # SPX 0.067, SPY 0.030, NDX 0.119
    "spread_atm_1m": (0.006, 0.025),  # SPX 0.013, SPY 0.007, NDX 0.024
    "oi_put_call_below": (3.0, 13.0),  # SPX 6.2, NDX 7.6 (SPY 9.1)
    "oi_call_put_above": (1.3, 5.0),  # SPX 4.6, NDX 2.4 (SPY 24)
    "oi_put_far_share": (0.15, 0.45),  # SPX 0.40, SPY 0.21, NDX 0.18
    "oi_near_daily_share": (0.01, 0.27),  # SPX 0.03, SPY 0.04, NDX 0.11
}

TENORS: dict[str, tuple[float, float]] = {  # calendar days to expiry, [lo, hi)
    "1w": (1.0, 8.0),
    "1m": (20.0, 45.0),
    "3m": (70.0, 120.0),
    "1y": (250.0, 500.0),
}


def enrich(chain: Chain) -> pl.DataFrame:
    """The chain's rows that have a usable IV and time left, with ``days`` (calendar, to the real
    settlement), ``delta`` (from the IV, r = q = 0), ``mid`` and ``moneyness`` (K / spot)."""
    f = chain.frame
    years = years_to_expiry(f, chain.asof)
    iv = f["iv"].fill_null(np.nan).to_numpy()
    ok = (years > 0) & np.isfinite(iv) & (iv > 0)
    f = f.with_columns(pl.Series("years", years)).filter(ok)
    g = greeks(chain.spot, f["strike"].to_numpy(), f["years"].to_numpy(), 0.0, 0.0,
               f["iv"].to_numpy(), f["is_call"].to_numpy())  # fmt: skip
    return f.with_columns(
        pl.Series("delta", np.asarray(g.delta, dtype=float)),
        (pl.col("years") * 365.0).alias("days"),
        ((pl.col("bid") + pl.col("ask")) / 2).alias("mid"),
        (pl.col("strike") / chain.spot).alias("moneyness"),
    )


def _median(values: list[float]) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.median(v)) if v else math.nan


def listing_range(rows: pl.DataFrame, spot: float) -> tuple[float, float]:
    """Lowest and highest listed strike / spot - 1, median over expiries 1-35 days out."""
    near = rows.filter((pl.col("days") >= 1) & (pl.col("days") <= 35))
    per = near.group_by("expiry").agg(pl.col("strike").min().alias("lo"),
                                      pl.col("strike").max().alias("hi"))  # fmt: skip
    return _median((per["lo"] / spot - 1).to_list()), _median((per["hi"] / spot - 1).to_list())


def _at_delta(sub: pl.DataFrame, target: float) -> float:
    """IV interpolated in delta at ``target`` (calls: +0.25, puts: -0.25, ATM: 0.5 on calls)."""
    d, iv = sub["delta"].to_numpy(), sub["iv"].to_numpy()
    order = np.argsort(d)
    d, iv = d[order], iv[order]
    if d.size < 2 or not d[0] <= target <= d[-1]:
        return math.nan
    return float(np.interp(target, d, iv))


def vol_by_tenor(rows: pl.DataFrame) -> dict[str, float]:
    """ATM IV (the 50-delta call) and 25-delta skew per tenor bucket, median over its expiries
    (one class per expiry: the PM-settled root when an expiry has two)."""
    out: dict[str, float] = {}
    for name, (lo, hi) in TENORS.items():
        atm, skew = [], []
        bucket = rows.filter((pl.col("days") >= lo) & (pl.col("days") < hi))
        for (_, _), sub in bucket.group_by(["expiry", "root"]):
            if sub.height < 6:
                continue
            calls, puts = sub.filter(pl.col("is_call")), sub.filter(~pl.col("is_call"))
            atm.append(_at_delta(calls, 0.5))
            skew.append(_at_delta(puts, -0.25) - _at_delta(calls, 0.25))
        out[f"atm_iv_{name}"], out[f"skew_{name}"] = _median(atm), _median(skew)
    return out


def spreads(rows: pl.DataFrame) -> dict[str, float]:
    """Median (ask - bid) / mid and (ask - bid) in $ by delta bucket on expiries 1-10 days out,
    and ATM on 20-60 days."""
    q = rows.filter((pl.col("bid") > 0) & (pl.col("ask") > pl.col("bid")))
    ad = pl.col("delta").abs()
    near = (pl.col("days") >= 1) & (pl.col("days") <= 10)
    cuts = {
        "atm_near": near & (ad >= 0.4) & (ad <= 0.6),
        "d25_near": near & (ad >= 0.2) & (ad <= 0.3),
        "d10_near": near & (ad >= 0.07) & (ad <= 0.13),
        "atm_1m": (pl.col("days") >= 20) & (pl.col("days") <= 60) & (ad >= 0.4) & (ad <= 0.6),
    }
    out: dict[str, float] = {}
    for name, cond in cuts.items():
        sub = q.filter(cond)
        rel = ((sub["ask"] - sub["bid"]) / sub["mid"]).to_list()
        out[f"spread_{name}"] = _median(rel)
        if name == "atm_near":
            out["spread_atm_near_usd"] = _median((sub["ask"] - sub["bid"]).to_list())
    return out


def open_interest(chain: Chain) -> dict[str, float]:
    """Put/call OI below 0.97 x spot, call/put above 1.03 x spot, the put OI share more than 20%
    out of the money, and the OI share of non-monthly, non-quarterly expiries within 7 days."""
    f = chain.frame.filter(pl.col("expiry") >= chain.asof.astimezone(NEW_YORK).date())
    oi, m = f["open_interest"].to_numpy(), f["strike"].to_numpy() / chain.spot
    call = f["is_call"].to_numpy()
    total = oi.sum()

    def ratio(num: np.ndarray, den: np.ndarray) -> float:
        return float(oi[num].sum() / oi[den].sum()) if oi[den].sum() > 0 else math.nan

    below, above = m < 0.97, m > 1.03
    asof = chain.asof.astimezone(NEW_YORK).date()
    days = np.array([(d - asof).days for d in f["expiry"].to_list()])
    daily = np.array([not (is_monthly(d) or is_quarter_end(d)) for d in f["expiry"].to_list()])
    return {
        "oi_put_call_below": ratio(below & ~call, below & call),
        "oi_call_put_above": ratio(above & call, above & ~call),
        "oi_put_far_share": ratio(~call & (m < 0.8), ~call),
        "oi_near_daily_share": float(oi[daily & (days <= 7)].sum() / total) if total else math.nan,
    }


def exposure(chain: Chain) -> dict[str, float]:
    """Total GEX in $bn per 1% move and the zero-gamma level / spot - 1 (NaN: no crossing),
    with the desk's GEX conventions."""
    levels = gex_levels(chain)
    flip = levels.zero_gamma
    return {
        "gex_bn": levels.total_gex / 1e9,
        "zero_gamma_vs_spot": math.nan if flip is None else flip / chain.spot - 1,
    }


def shape_stats(chain: Chain, *, with_gex: bool = True) -> dict[str, float]:
    """Every shape statistic of ``chain`` (see the module docstring), as one flat dict."""
    rows = enrich(chain)
    lo, hi = listing_range(rows, chain.spot)
    vol = vol_by_tenor(rows)
    out = {"strike_lo": lo, "strike_hi": hi, **vol,
           "term_1y_minus_1m": vol["atm_iv_1y"] - vol["atm_iv_1m"],
           "skew_3m_minus_1w": vol["skew_3m"] - vol["skew_1w"],
           **spreads(rows), **open_interest(chain)}  # fmt: skip
    if with_gex:
        out.update(exposure(chain))
    return out


def outside(stats: dict[str, float], bands: dict[str, tuple[float, float]] = BANDS) -> list[str]:
    """The statistics outside their band (a NaN is outside), as ``name=value``."""
    return [f"{k}={stats.get(k, math.nan):.4g}" for k, (lo, hi) in bands.items()
            if not lo <= stats.get(k, math.nan) <= hi]  # fmt: skip

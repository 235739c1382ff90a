"""IV and Greeks for snapshots that arrive as bare quotes (ThetaData's Value tier, the desk's
recorded ticks): the desk's own pricing (:mod:`kit.core.pricing`) on each row's mid, spot and
time to its expiry (AM-settled monthlies at the open, the rest at the close)."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from kit.core.clock import expiry_time, to_ns
from kit.core.model import Contract, Right
from kit.core.pricing import greeks, implied_vol
from kit.research.history.band import Band

YEAR_S = 365 * 24 * 3600


def expiry_ns(frame: pl.DataFrame) -> pl.Series:
    """UTC ns of each row's expiry (one calendar lookup per distinct root and expiry)."""
    keys = frame.select("root", "expiry").unique()
    when = {
        (r, e): to_ns(expiry_time(Contract(r, e, 1.0, Right.CALL))) for r, e in keys.iter_rows()
    }
    lookup = pl.DataFrame(
        {"root": [k[0] for k in when], "expiry": [k[1] for k in when],
         "_exp_ns": list(when.values())},
        schema={"root": pl.String, "expiry": pl.Date, "_exp_ns": pl.Int64},
    )  # fmt: skip
    return frame.select("root", "expiry").join(lookup, on=["root", "expiry"], how="left",
                                               maintain_order="left")["_exp_ns"]  # fmt: skip


def with_greeks(frame: pl.DataFrame, rate: float, div_yield: float) -> pl.DataFrame:
    """``frame`` (ts, root, expiry, strike, right, bid, ask, spot) with iv, delta, gamma, theta
    (per day), vega (per vol point); rows past their expiry dropped. IV is null where the mid
    has none (no two-sided quote, below intrinsic, at expiry)."""
    exp = expiry_ns(frame).to_numpy()
    ts = frame["ts"].dt.epoch("ns").to_numpy()
    keep = ts <= exp
    frame = frame.filter(pl.Series(keep))
    T = np.maximum((exp[keep] - ts[keep]) / 1e9 / YEAR_S, 0.0)
    S = frame["spot"].to_numpy().astype(float)
    K = frame["strike"].to_numpy().astype(float)
    bid = frame["bid"].fill_null(np.nan).to_numpy().astype(float)
    ask = frame["ask"].fill_null(np.nan).to_numpy().astype(float)
    mid = np.where((bid > 0) & (ask >= bid), (bid + ask) / 2, np.nan)
    is_call = (frame["right"] == "C").to_numpy()
    iv = implied_vol(mid, S, K, T, rate, div_yield, is_call)
    iv = np.where(T > 0, iv, np.nan)
    g = greeks(S, K, T, rate, div_yield, np.nan_to_num(iv), is_call)
    at_expiry = T <= 0  # Greeks at their limits (delta 0 or +/-1), the settlement snapshot
    usable = ~np.isnan(iv) | at_expiry
    nan = np.full(len(T), np.nan)
    return frame.with_columns(
        iv=pl.Series(iv).fill_nan(None),
        delta=pl.Series(np.where(usable, g.delta, nan)).fill_nan(None),
        gamma=pl.Series(np.where(usable, g.gamma, nan)).fill_nan(None),
        theta=pl.Series(np.where(usable, g.theta_per_day, nan)).fill_nan(None),
        vega=pl.Series(np.where(usable, g.vega_per_point, nan)).fill_nan(None),
    )


def quoted(frame: pl.DataFrame) -> pl.DataFrame:
    """A quote without an offer (ask 0: the Terminal's answer before a contract's first quote
    of the day) is no quote: bid and ask become null, so a backtest never buys at 0. A zero bid
    under a real offer stays (far out-of-the-money options are bid 0)."""
    return frame.with_columns(ask=pl.when(pl.col("ask") > 0).then(pl.col("ask"))).with_columns(
        bid=pl.when(pl.col("ask").is_not_null()).then(pl.col("bid"))
    )


def in_band(frame: pl.DataFrame, band: Band, day: date, spot_open: float) -> pl.DataFrame:
    """Rows of the contracts :class:`Band` keeps for the session (the same rule as the sim)."""
    contracts = frame.select("root", "expiry", "strike").unique()
    keep = band.mask(
        contracts["root"].to_list(), contracts["expiry"].to_list(),
        contracts["strike"].to_numpy(), day, spot_open,
    )  # fmt: skip
    return frame.join(contracts.filter(pl.Series(keep)), on=["root", "expiry", "strike"],
                      how="semi")  # fmt: skip

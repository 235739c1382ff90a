"""Views of a grid result for the notebook and the scanner: a score matrix over two axes, one
config's equity and drawdown by session, its per-regime rows and trade list."""

from __future__ import annotations

import numpy as np
import polars as pl

from kit.research.grid.run import GridResult


def score_matrix(
    result: GridResult, rows: str, cols: str, *, score: str = "composite_score",
    where: pl.Expr | None = None,
) -> tuple[list[str], list[str], np.ndarray]:  # fmt: skip
    """The best ``score`` of the configs at each (``rows`` value, ``cols`` value) of two axes
    (e.g. entry_time x strikes), NaN where no config traded: a heatmap's data."""
    res = result.results if where is None else result.results.filter(where)
    best = res.group_by(rows, cols).agg(pl.col(score).fill_nan(None).max())
    r_vals, c_vals = sorted(res[rows].unique()), sorted(res[cols].unique())
    m = np.full((len(r_vals), len(c_vals)), np.nan)
    for r, c, v in best.iter_rows():
        if v is not None:
            m[r_vals.index(r), c_vals.index(c)] = v
    return r_vals, c_vals, m


def equity_curve(result: GridResult, config_id: int, capital: float) -> pl.DataFrame:
    """Per session: the config's P&L (trades on their exit session), equity = capital +
    cumulative P&L, drawdown ($ below the running peak, start included) -- as in the
    statistics."""
    t = result.trades.filter(pl.col("config_id") == config_id)
    by_day = t.group_by(
        pl.col("exit_ts").dt.convert_time_zone("America/New_York").dt.date().alias("date")
    ).agg(pl.col("pnl").sum())
    days = pl.DataFrame({"date": result.days}, schema={"date": pl.Date})
    out = days.join(by_day, on="date", how="left").with_columns(pl.col("pnl").fill_null(0.0))
    equity = capital + np.cumsum(out["pnl"].to_numpy())
    peak = np.maximum.accumulate(np.maximum(equity, capital))
    return out.with_columns(pl.Series("equity", equity), pl.Series("drawdown", peak - equity))


def config_rows(result: GridResult, config_id: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per-regime and per-trend statistics, trade list) of one config."""
    regimes = result.by_regime.filter(pl.col("config_id") == config_id)
    trades = result.trades.filter(pl.col("config_id") == config_id).sort("entry_ts")
    return regimes, trades

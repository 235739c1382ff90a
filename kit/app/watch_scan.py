"""The opportunity scanner: backtest-grid configurations that suit the market now, turned into
concrete trades on the live chain.

Why it reuses the grid's own code: a configuration's statistics describe the trades the grid's
strike rules picked (:func:`kit.research.grid.engine.legs_of`), so the live trade must be picked
by the same code, on the live chain laid out as the grid's :class:`~kit.research.grid.data.Series`
(one snapshot), or the backtest's win rate would describe a different trade.

Pure: a chain frame and a clock reading in, opportunities out. ``kit/app/watch.py`` does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kit.app.watch_config import WatchConfig
from kit.core.clock import NEW_YORK, session_at
from kit.core.payoff import stress_loss
from kit.core.pricing import greeks
from kit.research.grid.context import DayContext
from kit.research.grid.data import build_series, listed_expiries, pick_expiry
from kit.research.grid.engine import MULTIPLIER, legs_of
from kit.research.grid.plan import Structure
from kit.research.grid.spec import STRUCTURES, minute_of, parse_strike_rule
from kit.signals.chains import Chain, years_to_expiry

STATS = ("trades", "win_rate", "roi", "sharpe", "composite_score", "avg_pnl", "max_dd")


class ScanError(ValueError):
    """Grid results that cannot be scanned (missing, not a grid's output)."""


@dataclass(frozen=True)
class GridResults:
    """A grid's ``results`` (one row per config) and ``by_regime`` tables."""

    results: pl.DataFrame
    by_regime: pl.DataFrame
    source: str


def load_results(path: str | Path) -> GridResults:
    """``kit backtest grid --out DIR`` output: the directory (or its ``grid.duckdb``)."""
    base = Path(path)
    if base.is_file():
        base = base.parent
    files = {name: base / f"{name}.parquet" for name in ("results", "by_regime")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ScanError(f"--grid {path}: not grid results (no {missing[0]}); "
                        "write them with kit backtest grid --out DIR")  # fmt: skip
    results, by_regime = (pl.read_parquet(p) for p in files.values())
    if "config_id" not in results.columns or "composite_score" not in results.columns:
        raise ScanError(f"--grid {path}: results.parquet lacks config_id/composite_score")
    return GridResults(results, by_regime, str(base))


def _allows(axis_value: str, value: str | None) -> bool:
    """A filter axis (``any`` or a comma list) lets ``value`` trade; an unknown value (None)
    passes only filters that are ``any``."""
    text = str(axis_value).strip().lower()
    if text in ("any", "none", ""):
        return True
    return value is not None and value in {v.strip() for v in text.split(",")}


def candidates(grid: GridResults, regime: str | None, trend: str | None,
               cfg: WatchConfig) -> pl.DataFrame:  # fmt: skip
    """Configs whose filters allow the current VIX regime and trend, with the statistics of
    that regime's sessions where the grid has them (``stats_for`` says which), passing the
    quality thresholds, best composite score first (ties: lowest config_id)."""
    res = grid.results
    keep = [_allows(v, regime) and _allows(t, trend)
            for v, t in zip(res["vix_regime"], res["trend"], strict=True)]  # fmt: skip
    res = res.filter(pl.Series(keep, dtype=pl.Boolean))
    stats = [c for c in STATS if c in res.columns]
    res = res.with_columns(pl.lit("all sessions").alias("stats_for"))
    if regime is not None and grid.by_regime.height:
        mine = (pl.col("dimension") == "vix_regime") & (pl.col("value") == regime)
        sub = grid.by_regime.filter(mine).select("config_id", *stats)
        res = res.join(sub, on="config_id", how="left", suffix="_regime")
        has = pl.col("trades_regime").is_not_null()
        res = res.with_columns(
            *[pl.when(has).then(pl.col(f"{c}_regime")).otherwise(pl.col(c)).alias(c)
              for c in stats],
            pl.when(has).then(pl.lit(f"vix_regime={regime}")).otherwise("stats_for")
            .alias("stats_for"),
        ).drop([f"{c}_regime" for c in stats])  # fmt: skip
    good = (
        (pl.col("composite_score") >= cfg.min_score)
        & (pl.col("win_rate") >= cfg.min_win_rate)
        & (pl.col("roi") >= cfg.min_roi)
        & (pl.col("sharpe") >= cfg.min_sharpe)
        & (pl.col("trades") >= cfg.min_trades)
    )
    return res.filter(good.fill_null(False)).sort(
        ["composite_score", "config_id"], descending=[True, False], nulls_last=True
    )


def live_frame(chain: Chain, vix: float) -> pl.DataFrame:
    """The live chain in the grid history's row layout (``kit history``): root, expiry, ts,
    strike, right, bid, ask, delta, spot, vix. Delta is Black-Scholes at each row's IV on
    calendar time to settlement (r = q = 0, the chain's convention)."""
    f = chain.frame.filter(pl.col("bid").is_not_null() & pl.col("ask").is_not_null())
    T = years_to_expiry(f, chain.asof)
    iv = f["iv"].to_numpy().astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = greeks(chain.spot, f["strike"].to_numpy(), np.maximum(T, 1e-9), 0.0, 0.0, iv,
                   f["is_call"].to_numpy()).delta  # fmt: skip
    return f.select("root", "expiry", "strike", "bid", "ask").with_columns(
        pl.lit(chain.asof).dt.cast_time_unit("us").alias("ts"),
        pl.when(f["is_call"]).then(pl.lit("C")).otherwise(pl.lit("P")).alias("right"),
        pl.Series("delta", d, dtype=pl.Float64),
        pl.lit(chain.spot).alias("spot"),
        pl.lit(vix).alias("vix"),
    )


def structure_of(row: dict[str, Any]) -> Structure:
    """A results row's entered structure (the results table stores axes as text)."""
    strategy = str(row["strategy"])
    return Structure(strategy, STRUCTURES[strategy][0], minute_of(row["entry_time"], "entry_time"),
                     int(float(row["dte"])), parse_strike_rule(row["strikes"]),
                     float(row["wings"]))  # fmt: skip


def _contracts(sizing: str) -> int:
    kind, _, value = str(sizing).partition(":")
    return int(float(value)) if kind == "contracts" else 1


def concrete(row: dict[str, Any], frame: pl.DataFrame, ctx: DayContext, now_minute: int,
             series: dict[Any, Any] | None = None) -> dict[str, Any] | str:  # fmt: skip
    """The trade ``row``'s rule picks on the live chain now, or why there is none (``series``:
    a cache of the chain's expiries as grid series, shared across the configs of one scan)."""
    s = structure_of(row)
    picked = pick_expiry(listed_expiries(frame), ctx.day, s.dte)
    if picked is None:
        return f"no listed expiry {s.dte} days out"
    expiry, root = picked
    ser = series.get((root, expiry)) if series is not None else None
    if ser is None:
        ser = build_series([(ctx.day, frame)], root, expiry)
        if series is not None:
            series[(root, expiry)] = ser
    if s.rule[0] == "band" and not ctx.bands:
        return f"strike rule {row['strikes']} needs the move history of past sessions"
    legs = legs_of(s, ser, 0, ctx)
    if legs is None:
        return f"no {row['strategy']} at {row['strikes']} / wings {row['wings']} on {root} {expiry}"
    cols = np.array([c for c, _ in legs])
    ratio = np.array([r for _, r in legs], dtype=float)
    bid, ask = ser.bid[0, cols], ser.ask[0, cols]
    mid = 0.5 * (bid + ask)
    credit_mid = float(-(mid @ ratio))
    credit_nat = float(-(np.where(ratio < 0, bid, ask) @ ratio))
    if credit_mid <= 0 or credit_mid < float(row.get("min_credit") or 0):
        return f"credit {credit_mid:.2f} below the config's minimum"
    strikes, calls = ser.strike[cols], ser.is_call[cols]
    max_risk = float(stress_loss(np.full(len(cols), ser.spot[0]), strikes, calls,
                                 ratio * MULTIPLIER, mid, 100.0, points=401)[0])  # fmt: skip
    n = _contracts(row.get("sizing", "contracts:1"))
    entry_minute = s.entry_minute
    return {
        "config_id": int(row["config_id"]),
        "strategy": s.strategy,
        "root": root,
        "expiry": expiry.isoformat(),
        "entry_time": str(row["entry_time"]),
        "strike_rule": str(row["strikes"]),
        "legs": [{"contract": f"{root} {expiry:%Y-%m-%d} {k:g}{'C' if c else 'P'}",
                  "strike": float(k), "right": "C" if c else "P",
                  "side": "sell" if r < 0 else "buy", "qty": int(abs(r)) * n,
                  "bid": float(b), "ask": float(a), "delta": float(ser.delta[0, j])}
                 for j, k, c, r, b, a in zip(cols, strikes, calls, ratio, bid, ask, strict=True)],
        "contracts": n,
        "credit": round(credit_mid, 4),
        "credit_natural": round(credit_nat, 4),
        "max_risk": round(max_risk * n, 2),
        "win_rate": _num(row.get("win_rate")),
        "roi": _num(row.get("roi")),
        "sharpe": _num(row.get("sharpe")),
        "score": _num(row.get("composite_score")),
        "backtest_trades": int(row.get("trades") or 0),
        "stats_for": row.get("stats_for", "all sessions"),
        "after_entry_time": now_minute >= entry_minute,
    }  # fmt: skip


def _num(x: Any) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def window(now: datetime, cfg: WatchConfig) -> tuple[bool, bool, str | None]:
    """(market open, entry window open, why not) at ``now``: the exchange session (holidays,
    early closes) and the configured trading and entry hours in the configured zone."""
    session = session_at(now)
    market_open = session is not None and session.open <= now < session.close
    local = now.astimezone(cfg.zone).time()
    if not market_open or not cfg.trading_start <= local < cfg.trading_end:
        return market_open, False, "outside trading hours"
    if not cfg.entry_start <= local < cfg.entry_end:
        return market_open, False, (f"outside entry window ({cfg.entry_start:%H:%M}-"
                                    f"{cfg.entry_end:%H:%M} {cfg.timezone})")  # fmt: skip
    return market_open, True, None


def scan(grid: GridResults, frame: pl.DataFrame, ctx: DayContext, now: datetime,
         cfg: WatchConfig) -> tuple[list[dict[str, Any]], list[str]]:  # fmt: skip
    """Top-N opportunities (by score, those in their entry window first) and the reasons when
    there are none."""
    _, entry_open, why = window(now, cfg)
    reasons = [why] if why else []
    if why == "outside trading hours":  # no live quotes worth pricing a trade on
        return [], reasons
    pool = candidates(grid, ctx.vix_regime, ctx.trend, cfg)
    if not pool.height:
        reasons.append(f"no config for this regime (VIX {ctx.vix_regime}, trend "
                       f"{ctx.trend or 'any'}) passes the quality thresholds")  # fmt: skip
        return [], reasons
    ny = now.astimezone(NEW_YORK)
    minute = ny.hour * 60 + ny.minute
    out: list[dict[str, Any]] = []
    misses: list[str] = []
    seen: set[tuple[Any, ...]] = set()
    cache: dict[tuple[str, date], Any] = {}
    for row in pool.iter_rows(named=True):
        got = concrete(row, frame, ctx, minute, cache)
        if isinstance(got, str):
            misses.append(f"config {row['config_id']}: {got}")
            continue
        same = (got["strategy"], got["expiry"], tuple(leg["strike"] for leg in got["legs"]))
        if same in seen:  # configs differing only in exits or filters: one trade, best score
            continue
        seen.add(same)
        got["in_entry_window"] = entry_open and got.pop("after_entry_time")
        out.append(got)
    if not out:
        reasons.extend(misses[:3])
    # ranked by score, the ones tradable now (in their entry window) first
    out.sort(key=lambda o: not o["in_entry_window"])  # stable: score order within each group
    return out[: cfg.top_n], reasons


def today_ny(now: datetime) -> date:
    return now.astimezone(NEW_YORK).date()

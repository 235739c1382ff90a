"""Run a grid over a history: shard by session on a process pool or a Dask cluster, gather the
trades, compute the statistics, write DuckDB and Parquet.

Two passes, both sharded by session and streamed (a worker holds one session, or the sessions of
one multi-day hold, at a time): the first reads spot and VIX per snapshot (small), from which the
driver derives each session's pre-trade context (:mod:`kit.research.grid.context`: it needs the
past sessions); the second evaluates every config on each session
(:func:`kit.research.grid.engine.evaluate_day`). The same task functions run in-process
(``workers=1``), on a local ``ProcessPoolExecutor`` or on Dask workers, so every path gives the
same trades (the Dask test checks it).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kit.research.grid.context import DayContext, contexts
from kit.research.grid.data import INDEX_COLUMNS, DaySummary, read_day, summarise
from kit.research.grid.engine import REASONS, TRADE_COLUMNS, evaluate_day
from kit.research.grid.plan import Plan, compile_grid
from kit.research.grid.spec import AXES, Grid, GridError, load_grid
from kit.research.grid.stats import statistics
from kit.research.history.schema import complete_days
from kit.signals.regimes import IV_WINDOW_DAYS

Progress = Callable[[str, int, int], None]  # (stage, done, total) sessions
HOLD_SLACK_SESSIONS = 5  # sessions read past the DTE for expiries after a holiday/weekend


@dataclass
class GridResult:
    """One row per config (``results``), the trade list, per-regime and per-trend rows."""

    results: pl.DataFrame
    trades: pl.DataFrame
    by_regime: pl.DataFrame
    days: list[date]
    seconds: float


# --- tasks (top-level: pickled to processes and Dask workers) ---


def summary_task(history: str, underlying: str, days: Sequence[date]) -> list[DaySummary]:
    return [summarise(read_day(history, underlying, d, INDEX_COLUMNS), d) for d in days]


def trades_task(plan: Plan, history: str, ctxs: Sequence[DayContext]) -> dict[str, np.ndarray]:
    parts = [evaluate_day(plan, c, history) for c in ctxs]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# --- executors ---


def _chunks(items: list, n: int) -> list[list]:
    size = max(1, math.ceil(len(items) / n))
    return [items[i : i + size] for i in range(0, len(items), size)]


class _Runner:
    """Map a task over chunks of sessions: in-process, a process pool or a Dask client."""

    def __init__(self, workers: int, dask: str | None) -> None:
        self.workers, self.dask = workers, dask
        self.pool: ProcessPoolExecutor | None = None
        self.client: Any = None

    def __enter__(self) -> _Runner:
        if self.dask:
            from distributed import Client  # an optional path: import only when asked for

            try:
                self.client = Client(self.dask, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise GridError(f"no Dask scheduler at {self.dask}: {exc}") from None
        elif self.workers > 1:
            ctx = multiprocessing.get_context(
                "spawn"
            )  # fresh interpreters: polars threads never fork
            self.pool = ProcessPoolExecutor(self.workers, mp_context=ctx)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool:
            self.pool.shutdown(cancel_futures=True)
        if self.client is not None:
            self.client.close()

    @property
    def slots(self) -> int:
        if self.client is not None:
            return max(1, sum(self.client.nthreads().values()))
        return self.workers

    def map(self, fn: Callable, chunks: list[list], *args: Any) -> Iterator[tuple[int, Any]]:
        """(chunk index, ``fn(*args, chunk)``) as chunks finish (any order)."""
        if self.client is not None:
            from distributed import as_completed as dask_completed

            futures = {self.client.submit(fn, *args, c, pure=False): i
                       for i, c in enumerate(chunks)}  # fmt: skip
            for f in dask_completed(futures):
                yield futures[f], f.result()
        elif self.pool is not None:
            futs = {self.pool.submit(fn, *args, c): i for i, c in enumerate(chunks)}
            for f in as_completed(futs):
                yield futs[f], f.result()
        else:
            for i, c in enumerate(chunks):
                yield i, fn(*args, c)


def _mapped(runner: _Runner, fn, items: list, stage: str, progress: Progress | None, *args):
    """Results of ``fn`` over chunks of ``items`` in item order, with progress per chunk."""
    chunks = _chunks(items, runner.slots * 4)
    out: list[Any] = [None] * len(chunks)
    done = 0
    if progress:
        progress(stage, 0, len(items))
    for i, res in runner.map(fn, chunks, *args):
        out[i] = res
        done += len(chunks[i])
        if progress:
            progress(stage, done, len(items))
    return out


# --- the run ---


def run_grid(
    history: str | Path,
    grid: Grid | str | Path,
    *,
    workers: int | None = None,
    dask: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    progress: Progress | None = None,
) -> GridResult:
    """Backtest every config of ``grid`` on the sessions of ``history`` (a directory built by
    ``kit history build``). ``workers``: processes (default: all CPUs; 1 runs in-process);
    ``dask``: a scheduler address (``tcp://host:8786``) instead of local processes."""
    t0 = time.perf_counter()
    g = grid if isinstance(grid, Grid) else load_grid(grid)
    plan = compile_grid(g)
    hist = str(history)
    underlying = g.settings.underlying
    if not Path(hist).is_dir():
        raise GridError(f"no history directory {hist}: build one with `kit history build`")
    days = complete_days(hist, underlying, date_from, date_to)
    if not days:
        raise GridError(f"no {underlying} sessions in {hist} (underlying={underlying}/date=...)")
    st = g.settings
    # the context also reads the sessions before --from: regimes, IV rank, trend and bands
    # look back that far whatever range is traded
    earlier = complete_days(hist, underlying, None, days[0])[:-1]
    keep = max(IV_WINDOW_DAYS, st.band_lookback + plan.max_dte() + HOLD_SLACK_SESSIONS,
               st.trend_days)  # fmt: skip
    context_days = earlier[max(0, len(earlier) - keep) :] + days
    n = workers if workers is not None else (os.cpu_count() or 1)
    with _Runner(max(1, n), dask) as runner:
        summaries = [s for part in _mapped(runner, summary_task, context_days, "context",
                                           progress, hist, underlying) for s in part]  # fmt: skip
        ahead = plan.max_dte() + HOLD_SLACK_SESSIONS if plan.max_dte() else 0
        ctxs = contexts(summaries, plan.band_keys(), lookback=st.band_lookback,
                        min_samples=st.band_min_samples, ahead=ahead, trend_days=st.trend_days,
                        trend_band_pct=st.trend_band_pct)[-len(days) :]  # fmt: skip
        parts = _mapped(runner, trades_task, ctxs, "sessions", progress, plan, hist)
    cols = {k: np.concatenate([p[k] for p in parts]) for k in (*TRADE_COLUMNS, "date")}
    trades = _trade_frame(cols, g)
    labels = pl.DataFrame({
        "date": [c.day for c in ctxs],
        "vix_regime": [c.vix_regime for c in ctxs],
        "trend": [c.trend for c in ctxs],
        "iv_rank": [c.iv_rank for c in ctxs],
    })  # fmt: skip
    trades = trades.join(labels, on="date", how="left").sort("config_id", "entry_ts")
    results, by_regime = _statistics(trades, g, labels)
    return GridResult(results, trades, by_regime, days, time.perf_counter() - t0)


def _ts(us: np.ndarray) -> pl.Series:
    return pl.Series(us.astype(np.int64)).cast(pl.Datetime("us", "UTC"))


def _trade_frame(cols: dict[str, np.ndarray], g: Grid) -> pl.DataFrame:
    legs = ("long_put", "short_put", "short_call", "long_call")
    whole = lambda k: pl.col(k).cast(pl.Int64).cast(pl.String)  # noqa: E731  "4950", not "4950.0"
    as_text = [pl.when(pl.col(k) == pl.col(k).round()).then(whole(k))
               .otherwise(pl.col(k).cast(pl.String)) for k in legs]  # fmt: skip
    text = (
        pl.DataFrame({k: cols[k].astype(float) for k in legs})
        .fill_nan(None)
        .select(pl.concat_str(as_text, separator="/", ignore_nulls=True))
    )
    strategy = np.array([r["strategy"] for r in g.rows], dtype=object)
    cid = cols["config_id"].astype(np.int64)
    return pl.DataFrame({
        "config_id": cid,
        "strategy": strategy[cid].tolist() if len(cid) else [],
        "date": [date.fromordinal(int(x)) for x in cols["date"]],
        "entry_ts": _ts(cols["entry_ts"]),
        "exit_ts": _ts(cols["exit_ts"]),
        "exit_reason": [REASONS[int(i)] for i in cols["exit_reason"]],
        "strikes": text.to_series() if len(cid) else [],
        **{k: cols[k].astype(float) for k in ("long_put", "short_put", "short_call",
                                              "long_call")},
        "credit": cols["credit"].astype(float),
        "contracts": cols["contracts"].astype(np.int64),
        "premium": cols["premium"].astype(float),
        "fees": cols["fees"].astype(float),
        "pnl": cols["pnl"].astype(float),
        "max_loss": cols["max_loss"].astype(float),
        "margin": cols["margin"].astype(float),
        "entry_spot": cols["entry_spot"].astype(float),
        "exit_spot": cols["exit_spot"].astype(float),
    }, schema_overrides={"date": pl.Date, "strategy": pl.String, "exit_reason": pl.String,
                         "strikes": pl.String})  # fmt: skip


def _exit_session(trades: pl.DataFrame, days: list[date]) -> np.ndarray:
    """Index among ``days`` (sorted) of each trade's exit session: the last of ``days`` on or
    before the New York date of its exit."""
    exit_day = trades.select(
        pl.col("exit_ts").dt.convert_time_zone("America/New_York").dt.date().cast(pl.Int64)
    )  # days since 1970-01-01
    epoch = date(1970, 1, 1).toordinal()
    ords = np.array([d.toordinal() - epoch for d in days], dtype=np.int64)
    i = np.searchsorted(ords, exit_day.to_series().to_numpy(), side="right") - 1
    return np.clip(i, 0, max(len(days) - 1, 0)).astype(np.int64)


def _stats_for(trades: pl.DataFrame, days: list[date], n: int, capital: float) -> dict:
    entry_us = trades["entry_ts"].dt.epoch("us").to_numpy()
    return statistics(
        trades["config_id"].to_numpy(), entry_us, trades["pnl"].to_numpy(),
        trades["max_loss"].to_numpy(), trades["margin"].to_numpy(),
        trades["premium"].to_numpy(), _exit_session(trades, days), n, len(days), capital,
    )  # fmt: skip


def _statistics(trades: pl.DataFrame, g: Grid, labels: pl.DataFrame):
    n, capital = len(g.rows), g.settings.capital
    params = pl.DataFrame([{"config_id": r["config_id"], **{a: str(r[a]) for a in AXES}}
                           for r in g.rows])  # fmt: skip
    days = labels["date"].to_list()
    overall = pl.DataFrame(_stats_for(trades, days, n, capital))
    results = pl.concat([params, overall], how="horizontal")
    rows = []
    for kind in ("vix_regime", "trend"):
        for value in sorted({v for v in labels[kind].to_list() if v is not None}):
            sub_days = labels.filter(pl.col(kind) == value)["date"].to_list()
            sub = trades.filter(pl.col(kind) == value)
            st = pl.DataFrame(_stats_for(sub, sub_days, n, capital))
            rows.append(
                pl.concat([params.select("config_id"), st], how="horizontal").with_columns(
                    pl.lit(kind).alias("dimension"), pl.lit(value).alias("value")
                )
            )
    by_regime = (pl.concat(rows).filter(pl.col("trades") > 0) if rows else
                 pl.DataFrame(schema={"config_id": pl.Int64, "dimension": pl.String,
                                      "value": pl.String}))  # fmt: skip
    front = ["config_id", "dimension", "value"]
    by_regime = by_regime.select([*front, *[c for c in by_regime.columns if c not in front]])
    return results, by_regime


def write_results(result: GridResult, out: str | Path, *, csv: bool = False) -> Path:
    """``out/`` gets ``grid.duckdb`` (tables results, trades, by_regime), the same three as
    Parquet files, and with ``csv`` a flat ``grid_results.csv``. Returns the DuckDB path."""
    import duckdb  # the writer only: the engine never needs it

    base = Path(out)
    if base.exists() and not base.is_dir():
        raise GridError(f"--out {base} is a file; give a directory")
    base.mkdir(parents=True, exist_ok=True)
    tables = {"results": result.results, "trades": result.trades, "by_regime": result.by_regime}
    for name, frame in tables.items():
        frame.write_parquet(base / f"{name}.parquet")
    db = base / "grid.duckdb"
    tmp = base / f".grid.{os.getpid()}.duckdb"
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        for name in tables:
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet(?)",
                        [str(base / f"{name}.parquet")])  # fmt: skip
    finally:
        con.close()
    os.replace(tmp, db)
    if csv:
        result.results.write_csv(base / "grid_results.csv")
    return db


def summary(result: GridResult, db: Path | None = None) -> dict[str, Any]:
    """The CLI's JSON line: ... ``configs``, ``days``, ``trades``, ``seconds``, results path."""
    scored = result.results.with_columns(pl.col("composite_score").fill_nan(None))  # NaN sorts high
    best = scored.sort(
        ["composite_score", "config_id"], descending=[True, False], nulls_last=True
    ).row(0, named=True)  # ties: the lowest config_id
    return {
        "first_day": f"{result.days[0]}",
        "last_day": f"{result.days[-1]}",
        "best_config": best["config_id"],
        "best_composite_score": _finite(best["composite_score"]),
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "configs": result.results.height,
        "days": len(result.days),
        "trades": result.trades.height,
        "seconds": round(result.seconds, 3),
        "results": str(db) if db else None,
    }


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


class ProgressBar:
    """A :data:`Progress` callback drawing one bar per stage with the history builder's
    :class:`~kit.research.history.progress.Progress` (rich in a terminal, tqdm.auto in a
    notebook, nothing in a pipe)."""

    def __init__(self, mode: str = "auto") -> None:
        self.mode, self.stage, self.done = mode, "", 0
        self.bar: Any = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from kit.research.history.progress import Progress as Bar

        if stage != self.stage:
            self.close()
            self.stage, self.done = stage, 0
            self.bar = Bar(total, f"grid: {stage}", self.mode).__enter__()  # type: ignore[arg-type]
        while self.done < done:
            self.done += 1
            self.bar.advance()
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None

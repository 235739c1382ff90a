"""Backtest grid speed: 1,000 configurations x 250 sessions of SPX 0DTE at one-minute snapshots.

Target (issue 18): <= 60 s on the 2-core machine, the history already built. The history (the
simulator's, 0DTE expiries, strikes within +/- 4% of the open) is built once into
``benchmarks/results/grid_history`` (not timed) and reused by later runs.

The baseline is a plain loop over the same work -- each session read once into Python dicts,
then per config, per snapshot, in Python, as a first backtester would be written -- timed on a
subset (20 configs x 2 sessions) and scaled: sessions x read time + configs x sessions x loop
time per config-session.

``python benchmarks/grid.py [--sessions N] [--workers N] [--history DIR]`` prints a table and,
last, one JSON line with ``configs``, ``days``, ``seconds``, ``baseline_seconds``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from kit.execution.costs import DEFAULT_COSTS, slippage_fraction
from kit.research.grid import parse_grid, run_grid
from kit.research.history.band import Band, sessions
from kit.research.history.build import run_build
from kit.research.history.schema import complete_days, day_path
from kit.research.history.sim import SimHistory

HERE = Path(__file__).resolve().parent
DEFAULT_HISTORY = HERE / "results" / "grid_history"
START = date(2024, 1, 2)
# 2 x 5 x 4 x 5 x 5 = 1,000 configurations
GRID = {
    "settings": {"capital": 100_000},
    "grid": {
        "strategy": ["iron_condor", "short_strangle"],
        "entry_time": ["09:45", "10:30", "11:30", "12:30", "13:30"],
        "dte": [0],
        "strikes": ["delta:0.05", "delta:0.10", "delta:0.16", "otm_pct:1.0"],
        "wings": [25],
        "profit_target_pct": [25, 40, 50, 75, "none"],
        "stop_mult": [0.5, 1.0, 2.0, 3.0, "none"],
        "exit_time": ["15:45"],
    },
}


def build_history(out: Path, n: int) -> None:
    """Build the benchmark's history unless ``out`` already holds ``n`` sessions (whatever
    options built them: the timed run reads what is there)."""
    if len(complete_days(out, "SPX")) >= n:
        return
    days = sessions(START, date(2026, 12, 31))[:n]
    src = SimHistory("SPX", seed=0, interval_s=60, band=Band(max_dte=0, strike_pct=0.04))
    report = run_build(out, "SPX", days, src.make_day, src.signature, progress="auto")
    if report.built:
        print(f"built {len(report.built)} sessions in {report.seconds:.0f} s -> {out}")


def load_snapshots(history: Path, d: date) -> dict:
    """{New York time: {(strike, right): row}} of one session, in plain Python."""
    f = pl.read_parquet(day_path(history, "SPX", d)).with_columns(
        pl.col("ts").dt.convert_time_zone("America/New_York").alias("ny")
    )
    snaps: dict = {}
    for r in f.iter_rows(named=True):
        snaps.setdefault(r["ny"], {})[(r["strike"], r["right"])] = r
    return snaps


def plain_loop(snaps: dict, cfg: dict) -> int:
    """One config on one session, snapshot by snapshot, in plain Python: a first backtester."""
    frac = slippage_fraction(4, DEFAULT_COSTS)
    entry_min = int(cfg["entry_time"][:2]) * 60 + int(cfg["entry_time"][3:])
    pt = None if cfg["profit_target_pct"] == "none" else float(cfg["profit_target_pct"])
    stop = None if cfg["stop_mult"] == "none" else float(cfg["stop_mult"])
    times = sorted(snaps)
    entry = next(t for t in times if t.hour * 60 + t.minute >= entry_min)
    chain = snaps[entry]
    spot = next(iter(chain.values()))["spot"]
    legs = []
    for right in ("P", "C"):
        best, score = None, math.inf
        for (k, r), row in chain.items():
            if r != right or not (row["bid"] > 0) or (k > spot) != (right == "C"):
                continue
            kind, _, v = cfg["strikes"].partition(":")
            s = (
                abs(abs(row["delta"]) - float(v))
                if kind == "delta"
                else abs(k - spot * (1 + (1 if right == "C" else -1) * float(v) / 100))
            )
            if s < score:
                best, score = k, s
        legs.append((best, right, -1))
        if cfg["strategy"] == "iron_condor":
            legs.append((best - 25 if right == "P" else best + 25, right, 1))

    def price(rows: dict) -> float | None:
        total = 0.0
        for k, r, q in legs:
            row = rows.get((k, r))
            if row is None:
                return None
            mid, spread = (row["bid"] + row["ask"]) / 2, row["ask"] - row["bid"]
            total += -q * mid + frac * spread
        return total

    credit = price(chain)
    if credit is None:
        return 0
    for t in times:
        if t <= entry:
            continue
        debit = price(snaps[t])
        if debit is None:
            continue
        if (
            (stop is not None and debit >= credit * (1 + stop))
            or (pt is not None and debit <= credit * (1 - pt / 100))
            or t.hour * 60 + t.minute >= 15 * 60 + 45
        ):
            break
    return 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=250)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--history", type=Path, default=DEFAULT_HISTORY)
    ap.add_argument("--baseline-configs", type=int, default=20)
    ap.add_argument("--baseline-sessions", type=int, default=2)
    a = ap.parse_args()
    build_history(a.history, a.sessions)
    days = complete_days(a.history, "SPX")[: a.sessions]
    grid = parse_grid(GRID)
    grid_days = (days[0], days[-1])
    t0 = time.perf_counter()
    result = run_grid(a.history, grid, workers=a.workers, date_from=grid_days[0],
                      date_to=grid_days[1])  # fmt: skip
    seconds = time.perf_counter() - t0
    n_cfg, n_days = result.results.height, len(result.days)
    rng = np.random.default_rng(0)
    subset = [grid.rows[i] for i in rng.choice(len(grid.rows), a.baseline_configs, replace=False)]
    # the plain loop reads each session once (timed per session) and runs every config on it
    read = loop = 0.0
    for d in days[: a.baseline_sessions]:
        t1 = time.perf_counter()
        snaps = load_snapshots(a.history, d)
        t2 = time.perf_counter()
        for cfg in subset:
            plain_loop(snaps, cfg)
        read, loop = read + t2 - t1, loop + time.perf_counter() - t2
    per_day = read / a.baseline_sessions
    per_config_day = loop / (a.baseline_sessions * a.baseline_configs)
    baseline = per_day * n_days + per_config_day * n_cfg * n_days
    base_sub = read + loop
    rate = n_cfg * n_days / seconds
    print(f"{'':28s}{'seconds':>10s}{'config-days/s':>16s}")
    print(f"{'grid (vectorised, ' + str(a.workers) + ' proc)':28s}{seconds:10.1f}{rate:16,.0f}")
    print(f"{'plain loop (scaled)':28s}{baseline:10.0f}{n_cfg * n_days / baseline:16,.1f}")
    print(f"{n_cfg} configs x {n_days} sessions, {result.trades.height:,} trades; plain loop "
          f"timed on {a.baseline_configs} configs x {a.baseline_sessions} sessions "
          f"({base_sub:.1f} s)")  # fmt: skip
    print(json.dumps({
        "configs": n_cfg, "days": n_days, "seconds": round(seconds, 2),
        "config_days_per_s": round(rate), "trades": result.trades.height,
        "workers": a.workers, "baseline_seconds": round(baseline, 1),
        "baseline_config_days_per_s": round(n_cfg * n_days / baseline, 2),
        "speedup": round(baseline / seconds, 1), "target_seconds": 60,
    }))  # fmt: skip


if __name__ == "__main__":
    main()

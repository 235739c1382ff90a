"""The scanner's grid out of the box: when ``kit watch`` is given no ``--grid``, it uses
``data/watch/grid_<UNDERLYING>`` and builds it on first run (a simulated options history of
``SESSIONS`` sessions before the watch's day, then a small 0DTE grid over it, with progress
bars), so a fresh checkout shows opportunities within a minute.

Why simulated: the scanner needs *some* backtest to rank configurations, and the shipped
simulator is the one market available everywhere; a user with real history runs
``kit backtest grid`` and passes ``--grid``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from kit.core.clock import sessions_before

DEFAULT_DIR = Path("data/watch")
SESSIONS = 30
SEED = 3
WATCH_GRID = {
    "settings": {"capital": 100_000, "band_min_samples": 10, "trend_days": 10},
    "grid": {
        "strategy": ["iron_condor", "put_credit_spread", "call_credit_spread", "short_strangle"],
        "entry_time": ["10:00", "11:00", "13:00"],
        "strikes": ["delta:0.10", "delta:0.15", "otm_pct:1", "P90"],
        "wings": [10, 25],
        "profit_target_pct": [50],
        "stop_mult": [1.0, 2.0],
        "vix_regime": ["any", "very_low,low", "medium,high,extreme"],
    },
}


def grid_dir(underlying: str, base: Path = DEFAULT_DIR) -> Path:
    return base / f"grid_{underlying}"


def ensure_grid(underlying: str, before: date, base: Path = DEFAULT_DIR,
                progress: str = "auto") -> Path:  # fmt: skip
    """The default results directory for ``underlying``, built when it has no results yet."""
    from kit.research.grid import parse_grid, run_grid, write_results
    from kit.research.grid.run import ProgressBar
    from kit.research.history.band import Band, sessions
    from kit.research.history.build import run_build
    from kit.research.history.sim import SimHistory

    out = grid_dir(underlying, base)
    if (out / "results.parquet").is_file():
        return out
    history = out / "history"
    src = SimHistory(underlying, SEED, 60, Band(max_dte=0, strike_pct=0.02))
    first = sessions_before(before, SESSIONS)
    days = sessions(first[0], first[-1])
    print(f"kit watch: first run: building a simulated {underlying} history ({len(days)} "
          f"sessions) and its backtest grid in {out}", flush=True)  # fmt: skip
    run_build(history, underlying, days, src.make_day, src.signature, progress=progress)
    bar = ProgressBar(progress)
    try:
        grid = dict(WATCH_GRID, settings={**WATCH_GRID["settings"], "underlying": underlying})
        result = run_grid(history, parse_grid(grid), workers=1, progress=bar)
    finally:
        bar.close()
    write_results(result, out)
    return out

"""The scanner's grid out of the box: when ``kit watch`` is given no ``--grid``, it uses
``data/watch/grid_<UNDERLYING>`` and builds it on first run (a simulated options history of
``SESSIONS`` sessions before the watch's day, then a small 0DTE grid over it, with progress
bars), so a fresh checkout shows opportunities within a minute.

Why simulated: the scanner needs *some* backtest to rank configurations, and the shipped
simulator is the one market available everywhere; a user with real history runs
``kit backtest grid`` and passes ``--grid``.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from kit.core.clock import NEW_YORK, sessions_before
from kit.research.grid.context import DayContext, contexts
from kit.research.grid.data import DaySummary
from kit.research.grid.spec import Settings, minute_of, parse_strike_rule

STALE_SESSIONS = 5  # a history ending further back than this says nothing about today's trend

DEFAULT_DIR = Path("data/watch")
SESSIONS = 30
SEED = 3
WATCH_GRID = {
    "settings": {"capital": 100_000},  # the grid's defaults: the watch's context uses them too
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


@lru_cache(maxsize=2)
def _past(history: str, underlying: str, today: date) -> tuple[list[DaySummary], str | None]:
    """The summaries of the sessions before ``today`` (read once a day: they do not change)."""
    from kit.research.grid.run import summary_task
    from kit.research.history.schema import complete_days

    st = Settings()
    days = [d for d in complete_days(history, underlying, None, today) if d < today]
    days = days[-max(st.band_lookback + 10, st.trend_days, 260) :]
    if not days:
        return [], f"no {underlying} sessions in {history}: trend and P-bands unknown"
    if days[-1] < sessions_before(today, STALE_SESSIONS)[0]:
        return [], f"history {history} ends {days[-1]}: trend and P-bands unknown"
    return summary_task(history, underlying, days), None


def band_keys(results: pl.DataFrame) -> set[tuple[int, int, float]]:
    """(entry minute, dte, percentile) of every P-band strike rule in the results."""
    keys = set()
    for entry, dte, rule in results.select("entry_time", "dte", "strikes").unique().iter_rows():
        kind, pct = parse_strike_rule(rule)
        if kind == "band":
            keys.add((minute_of(entry, "entry_time"), int(float(dte)), pct))
    return keys


def history_context(
    history: Path,
    underlying: str,
    now: datetime,
    spot: float,
    vix: float,
    keys: set[tuple[int, int, float]],
) -> tuple[DayContext | None, str | None]:
    """Today's pre-trade facts by the grid's own rules (:func:`kit.research.grid.context.
    contexts`, default settings): the trend of the history's closes and the P-band edges of its
    past moves, with today's one live snapshot (``spot``, ``vix`` at ``now``) appended. None
    and why when the history is missing or ends more than ``STALE_SESSIONS`` before today."""
    today = now.astimezone(NEW_YORK).date()
    st = Settings()
    past, why = _past(str(history), underlying, today)
    if why is not None:
        return None, why
    ny = now.astimezone(NEW_YORK)
    live = DaySummary(today, np.array([ny.hour * 60 + ny.minute]), np.array([spot]),
                      np.array([vix]))  # fmt: skip
    ctx = contexts([*past, live], keys, lookback=st.band_lookback,
                   min_samples=st.band_min_samples, trend_days=st.trend_days,
                   trend_band_pct=st.trend_band_pct)[-1]  # fmt: skip
    return ctx, None

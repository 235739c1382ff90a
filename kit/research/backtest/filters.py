"""The grid's entry filters in the event-driven backtest: skip a session when the grid would.

Why here and not in the desk: the grid decides once per session, before the entry, from the
session's pre-trade facts (:mod:`kit.research.grid.context`: the VIX regime and IV rank of the
opening VIX against the previous closes, the trend of the previous closes, the weekday). The
backtest computes the same facts with the same functions from the same data it replays and asks
the grid's own test (:func:`kit.research.grid.engine.allowed`) whether the config trades; a
session it refuses is not run through the desk at all, and is reported as a ``skipped``
decision naming the filter (``filter: vix_regime high not in low,normal``).

* An options history: the contexts of :func:`kit.research.grid.context.contexts` over the
  history's sessions up to the last one traded, with as many earlier sessions as the longest
  look-back reads (252 closes for the regime and IV rank, ``trend_days`` for the trend), so
  every context equals the one ``kit backtest grid`` computes for that session.
* The simulator: its sessions are independent seeded days with no past closes, so only
  ``weekdays`` has the grid's meaning there; a config with a VIX regime, IV rank or trend filter
  needs ``--history`` (one line says so).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np

from kit.research.backtest.config import DATA_FILTERS, BacktestConfig, ConfigError
from kit.research.grid.context import DayContext, contexts
from kit.research.grid.data import DaySummary
from kit.research.grid.engine import allowed
from kit.research.grid.run import summary_task
from kit.research.history.schema import complete_days
from kit.signals.regimes import IV_WINDOW_DAYS, VixRegimeConfig


def session_contexts(
    cfg: BacktestConfig, days: list[date], history: str | Path | None
) -> dict[date, DayContext]:
    """Each of ``days``' pre-trade context, as the grid computes it (see the module docstring);
    a session the history does not hold has none (its replay reports the missing file)."""
    if history is None:
        data = [a for a in DATA_FILTERS if str(cfg.row[a]) != "any"]
        data += ["strikes"] if cfg.band_key else []
        if data:
            raise ConfigError(f"{data[0]} {cfg.row[data[0]]!r}: the grid decides it from past "
                              "sessions of an options history; give --history DIR (the "
                              "simulator's days have no past)")  # fmt: skip
        empty = np.empty(0)
        return {c.day: c for c in contexts([DaySummary(d, empty, empty, empty) for d in days],
                                           set())}  # fmt: skip
    st = cfg.settings
    held = complete_days(history, st.underlying, None, days[-1])
    if not held or held[-1] < days[0]:
        return {}
    first = int(np.searchsorted(np.array([d.toordinal() for d in held]), days[0].toordinal()))
    keep = max(IV_WINDOW_DAYS, VixRegimeConfig().window_days, st.trend_days)
    summaries = summary_task(str(history), st.underlying, held[max(0, first - keep) :])
    bands = {cfg.band_key} if cfg.band_key else set()
    ctxs = contexts(summaries, bands, lookback=st.band_lookback, min_samples=st.band_min_samples,
                    trend_days=st.trend_days, trend_band_pct=st.trend_band_pct)  # fmt: skip
    return {c.day: c for c in ctxs if c.day >= days[0]}


def band_strikes(cfg: BacktestConfig, ctx: DayContext | None) -> str | None:
    """A P-band config's strike rule for ``ctx``'s session (``band:LO:HI``, the grid's move
    fractions), or None when the grid has too few past moves to place it (it does not trade)."""
    key = cfg.band_key
    band = None if key is None or ctx is None else ctx.bands.get(key)
    return None if band is None else f"band:{band[0]!r}:{band[1]!r}"


def skip_reason(cfg: BacktestConfig, ctx: DayContext | None) -> str | None:
    """None when the grid's filters let ``cfg`` trade on ``ctx``'s session (the grid's own
    :func:`~kit.research.grid.engine.allowed`), else why not, one clause per failing filter.
    A P-band config is also skipped where the grid cannot place its strikes."""
    if cfg.band_key is not None and band_strikes(cfg, ctx) is None:
        return (f"strikes {cfg.row['strikes']}: fewer than {cfg.settings.band_min_samples} past "
                "moves over this horizon (the grid does not trade it)")  # fmt: skip
    if ctx is None or not cfg.filtered:
        return None
    plan = cfg.filter_plan
    if bool(allowed(plan, ctx)[0]):
        return None
    why = []
    for axis, wanted, seen in (("vix_regime", plan.vix_sets[0], ctx.vix_regime),
                               ("trend", plan.trend_sets[0], ctx.trend),
                               ("weekdays", plan.day_sets[0], ctx.weekday)):  # fmt: skip
        if wanted is not None and seen not in wanted:
            why.append(f"{axis} {seen or 'unknown'} not in {','.join(sorted(wanted))}")
    span = plan.ivr_ranges[0]
    if span is not None:
        rank = ctx.iv_rank
        if not np.isfinite(rank):
            why.append("iv_rank unknown (too few past closes)")
        elif not span[0] <= rank <= span[1]:
            why.append(f"iv_rank {rank:.1f} not in {span[0]:g}-{span[1]:g}")
    return "filter: " + "; ".join(why)

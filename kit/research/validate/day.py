"""One recorded day validated: replayed, compared, its fills' slippage measured and fitted.

``kit validate`` and ``notebooks/validation.ipynb`` call :func:`validate_day`; its
:meth:`Validation.summary` is ``kit validate --json``'s last line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from kit.research.validate.compare import Comparison, compare
from kit.research.validate.replay import Timeline, load_timeline, replay_day
from kit.research.validate.slippage import SlippageModel, fill_table, fit, mean_dollars
from kit.store import Store


@dataclass
class Validation:
    day: date
    live: Timeline
    replay: Timeline
    comparison: Comparison
    fills: pl.DataFrame  # the live fills' slippage (slippage.fill_table)
    model: SlippageModel | None  # fitted on the live fills; None without a quoted fill

    def summary(self) -> dict[str, Any]:
        """The JSON line: decisions, divergences with causes, P&L both ways, slippage."""
        return {
            "kind": "validation", "day": self.day.isoformat(), **self.comparison.to_json(),
            "slippage_mean": mean_dollars(self.fills),
            "slippage_mean_replay": mean_dollars(fill_table(self.replay.records)),
            "fills_live": len(self.live.fills), "fills_replay": len(self.replay.fills),
            "slippage_model": self.model.to_json() if self.model is not None else None,
        }  # fmt: skip


async def validate_day(
    store: Store, day: date, workdir: str | Path, *, rules: Any = None, config: Any = None
) -> Validation:
    """Replay ``day`` from ``store`` (scratch files in ``workdir``) and compare it with what
    was recorded live; ``rules``/``config`` override what the day recorded."""
    live = load_timeline(store, day)
    if not live.records:
        raise ValueError(f"the store holds no decisions or fills on {day}")
    replay = await replay_day(store, day, workdir, rules=rules, config=config)
    fills = fill_table(live.records)
    what_if = rules is not None or config is not None
    return Validation(day, live, replay, compare(live, replay, other_settings=what_if), fills,
                      fit(fills))  # fmt: skip

"""A recording as a chain source: the contracts it holds, their latest recorded quotes up to the
replay clock, and no IV history (a recording is one day)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from kit.adapters.chains import ChainSnapshot
from kit.adapters.replay.feed import read_events
from kit.core.clock import Clock
from kit.core.model import Contract, Quote


class ReplayChainSource:
    """Listings are what was recorded; a snapshot is each contract's last quote so far."""

    def __init__(self, path: str | Path, clock: Clock) -> None:
        self._frame = pl.scan_parquet(Path(path)).filter(pl.col("kind") == "quote")
        self.clock = clock
        self._listed: pl.DataFrame | None = None

    def _listing(self) -> pl.DataFrame:
        if self._listed is None:
            self._listed = (self._frame.select("root", "expiry", "strike", "right").unique()
                            .sort("root", "expiry", "strike", "right").collect())  # fmt: skip
        return self._listed

    async def expirations(self, root: str) -> list[date]:
        today = self.clock.now().date()
        listed = self._listing().filter(pl.col("root") == root)["expiry"].unique().to_list()
        return sorted(e for e in listed if e >= today)

    async def contracts(self, root: str, expiry: date) -> list[Contract]:
        rows = self._listing().filter((pl.col("root") == root) & (pl.col("expiry") == expiry))
        return [Contract(r, e, k, right) for r, e, k, right in rows.iter_rows()]

    async def snapshot(self, contracts: Sequence[Contract]) -> ChainSnapshot:
        if not contracts:
            return ChainSnapshot()
        c0 = contracts[0]
        last = (self._frame.filter((pl.col("root") == c0.root) & (pl.col("expiry") == c0.expiry)
                                   & (pl.col("ts_ns") <= self.clock.now_ns()))
                .sort("ts_ns").group_by("strike", "right").last().collect())  # fmt: skip
        wanted = set(contracts)
        quotes = [q for q in read_events(last) if isinstance(q, Quote) and q.contract in wanted]
        return ChainSnapshot(list(quotes))

    async def iv_history(self, underlying: str) -> np.ndarray | None:
        return None

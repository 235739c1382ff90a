"""A recording as a chain source: the contracts it holds, their latest recorded quotes up to the
replay clock, and the chain inputs a tick stream lacks (the IV history behind IV rank, open
interest) when a sidecar ``NAME.chain.json`` beside ``NAME.parquet`` holds them; without one,
no IV history and no open interest (a recording is one day).

The sidecar's document is what the builder records per session day in the store
(:data:`CHAIN_INPUTS`), so a day replayed from a store (``kit validate``) meets the same entry
checks (IV rank, open interest) the live desk met."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kit.adapters.chains import ChainSnapshot
from kit.adapters.replay.feed import read_events
from kit.core.clock import Clock
from kit.core.model import Contract, Quote
from kit.core.symbology import from_occ, to_occ

CHAIN_INPUTS = "chain_inputs"  # the state document (per session day) and the sidecar's content


def sidecar_path(path: str | Path) -> Path:
    """Where a recording's chain inputs live: ``day.parquet`` → ``day.chain.json``."""
    return Path(path).with_suffix(".chain.json")


def merge_chain_inputs(
    doc: Mapping[str, Any] | None,
    iv_history: Mapping[str, Any] | None = None,
    open_interest: Mapping[Contract, float] | None = None,
) -> dict[str, Any]:
    """``doc`` with more IV histories (symbol → daily IV) and open interest (contract → OI),
    as plain JSON (NaN → null: JSON has no NaN)."""
    out: dict[str, Any] = {"iv_history": dict((doc or {}).get("iv_history", {})),
                           "open_interest": dict((doc or {}).get("open_interest", {}))}  # fmt: skip
    for symbol, values in (iv_history or {}).items():
        out["iv_history"][symbol] = [_finite(v) for v in np.asarray(values, float).tolist()]
    for c, oi in (open_interest or {}).items():
        out["open_interest"][to_occ(c, padded=False)] = _finite(oi)
    return out


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


class ReplayChainSource:
    """Listings are what was recorded; a snapshot is each contract's last quote so far."""

    def __init__(self, path: str | Path, clock: Clock) -> None:
        self._frame = pl.scan_parquet(Path(path)).filter(pl.col("kind") == "quote")
        self.clock = clock
        self._listed: pl.DataFrame | None = None
        side = sidecar_path(path)
        doc = json.loads(side.read_text()) if side.is_file() else {}
        self._iv = {k: np.array([np.nan if v is None else v for v in vals], float)
                    for k, vals in doc.get("iv_history", {}).items()}  # fmt: skip
        self._oi = {from_occ(k): np.nan if v is None else float(v)
                    for k, v in doc.get("open_interest", {}).items()}  # fmt: skip

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
        oi = {c: self._oi[c] for c in contracts if c in self._oi}
        return ChainSnapshot(list(quotes), oi)

    async def iv_history(self, underlying: str) -> np.ndarray | None:
        return self._iv.get(underlying)

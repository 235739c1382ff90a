"""The desk's own recorded ticks (the store's ``quotes`` table) as a history source, so days the
desk watched live become research history.

Each snapshot takes, per contract, the last quote recorded at or before it (the rule ThetaData
uses for its interval quotes), and the last index print at or before it for ``spot`` and
``vix``; nothing is taken from after the snapshot. A contract appears from its first recorded
quote of the session on. IV and Greeks are recomputed at the snapshot (the desk's pricing, the
same as the ThetaData builder), not copied from the tick, whose time has passed.

What the store does not hold stays null: open interest (not recorded) and volume (prints are
recorded without their size). A session the recording does not reach the end of (the desk
stopped early, or the day is still trading) is not written, so it is built once complete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import polars as pl

from kit.core.clock import Session
from kit.core.symbology import SymbolError, from_occ
from kit.research.history.band import Band, roots_of, snapshot_times
from kit.research.history.enrich import in_band, quoted, with_greeks
from kit.store import Store, open_store

log = logging.getLogger(__name__)
LOOKBACK = timedelta(minutes=30)  # quotes this long before the open still count at the open
SPOT = {"SPX": "SPX", "NDX": "NDX", "SPY": "SPY"}


@dataclass
class StoreHistory:
    """Resample a store's ticks; use as a context manager (it holds the store open)."""

    underlying: str = "SPX"
    interval_s: int = 60
    band: Band = field(default_factory=Band)
    target: str | None = None  # a DuckDB file or postgresql:// URL (default: the desk's)
    rate: float = 0.045
    div_yield: float = 0.013
    _store: Store | None = field(default=None, init=False, repr=False)
    _symbols: dict[str, tuple[str, Any, float, str] | None] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        roots_of(self.underlying)

    @property
    def signature(self) -> dict[str, Any]:
        b = self.band
        return {"source": "store", "interval_s": self.interval_s,
                "band": [b.max_dte, b.strike_pct, b.daily_dte, b.far_strike_pct]}  # fmt: skip

    def __enter__(self) -> StoreHistory:
        self._store = open_store(self.target, migrate=False, read_only=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def make_day(
        self, session: Session, previous: dict[str, Any] | None
    ) -> tuple[pl.DataFrame, dict[str, Any]]:
        if self._store is None:
            raise RuntimeError("use StoreHistory as a context manager: with StoreHistory(...)")
        ticks = self._store.query(
            "SELECT ts, contract, bid, ask, price FROM quotes WHERE ts >= :lo AND ts <= :hi",
            {"lo": session.open - LOOKBACK, "hi": session.close},
        )
        if ticks.height == 0:
            return pl.DataFrame(), {}
        last = ticks["ts"].max()
        if last < session.close - timedelta(seconds=self.interval_s):
            log.warning("history: the store's ticks on %s stop at %s, before the close; "
                        "the session is left to a later build", session.day, last)  # fmt: skip
            return pl.DataFrame(), {}
        return self.resample(session, ticks), {}

    def resample(self, session: Session, ticks: pl.DataFrame) -> pl.DataFrame:
        """``ticks`` (ts, contract, bid, ask, price) -> the session's snapshots."""
        grid = pl.DataFrame({"ts": snapshot_times(session, self.interval_s)}).with_columns(
            pl.col("ts").dt.cast_time_unit("us").dt.convert_time_zone("UTC")
        )
        ticks = ticks.with_columns(pl.col("ts").dt.cast_time_unit("us").dt.convert_time_zone("UTC"))
        spot = _last_price(ticks, grid, SPOT[self.underlying], "spot")
        vix = _last_price(ticks, grid, "VIX", "vix")
        quotes = self._option_quotes(ticks)
        valid = spot["spot"].drop_nulls()
        if quotes.height == 0 or valid.len() == 0:
            return pl.DataFrame()
        quotes = in_band(quotes, self.band, session.day, float(valid[0]))
        keys = ["root", "expiry", "strike", "right"]
        contracts = quotes.select(keys).unique()
        frame = (
            grid.join(contracts, how="cross")
            .sort("ts")
            .join_asof(quotes.sort("ts").rename({"ts": "quoted"}), left_on="ts",
                       right_on="quoted", by=keys, strategy="backward", check_sortedness=False)
            .filter(pl.col("quoted").is_not_null())  # not quoted yet this session
            .drop("quoted")
            .join(spot, on="ts", how="left")
            .join(vix, on="ts", how="left")
        )  # fmt: skip
        frame = with_greeks(frame, self.rate, self.div_yield)
        return frame.with_columns(
            underlying=pl.lit(self.underlying),
            oi=pl.lit(None, dtype=pl.Int64),
            volume=pl.lit(None, dtype=pl.Int64),
        )

    def _option_quotes(self, ticks: pl.DataFrame) -> pl.DataFrame:
        """Two-sided-or-not option quotes (not prints) of the underlying's roots, parsed once
        per distinct symbol."""
        roots = set(roots_of(self.underlying))
        q = ticks.filter(pl.col("bid").is_not_null() | pl.col("ask").is_not_null())
        parsed = []
        for sym in q["contract"].unique().to_list():
            if sym not in self._symbols:
                try:
                    c = from_occ(sym)
                    self._symbols[sym] = (c.root, c.expiry, c.strike, c.right.value)
                except SymbolError:
                    self._symbols[sym] = None
            info = self._symbols[sym]
            if info is not None and info[0] in roots:
                parsed.append((sym, *info))
        if not parsed:
            return pl.DataFrame()
        lookup = pl.DataFrame(parsed, orient="row", schema={
            "contract": pl.String, "root": pl.String, "expiry": pl.Date, "strike": pl.Float64,
            "right": pl.String})  # fmt: skip
        return quoted(q.join(lookup, on="contract").select("ts", "root", "expiry", "strike",
                                                           "right", "bid", "ask"))  # fmt: skip


def _last_price(ticks: pl.DataFrame, grid: pl.DataFrame, symbol: str, name: str) -> pl.DataFrame:
    prints = (
        ticks.filter((pl.col("contract") == symbol) & pl.col("price").is_not_null())
        .select("ts", pl.col("price").alias(name))
        .sort("ts")
    )
    return grid.sort("ts").join_asof(prints, on="ts", strategy="backward")

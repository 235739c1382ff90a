"""A session of the options history as dense arrays: snapshots x contracts of one expiry.

The history is long (one row per contract and snapshot); the grid wants, for one expiry, every
leg's bid, ask and delta at every snapshot as a matrix, so a structure's mark over the whole day
is a few array sums and every exit rule a comparison over it. Only the columns the grid reads
are loaded, one session at a time (see :func:`kit.research.history.schema.day_path`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

import numpy as np
import polars as pl

from kit.core.clock import NEW_YORK
from kit.core.model import AM_SETTLED_ROOTS
from kit.research.history.schema import HistoryError, day_path

GRID_COLUMNS = ["ts", "root", "expiry", "strike", "right", "bid", "ask", "delta", "spot", "vix"]
US_PER_MIN = 60_000_000


def read_day(history: str, underlying: str, day: date,
             columns: tuple[str, ...] = tuple(GRID_COLUMNS)) -> pl.DataFrame:  # fmt: skip
    """The grid's columns of one complete session; a file that is not a history session (cut
    short, another schema) is a one-line :class:`HistoryError` naming it.

    The last few sessions read are kept (keyed by the file's path, size and mtime, so a
    rebuilt session is read again): a multi-day hold entered on consecutive days reads the same
    sessions, and a worker's shard is consecutive days. At most ``CACHED_SESSIONS`` in memory."""
    path = day_path(history, underlying, day)
    try:
        st = path.stat()
        return _read(str(path), st.st_size, st.st_mtime_ns, columns)
    except (OSError, pl.exceptions.PolarsError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HistoryError(f"{path}: not a readable history session ({first})") from None


CACHED_SESSIONS = 8


@lru_cache(maxsize=CACHED_SESSIONS)
def _read(path: str, size: int, mtime_ns: int, columns: tuple[str, ...]) -> pl.DataFrame:
    return pl.read_parquet(path, columns=list(columns))


INDEX_COLUMNS = ("ts", "spot", "vix")  # what :func:`summarise` reads


def minute_of_day(ts_us: np.ndarray, day: date) -> np.ndarray:
    """New York minute after midnight of UTC microsecond timestamps of one session (the offset
    is the session's own: DST changes on a Sunday, never inside a session)."""
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=NEW_YORK)
    offset_min = int(noon.utcoffset().total_seconds() // 60)  # type: ignore[union-attr]
    return ((ts_us // US_PER_MIN + offset_min) % 1440).astype(np.int64)


@dataclass(frozen=True)
class DaySummary:
    """What the grid's context needs from a session: spot and VIX per snapshot."""

    day: date
    minute: np.ndarray  # New York minute of each snapshot
    spot: np.ndarray
    vix: np.ndarray


def summarise(frame: pl.DataFrame, day: date) -> DaySummary:
    """One value of spot and VIX per snapshot (the rows are sorted by ``ts``)."""
    snap = frame.select("ts", "spot", "vix").unique("ts", keep="first").sort("ts")
    ts = snap["ts"].dt.epoch("us").to_numpy()
    return DaySummary(day, minute_of_day(ts, day), snap["spot"].to_numpy().astype(float),
                      snap["vix"].to_numpy().astype(float))  # fmt: skip


def listed_expiries(frame: pl.DataFrame) -> list[tuple[date, str]]:
    """(expiry, root) pairs listed in a session, soonest first, PM-settled before AM-settled on
    the same date (0DTE traders use the dailies)."""
    pairs = frame.select("expiry", "root").unique().rows()
    return sorted(pairs, key=lambda p: (p[0], p[1] in AM_SETTLED_ROOTS, p[1]))


def pick_expiry(expiries: list[tuple[date, str]], day: date, dte: int) -> tuple[date, str] | None:
    """The first listed expiry at least ``dte`` calendar days after ``day``."""
    for exp, root in expiries:
        if (exp - day).days >= dte and not (exp == day and root in AM_SETTLED_ROOTS):
            return exp, root
    return None


@dataclass
class Series:
    """One expiry of one root over the sessions of a hold, as (snapshot, contract) matrices.

    Columns are every (strike, right) seen on any of the sessions; a contract absent at a
    snapshot is NaN there, so it can never be chosen or marked at a time it was not quoted."""

    root: str
    expiry: date
    days: list[date]  # sessions covered, entry day first
    ts: np.ndarray  # int64 microseconds UTC, (T,)
    session: np.ndarray  # index into ``days``, (T,)
    minute: np.ndarray  # New York minute of day, (T,)
    spot: np.ndarray
    vix: np.ndarray
    strike: np.ndarray  # (N,)
    is_call: np.ndarray  # (N,)
    bid: np.ndarray  # (T, N)
    ask: np.ndarray
    delta: np.ndarray

    @property
    def am_settled(self) -> bool:
        return self.root in AM_SETTLED_ROOTS


def build_series(frames: list[tuple[date, pl.DataFrame]], root: str, expiry: date) -> Series:
    """Pivot the rows of ``root``/``expiry`` in ``frames`` (sessions in order) into a Series."""
    parts = []
    for i, (_d, f) in enumerate(frames):
        sel = f.filter((pl.col("root") == root) & (pl.col("expiry") == expiry))
        parts.append(sel.with_columns(pl.lit(i, dtype=pl.Int32).alias("session")))
    rows = pl.concat(parts)
    ts = rows["ts"].dt.epoch("us").to_numpy()
    uts, t_idx = np.unique(ts, return_inverse=True)
    strike = rows["strike"].to_numpy()
    call = (rows["right"] == "C").to_numpy()
    ustrike, k_idx = np.unique(strike, return_inverse=True)
    col = k_idx * 2 + call
    T, N = len(uts), 2 * len(ustrike)
    mats = []
    for name in ("bid", "ask", "delta"):
        m = np.full((T, N), np.nan)
        m[t_idx, col] = rows[name].to_numpy().astype(float)
        mats.append(m)
    first = np.zeros(T, dtype=np.int64)
    first[t_idx[::-1]] = np.arange(len(t_idx))[::-1]  # a row of each snapshot
    session = rows["session"].to_numpy()[first]
    days = [d for d, _ in frames]
    minute = np.empty(T, dtype=np.int64)
    for i, d in enumerate(days):
        on = session == i
        minute[on] = minute_of_day(uts[on], d)
    return Series(
        root=root,
        expiry=expiry,
        days=days,
        ts=uts,
        session=session,
        minute=minute,
        spot=rows["spot"].to_numpy()[first].astype(float),
        vix=rows["vix"].to_numpy()[first].astype(float),
        strike=np.repeat(ustrike, 2),
        is_call=np.tile([False, True], len(ustrike)),
        bid=mats[0],
        ask=mats[1],
        delta=mats[2],
    )


def ts_to_datetime(ts_us: int) -> datetime:
    return datetime.fromtimestamp(ts_us / 1e6, tz=UTC)

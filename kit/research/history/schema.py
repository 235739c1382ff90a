"""The options history's one schema, its on-disk layout and its readers.

A history is a directory of Parquet files, one per underlying and session, in the Hive layout
``DIR/underlying=SPX/date=2024-03-15/part-0.parquet``, so DuckDB
(``read_parquet('DIR/**/*.parquet', hive_partitioning=true)``) and polars
(``pl.scan_parquet('DIR/**/*.parquet', hive_partitioning=True)``) read it as one table. Each
file holds every snapshot of the session (``ts`` from the open to the close inclusive, one row
per contract and snapshot), sorted by ``ts, expiry, strike, right``.

A day is complete exactly when its ``part-0.parquet`` exists: files are written to a temporary
name in the same directory and renamed (atomic on POSIX), so a build killed mid-day leaves no
partial day behind, and a rerun skips what is on disk.

Units: prices per share (one option is 100 of them), ``iv`` a decimal (0.15 = 15 vol points),
``delta`` per share, ``gamma`` per point of the underlying, ``theta`` per calendar day,
``vega`` per vol point (0.01 of sigma) -- the trader's units, not the pricing kernel's per-year
ones. ``oi`` is the open interest at the start of the day, ``volume`` contracts traded so far
that day. Greeks and IV are float32 (seven significant digits; half the bytes of a session).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
PART = "part-0.parquet"
META_KEY = b"kit.history"  # Parquet key-value metadata: source, interval, seed, end-of-day state

SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("underlying", pa.string(), nullable=False),
        pa.field("root", pa.string(), nullable=False),
        pa.field("expiry", pa.date32(), nullable=False),
        pa.field("strike", pa.float64(), nullable=False),
        pa.field("right", pa.string(), nullable=False),  # 'C' or 'P'
        pa.field("bid", pa.float64()),
        pa.field("ask", pa.float64()),
        pa.field("iv", pa.float32()),
        pa.field("delta", pa.float32()),
        pa.field("gamma", pa.float32()),
        pa.field("theta", pa.float32()),
        pa.field("vega", pa.float32()),
        pa.field("oi", pa.int64()),
        pa.field("volume", pa.int64()),
        pa.field("spot", pa.float64()),
        pa.field("vix", pa.float64()),
    ]
)
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)
POLARS_SCHEMA: dict[str, pl.DataType] = dict(pl.from_arrow(SCHEMA.empty_table()).schema)
SORT_KEY = ("ts", "expiry", "strike", "right")
# columns with few distinct values in a day get dictionary pages; prices and Greeks do not (a
# dictionary of ~all-distinct floats only costs time): 35% smaller files, written 40% faster
DICTIONARY = ("ts", "underlying", "root", "expiry", "strike", "right", "oi", "spot", "vix")


class HistoryError(ValueError):
    """A history directory or a day's frame that breaks the schema (one line, for the CLI)."""


def day_dir(root: str | Path, underlying: str, day: date) -> Path:
    return Path(root) / f"underlying={underlying}" / f"date={day:%Y-%m-%d}"


def day_path(root: str | Path, underlying: str, day: date) -> Path:
    return day_dir(root, underlying, day) / PART


def underlyings(root: str | Path) -> list[str]:
    """Underlyings with a partition in ``root``."""
    base = Path(root)
    if not base.is_dir():
        return []
    return sorted(p.name.split("=", 1)[1] for p in base.glob("underlying=*") if p.is_dir())


def complete_days(
    root: str | Path, underlying: str, date_from: date | None = None, date_to: date | None = None
) -> list[date]:
    """Sessions whose file is on disk (a temporary file left by a killed build does not count)."""
    out = []
    for p in (Path(root) / f"underlying={underlying}").glob(f"date=*/{PART}"):
        try:
            d = date.fromisoformat(p.parent.name.removeprefix("date="))
        except ValueError:
            continue
        if (date_from is None or d >= date_from) and (date_to is None or d <= date_to):
            out.append(d)
    return sorted(out)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with exactly the schema's columns, types and order, sorted; raises
    :class:`HistoryError` naming the first problem (missing column, bad right, null key)."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise HistoryError(f"history frame lacks columns {missing}")
    try:
        out = frame.select(pl.col(c).cast(POLARS_SCHEMA[c]) for c in COLUMNS)
    except pl.exceptions.PolarsError as exc:
        raise HistoryError(f"history frame has a column of the wrong type: {exc}") from None
    keys = ("ts", "underlying", "root", "expiry", "strike", "right")
    if out.select(pl.any_horizontal(pl.col(k).is_null() for k in keys).any()).item():
        raise HistoryError(f"history frame has nulls in a key column {keys}")
    bad = out.filter(~pl.col("right").is_in(["C", "P"]))
    if bad.height:
        raise HistoryError(f"history frame has right {bad['right'][0]!r} (C or P)")
    return out.sort(SORT_KEY)


def write_day(
    root: str | Path, underlying: str, day: date, frame: pl.DataFrame, meta: dict[str, Any]
) -> Path:
    """Write one session atomically (temporary file + rename); returns the file's path.

    ``meta`` (JSON-able: the source, interval, seed, the day's closing state) is stored in the
    file's key-value metadata, so a resumed build continues from what is on disk."""
    table = conform(frame).to_arrow().cast(SCHEMA)
    doc = {"version": SCHEMA_VERSION, "underlying": underlying, "date": f"{day}", **meta}
    table = table.replace_schema_metadata({META_KEY: json.dumps(doc).encode()})
    target = day_path(root, underlying, day)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{PART}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd", compression_level=3,
                       use_dictionary=list(DICTIONARY), row_group_size=128 * 1024)  # fmt: skip
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``kit.history`` metadata of one day's file ({} for a file written elsewhere)."""
    raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


def iter_days(
    root: str | Path,
    underlying: str,
    date_from: date | None = None,
    date_to: date | None = None,
    columns: list[str] | None = None,
) -> Iterator[tuple[date, pl.DataFrame]]:
    """Stream complete sessions oldest first, one day in memory at a time (the grid's reader)."""
    unknown = [c for c in columns or () if c not in COLUMNS]
    if unknown:
        raise HistoryError(f"unknown history columns {unknown}; have {list(COLUMNS)}")
    for d in complete_days(root, underlying, date_from, date_to):
        yield d, pl.read_parquet(day_path(root, underlying, d), columns=columns)


def read_history(
    root: str | Path,
    underlying: str,
    date_from: date | None = None,
    date_to: date | None = None,
    columns: list[str] | None = None,
) -> pl.DataFrame:
    """Sessions ``date_from``..``date_to`` (inclusive) as one frame with a ``date`` column
    (the session's New York date). For a short range; stream long ones with :func:`iter_days`."""
    frames = [
        f.with_columns(pl.lit(d).alias("date"))
        for d, f in iter_days(root, underlying, date_from, date_to, columns)
    ]
    if not frames:
        cols = columns or list(COLUMNS)
        empty = pl.DataFrame(schema={c: POLARS_SCHEMA[c] for c in cols})
        return empty.with_columns(pl.lit(None, dtype=pl.Date).alias("date"))
    return pl.concat(frames)


def scan_history(root: str | Path) -> pl.LazyFrame:
    """The whole directory as one lazy polars frame (Hive columns ``underlying``, ``date``)."""
    return pl.scan_parquet(
        str(Path(root) / "**" / "*.parquet"),
        hive_partitioning=True,
        hive_schema={"underlying": pl.String(), "date": pl.Date()},
    )

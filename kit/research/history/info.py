"""What a history directory holds: per underlying, its sessions, rows, bytes, and its gaps --
sessions missing between the first and last day, and days with fewer snapshots than their
session's schedule at the build's interval (an early close is not a gap)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from kit.research.history.band import sessions, snapshot_times
from kit.research.history.schema import (
    HistoryError,
    complete_days,
    day_path,
    read_meta,
    scan_history,
    underlyings,
)


def history_info(root: str | Path) -> dict[str, Any]:
    """``{"path", "underlyings": {SPX: {...}}}``; raises HistoryError for a non-history path."""
    base = Path(root)
    if not base.is_dir():
        raise HistoryError(f"{root}: no such directory")
    names = underlyings(base)
    if not names:
        raise HistoryError(f"{root}: not a history (no underlying=... partitions)")
    snaps = (
        scan_history(base)
        .group_by("underlying", "date")
        .agg(pl.col("ts").n_unique().alias("snapshots"))
        .collect()
    )
    out: dict[str, Any] = {"path": str(base), "underlyings": {}}
    for u in names:
        days = complete_days(base, u)
        if not days:
            out["underlyings"][u] = {"days": 0, "rows": 0, "bytes": 0}
            continue
        files = [day_path(base, u, d) for d in days]
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        size = sum(f.stat().st_size for f in files)
        meta = read_meta(files[-1])
        interval = int(meta.get("interval_s") or 60)
        have = set(days)
        missing = [s.day for s in sessions(days[0], days[-1]) if s.day not in have]
        counts = dict(
            snaps.filter(pl.col("underlying") == u).select("date", "snapshots").iter_rows()
        )
        expected = {s.day: len(snapshot_times(s, interval)) for s in sessions(days[0], days[-1])}
        short = [
            {"date": f"{d}", "snapshots": counts.get(d, 0), "expected": expected[d]}
            for d in days
            if counts.get(d, 0) < expected.get(d, 0)
        ]
        out["underlyings"][u] = {
            "source": meta.get("source"),
            "interval_s": interval,
            "days": len(days),
            "first": f"{days[0]}",
            "last": f"{days[-1]}",
            "rows": rows,
            "bytes": size,
            "mb_per_day": round(size / 1e6 / len(days), 3),
            "missing_sessions": [f"{d}" for d in missing],
            "short_days": short,
        }
    return out

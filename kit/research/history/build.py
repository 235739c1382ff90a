"""The build loop every source shares: sessions in order, skip what is on disk, write each day
atomically, show progress, and refuse to mix two different builds in one directory.

A source is a callable ``make_day(session, previous) -> (frame, meta)``: ``previous`` is the
metadata of the last complete session before this one (on disk or just written), which is how
the simulator continues its path across days and across resumed builds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from kit.core.clock import Session
from kit.research.history.progress import Mode, Progress
from kit.research.history.schema import (
    HistoryError,
    complete_days,
    day_path,
    read_meta,
    write_day,
)

log = logging.getLogger(__name__)

DayMaker = Callable[[Session, dict[str, Any] | None], tuple[pl.DataFrame, dict[str, Any]]]


@dataclass
class BuildReport:
    """What a build did; ``rows_per_s`` and ``mb_per_day`` count only the days it wrote."""

    underlying: str
    source: str
    built: list[date] = field(default_factory=list)
    skipped: list[date] = field(default_factory=list)
    empty: list[date] = field(default_factory=list)  # sessions the source had no data for
    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_day(self) -> float:
        return self.bytes / 1e6 / len(self.built) if self.built else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "underlying": self.underlying, "source": self.source, "built": len(self.built),
            "skipped": len(self.skipped), "empty": [f"{d}" for d in self.empty],
            "rows": self.rows, "bytes": self.bytes, "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s), "mb_per_day": round(self.mb_per_day, 3),
        }  # fmt: skip


def check_signature(out: str | Path, underlying: str, signature: dict[str, Any]) -> None:
    """Refuse to add days built another way (another source, seed, interval or band) to a
    directory: a history whose days disagree would silently mix two markets."""
    days = complete_days(out, underlying)
    if not days:
        return
    meta = read_meta(day_path(out, underlying, days[-1]))
    theirs = {k: meta.get(k) for k in signature}
    if theirs != signature:
        diff = ", ".join(f"{k}={theirs[k]!r} (asked {v!r})" for k, v in signature.items()
                         if theirs[k] != v)  # fmt: skip
        raise HistoryError(
            f"{out} already holds {underlying} days built with {diff}; "
            "build with the same options or into another --out"
        )


def previous_meta(out: str | Path, underlying: str, day: date) -> dict[str, Any] | None:
    """Metadata of the last complete session strictly before ``day`` (None if there is none)."""
    before = [d for d in complete_days(out, underlying) if d < day]
    return read_meta(day_path(out, underlying, before[-1])) if before else None


def run_build(
    out: str | Path,
    underlying: str,
    days: list[Session],
    make_day: DayMaker,
    signature: dict[str, Any],
    *,
    progress: Mode = "auto",
) -> BuildReport:
    """Build every session of ``days`` not already on disk, oldest first."""
    check_signature(out, underlying, signature)
    report = BuildReport(underlying, str(signature.get("source")))
    done = set(complete_days(out, underlying))
    previous: dict[str, Any] | None = None
    stale = True  # ``previous`` must be read from disk before the next day is built
    with Progress(len(days), f"{underlying} {report.source}", progress) as bar:
        for s in days:
            if s.day in done:
                report.skipped.append(s.day)
                stale = True
                bar.advance(f"{s.day} on disk")
                continue
            if stale:
                previous, stale = previous_meta(out, underlying, s.day), False
            t0 = time.perf_counter()
            frame, meta = make_day(s, previous)
            if frame.height == 0:
                report.empty.append(s.day)
                log.warning("history: no %s data for %s on %s", report.source, underlying, s.day)
                bar.advance(f"{s.day} no data")
                continue
            path = write_day(out, underlying, s.day, frame, {**signature, **meta})
            report.seconds += time.perf_counter() - t0
            report.built.append(s.day)
            report.rows += frame.height
            report.bytes += path.stat().st_size
            previous = {**signature, **meta}
            bar.advance(f"{s.day} {frame.height:,} rows")
    return report

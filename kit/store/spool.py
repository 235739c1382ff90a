"""Rows that could not reach the database, kept on disk as Parquet: nothing is lost.

A close during an outage leaves each pending batch's frames as ``<stamp>-<k>-<table>.parquet``
in the spool folder, which the next start queues first, in order; rows the database refuses
(a constraint, a type it will not take) go to ``refused/`` beside them for a person to read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from kit.store.schema import TABLES, Table


def spool(folder: str | Path, batches: Iterable[list[tuple[Table, pl.DataFrame]]]) -> None:
    """Write each batch's frames, named so that :func:`load` returns them in this order."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    stamp = time.time_ns()
    for k, batch in enumerate(batches):
        for table, frame in batch:
            frame.write_parquet(path / f"{stamp}-{k:06d}-{table.name}.parquet")


def load(folder: str | Path) -> list[tuple[Table, pl.DataFrame]]:
    """The spooled frames, oldest first, each file removed once read (held in memory now;
    spooled again if this run also ends during an outage)."""
    out = []
    for path in sorted(Path(folder).glob("*.parquet")):
        table = TABLES.get(path.stem.rsplit("-", 1)[-1])
        if table is None:
            continue
        out.append((table, pl.read_parquet(path)))
        path.unlink()
    return out


def refused(folder: str | Path, table: Table, frame: pl.DataFrame) -> Path:
    """Keep rows the database refused; returns the file."""
    path = Path(folder) / "refused" / f"{time.time_ns()}-{table.name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return path

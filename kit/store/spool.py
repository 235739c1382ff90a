"""The writer's spool: nothing lost across a close during an outage.

A close while the database is down leaves the unwritten rows as Parquet files (one per batch
and table, named so they sort in write order); the next start queues them first. Rows the
database refuses outright (a constraint, not an outage) are kept aside in ``refused/``.
A mixin of :class:`~kit.store.writer.StoreWriter` (split off to keep the writer's module short).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from kit.store.schema import TABLES, Table

if TYPE_CHECKING:
    from kit.store.writer import WriterConfig

log = logging.getLogger("kit.store.writer")  # the writer's records, as before the split


class Spool:
    """Spooling and dead letters; the attributes are the writer's."""

    config: WriterConfig
    stats: dict[str, int]
    _pending: deque[Any]
    _pending_rows: int
    _taken_batches: int
    _build: Callable[[Sequence[tuple[Table, Any]]], list[tuple[Table, pl.DataFrame]]]
    _durable: Callable[[int], None]

    def _spool(self) -> None:
        rows = self._pending_rows
        if self.config.spool_dir is None:
            log.critical("store: closing during an outage: %d rows lost", rows)
            self.stats["dropped"] += rows
        else:
            spool = Path(self.config.spool_dir)
            spool.mkdir(parents=True, exist_ok=True)
            stamp = time.time_ns()
            for k, batch in enumerate(self._pending):
                for table, frame in self._build(batch):
                    frame.write_parquet(spool / f"{stamp}-{k:06d}-{table.name}.parquet")
            self.stats["spooled"] += rows
            log.critical("store: closing during an outage: %d rows spooled to %s; they are "
                         "written at the next start", rows, spool)  # fmt: skip
            self._durable(len(self._pending))  # on disk: the next start writes them first
        self._pending.clear()
        self._pending_rows = 0

    def _load_spool(self) -> None:
        if self.config.spool_dir is None:
            return
        files = sorted(Path(self.config.spool_dir).glob("*.parquet"))
        for path in files:
            table = TABLES.get(path.stem.rsplit("-", 1)[-1])
            if table is None:
                continue
            frame = pl.read_parquet(path)
            self._pending.append([(table, frame)])
            self._taken_batches += 1
            self._pending_rows += frame.height
            path.unlink()  # held in memory now; spooled again if this run also ends down
        if files:
            log.warning("store: %d rows from the spool queued for writing", self._pending_rows)

    def _dead_letter(self, table: Table, frame: pl.DataFrame, why: str) -> None:
        self.stats["rejected"] += frame.height
        if self.config.spool_dir is None:
            log.error("store: %d %s rows refused by the database: %s", frame.height,
                      table.name, why)  # fmt: skip
            return
        path = Path(self.config.spool_dir) / "refused" / f"{time.time_ns()}-{table.name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path)
        log.error("store: %d %s rows refused by the database (%s): kept in %s",
                  frame.height, table.name, why, path)  # fmt: skip

"""One call to give a desk its store: open, restore, record, persist, and close cleanly.

The order matters for recovery, so it lives here once rather than in every entry point:

1. open the database (migrating it) and a writer whose outage alerts go to the desk;
2. restore the desk's switches and alert memory before anything evaluates;
3. hand ``state`` (a StateStore on the same database) to the broker and order manager, which
   restore their own documents when constructed; the order manager's ``start()`` then rebuilds
   the book from the broker's fills and resumes unfinished intents without resending;
4. attach the recorder (ticks, events, snapshots) and start the writer.

Tick retention (``retention_days`` or ``KIT_TICK_RETENTION_DAYS``; unset keeps everything) is
applied at start and once per desk day, on the desk's clock, so a replayed 2024 session is not
pruned against today's date.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from kit.core.config import env_float
from kit.store import Store, StoreError, open_store
from kit.store.recorder import Recorder, RecorderConfig, StoreStateStore
from kit.store.writer import StoreWriter, WriterConfig

if TYPE_CHECKING:
    from kit.engine.desk import Desk

log = logging.getLogger(__name__)
RETENTION_ENV = "KIT_TICK_RETENTION_DAYS"
# A desk's DuckDB connection uses one thread: on a small machine DuckDB's parallel insert
# competes with the event loop for cores (measured on 2 cores: more rows/s and a p99 loop stall
# of 2 ms instead of 3). Notebooks and `kit db` open their own connections with every core.
DESK_DUCKDB_THREADS = 1


def open_desk_store(target: str | os.PathLike[str] | None = None) -> Store:
    """The store as a desk's writer uses it (see ``DESK_DUCKDB_THREADS``)."""
    return open_store(target, threads=DESK_DUCKDB_THREADS)


def tick_retention(days: float | None = None, env: Mapping[str, str] | None = None) -> float | None:
    """Days of ticks to keep: ``days``, else ``KIT_TICK_RETENTION_DAYS``, else all (None)."""
    if days is None:
        days = env_float(RETENTION_ENV, environ=env, what="a number of days")
        if days is None:
            return None
    if not days > 0:
        raise ValueError(f"tick retention must be a positive number of days, not {days!r}")
    return float(days)


class DeskStore:
    """A desk's store, writer and recorder. ``restored`` says whether saved state was found."""

    def __init__(self, desk: Desk, store: Store, writer: StoreWriter, recorder: Recorder) -> None:
        self.desk, self.store, self.writer, self.recorder = desk, store, writer, recorder
        self.restored = recorder.restore()
        self.retention_days: float | None = None
        self._pruned_on: date | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def open(
        cls,
        desk: Desk,
        target: Store | str | os.PathLike[str] | None = None,
        *,
        recorder: RecorderConfig | None = None,
        writer: WriterConfig | None = None,
        retention_days: float | None = None,
    ) -> DeskStore:
        """Open ``target`` (a DuckDB path or ``postgresql://`` URL; default from the
        environment, else ``data/desk.duckdb``; or a store already open) for ``desk`` and
        restore its saved state."""
        days = tick_retention(retention_days)  # a bad setting fails before anything opens
        store = target if isinstance(target, Store) else open_desk_store(target)
        w = StoreWriter(store, writer, on_alert=lambda sev, msg: desk.notify(sev, "store", msg))
        kept = cls(desk, store, w, Recorder(desk, w, recorder))
        kept.retention_days = days
        return kept

    @property
    def state(self) -> StoreStateStore:
        """The StateStore for the broker and order manager (same database, same commits)."""
        return self.recorder.state

    async def start(self) -> None:
        self.recorder.attach()
        await self.writer.start()
        if self.retention_days is not None:
            self.desk.on_heartbeat.append(self._retain)
            self._retain()

    def _retain(self) -> None:
        """Prune ticks past the retention, once per desk day, in the writer's thread pool."""
        now = self.desk.clock.now()
        if now.date() == self._pruned_on:
            return
        self._pruned_on = now.date()
        cut = now - timedelta(days=self.retention_days or 0.0)
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._prune, cut))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _prune(self, cut: datetime) -> None:
        try:
            n = self.store.prune_ticks(cut)
        except StoreError as exc:  # an outage: the next day tries again
            log.warning("store: tick retention skipped: %s", exc)
            return
        if n:
            log.info("store: pruned %d ticks older than %s", n, cut.isoformat())

    async def close(self) -> None:
        """Record the last positions and state, write everything, close the database."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.recorder.close()
        await self.writer.close()
        self.store.close()

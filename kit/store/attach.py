"""One call to give a desk its store: open, restore, record, persist, and close cleanly.

The order matters for recovery, so it lives here once rather than in every entry point:

1. open the database (migrating it) and a writer whose outage alerts go to the desk;
2. restore the desk's switches and alert memory before anything evaluates;
3. hand ``state`` (a StateStore on the same database) to the broker and order manager, which
   restore their own documents when constructed; the order manager's ``start()`` then rebuilds
   the book from the broker's fills and resumes unfinished intents without resending;
4. attach the recorder (ticks, events, snapshots) and start the writer.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from kit.store import Store, open_store
from kit.store.recorder import Recorder, RecorderConfig, StoreStateStore
from kit.store.writer import StoreWriter, WriterConfig

if TYPE_CHECKING:
    from kit.desk import Desk


class DeskStore:
    """A desk's store, writer and recorder. ``restored`` says whether saved state was found."""

    def __init__(self, desk: Desk, store: Store, writer: StoreWriter, recorder: Recorder) -> None:
        self.desk, self.store, self.writer, self.recorder = desk, store, writer, recorder
        self.restored = recorder.restore()

    @classmethod
    def open(
        cls,
        desk: Desk,
        target: Store | str | os.PathLike[str] | None = None,
        *,
        recorder: RecorderConfig | None = None,
        writer: WriterConfig | None = None,
    ) -> DeskStore:
        """Open ``target`` (a DuckDB path or ``postgresql://`` URL; default from the
        environment, else ``data/desk.duckdb``; or a store already open) for ``desk`` and
        restore its saved state."""
        store = target if isinstance(target, Store) else open_store(target)
        w = StoreWriter(store, writer, on_alert=lambda sev, msg: desk.notify(sev, "store", msg))
        return cls(desk, store, w, Recorder(desk, w, recorder))

    @property
    def state(self) -> StoreStateStore:
        """The StateStore for the broker and order manager (same database, same commits)."""
        return self.recorder.state

    async def start(self) -> None:
        self.recorder.attach()
        await self.writer.start()

    async def close(self) -> None:
        """Record the last positions and state, write everything, close the database."""
        self.recorder.close()
        await self.writer.close()
        self.store.close()

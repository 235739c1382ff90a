"""What every backend offers: migrations, one-transaction batch writes, queries as polars frames,
state documents, Parquet export and tick retention.

Backends are synchronous and meant to be called from one worker thread (the
:class:`~kit.store.writer.StoreWriter`'s) or from a notebook; a lock serialises their one
connection, so a journal query from the main thread never interleaves with a batch write.
Queries use ``:name`` placeholders, rewritten for each driver, so one SQL text serves both.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from kit.store.schema import MIGRATIONS, SCHEMA_VERSION, TABLES, Table

log = logging.getLogger(__name__)

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class StoreError(RuntimeError):
    """The store refused something (a bad query, a schema from a newer version)."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached now (server down, file locked by another process); the
    writer keeps its rows and tries again."""


class Store(ABC):
    """A database holding the desk's tables (see :mod:`kit.store.schema`)."""

    dialect: str = ""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lock = threading.RLock()
        self.timescale = False  # hypertables in use (PostgreSQL with TimescaleDB only)

    # --- driver specifics ---

    @abstractmethod
    def _execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None: ...

    @abstractmethod
    def _fetch(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame: ...

    @abstractmethod
    def _write(self, batches: Sequence[tuple[Table, pl.DataFrame]]) -> None:
        """Insert (append or upsert by key) every batch in one transaction."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"

    def describe(self) -> str:
        """Where the data lives, without credentials (safe to log)."""
        return self.url

    # --- schema ---

    def migrate(self) -> int:
        """Apply the migrations not applied yet, each in its own transaction; return the schema
        version. A database written by a newer kit is refused rather than guessed at."""
        with self.lock:
            self._execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY, "
                "description VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            done = self._fetch("SELECT max(version) AS v FROM schema_version")["v"][0] or 0
            if done > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.describe()} has schema version {done}, newer than this kit's "
                    f"{SCHEMA_VERSION}: upgrade kit"
                )
            for m in MIGRATIONS:
                if m.version <= done:
                    continue
                self._transaction(
                    m.statements(self.dialect),
                    "INSERT INTO schema_version VALUES (:v, :d, :t)",
                    {"v": m.version, "d": m.description, "t": datetime.now(UTC)},
                )
                log.info("store %s: schema migrated to version %d (%s)",
                         self.describe(), m.version, m.description)  # fmt: skip
            return SCHEMA_VERSION

    def _transaction(self, statements: Sequence[str], sql: str, params: Mapping[str, Any]) -> None:
        self._execute("BEGIN")
        try:
            for s in statements:
                self._execute(s)
            self._execute(sql, params)
            self._execute("COMMIT")
        except BaseException:
            self._execute("ROLLBACK")
            raise

    def version(self) -> int:
        with self.lock:
            return int(self._fetch("SELECT max(version) AS v FROM schema_version")["v"][0] or 0)

    # --- rows ---

    def write(self, batches: Sequence[tuple[str | Table, pl.DataFrame]]) -> int:
        """Write frames (columns as in the schema) in one transaction; returns rows written.
        Keyed tables keep the last row per key."""
        prepared = []
        for t, frame in batches:
            table = TABLES[t] if isinstance(t, str) else t
            frame = frame.select(table.names)
            if table.key:
                keep = "first" if table.immutable else "last"
                if table.immutable:
                    self._refuse_conflicts(table, frame, frame.unique(
                        subset=list(table.key), keep="first", maintain_order=True))  # fmt: skip
                frame = frame.unique(subset=list(table.key), keep=keep, maintain_order=True)
            if frame.height:
                prepared.append((table, frame))
        with self.lock:
            prepared = [(t, self._unseen(t, f) if t.immutable else f) for t, f in prepared]
            prepared = [(t, f) for t, f in prepared if f.height]
            if prepared:
                self._write(prepared)
        return sum(f.height for _, f in prepared)

    def _unseen(self, table: Table, frame: pl.DataFrame) -> pl.DataFrame:
        """The rows of an immutable table not stored yet; a stored key with other content is
        refused and logged CRITICAL (the first record stands)."""
        (key,) = table.key
        ids = ", ".join("'" + str(v).replace("'", "''") + "'" for v in frame[key].to_list())
        stored = self._fetch(f"SELECT {key}, {', '.join(table.immutable)} FROM {table.name} "
                             f"WHERE {key} IN ({ids})")  # fmt: skip
        if not stored.height:
            return frame
        known = pl.col(key).is_in(stored[key].implode())
        repeats = frame.filter(known).select(stored.columns).cast(dict(stored.schema))
        self._refuse_conflicts(table, repeats, stored)
        return frame.filter(~known)

    @staticmethod
    def _refuse_conflicts(table: Table, rows: pl.DataFrame, first: pl.DataFrame) -> None:
        """Log every key of ``rows`` whose content differs from its row in ``first``."""
        cols = [*table.key, *table.immutable]
        differing = rows.select(cols).unique().join(first.select(cols), on=cols, how="anti")
        for row in differing.iter_rows(named=True):
            log.critical("store: %s %s was already recorded with different content; the new "
                         "one (%s) is refused", table.name, row[table.key[0]],
                         ", ".join(f"{k}={row[k]}" for k in table.immutable))  # fmt: skip

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        """Run a query (``:name`` placeholders) and return its rows as a polars frame."""
        with self.lock:
            return self._fetch(sql, params)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        with self.lock:
            self._execute(sql, params)

    def count(self, table: str) -> int:
        return int(self.query(f"SELECT count(*) AS n FROM {TABLES[table].name}")["n"][0])

    # --- state documents ---

    def load_state(self, key: str) -> dict[str, Any] | None:
        rows = self.query("SELECT doc FROM state WHERE key = :k", {"k": key})
        if not rows.height:
            return None
        doc = rows["doc"][0]
        return doc if isinstance(doc, dict) else json.loads(doc)

    # --- maintenance ---

    def export_parquet(self, table: str, path: str | Path) -> int:
        """Write a whole table to a Parquet file; returns its row count."""
        frame = self.query(f"SELECT * FROM {TABLES[table].name}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path)
        return frame.height

    def prune_ticks(self, before: datetime) -> int:
        """Delete ticks older than ``before`` (the retention setting); returns rows deleted."""
        with self.lock:
            n = int(self._fetch("SELECT count(*) AS n FROM quotes WHERE ts < :t",
                                {"t": before})["n"][0])  # fmt: skip
            if n:
                self._execute("DELETE FROM quotes WHERE ts < :t", {"t": before})
            return n


def placeholders(sql: str, style: str) -> str:
    """``:name`` → ``$name`` (DuckDB) or ``%(name)s`` (psycopg, with literal ``%`` doubled)."""
    if style == "dollar":
        return _PARAM.sub(r"$\1", sql)
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))

"""The embedded default: one DuckDB file (``data/desk.duckdb``).

Batches go in as Arrow (a registered polars frame, ``INSERT … SELECT``), about a million rows a
second, where ``executemany`` manages a few thousand. DuckDB lets one process write a file at a
time: a second desk, or a notebook holding the file open, makes it unavailable, which the writer
treats as an outage (rows kept, retried). For several processes, use PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from kit.store.base import Store, StoreError, StoreUnavailableError, placeholders
from kit.store.schema import TABLES, Table

_NEWEST = pl.CompatLevel.newest()


class DuckDBStore(Store):
    dialect = "duckdb"

    def __init__(
        self, path: str | Path, *, read_only: bool = False, threads: int | None = None
    ) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self.read_only = read_only
        self.threads = threads
        self._con: duckdb.DuckDBPyConnection | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The connection, opened (and the file created) on first use."""
        if self._con is None:
            if not self.read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                con = duckdb.connect(str(self.path), read_only=self.read_only)
            except duckdb.IOException as exc:  # most often: another process holds the file
                raise StoreUnavailableError(f"{self.path}: {exc}") from None
            con.execute("SET TimeZone = 'UTC'").fetchall()
            if self.threads is not None:
                con.execute(f"SET threads = {int(self.threads)}").fetchall()
            self._con = con
        return self._con

    def _execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        try:
            self.con.execute(placeholders(sql, "dollar"), dict(params or {})).fetchall()
        except duckdb.Error as exc:
            raise _error(exc, sql) from exc

    def _fetch(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        try:
            rel = self.con.sql(placeholders(sql, "dollar"), params=dict(params or {}) or None)
            assert rel is not None, f"not a query: {sql[:60]!r}"
            return rel.pl()
        except duckdb.Error as exc:
            raise _error(exc, sql) from exc

    def _write(self, batches: Sequence[tuple[Table, pl.DataFrame]]) -> None:
        con = self.con
        try:
            con.execute("BEGIN").fetchall()
            try:
                for table, frame in batches:
                    # as Arrow with string views: polars hands them over without a copy
                    # (a registered frame is exported with large strings, copied)
                    con.register("kit_batch", frame.to_arrow(compat_level=_NEWEST))
                    verb = "INSERT OR REPLACE" if table.key else "INSERT"
                    cols = ", ".join(table.names)
                    con.execute(
                        f"{verb} INTO {table.name} ({cols}) SELECT {cols} FROM kit_batch"
                    ).fetchall()
                    con.unregister("kit_batch")
                con.execute("COMMIT").fetchall()
            except BaseException:
                con.execute("ROLLBACK").fetchall()
                raise
        except duckdb.Error as exc:
            raise _error(exc, "batch insert") from exc

    def export_parquet(self, table: str, path: str | Path) -> int:
        """DuckDB writes Parquet itself, streaming, without the table passing through Python.
        UUID and JSON columns are written as text, as ``query`` returns them (DuckDB would
        write 16-byte UUIDs and JSON bytes)."""
        t = TABLES[table]
        name = t.name
        cols = ", ".join(f"CAST({c.name} AS VARCHAR) AS {c.name}" if c.type in ("uuid", "json")
                         else c.name for c in t.columns)  # fmt: skip
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            target = str(path).replace("'", "''")
            self._execute(f"COPY (SELECT {cols} FROM {name}) TO '{target}' (FORMAT parquet)")
            return int(self._fetch(f"SELECT count(*) AS n FROM {name}")["n"][0])

    def close(self) -> None:
        with self.lock:
            if self._con is not None:
                self._con.close()
                self._con = None


def _error(exc: duckdb.Error, what: str) -> StoreError:
    if isinstance(exc, duckdb.IOException):
        return StoreUnavailableError(str(exc))
    return StoreError(f"duckdb: {exc} (in {what[:120]!r})")

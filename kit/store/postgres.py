"""PostgreSQL (TimescaleDB when the extension is available) for teams and several processes.

Batches go in with ``COPY … FROM STDIN`` fed by polars' CSV writer, tens of thousands of rows a
second and more, where row-by-row inserts manage a few hundred per round trip. Keyed tables are
copied into a session-local staging table and upserted from it in the same transaction (COPY
cannot upsert). A dropped connection is an outage: the next call reconnects.

Values come back as DuckDB returns them (JSON as text, UUIDs as text, numerics as floats), so
callers see the same frames from either backend.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import polars as pl
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_loads
from psycopg.types.numeric import FloatLoader
from psycopg.types.string import TextLoader

from kit.store.base import Store, StoreError, StoreUnavailableError, placeholders
from kit.store.frames import HANDOFF_S
from kit.store.schema import TABLES, Table

try:  # binary COPY straight from Arrow: the server parses no text (~2x CSV, issue 27)
    from pgpq import ArrowToPostgresBinaryEncoder
except ImportError:  # optional: CSV COPY then
    ArrowToPostgresBinaryEncoder = None
# binary forms equal to what these frame dtypes encode to (JSON and UUID columns: CSV)
_BINARY = {"text": pl.String(), "float": pl.Float64(), "int": pl.Int64(), "bool": pl.Boolean(),
           "ts": pl.Datetime("us", "UTC"), "date": pl.Date()}  # fmt: skip

log = logging.getLogger(__name__)


# Result column types by PostgreSQL type OID, so an empty or all-NULL column keeps its type (as
# DuckDB's Arrow results do) instead of polars' Null; unknown types are inferred from values.
_OID_DTYPES: dict[int, pl.DataType | None] = {
    16: pl.Boolean(), 20: pl.Int64(), 21: pl.Int64(), 23: pl.Int64(), 700: pl.Float64(),
    701: pl.Float64(), 1700: pl.Float64(), 25: pl.String(), 1043: pl.String(), 2950: pl.String(),
    114: pl.String(), 3802: pl.String(), 1082: pl.Date(), 1114: pl.Datetime("us"),
    1184: pl.Datetime("us", "UTC"),
}  # fmt: skip


class PostgresStore(Store):
    dialect = "postgres"

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0) -> None:
        super().__init__(url)
        self.connect_timeout_s = connect_timeout_s
        self._con: psycopg.Connection[Any] | None = None

    def describe(self) -> str:
        info = conninfo_to_dict(self.url)
        return (f"postgresql://{info.get('user', '')}@{info.get('host', 'localhost')}:"
                f"{info.get('port', 5432)}/{info.get('dbname', '')}")  # fmt: skip

    @property
    def con(self) -> psycopg.Connection[Any]:
        if self._con is None or self._con.closed:
            try:
                con = psycopg.connect(self.url, autocommit=True,
                                      connect_timeout=max(1, round(self.connect_timeout_s)),
                                      options="-c TimeZone=UTC")  # fmt: skip
            except psycopg.OperationalError as exc:
                raise StoreUnavailableError(f"{self.describe()}: {_first_line(exc)}") from None
            set_json_loads(lambda data: data if isinstance(data, str) else bytes(data).decode(),
                           con)  # fmt: skip
            for oid in ("uuid",):
                con.adapters.register_loader(oid, TextLoader)
            con.adapters.register_loader("numeric", FloatLoader)
            self._con = con
        return self._con

    def _run(self, fn: Any, what: str) -> Any:
        try:
            return fn()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._drop()
            raise StoreUnavailableError(f"{self.describe()}: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            raise StoreError(f"postgres: {_first_line(exc)} (in {what[:120]!r})") from exc

    def _drop(self) -> None:
        if self._con is not None:
            with contextlib.suppress(psycopg.Error):
                self._con.close()
            self._con = None

    def _execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(lambda: self.con.execute(placeholders(sql, "pyformat"), params or None), sql)

    def _fetch(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        def fetch() -> pl.DataFrame:
            cur = self.con.execute(placeholders(sql, "pyformat"), params or None)
            schema = {d.name: _OID_DTYPES.get(d.type_code) for d in cur.description or ()}
            return pl.DataFrame(cur.fetchall(), schema=schema, orient="row",
                                infer_schema_length=None)  # fmt: skip

        return self._run(fetch, sql)

    def _write(self, batches: Sequence[tuple[Table, pl.DataFrame]]) -> None:
        def write() -> None:
            con = self.con
            with con.transaction(), con.cursor() as cur:
                for table, frame in batches:
                    cols = ", ".join(table.names)
                    target = f"kit_stage_{table.name}" if table.key else table.name
                    if table.key:
                        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {target} "
                                    f"(LIKE {table.name}) ON COMMIT DELETE ROWS")  # fmt: skip
                    parts, fmt = _binary(table, frame), "binary"
                    if parts is None:
                        parts, fmt = [frame.write_csv(include_header=False,
                            datetime_format="%Y-%m-%d %H:%M:%S%.6f+00")], "csv"  # fmt: skip
                    with cur.copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT {fmt})") as copy:
                        for part in parts:
                            if part:  # pgpq keeps small slices until its buffer fills
                                copy.write(part)
                    if table.key:
                        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in table.names
                                            if c not in table.key)  # fmt: skip
                        cur.execute(
                            f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {target} "
                            f"ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {updates}"
                        )

        self._run(write, "batch copy")

    # --- TimescaleDB ---

    def migrate(self) -> int:
        with self.lock:
            available = self._fetch(
                "SELECT count(*) AS n FROM pg_available_extensions WHERE name = 'timescaledb'"
            )["n"][0]
            if available:
                try:
                    self._execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                    self.timescale = True
                except StoreError as exc:  # e.g. not in shared_preload_libraries
                    log.warning("TimescaleDB is installed but not usable (%s): plain tables", exc)
            version = super().migrate()
            if self.timescale:
                for t in TABLES.values():
                    if t.hypertable:
                        self._execute(f"SELECT create_hypertable('{t.name}', '{t.hypertable}', "
                                      "if_not_exists => TRUE, migrate_data => TRUE)")  # fmt: skip
            return version

    def close(self) -> None:
        with self.lock:
            self._drop()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# rows per pgpq encode call: the encoder holds the GIL through a call (0.15 us a quotes row),
# so a whole 200k-row batch held the event loop off for 12-18 ms; a 16,384-row slice for 2.1 ms,
# this size for 0.6 ms, with a yield between slices
ENCODE_ROWS = 4_096


def _binary(table: Table, frame: pl.DataFrame) -> Iterator[bytes] | None:
    """``frame`` in PostgreSQL's binary COPY format, slice by slice, or None for CSV: without
    pgpq, with a JSON or UUID column (their binary forms are not text), a column of another
    dtype, or an Arrow layout the encoder refuses (found on the first slice, before the COPY
    starts). The slices go to the server one by one: joining a batch into one bytes object
    held the GIL for 8 ms per 100k rows."""
    if ArrowToPostgresBinaryEncoder is None or tuple(frame.columns) != table.names:
        return None
    schema = frame.schema
    if any(_BINARY.get(c.type) != schema[c.name] for c in table.columns):
        return None
    arrow = frame.to_arrow()
    batches = arrow.to_batches(max_chunksize=ENCODE_ROWS)
    try:
        enc = ArrowToPostgresBinaryEncoder(arrow.schema)
        first = enc.write_header() + (enc.write_batch(batches[0]) if batches else b"")
    except Exception as exc:  # an Arrow layout it does not know: CSV, which always works
        log.debug("postgres: binary COPY unavailable for %s (%s): CSV", table.name, exc)
        return None
    return _slices(enc, first, batches[1:])


def _slices(enc: Any, first: bytes, rest: list[Any]) -> Iterator[bytes]:
    yield first
    for b in rest:
        time.sleep(HANDOFF_S)  # pgpq holds the GIL: the event loop's turn between slices
        yield enc.write_batch(b)
    yield enc.finish()

"""The store's tables, their columns and the versioned migrations that create them.

Tables are described once, in backend-neutral types, and each backend renders the DDL in its
dialect; that is what lets DuckDB and PostgreSQL pass one test suite. Rows travel as polars frames
whose dtypes follow from the same description (:func:`frame_schema`).

Time columns are ``TIMESTAMPTZ`` in UTC (microseconds: both databases' resolution), so journal
queries can bucket by minute or month in SQL. Tables with a ``key`` are current-state tables
(the latest row per key wins: an order's newest status, a trade once it is closed); the others
are append-only logs. ``hypertable`` names the time column that partitions a table on
TimescaleDB.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

TYPES = ("text", "float", "int", "bool", "ts", "json", "uuid", "date")

_DTYPES: dict[str, pl.DataType] = {
    "text": pl.String(),
    "float": pl.Float64(),
    "int": pl.Int64(),
    "bool": pl.Boolean(),
    "ts": pl.Datetime("us", "UTC"),
    "json": pl.String(),
    "uuid": pl.String(),
    "date": pl.Date(),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True  # a NULL in a non-nullable column is a bad row, rejected by the writer

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"column {self.name}: unknown type {self.type!r} (one of {TYPES})")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()  # primary key: rows with the same key replace each other
    hypertable: str | None = None  # time column to partition by on TimescaleDB
    ticks: bool = False  # high-volume market data: first to go when the buffer overflows
    # facts that never change once written (fills): a repeat of the key is dropped, and a
    # repeat with different content is refused (CRITICAL), never replacing the first
    immutable: tuple[str, ...] = ()  # the columns that must match for a repeat to be the same

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


def frame_schema(table: Table) -> dict[str, pl.DataType]:
    """The polars schema of ``table``'s rows."""
    return {c.name: _DTYPES[c.type] for c in table.columns}


def _c(spec: str) -> tuple[Column, ...]:
    """Columns from a compact ``name:type[!]`` list (``!`` = NOT NULL)."""
    out = []
    for item in spec.split():
        name, _, typ = item.partition(":")
        out.append(Column(name, typ.rstrip("!"), nullable=not typ.endswith("!")))
    return tuple(out)


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "strategies",
            _c(
                "id:uuid! name:text! type:text! underlying:text thesis:text target_theta:float "
                "max_drawdown:float created_at:ts!"
            ),
            key=("id",),
        ),
        Table(
            "positions",
            _c(
                "id:text! strategy_id:uuid strategy:text! underlying:text! quantity:float! "
                "status:text! credit:float realized_pnl:float opened_at:ts! closed_at:ts "
                "note:text updated_at:ts!"
            ),
            key=("id",),
        ),
        Table(
            "legs",
            _c(
                "position_id:text! leg:int! contract:text! root:text! underlying:text! "
                "expiry:date! strike:float! put_call:text! ratio:int! quantity:float! "
                "avg_price:float updated_at:ts!"
            ),
            key=("position_id", "leg"),
        ),
        Table(
            "orders",
            _c(
                "client_id:text! ts:ts! position_id:text status:text! side:text! quantity:int! "
                "filled_qty:float! avg_price:float order_type:text! limit_price:float "
                "legs:json! broker_id:text reason:text"
            ),
            key=("client_id",),
        ),
        Table(
            "fills",
            _c(
                "fill_id:text! ts:ts! client_id:text! position_id:text contract:text! "
                "side:text! quantity:float! price:float! multiplier:float! commission:float! "
                "cash_flow:float!"
            ),
            key=("fill_id",),
            immutable=("client_id", "contract", "side", "quantity", "price"),
        ),
        Table(
            "trade_logs",
            _c(
                "position_id:text! strategy_id:uuid strategy:text! underlying:text! "
                "opened_at:ts! closed_at:ts status:text! quantity:float! dte:int "
                "entry_price:float exit_price:float entry_iv:float exit_iv:float "
                "entry_delta:float exit_delta:float entry_spot:float exit_spot:float "
                "entry_vix:float exit_vix:float entry_regime:text exit_regime:text "
                "credit:float realized_pnl:float commissions:float"
            ),
            key=("position_id",),
        ),
        Table(
            "quotes",
            _c(
                "ts:ts! contract:text! underlying:text! bid:float ask:float bid_size:float "
                "ask_size:float price:float iv:float delta:float gamma:float theta:float "
                "vega:float"
            ),
            hypertable="ts",
            ticks=True,
        ),
        Table(
            "risk_snapshots",
            _c(
                "ts:ts! position_id:text underlying:text spot:float delta:float gamma:float "
                "theta:float vega:float pnl:float vix:float regime:text"
            ),
            hypertable="ts",
        ),
        Table(
            "alerts",
            _c(
                "desk:text! seq:int! triggered_at:ts! severity:text! rule:text! "
                "position_id:text message:text! inputs:json acknowledged:bool! acked_at:ts "
                "acked_by:text"
            ),
            key=("desk", "seq"),
        ),
        Table(
            "audit",
            _c("ts:ts! kind:text! what:text position_id:text message:text record:json!"),
            hypertable="ts",
        ),
        Table("state", _c("key:text! doc:json! updated_at:ts!"), key=("key",)),
    )
}


@dataclass(frozen=True)
class Migration:
    """One schema step. ``statements(dialect)`` gives the SQL for ``duckdb`` or ``postgres``."""

    version: int
    description: str
    statements: Callable[[str], list[str]]


_SQL_TYPES = {
    "duckdb": {"text": "VARCHAR", "float": "DOUBLE", "int": "BIGINT", "bool": "BOOLEAN",
               "ts": "TIMESTAMPTZ", "json": "JSON", "uuid": "UUID", "date": "DATE"},
    "postgres": {"text": "text", "float": "double precision", "int": "bigint",
                 "bool": "boolean", "ts": "timestamptz", "json": "jsonb", "uuid": "uuid",
                 "date": "date"},
}  # fmt: skip


def create_table(table: Table, dialect: str) -> str:
    types = _SQL_TYPES[dialect]
    cols = [f"{c.name} {types[c.type]}{'' if c.nullable else ' NOT NULL'}" for c in table.columns]
    if table.key:
        cols.append(f"PRIMARY KEY ({', '.join(table.key)})")
    return f"CREATE TABLE IF NOT EXISTS {table.name} ({', '.join(cols)})"


def _initial(dialect: str) -> list[str]:
    return [create_table(t, dialect) for t in TABLES.values()]


def _indexes(dialect: str) -> list[str]:
    """The journal's and replay's lookups on PostgreSQL: ticks by contract and time, snapshots
    by time. DuckDB gets none: its zone maps serve range scans, and an ART index would cut its
    bulk insert rate several times over."""
    if dialect == "duckdb":
        return []
    return [
        "CREATE INDEX IF NOT EXISTS quotes_contract_ts ON quotes (contract, ts)",
        "CREATE INDEX IF NOT EXISTS risk_snapshots_ts ON risk_snapshots (ts)",
        "CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts)",
        "CREATE INDEX IF NOT EXISTS fills_client ON fills (client_id)",
    ]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "tables: strategies … audit, and the state documents", _initial),
    Migration(2, "indexes for tick replay and the journal", _indexes),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

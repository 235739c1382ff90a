"""PostgreSQL ingest by binary COPY (pgpq: Arrow -> PostgreSQL's binary format), CSV otherwise.

Binary COPY is about twice CSV (the server parses no text), so tick tables go in that way; tables
with JSON or UUID columns, whose binary forms are not their text, keep CSV. Both must store the
same rows, NULLs included, and a store without pgpq must still write."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from conftest import fresh_database

from kit.store import TABLES, open_store
from kit.store import postgres as pgstore
from kit.store.pgserver import LocalPostgres
from kit.store.schema import frame_schema

QUOTES = TABLES["quotes"]


def _quotes() -> pl.DataFrame:
    """Option quotes with Greeks and an SPX tick whose option columns are NULL."""
    t0 = datetime(2024, 3, 12, 14, 0, tzinfo=UTC)
    rows = {
        "ts": [t0, t0.replace(second=1), t0.replace(second=2)],
        "contract": ["SPXW240315P04900000", "SPX", "SPXW240315C05100000"],
        "underlying": ["SPX", "SPX", "SPX"],
        "bid": [1.25, None, 0.05],
        "ask": [1.35, None, 0.10],
        "bid_size": [10.0, None, 0.0],
        "ask_size": [12.0, None, 7.0],
        "price": [None, 5012.37, None],
        "iv": [0.1412345678901234, None, 0.2],
        "delta": [-0.12, None, 0.03],
        "gamma": [0.001, None, 1e-300],
        "theta": [-1.5, None, -0.01],
        "vega": [0.4, None, 0.02],
    }
    return pl.DataFrame(rows, schema=frame_schema(QUOTES))


def _stored(url: str, frame: pl.DataFrame) -> pl.DataFrame:
    store = open_store(url)
    try:
        assert store.write([("quotes", frame)]) == frame.height
        return store.query("SELECT * FROM quotes ORDER BY ts")
    finally:
        store.close()


def test_tick_tables_go_in_binary_and_come_back_exactly(pg_server: LocalPostgres) -> None:
    frame = _quotes()
    assert pgstore._binary(QUOTES, frame) is not None  # the binary path is the one taken
    got = _stored(fresh_database(pg_server), frame)
    assert got.select(frame.columns).rows() == frame.rows()


def test_json_tables_and_a_store_without_pgpq_use_csv(
    pg_server: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts = pl.DataFrame(schema=frame_schema(TABLES["alerts"]))
    assert pgstore._binary(TABLES["alerts"], alerts) is None  # JSON column: CSV
    assert pgstore._binary(QUOTES, _quotes().select(list(reversed(QUOTES.names)))) is None
    monkeypatch.setattr(pgstore, "ArrowToPostgresBinaryEncoder", None)
    frame = _quotes()
    assert pgstore._binary(QUOTES, frame) is None
    got = _stored(fresh_database(pg_server), frame)
    assert got.select(frame.columns).rows() == frame.rows()

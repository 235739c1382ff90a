"""PostgreSQL ingest by binary COPY (pgpq: Arrow -> PostgreSQL's binary format), CSV otherwise.

Binary COPY is about twice CSV (the server parses no text), so tick tables go in that way; tables
with JSON or UUID columns, whose binary forms are not their text, keep CSV. Both must store the
same rows, NULLs included, and a store without pgpq must still write."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from conftest import fresh_database
from pgpq import ArrowToPostgresBinaryEncoder

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


def test_a_batch_goes_to_the_server_slice_by_slice(
    pg_server: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slices of ENCODE_ROWS rows are encoded and sent one at a time (no joined copy of the
    batch, which held the GIL 8 ms per 100k rows); every row still arrives, in order."""
    monkeypatch.setattr(pgstore, "ENCODE_ROWS", 2)
    frame = pl.concat([_quotes()] * 3).with_columns(
        pl.col("ts").dt.offset_by((pl.int_range(0, 9) * 10).cast(pl.String) + "s")
    )
    parts = list(pgstore._binary(QUOTES, frame) or [])
    slices = frame.to_arrow().to_batches(max_chunksize=2)
    assert len(slices) >= 5 and len(parts) == len(slices) + 1  # + the trailer
    enc = ArrowToPostgresBinaryEncoder(frame.to_arrow().schema)  # the whole batch in one call
    whole = enc.write_header() + enc.write_batch(frame.to_arrow().combine_chunks().to_batches()[0])
    assert b"".join(parts) == whole + enc.finish()
    got = _stored(fresh_database(pg_server), frame)
    assert got.select(frame.columns).rows() == frame.rows()


def test_an_encoder_refusing_the_layout_falls_back_to_csv(
    pg_server: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Refusing:
        def __init__(self, schema: object) -> None:
            pass

        def write_header(self) -> bytes:
            raise ValueError("unsupported Arrow type")

    monkeypatch.setattr(pgstore, "ArrowToPostgresBinaryEncoder", Refusing)
    frame = _quotes()
    assert pgstore._binary(QUOTES, frame) is None
    got = _stored(fresh_database(pg_server), frame)
    assert got.select(frame.columns).rows() == frame.rows()

"""The writer's two ways from tuples to frames (kit/store/frames.py) give the same frames.

The Arrow path is the fast one for text/number/time tables; the reference path is the one the
rejection rules were written against. Both are run on the same rows here: equal frames, the
same rows rejected with the same reasons, order kept across chunks that fall back. No database:
``_build`` is what runs in the writer's worker thread before ``Store.write``."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import kit.store.writer as writer_module
from kit.store.base import StoreUnavailableError
from kit.store.duck import DuckDBStore
from kit.store.frames import arrow_spec
from kit.store.schema import TABLES
from kit.store.threads import worker_pool
from kit.store.writer import StoreWriter, WriterConfig

T0 = 1_710_250_000_000_000_000
QUOTES, FILLS, SNAPS = TABLES["quotes"], TABLES["fills"], TABLES["risk_snapshots"]


def quote(i: int) -> tuple:
    if i % 7 == 3:  # an underlying tick: the option columns NULL
        return (T0 + i * 1_001, "SPX", "SPX", *[None] * 4, 5000.0 + i, *[None] * 5)
    iv = math.nan if i % 11 == 5 else np.float64(0.2 + i * 1e-4)  # NaN: stored as NULL
    return (T0 + i * 1_001, f"SPXW240312C0{5000 + i % 50}000", "SPX", 1.0 + i / 100,
            1.1 + i / 100, 10, 12.0, None, iv, np.float64(0.3), 0.01, -0.5, 0.1)  # fmt: skip


def build(tmp_path, table, rows, *, arrow: bool, monkeypatch, chunk_rows: int = 64):
    w = StoreWriter(DuckDBStore(tmp_path / "never-opened.duckdb"),
                    WriterConfig(spool_dir=None, chunk_rows=chunk_rows))  # fmt: skip
    if not arrow:
        monkeypatch.setattr(writer_module, "arrow_spec", lambda name: None)
    out = w._build([(table, list(rows))])
    monkeypatch.undo()
    return (out[0][1] if out else None), w.stats["rejected"]


def test_which_tables_take_the_arrow_path():
    assert arrow_spec("quotes") and arrow_spec("fills") and arrow_spec("risk_snapshots")
    for name in ("orders", "alerts", "audit", "state", "legs", "strategies"):  # json/uuid/date
        assert arrow_spec(name) is None, name


@pytest.mark.parametrize("table", [QUOTES, SNAPS, FILLS])
def test_the_arrow_path_gives_the_reference_frames(tmp_path, monkeypatch, table):
    if table is QUOTES:
        rows = [quote(i) for i in range(300)]
    elif table is SNAPS:
        rows = [(T0 + i, None if i % 3 else "p1", "SPX", 5000.0, 1.0, math.nan, -2.0, 3.0,
                 None, 14.0, "calm") for i in range(200)]  # fmt: skip
    else:
        rows = [(f"f{i}", T0 + i, "c1", None, "SPXW240312C05100000", "sell", 1, 2.5, 100.0,
                 0.65, 249.35) for i in range(100)]  # fmt: skip
    fast, r1 = build(tmp_path, table, rows, arrow=True, monkeypatch=monkeypatch)
    ref, r2 = build(tmp_path, table, rows, arrow=False, monkeypatch=monkeypatch)
    assert r1 == r2 == 0
    assert_frame_equal(fast, ref)
    assert fast.height == len(rows)
    if table is QUOTES:
        assert fast["iv"].null_count() == sum(1 for i in range(300) if i % 11 == 5 or i % 7 == 3)
        assert fast["ts"].dtype == pl.Datetime("us", "UTC")


def test_bad_values_are_rejected_as_before_and_order_is_kept(tmp_path, monkeypatch, caplog):
    rows = [quote(i) for i in range(400)]
    rows[70] = (*rows[70][:3], "1.05", *rows[70][4:])  # a string for a number: Arrow refuses
    rows[200] = (T0 + 0.5, *rows[200][1:])  # a float time: Arrow would truncate it, polars not
    rows[330] = (*rows[330][:3], True, *rows[330][4:])  # a bool for a number: both take it
    rows[331] = (rows[331][0], None, *rows[331][2:])  # NULL in a required column
    caplog.set_level(logging.WARNING, logger="kit.store.writer")
    fast, r1 = build(tmp_path, QUOTES, rows, arrow=True, monkeypatch=monkeypatch)
    reasons = sorted(r.getMessage().split(": ", 1)[1].split(" (e.g.")[0] for r in caplog.records)
    caplog.clear()
    ref, r2 = build(tmp_path, QUOTES, rows, arrow=False, monkeypatch=monkeypatch)
    assert r1 == r2 == 3
    assert reasons == sorted(r.getMessage().split(": ", 1)[1].split(" (e.g.")[0]
                             for r in caplog.records)  # fmt: skip
    assert_frame_equal(fast, ref)
    assert fast.height == 397
    keep = [r for k, r in enumerate(rows) if k not in (70, 200, 331)]
    assert fast["ts"].dt.epoch("us").to_list() == [r[0] // 1_000 for r in keep]
    assert fast["bid"][328] == 1.0  # the bool, as the reference path reads it


def test_rows_trimmed_to_nothing_build_nothing(tmp_path, monkeypatch):
    frame, rejected = build(tmp_path, QUOTES, [], arrow=True, monkeypatch=monkeypatch)
    assert frame is None and rejected == 0


class GatedStore(DuckDBStore):
    """A DuckDB store whose writes each wait for the test's go, and the first ``fail`` of them
    then find the database unavailable: the test decides what is in flight when."""

    def __init__(self, path, fail: int) -> None:
        super().__init__(path)
        self.fail = fail
        self.started: list[int] = []  # rows per write call, as each starts
        self.gates = [threading.Event() for _ in range(10)]

    def write(self, batches):
        k = len(self.started)
        self.started.append(sum(f.height for _, f in batches))
        assert self.gates[k].wait(10), f"write {k} was never let go"
        if k < self.fail:
            raise StoreUnavailableError("down for the test")
        return super().write(batches)


async def test_the_next_batch_is_converted_during_a_write_and_kept_through_an_outage(
    tmp_path, monkeypatch
):
    store = GatedStore(tmp_path / "desk.duckdb", fail=2)
    store.migrate()
    w = StoreWriter(store, WriterConfig(spool_dir=None, flush_s=0.01, retry_s=(0.01,)))
    built: list[int] = []
    frame = w._frame
    monkeypatch.setattr(w, "_frame", lambda t, rows: built.append(len(rows)) or frame(t, rows))
    durable: list[str] = []

    async def until(n: int, seen: list[int] = store.started) -> None:
        for _ in range(500):  # polled: the writes and conversions run in worker threads
            if len(seen) >= n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{n} expected, {len(seen)} seen")

    async def put(name: str, first: int) -> None:
        for i in range(first, first + 10):
            assert w.put("quotes", quote(i))
        w.when_durable(lambda: durable.append(name))

    await w.start()
    await put("A", 0)
    await until(1)  # A is in the database: B arrives
    await put("B", 10)
    store.gates[0].set()  # A fails
    await until(2)  # A again, and B is converted while A is in the database
    await until(2, built)
    await put("C", 20)
    store.gates[1].set()  # A fails again: B's conversion is kept
    for k in range(2, 5):
        await until(k + 1)
        store.gates[k].set()
    await w.close()
    assert store.started == [10] * 5 and built == [10, 10, 10]  # each batch converted once
    assert durable == ["A", "B", "C"] and w.stats["written"] == 30 and w.buffered == 0
    ts = store.query("SELECT ts FROM quotes ORDER BY ts")["ts"].dt.epoch("us").to_list()
    assert ts == [quote(i)[0] // 1_000 for i in range(30)]
    store.close()


def test_the_writer_threads_yield_the_cpu_to_the_event_loop():
    def priority() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = priority()
    pool = worker_pool("test-store", 1, WriterConfig().worker_nice)
    try:
        assert pool.submit(priority).result(5) == min(19, base + WriterConfig().worker_nice)
    finally:
        pool.shutdown()
    assert priority() == base  # the calling thread keeps its priority


def test_numpy_integers_in_a_time_column_read_as_the_reference_path(tmp_path, monkeypatch):
    """Only plain ``int`` values keep Arrow's reading; NumPy integers (or a mix) in a time or
    int column are read again strictly, per chunk, and give the reference path's frame."""
    rows = [(f"f{i}", np.int64(T0 + i) if i % 3 else T0 + i, "c1", None, "SPXW240312C05100000",
             "sell", np.int32(2) if i % 5 == 0 else 1, 2.5, 100.0, 0.65, 249.35)
            for i in range(150)]  # fmt: skip
    fast, r1 = build(tmp_path, FILLS, rows, arrow=True, monkeypatch=monkeypatch)
    ref, r2 = build(tmp_path, FILLS, rows, arrow=False, monkeypatch=monkeypatch)
    assert r1 == r2 == 0
    assert_frame_equal(fast, ref)
    assert fast["ts"].dt.epoch("us").to_list() == [(T0 + i) // 1_000 for i in range(150)]


async def test_rows_arriving_during_a_write_are_converted_before_it_ends(tmp_path, monkeypatch):
    """A write already in the database when a table fills ``batch_rows`` does not wait to be
    over: the new rows are cut and converted beside it (before this, conversion and insert
    took turns whenever the rows came after the write had started)."""
    store = GatedStore(tmp_path / "desk.duckdb", fail=0)
    store.migrate()
    w = StoreWriter(store, WriterConfig(spool_dir=None, flush_s=0.01, batch_rows=20))
    built: list[int] = []
    frame = w._frame
    monkeypatch.setattr(w, "_frame", lambda t, rows: built.append(len(rows)) or frame(t, rows))
    await w.start()
    for i in range(5):
        w.put("quotes", quote(i))
    for _ in range(500):
        if store.started:
            break
        await asyncio.sleep(0.01)
    assert store.started == [5]  # the first batch is in the database, held there
    for i in range(5, 30):  # 25 rows: the table passes batch_rows while the write is held
        w.put("quotes", quote(i))
    for _ in range(500):
        if len(built) == 2:
            break
        await asyncio.sleep(0.01)
    assert built == [5, 25] and store.started == [5]  # converted, the first write still held
    for gate in store.gates:
        gate.set()
    await w.close()
    assert store.started == [5, 25] and built == [5, 25] and w.stats["written"] == 30
    store.close()

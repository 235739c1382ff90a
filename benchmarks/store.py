"""Store ingest: bulk writes and sustained writes through the StoreWriter, with event-loop stall.

Two backends: a DuckDB file in a temporary directory, and a real PostgreSQL server started for
the run (``LocalPostgres``: fsync off, as in the tests; TimescaleDB if installed). The rows are
``quotes`` rows as the recorder makes them: about 400 OCC contracts (SPXW, two expiries, 101
strikes, puts and calls) with bid/ask/sizes, IV and Greeks, plus one SPX tick in 20 (price only,
the other columns NULL), times in ns.

1. Bulk ingest: ``Store.write`` of pre-built 10k-row polars frames, one transaction each, over
   500k rows. DuckDB's row-at-a-time ``executemany`` on 2k rows is shown for comparison.
2. Sustained ingest through ``StoreWriter`` (default config) inside an asyncio loop. A producer
   task offers rows at a fixed rate (1M rows/s for DuckDB, 250k rows/s for PostgreSQL, both
   above the targets), ``put`` in bursts of at most 1,000 rows (about 0.3 ms of loop time) with
   ``await asyncio.sleep(0)`` between bursts. When the writer holds more than 200k unwritten
   rows the producer sheds the burst instead of putting it (a bound on memory and on the drain
   at close; the writer itself would drop the oldest ticks at 2M), so the writer stays
   saturated and its figure is its capacity, not the offered rate. After the run the writer is
   closed; rows/s = rows written / time from the first put until ``close`` returned.
   A probe task meanwhile loops ``t = now; await asyncio.sleep(0.001)`` and records the lag
   beyond 1 ms. The producer's own bursts are in that lag too, so the same probe is run for a
   baseline (the producer alone, putting into a sink that does what ``put`` does and lets the
   rows go) and for a writer whose store discards the frames (the writer's row → frame
   conversion without a database); the difference to the baseline is the stall the writer
   causes. The rows are put from a pre-built pool of 200k tuples, so the producer's cost is
   ``put`` alone (a desk also builds each tuple).

3. The anchor (issue 27), in the same process and the same DuckDB file, interleaved with the
   writer runs: a bare Arrow insert (``INSERT INTO quotes SELECT * FROM`` a registered Arrow
   table) of the same rows, pre-built as 10k-row Arrow tables, one transaction each: what any
   writer must at least pay the database. Each pair runs the writer first and the anchor
   second with as many rows as that writer run wrote (the pool over again): DuckDB's insert
   slows as the table grows, and an anchor of 200k rows against a writer run of 1.5M compared
   an empty table's rate with a full one's. ``duckdb_rows_per_s_ratio`` is writer / bare, the
   median of the pairs, repeated until it is stable (spread printed).

Tables are emptied before each phase. Targets (printed, never an exit status): the writer
>= 70% of the bare Arrow insert into DuckDB (>= 700k rows/s on a quiet machine), >= 200k rows/s
into PostgreSQL, loop-stall p99 < 3 ms; the spec asks for 1M records a day (12 rows/s on
average). Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from kit.core.model import Contract
from kit.core.symbology import to_occ
from kit.store import Store
from kit.store.attach import open_desk_store
from kit.store.pgserver import LocalPostgres
from kit.store.schema import TABLES, Table, frame_schema
from kit.store.writer import StoreWriter, WriterConfig

sys.path.insert(0, str(Path(__file__).parent))  # _stable, also when loaded by file path
from _stable import load, paired, verdict

QUOTES = TABLES["quotes"]
FRAME_ROWS = 10_000
BURST = 1_000  # rows put per loop turn
CAP = 200_000  # unwritten rows above which the producer sheds its bursts
TS0 = 1_710_252_000_000_000_000  # 2024-03-12 14:00 UTC in ns
TARGETS = {"duckdb": 700_000.0, "postgres": 200_000.0}
RATIO_TARGET = 0.70  # writer / bare Arrow insert into the same DuckDB file
OFFERED = {"duckdb": 2_000_000.0, "postgres": 400_000.0, "null": 1_000_000.0}
STALL_TARGET_MS = 3.0


def contracts() -> list[Contract]:
    expiries = (date(2024, 3, 15), date(2024, 3, 22))
    strikes = np.arange(4500.0, 5501.0, 10.0)
    return [Contract("SPXW", e, float(k), r) for e in expiries for k in strikes for r in "PC"]


def quote_frame(n: int, seed: int = 0) -> pl.DataFrame:
    """n quote rows in the store's schema: option quotes with Greeks and 1 in 20 SPX ticks."""
    rng = np.random.default_rng(seed)
    chain = contracts()
    occ = np.array([to_occ(c, padded=False) for c in chain], dtype=object)
    strike = np.array([c.strike for c in chain])
    call = np.array([c.is_call for c in chain])
    pick = rng.integers(0, len(chain), n)
    tick = rng.random(n) < 0.05
    spot = 5000.0 + np.cumsum(rng.normal(0.0, 0.3, n))
    k, is_call = strike[pick], call[pick]
    m = spot - k
    intrinsic = np.where(is_call, np.maximum(m, 0.0), np.maximum(-m, 0.0))
    mid = intrinsic + 30.0 * np.exp(-np.abs(m) / 60.0) + 0.10
    half = np.maximum(0.05, 0.01 * mid)
    x = m / 60.0
    d_call = 1.0 / (1.0 + np.exp(-1.7 * x))

    def opt(values: np.ndarray) -> pl.Series:
        return pl.Series(np.where(tick, np.nan, values)).fill_nan(None)

    ts = TS0 + np.cumsum(rng.integers(1_000, 50_000, n))
    return pl.DataFrame(
        {
            "ts": pl.Series(ts // 1_000).cast(pl.Datetime("us", "UTC")),
            "contract": np.where(tick, "SPX", occ[pick]).astype(str),
            "underlying": np.full(n, "SPX"),
            "bid": opt(np.round(mid - half, 2)),
            "ask": opt(np.round(mid + half, 2)),
            "bid_size": opt(rng.integers(1, 500, n).astype(float)),
            "ask_size": opt(rng.integers(1, 500, n).astype(float)),
            "price": pl.Series(np.where(tick, np.round(spot, 2), np.nan)).fill_nan(None),
            "iv": opt(0.13 + 0.0004 * np.abs(k - 5000.0) / 10.0),
            "delta": opt(np.where(is_call, d_call, d_call - 1.0)),
            "gamma": opt(0.004 * np.exp(-(x**2))),
            "theta": opt(-8.0 * np.exp(-(x**2)) - 0.05),
            "vega": opt(5.0 * np.exp(-(x**2)) + 0.01),
        },
        schema=frame_schema(QUOTES),
    )


def row_pool(frame: pl.DataFrame) -> list[tuple[Any, ...]]:
    """The frame as the tuples the recorder puts (times as int ns)."""
    return frame.with_columns(pl.col("ts").dt.epoch("ns")).rows()


class NullStore(Store):
    """A store that accepts every batch and keeps nothing: the writer without a database."""

    dialect = "duckdb"

    def __init__(self) -> None:
        super().__init__("null://")

    def _execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        pass

    def _fetch(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        return pl.DataFrame()

    def _write(self, batches: Sequence[tuple[Table, pl.DataFrame]]) -> None:
        pass

    def close(self) -> None:
        pass


class Sink:
    """The baseline's writer: ``put`` does what ``StoreWriter.put`` does (check the width,
    append, count); the buffer is let go every CAP rows, as if written at once."""

    def __init__(self) -> None:
        self.stats = {"put": 0}
        self._width = len(QUOTES.columns)
        self._buf: list[tuple[Any, ...]] = []

    def put(self, table: str, row: tuple[Any, ...]) -> bool:
        if table != QUOTES.name or len(row) != self._width:
            return False
        self._buf.append(row)
        self.stats["put"] += 1
        if len(self._buf) >= CAP:
            self._buf = []
        return True

    @property
    def buffered(self) -> int:
        return len(self._buf)


# --- 1. bulk ---


def bulk(store: Store, frames: list[pl.DataFrame]) -> float:
    """rows/s of ``store.write`` of each frame in its own transaction."""
    store.execute("TRUNCATE quotes")
    t0 = time.perf_counter()
    n = sum(store.write([("quotes", f)]) for f in frames)
    dt = time.perf_counter() - t0
    got = store.count("quotes")
    if got != n:
        raise SystemExit(f"bulk: wrote {n} rows, the table holds {got}")
    return n / dt


def duck_executemany(store: Store, frame: pl.DataFrame) -> float:
    """rows/s of DuckDB ``executemany`` (one INSERT per row, one transaction)."""
    rows = frame.rows()
    con = store.con  # type: ignore[attr-defined]
    sql = f"INSERT INTO quotes VALUES ({', '.join('?' * len(QUOTES.columns))})"
    with store.lock:
        t0 = time.perf_counter()
        con.execute("BEGIN")
        con.executemany(sql, rows)
        con.execute("COMMIT")
        return len(rows) / (time.perf_counter() - t0)


def arrow_tables(pool: list[tuple[Any, ...]], rows: int = FRAME_ROWS) -> list[pa.Table]:
    """The anchor's input: the pool's rows as ready-made Arrow tables of the quotes schema."""
    frame = pl.DataFrame(pool, schema=frame_schema(QUOTES) | {"ts": pl.Int64}, orient="row")
    frame = frame.with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")).dt.cast_time_unit("us"))
    return [frame.slice(i, rows).to_arrow() for i in range(0, frame.height, rows)]


def bare_arrow(store: Store, tables: list[pa.Table], rows: int | None = None) -> float:
    """rows/s of the anchor: each Arrow table inserted as is, one transaction each, into the
    emptied table; ``rows`` of them (the tables over again, the last one cut), else each once.
    DuckDB's rate falls as the table grows (on one file: 1.13-1.24M rows/s for 200k rows,
    0.73-0.76M for 1.6M), so the anchor inserts as many rows as the writer run it is paired
    with wrote."""
    store.execute("TRUNCATE quotes")
    con = store.con  # type: ignore[attr-defined]
    left = sum(t.num_rows for t in tables) if rows is None else rows
    with store.lock:
        t0 = time.perf_counter()
        n = 0
        while left > 0:
            t = tables[n % len(tables)].slice(0, left)
            con.register("kit_bare", t)
            con.execute("INSERT INTO quotes SELECT * FROM kit_bare").fetchall()
            con.unregister("kit_bare")
            left -= t.num_rows
            n += 1
        dt = time.perf_counter() - t0
    return con.execute("SELECT count(*) FROM quotes").fetchone()[0] / dt


# --- 2. sustained through the writer ---


async def probe(done: asyncio.Event, lags: list[float]) -> None:
    """Lag of a 1 ms sleep beyond 1 ms, until ``done``."""
    while not done.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - t - 0.001)


async def produce(
    writer: StoreWriter | Sink,
    pool: list[tuple[Any, ...]],
    rate: float,
    seconds: float,
    cap: int | None,
) -> dict[str, float]:
    """Every millisecond, put the rows due at ``rate`` in bursts of at most BURST rows (the loop
    is free between ticks, as a desk's is between feed frames); shed a burst instead when the
    writer holds ``cap`` unwritten rows."""
    put = writer.put
    offered = shed = i = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        due = int(rate * elapsed) - offered
        while due > 0:
            n = min(due, BURST)
            due -= n
            offered += n
            if cap is not None and writer.buffered >= cap:
                shed += n
            else:
                if i + n > len(pool):
                    i = 0
                for row in pool[i : i + n]:
                    put("quotes", row)
                i += n
            if due > 0:
                await asyncio.sleep(0)
        await asyncio.sleep(0.001)
    return {"offered": offered, "shed": shed, "seconds": time.perf_counter() - t0}


def _ms(lags: list[float]) -> dict[str, float]:
    a = np.maximum(np.array(lags), 0.0) * 1e3
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max()), "n": len(a)}  # fmt: skip


async def sustained(store: Store | None, pool: list[tuple[Any, ...]], rate: float,
                    seconds: float) -> dict[str, Any]:  # fmt: skip
    """One run: producer + probe for ``seconds``, then close the writer. ``store`` None: the
    baseline, rows put into a :class:`Sink` (nothing converted or written)."""
    if store is None:
        sink = Sink()
        done, lags = asyncio.Event(), []
        probing = asyncio.create_task(probe(done, lags))
        prod = await produce(sink, pool, rate, seconds, None)
        done.set()
        await probing
        return {
            "offered_per_s": prod["offered"] / prod["seconds"],
            "shed": prod["shed"],
            "stall_ms": _ms(lags),
            "put_per_s": sink.stats["put"] / prod["seconds"],
        }
    writer = StoreWriter(store, WriterConfig(spool_dir=None))
    if not isinstance(store, NullStore):
        store.execute("TRUNCATE quotes")
    await writer.start()
    done, lags = asyncio.Event(), []
    probing = asyncio.create_task(probe(done, lags))
    t0 = time.perf_counter()
    prod = await produce(writer, pool, rate, seconds, CAP)
    done.set()
    await probing
    out: dict[str, Any] = {"offered_per_s": prod["offered"] / prod["seconds"],
                           "shed": prod["shed"], "stall_ms": _ms(lags)}  # fmt: skip
    await writer.close()
    elapsed = time.perf_counter() - t0
    s = writer.stats
    out |= {"written": s["written"], "put": s["put"], "batches": s["batches"],
            "dropped": s["dropped"], "rejected": s["rejected"], "elapsed_s": elapsed,
            "rows_per_s": s["written"] / elapsed}  # fmt: skip
    if not isinstance(store, NullStore):
        got = store.count("quotes")
        if got != s["written"] or s["written"] != s["put"]:
            raise SystemExit(f"writer: put {s['put']}, written {s['written']}, table {got}")
    return out


# --- report ---


def mark(ok: bool) -> str:
    return "ok" if ok else "MISS"


def show_run(name: str, r: dict[str, Any], target: float | None) -> None:
    st = r["stall_ms"]
    if "rows_per_s" in r:
        tgt = f"(target >= {target:,.0f}: {mark(r['rows_per_s'] >= target)})" if target else ""
        print(f"  {name:<28} {r['rows_per_s']:>12,.0f} rows/s written  {tgt}")
        print(f"  {'':<28} offered {r['offered_per_s']:,.0f}/s, shed {r['shed']:,}, "
              f"{r['written']:,} rows in {r['batches']} batches, {r['elapsed_s']:.2f} s "
              "to close")  # fmt: skip
    else:
        print(f"  {name:<28} {r['put_per_s']:>12,.0f} rows/s put (nothing written)")
    print(f"  {'':<28} loop stall p50 {st['p50']:.3f} ms  p99 {st['p99']:.3f} ms  "
          f"max {st['max']:.3f} ms  ({st['n']:,} probes)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="200k bulk rows, 2 s writer runs")
    p.add_argument("--seconds", type=float, default=None, help="length of each writer run")
    args = p.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 3.0)
    bulk_rows = 200_000 if args.quick else 500_000
    logging.basicConfig(level=logging.WARNING)

    t_start = time.perf_counter()
    frame = quote_frame(bulk_rows)
    frames = [frame.slice(i, FRAME_ROWS) for i in range(0, bulk_rows, FRAME_ROWS)]
    pool = row_pool(quote_frame(200_000, seed=1))
    gc.freeze()  # as `kit run` does once started: long-lived objects leave the collector's scans
    tables = arrow_tables(pool)
    print(f"{load()} (other processes skew every figure, the ratios less)")
    print(f"store benchmark: {len(contracts())} contracts, bulk {bulk_rows:,} rows in "
          f"{FRAME_ROWS:,}-row frames; writer runs of {seconds:g} s, bursts of {BURST:,} rows, "
          f"shed above {CAP:,} unwritten")  # fmt: skip
    out: dict[str, Any] = {}
    runs: dict[str, dict[str, Any]] = {}

    runs["baseline"] = asyncio.run(sustained(None, pool, OFFERED["null"], seconds))
    runs["null"] = asyncio.run(sustained(NullStore(), pool, OFFERED["null"], seconds))

    with tempfile.TemporaryDirectory(prefix="kit-bench-") as tmp:
        store = open_desk_store(Path(tmp) / "bench.duckdb")  # as a desk opens it
        try:
            out["duckdb_bulk_rows_per_s"] = bulk(store, frames)
            store.execute("TRUNCATE quotes")
            out["duckdb_executemany_rows_per_s"] = duck_executemany(store, frame.head(2_000))
            duck_runs: list[dict[str, Any]] = []

            def writer_run() -> float:
                duck_runs.append(asyncio.run(sustained(store, pool, OFFERED["duckdb"], seconds)))
                return duck_runs[-1]["rows_per_s"]

            def bare_run() -> float:  # as many rows as the writer run just before it wrote
                return bare_arrow(store, tables, duck_runs[-1]["written"])

            duck, bare, ratio = paired(writer_run, bare_run, min_runs=3, max_runs=7, tol=0.05,
                                       code_first=True)  # fmt: skip
            # the run whose figure is the median stands for the writer (its stall included)
            runs["duckdb"] = min(duck_runs, key=lambda r: abs(r["rows_per_s"] - duck.median))
            runs["duckdb"]["rows_per_s"] = duck.median
        finally:
            store.close()

    with LocalPostgres() as pg:
        store = open_desk_store(pg.url)
        try:
            timescale = store.timescale
            out["postgres_bulk_rows_per_s"] = bulk(store, frames)
            runs["postgres"] = asyncio.run(sustained(store, pool, OFFERED["postgres"], seconds))
        finally:
            store.close()

    print("\n1. bulk Store.write of 10k-row frames")
    for name in ("duckdb", "postgres"):
        v = out[f"{name}_bulk_rows_per_s"]
        print(f"  {name:<28} {v:>12,.0f} rows/s")
    print(f"  {'duckdb executemany (2k rows)':<28} "
          f"{out['duckdb_executemany_rows_per_s']:>12,.0f} rows/s")  # fmt: skip
    kind = "TimescaleDB hypertable" if timescale else "plain table"
    print("\n0. ratio first: the writer vs a bare Arrow insert into the same DuckDB file")
    print(f"  writer / bare  {ratio.show('.3f')}")
    print(f"  writer rows/s  {duck.show()}")
    print(f"  bare rows/s    {bare.show()}")
    print(f"\n2. sustained through StoreWriter (PostgreSQL: {kind})")
    show_run("baseline: producer only", runs["baseline"], None)
    show_run("writer -> null store", runs["null"], None)
    show_run("writer -> duckdb", runs["duckdb"], TARGETS["duckdb"])
    show_run("writer -> postgres", runs["postgres"], TARGETS["postgres"])

    backends = ("duckdb", "postgres")
    stall = {k: max(runs[b]["stall_ms"][k] for b in backends) for k in ("p50", "p99", "max")}
    day = 1_000_000 / 86_400
    print(f"\n  loop stall p99 (worst backend) {stall['p99']:.3f} ms")
    slowest = min(runs[b]["rows_per_s"] for b in backends)
    print(f"  spec: 1M records/day = {day:.1f} rows/s on average; slowest backend "
          f"{slowest / day:,.0f}x that")  # fmt: skip
    print(f"  total {time.perf_counter() - t_start:.1f} s\n")
    pg = runs["postgres"]["rows_per_s"]
    print(verdict(f"duckdb writer >= {RATIO_TARGET:.0%} of bare Arrow insert",
                  ratio.median >= RATIO_TARGET,
                  f"ratio {ratio.median:.3f}, {duck.median:,.0f} rows/s (quiet machine: "
                  f">= {TARGETS['duckdb']:,.0f})"))  # fmt: skip
    print(verdict(f"postgres >= {TARGETS['postgres']:,.0f} rows/s", pg >= TARGETS["postgres"],
                  f"{pg:,.0f} rows/s"))  # fmt: skip
    print(verdict(f"loop stall p99 < {STALL_TARGET_MS:g} ms", stall["p99"] < STALL_TARGET_MS,
                  f"{stall['p99']:.3f} ms (baseline producer alone "
                  f"{runs['baseline']['stall_ms']['p99']:.3f} ms)"))  # fmt: skip

    out |= {
        "duckdb_rows_per_s": runs["duckdb"]["rows_per_s"],
        "postgres_rows_per_s": runs["postgres"]["rows_per_s"],
        "loop_stall_p99_ms": stall["p99"],
        "loop_stall_p50_ms": stall["p50"],
        "loop_stall_max_ms": stall["max"],
        "null_writer_rows_per_s": runs["null"]["rows_per_s"],
        "duckdb_bare_arrow_rows_per_s": bare.median,
        "duckdb_rows_per_s_ratio": ratio.median,
        "duckdb_rows_per_s_ratio_spread_pct": ratio.spread_pct,
        "duckdb_ratio_runs": len(ratio.values),
    }
    for name, r in runs.items():
        for k in ("p50", "p99", "max"):
            out[f"{name}_stall_{k}_ms"] = r["stall_ms"][k]
    print(json.dumps({k: round(v, 4) for k, v in out.items()}))


if __name__ == "__main__":
    main()

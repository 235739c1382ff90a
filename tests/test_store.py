"""The store on both backends: schema and migrations, batch writes, the writer's validation,
outages and spool, state documents, and the desk recorded and restored.

Every test taking ``db_url`` runs twice: on a DuckDB file and on a fresh database of a real
PostgreSQL server started by the tests (see conftest)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from helpers import duckdb_locked

from kit.core.clock import SimClock
from kit.core.model import Alert, Severity
from kit.engine.alerts import AlertManager
from kit.engine.desk import Desk
from kit.store import SCHEMA_VERSION, TABLES, StoreError, open_store, store_target
from kit.store.attach import DeskStore
from kit.store.base import StoreUnavailableError, placeholders
from kit.store.pgserver import LocalPostgres
from kit.store.schema import frame_schema
from kit.store.writer import StoreWriter, WriterConfig

T0 = 1_710_250_000_000_000_000  # 2024-03-12 13:26:40 UTC, in ns


def quote(i: int, contract: str = "SPXW240312C05100000") -> tuple:
    return (T0 + i * 1_000_000, contract, "SPX", 1.0 + i * 0.01, 1.1 + i * 0.01, 10.0, 12.0,
            None, 0.2, 0.3, 0.01, -0.5, 0.1)  # fmt: skip


def fill(fid: str, price: float = 2.5) -> tuple:
    return (fid, T0, "c1", "p1", "SPXW240312C05100000", "sell", 1.0, price, 100.0, 1.3, 248.7)


async def until(done, seconds: float = 5.0) -> None:
    """Let the writer work (real time: its retries are real) until ``done()`` or the limit."""
    for _ in range(int(seconds / 0.02)):
        if done():
            return
        await asyncio.sleep(0.02)


def writer(store, **kw) -> StoreWriter:
    cfg = {"spool_dir": None, "flush_s": 0.05, "retry_s": (0.05,), **kw}
    return StoreWriter(store, WriterConfig(**cfg))


# --- schema ---


def test_migrations_create_every_table_once(db_url):
    with open_store(db_url) as store:
        assert store.version() == SCHEMA_VERSION
        for name in TABLES:
            assert store.count(name) == 0
        store.migrate()  # idempotent
        versions = store.query("SELECT version FROM schema_version ORDER BY version")
        assert versions["version"].to_list() == list(range(1, SCHEMA_VERSION + 1))


def test_a_database_from_a_newer_kit_is_refused(db_url):
    with open_store(db_url) as store:
        store.execute("INSERT INTO schema_version VALUES (:v, 'future', :t)",
                      {"v": SCHEMA_VERSION + 1, "t": datetime.now(UTC)})  # fmt: skip
    with pytest.raises(StoreError, match="newer than this kit"):
        open_store(db_url)


def test_the_target_comes_from_the_argument_the_environment_or_the_default():
    assert store_target("x.duckdb", {}) == "x.duckdb"
    assert store_target(None, {"DB_CONNECTION_STRING": "postgresql://a@b/c"}).startswith("postgres")
    assert store_target(None, {"KIT_DB_URL": "k", "DB_CONNECTION_STRING": "d"}) == "k"
    assert store_target(None, {}) == "data/desk.duckdb"


def test_placeholders_leave_casts_and_literals_alone():
    sql = "SELECT x::text, '10:11:12' FROM t WHERE a = :a AND b LIKE '5%'"
    assert placeholders(sql, "dollar") == sql.replace(":a ", "$a ")
    assert "%(a)s" in placeholders(sql, "pyformat") and "'5%%'" in placeholders(sql, "pyformat")


# --- writes ---


def test_keyed_tables_keep_the_last_row_per_key(db_url):
    with open_store(db_url) as store:
        schema = frame_schema(TABLES["state"])
        ts = datetime(2024, 3, 12, tzinfo=UTC)
        first = pl.DataFrame({"key": ["a", "b"], "doc": ['{"v": 1}', '{"v": 1}'],
                              "updated_at": [ts, ts]}, schema=schema)  # fmt: skip
        again = pl.DataFrame({"key": ["a", "a"], "doc": ['{"v": 2}', '{"v": 3}'],
                              "updated_at": [ts, ts]}, schema=schema)  # fmt: skip
        assert store.write([("state", first)]) == 2
        store.write([("state", again)])
        assert store.count("state") == 2
        assert store.load_state("a") == {"v": 3} and store.load_state("b") == {"v": 1}
        assert store.load_state("missing") is None


def test_a_fill_id_is_written_once_and_a_different_repeat_is_refused(db_url, caplog):
    """Fills are facts: a resent fill is a no-op, and one that reuses an id with other content
    (buy 1 turned sell 9) is refused and logged CRITICAL, never replacing the first."""
    ts = datetime(2024, 3, 12, 15, tzinfo=UTC)

    def fill(fill_id: str, side: str, qty: float, price: float) -> pl.DataFrame:
        return pl.DataFrame({
            "fill_id": [fill_id], "ts": [ts], "client_id": ["S1.open/P"], "position_id": ["S1"],
            "contract": ["SPXW240312P05000000"], "side": [side], "quantity": [qty],
            "price": [price], "multiplier": [100.0], "commission": [0.65], "cash_flow": [-1.0],
        }, schema=frame_schema(TABLES["fills"]))  # fmt: skip

    caplog.set_level(logging.CRITICAL, logger="kit.store.base")
    with open_store(db_url) as store:
        assert store.write([("fills", fill("f1", "buy", 1.0, 2.10))]) == 1
        assert store.write([("fills", fill("f1", "buy", 1.0, 2.10))]) == 0  # the same: no-op
        assert not caplog.records
        assert store.write([("fills", fill("f1", "sell", 9.0, 2.10))]) == 0
        rows = store.query("SELECT side, quantity FROM fills WHERE fill_id = 'f1'")
        assert rows.rows() == [("buy", 1.0)]
        (critical,) = caplog.records
        assert "fills f1 was already recorded with different content" in critical.getMessage()
        # within one batch too: the first stands, the different repeat is refused
        both = pl.concat([fill("f2", "buy", 1.0, 3.0), fill("f2", "sell", 9.0, 3.0)])
        assert store.write([("fills", both)]) == 1
        assert store.query("SELECT side FROM fills WHERE fill_id = 'f2'").rows() == [("buy",)]
        assert len(caplog.records) == 2


async def test_the_writer_batches_rows_and_a_close_writes_everything(db_url):
    store = open_store(db_url)
    w = writer(store, batch_rows=1000)
    await w.start()
    for i in range(5000):
        assert w.put("quotes", quote(i))
    w.put("fills", fill("f1"))
    w.put("alerts", ("desk", 1, T0, "WARNING", "delta", "p1", "delta high", {"delta": 0.2},
                     False, None, None))  # fmt: skip
    await w.close()
    assert w.stats["written"] == 5002 and w.buffered == 0
    q = store.query("SELECT * FROM quotes ORDER BY ts")
    assert q.height == 5000
    assert q["ts"][0] == datetime.fromtimestamp(T0 / 1e9, UTC)
    assert q["bid"][4999] == pytest.approx(1.0 + 4999 * 0.01) and q["price"].null_count() == 5000
    a = store.query("SELECT * FROM alerts")
    assert json.loads(a["inputs"][0]) == {"delta": 0.2} and a["acknowledged"][0] is False
    store.close()


async def test_bad_rows_are_rejected_with_a_logged_reason_and_the_rest_written(db_url, caplog):
    store = open_store(db_url)
    w = writer(store)
    await w.start()
    caplog.set_level(logging.WARNING, "kit.store.writer")
    w.put("fills", fill("good"))
    w.put("fills", fill("nan-price", math.nan))  # NaN in a required number
    w.put("fills", fill("inf-price", math.inf))
    w.put("quotes", (*quote(1)[:3], "1.05", *quote(1)[4:]))  # a string for a number
    w.put("quotes", quote(2))
    assert not w.put("quotes", quote(3)[:5])  # wrong arity: refused at once
    assert not w.put("nonsense", (1,))
    await w.close()
    assert store.query("SELECT fill_id FROM fills")["fill_id"].to_list() == ["good"]
    assert store.count("quotes") == 1
    assert w.stats["rejected"] == 5
    text = caplog.text
    assert "NaN, infinity or NULL" in text and "TypeError" in text and "2 values" not in text
    assert "5 values for 13 columns" in text and "unknown table" in text
    store.close()


async def test_nan_in_an_optional_number_is_stored_as_null(db_url):
    store = open_store(db_url)
    w = writer(store)
    await w.start()
    row = list(quote(0))
    row[8] = math.nan  # iv not computed yet
    w.put("quotes", tuple(row))
    await w.close()
    assert store.query("SELECT iv FROM quotes")["iv"].to_list() == [None]
    store.close()


async def test_state_documents_survive_reopening(db_url, tmp_path):
    from kit.store.recorder import StoreStateStore

    store = open_store(db_url)
    w = writer(store)
    await w.start()
    state = StoreStateStore(w, lambda: T0, "desk.")
    state.save("broker", {"orders": [1, 2]})
    assert state.load("broker") == {"orders": [1, 2]}  # read your own write before the flush
    state.save("broker", {"orders": [1, 2, 3]})
    await w.close()
    store.close()
    with open_store(db_url) as again:
        reopened = StoreStateStore(writer(again), lambda: T0, "desk.")
        assert reopened.load("broker") == {"orders": [1, 2, 3]}
        assert reopened.load("manager") is None


def test_ticks_older_than_the_retention_are_pruned(db_url):
    with open_store(db_url) as store:
        rows = [quote(i * 60_000) for i in range(10)]  # one a minute
        frame = pl.DataFrame([dict(zip(TABLES["quotes"].names, r, strict=True)) for r in rows])
        frame = frame.with_columns(pl.from_epoch("ts", "ns").dt.replace_time_zone("UTC")
                                   .dt.cast_time_unit("us"))  # fmt: skip
        store.write([("quotes", frame)])
        cut = datetime.fromtimestamp(T0 / 1e9, UTC) + timedelta(minutes=5)
        assert store.prune_ticks(cut) == 5
        assert store.count("quotes") == 5 and store.prune_ticks(cut) == 0


def test_any_table_exports_to_parquet(db_url, tmp_path):
    with open_store(db_url) as store:
        frame = pl.DataFrame([dict(zip(TABLES["fills"].names, fill(f"f{i}"), strict=True))
                              for i in range(3)])  # fmt: skip
        frame = frame.with_columns(pl.from_epoch("ts", "ns").dt.replace_time_zone("UTC")
                                   .dt.cast_time_unit("us"))  # fmt: skip
        store.write([("fills", frame)])
        path = tmp_path / "out" / "fills.parquet"
        assert store.export_parquet("fills", path) == 3
        back = pl.read_parquet(path)
        assert back["fill_id"].sort().to_list() == ["f0", "f1", "f2"]
        assert back["cash_flow"].sum() == pytest.approx(3 * 248.7)


# --- outages ---


async def test_a_postgres_outage_keeps_rows_and_writes_them_when_it_returns(tmp_path):
    alerts: list[tuple[Severity, str]] = []
    with LocalPostgres() as pg:
        store = open_store(pg.url)
        w = StoreWriter(store, WriterConfig(spool_dir=None, flush_s=0.05, retry_s=(0.05,)),
                        on_alert=lambda s, m: alerts.append((s, m)))  # fmt: skip
        await w.start()
        w.put("fills", fill("before"))
        await w.flush()
        pg.stop()
        for i in range(300):
            w.put("quotes", quote(i))
        w.put("fills", fill("during"))
        await until(lambda: not w.available)
        assert not w.available and w.buffered == 301
        assert alerts and alerts[0][0] is Severity.CRITICAL and "unavailable" in alerts[0][1]
        with pytest.raises(StoreUnavailableError):
            await w.flush()
        pg.start()
        await until(lambda: w.available and not w.buffered)
        assert w.available and w.buffered == 0
        assert alerts[-1][0] is Severity.INFO and "available again" in alerts[-1][1]
        assert store.count("quotes") == 300
        assert sorted(store.query("SELECT fill_id FROM fills")["fill_id"]) == ["before", "during"]
        await w.close()
        store.close()


async def test_a_duckdb_file_locked_by_another_process_is_an_outage(tmp_path):
    path = tmp_path / "desk.duckdb"
    open_store(path).close()
    with duckdb_locked(path):
        store = open_store(path, migrate=False)
        w = writer(store)
        await w.start()
        w.put("fills", fill("while-locked"))
        await until(lambda: not w.available)
        assert not w.available and w.buffered == 1
    await until(lambda: w.available and not w.buffered)
    await w.close()
    assert store.query("SELECT fill_id FROM fills")["fill_id"].to_list() == ["while-locked"]
    store.close()


async def test_a_full_buffer_drops_the_oldest_ticks_never_journal_rows(tmp_path):
    alerts: list[tuple[Severity, str]] = []
    with LocalPostgres() as pg:
        store = open_store(pg.url)
        pg.stop()
        w = StoreWriter(store, WriterConfig(spool_dir=None, flush_s=0.02, retry_s=(0.05,),
                                            max_rows=1000, warn_fraction=0.5),
                        on_alert=lambda s, m: alerts.append((s, m)))  # fmt: skip
        await w.start()
        for i in range(600):
            w.put("quotes", quote(i))
        await asyncio.sleep(0.1)
        assert any("ticks are dropped when full" in m for _, m in alerts)
        for i in range(100):
            w.put("fills", fill(f"f{i}"))
        for i in range(600, 1500):
            w.put("quotes", quote(i))
        await asyncio.sleep(0.1)
        assert w.stats["dropped"] == 600 and w.buffered == 1000
        assert any("dropped the 600 oldest ticks" in m for _, m in alerts)
        pg.start()
        await w.close()
        assert store.count("fills") == 100 and store.count("quotes") == 900
        kept = store.query("SELECT min(bid) AS b FROM quotes")["b"][0]
        assert kept == pytest.approx(1.0 + 600 * 0.01)  # the newest ticks were kept
        store.close()


async def test_closing_during_an_outage_spools_rows_that_the_next_start_writes(tmp_path):
    spool = tmp_path / "spool"
    with LocalPostgres() as pg:
        store = open_store(pg.url)
        cfg = WriterConfig(spool_dir=str(spool), flush_s=0.02, retry_s=(0.05,),
                           close_timeout_s=0.3)  # fmt: skip
        w = StoreWriter(store, cfg)
        await w.start()
        pg.stop()
        for i in range(50):
            w.put("quotes", quote(i))
        w.put("fills", fill("spooled"))
        await w.close()
        assert w.stats["spooled"] == 51 and sorted(p.name.rsplit("-", 1)[1]
                                                   for p in spool.glob("*.parquet")) == [
            "fills.parquet", "quotes.parquet"]  # fmt: skip
        pg.start()
        again = StoreWriter(store, cfg)
        await again.start()
        await again.close()
        assert store.count("quotes") == 50 and store.count("fills") == 1
        assert not list(spool.glob("*.parquet"))
        store.close()


# --- the desk recorded and restored ---


async def test_a_desk_restores_acknowledgements_switches_and_alert_memory(db_url):
    start = datetime(2024, 3, 12, 14, 0, tzinfo=UTC)
    clock = SimClock(start)
    desk = Desk(clock, alerts=AlertManager(clock))
    kept = DeskStore.open(desk, db_url)
    assert not kept.restored
    await kept.start()
    alert = Alert(clock.now_ns(), Severity.WARNING, "delta", "delta high", "p1", {"d": 0.2})
    (record,) = desk.alerts.offer([alert], {None, "p1"})
    desk.set_auto_manage(True)
    desk.acknowledge(record.seq, "trader")
    kept.recorder.save_state()
    await kept.close()

    clock2 = SimClock(start + timedelta(seconds=5))
    desk2 = Desk(clock2, alerts=AlertManager(clock2))
    kept2 = DeskStore.open(desk2, db_url)
    assert kept2.restored and desk2.auto_manage and not desk2.killed
    acked = desk2.alerts.history[record.seq - desk2.alerts.history[0].seq]
    assert acked.acked_by == "trader" and acked.alert.message == "delta high"
    assert desk2.alerts.unacknowledged() == []
    assert desk2.alerts.offer([alert], {None, "p1"}) == []  # still active: not re-fired
    new = desk2.notify(Severity.INFO, "desk", "after restart")
    assert new.seq > record.seq  # numbering carries on
    await kept2.close()
    with open_store(db_url) as store:
        rows = store.query("SELECT seq, acknowledged, acked_by FROM alerts ORDER BY seq")
        assert rows.filter(pl.col("seq") == record.seq)["acked_by"].to_list() == ["trader"]


async def test_tick_retention_prunes_on_the_desk_clock(tmp_path, monkeypatch):
    from kit.store.attach import tick_retention

    path = tmp_path / "desk.duckdb"
    with open_store(path) as store:
        frame = pl.DataFrame([dict(zip(TABLES["quotes"].names, quote(0), strict=True))])
        old = frame.with_columns(ts=pl.lit(datetime(2024, 3, 1, tzinfo=UTC)))
        new = frame.with_columns(ts=pl.lit(datetime(2024, 3, 11, tzinfo=UTC)))
        store.write([("quotes", pl.concat([old, new]).cast(frame_schema(TABLES["quotes"])))])
    monkeypatch.setenv("KIT_TICK_RETENTION_DAYS", "5")
    clock = SimClock(datetime(2024, 3, 12, 14, tzinfo=UTC))
    desk = Desk(clock, alerts=AlertManager(clock))
    kept = DeskStore.open(desk, path)
    assert kept.retention_days == 5.0
    await kept.start()
    await kept.close()
    with open_store(path) as store:  # 2024-03-01 is past 5 days before the desk's 2024-03-12
        assert store.query("SELECT ts FROM quotes")["ts"].dt.day().to_list() == [11]
    monkeypatch.setenv("KIT_TICK_RETENTION_DAYS", "a week")
    with pytest.raises(ValueError, match="number of days"):
        tick_retention()
    with pytest.raises(ValueError, match="positive"):
        tick_retention(-1)


def _kit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kit", *args], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_kit_db_info_export_and_prune(tmp_path):
    path = str(tmp_path / "desk.duckdb")
    with open_store(path) as store:
        frame = pl.DataFrame([dict(zip(TABLES["fills"].names, fill("f1"), strict=True))])
        store.write([("fills", frame.with_columns(ts=pl.lit(datetime(2024, 3, 12, tzinfo=UTC)))
                      .cast(frame_schema(TABLES["fills"])))])  # fmt: skip
    info = json.loads(_kit("db", "info", "--db", path).stdout)
    assert info["schema_version"] == SCHEMA_VERSION and info["rows"]["fills"] == 1
    out = tmp_path / "fills.parquet"
    assert json.loads(_kit("db", "export", "fills", str(out), "--db", path).stdout)["rows"] == 1
    assert pl.read_parquet(out)["fill_id"].to_list() == ["f1"]
    assert json.loads(_kit("db", "prune", "--days", "3", "--db", path).stdout)["deleted"] == 0
    bad = _kit("db", "export", "nope", "x.parquet", "--db", path)
    assert bad.returncode == 2 and "unknown table 'nope'" in bad.stderr
    assert "needs --days" in _kit("db", "prune", "--db", path).stderr
    down = _kit("run", "--auto", "--db", "postgresql://desk:secret@127.0.0.1:1/x")
    assert down.returncode == 2 and "Connection refused" in down.stderr
    assert "secret" not in down.stderr  # credentials never reach the logs


def test_a_recorded_day_holds_every_event_the_desk_printed(auto_day):
    lines, path = auto_day
    printed = lines[:-1]
    with open_store(path) as store:
        audit = store.query("SELECT kind, record FROM audit")
        assert audit.height == sum(r["kind"] != "alert" for r in printed)
        alerts = store.query("SELECT seq, rule, severity FROM alerts ORDER BY seq")
        assert alerts.rows() == [(r["seq"], r["rule"], r["severity"])
                                 for r in printed if r["kind"] == "alert"]  # fmt: skip
        last = {r["client_id"]: r["status"] for r in printed if r["kind"] == "order"}
        assert dict(store.query("SELECT client_id, status FROM orders").rows()) == last
        fills = store.query("SELECT fill_id, position_id, cash_flow FROM fills")
        assert fills.height == lines[-1]["fills"] and fills["position_id"].null_count() == 0
        assert round(fills["cash_flow"].sum(), 2) == lines[-1]["fills_cash"]
        (pid,) = set(fills["position_id"])
        pos = store.query("SELECT status, realized_pnl FROM positions WHERE id = :p", {"p": pid})
        assert pos.rows() == [("closed", lines[-1]["realized_pnl"])]
        legs = store.query("SELECT quantity FROM legs WHERE position_id = :p", {"p": pid})
        assert legs.height >= 2 and set(legs["quantity"]) == {0.0}  # flat at the close
        names = store.query("SELECT name, type FROM strategies").rows()
        assert names == [("spx-0dte-strangle", "STRANGLE")]
        snaps = store.query("SELECT count(*) AS n, count(DISTINCT ts) AS s FROM risk_snapshots "
                            "WHERE position_id IS NULL")  # fmt: skip
        assert snaps["n"][0] == snaps["s"][0] >= 6.5 * 3600 - 60  # one a second, open to close
        greeks = store.query("SELECT count(*) AS n, count(iv) AS iv, count(price) AS px "
                             "FROM quotes WHERE contract = 'SPX'")  # fmt: skip
        assert greeks["n"][0] > 10_000 and greeks["px"][0] == greeks["n"][0] and not greeks["iv"][0]
        assert store.query("SELECT count(iv) AS n FROM quotes WHERE bid IS NOT NULL")["n"][0] > 0
        assert store.load_state("desk.autopilot")["done"] is True


@pytest.mark.parametrize(
    "url", ["mysql://desk:hunter2@db.example/desk", "postgresql+psycopg://desk:hunter2@h/desk",
            "postgress://desk:hunter2@h/desk"],
)  # fmt: skip
def test_a_database_url_of_another_scheme_is_refused_without_its_password(url, tmp_path):
    with pytest.raises(StoreError, match="unsupported database URL scheme") as info:
        open_store(url)
    assert "hunter2" not in str(info.value)
    proc = subprocess.run([sys.executable, "-m", "kit", "db", "info", "--db", url],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "unsupported database URL scheme" in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no database, no folder named after the password


def test_kit_db_never_creates_the_database_it_was_asked_to_read(tmp_path):
    for action in (["info"], ["export", "fills", str(tmp_path / "f.parquet")], ["prune"]):
        proc = subprocess.run([sys.executable, "-m", "kit", "db", *action, "--days", "1",
                               "--db", "typo/desk.duckdb"] if action == ["prune"] else
                              [sys.executable, "-m", "kit", "db", *action, "--db",
                               "typo/desk.duckdb"],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
        assert proc.returncode == 2 and "no database at typo/desk.duckdb" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no folder, no empty database

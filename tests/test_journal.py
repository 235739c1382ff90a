"""The trade journal against hand-computed answers, on a DuckDB file and on a real PostgreSQL
server (the same SQL must serve both), the recorded auto day end to end, and the journal
notebook executed headlessly on that day and on an empty store.

The synthetic book (dollars, P&L net of commissions)::

    position  strategy      structure    opened (UTC)      closed (UTC)      dte credit    pnl
    p1        spx-strangle  STRANGLE     2024-01-10 15:00  2024-01-10 19:30    0    500    300
    p2        spx-strangle  STRANGLE     2024-01-25 15:00  2024-02-02 16:00    7    800   -400
    p3        ndx-condor    IRON_CONDOR  2024-02-05 14:30  2024-02-05 20:00    0    300    120
    p4        ndx-condor    IRON_CONDOR  2024-02-20 15:00  2024-03-01 15:00    7   1000    250
    p5        spx-strangle  STRANGLE     2024-03-04 15:00  (open)              0    600     50
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import nbformat
import polars as pl
import pytest
from nbclient import NotebookClient
from polars.testing import assert_frame_equal

from kit.store import Store, open_store
from kit.store import journal as j
from kit.store.recorder import strategy_uuid
from kit.store.schema import TABLES, frame_schema

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "journal.ipynb"
OPTION = "SPXW240119P04700000"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def frame(table: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Rows for ``table``: every column present (missing ones null), dtypes from the schema."""
    names = TABLES[table].names
    return pl.DataFrame([{n: r.get(n) for n in names} for r in rows],
                        schema=frame_schema(TABLES[table]), orient="row")  # fmt: skip


def trade(
    pid: str, name: str, structure: str, opened: str, closed: str | None, dte: int,
    credit: float, pnl: float, vix: tuple[float, float | None],
) -> dict[str, Any]:  # fmt: skip
    """A trade_logs row (one unit, multiplier 100); commissions are 1% of the credit."""
    exit_price = (credit - pnl - credit / 100) / 100 if closed else None
    return {
        "position_id": pid, "strategy_id": strategy_uuid(name), "strategy": structure,
        "underlying": "SPX" if name.startswith("spx") else "NDX", "opened_at": ts(opened),
        "closed_at": ts(closed) if closed else None, "status": "closed" if closed else "open",
        "quantity": 1.0, "dte": dte, "credit": credit, "realized_pnl": pnl,
        "commissions": credit / 100, "entry_vix": vix[0], "exit_vix": vix[1],
        "entry_regime": "low", "exit_regime": None if vix[1] is None else "medium",
        "entry_price": credit / 100, "exit_price": exit_price, "entry_iv": 0.15,
        "exit_iv": 0.16 if closed else None, "entry_delta": -0.01, "exit_delta": 0.02,
        "entry_spot": 4700.0, "exit_spot": 4710.0 if closed else None,
    }  # fmt: skip


TRADES = [
    trade("p1", "spx-strangle", "STRANGLE", "2024-01-10 15:00", "2024-01-10 19:30", 0, 500.0,
          300.0, (14.0, 13.5)),
    trade("p2", "spx-strangle", "STRANGLE", "2024-01-25 15:00", "2024-02-02 16:00", 7, 800.0,
          -400.0, (18.0, 24.0)),
    trade("p3", "ndx-condor", "IRON_CONDOR", "2024-02-05 14:30", "2024-02-05 20:00", 0, 300.0,
          120.0, (15.0, 15.5)),
    trade("p4", "ndx-condor", "IRON_CONDOR", "2024-02-20 15:00", "2024-03-01 15:00", 7, 1000.0,
          250.0, (16.5, 17.0)),
    trade("p5", "spx-strangle", "STRANGLE", "2024-03-04 15:00", None, 0, 600.0, 50.0,
          (20.0, None)),
]  # fmt: skip
STRATEGIES = [
    {"id": strategy_uuid(name), "name": name, "type": kind, "underlying": u,
     "created_at": ts("2024-01-01 00:00")}
    for name, kind, u in (("spx-strangle", "STRANGLE", "SPX"), ("ndx-condor", "IRON_CONDOR", "NDX"))
]  # fmt: skip


def quote(at: str, contract: str, bid: float | None = None, ask: float | None = None,
          price: float | None = None) -> dict[str, Any]:  # fmt: skip
    underlying = "SPX" if contract.startswith("SPX") else contract
    return {"ts": ts(at), "contract": contract, "underlying": underlying, "bid": bid,
            "ask": ask, "price": price}  # fmt: skip


# Out of time order on purpose: open and close must come from the timestamps.
QUOTES = [
    quote("2024-01-19 14:30:40", "SPX", price=4699.0),
    quote("2024-01-19 14:30:05", "SPX", price=4700.0),
    quote("2024-01-19 14:30:59.999999", "SPX", price=4701.0),
    quote("2024-01-19 14:30:20", "SPX", price=4702.5),
    quote("2024-01-19 14:31:00", "SPX", price=4701.5),
    quote("2024-01-19 14:33:30", "SPX", price=4704.0),
    quote("2024-01-19 14:33:10", "SPX", price=4705.0),
    quote("2024-01-19 14:30:10", "VIX", price=13.2),  # another underlying: not in SPX's bars
    quote("2024-01-19 14:30:50", OPTION, bid=1.8, ask=2.0),
    quote("2024-01-19 14:30:10", OPTION, bid=2.0, ask=2.2),
    quote("2024-01-19 14:30:30", OPTION, bid=2.4, ask=2.6),
    quote("2024-01-19 14:30:55", OPTION, price=9.99),  # a trade print: not a mid, left out
    quote("2024-01-19 14:31:15", OPTION, bid=2.0, ask=2.0),
    quote("2024-01-19 14:30:15", "SPXW240119C04800000", bid=1.0, ask=1.2),  # another option
]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with open_store(db_url) as s:
        s.write([("strategies", frame("strategies", STRATEGIES)),
                 ("trade_logs", frame("trade_logs", TRADES)),
                 ("quotes", frame("quotes", QUOTES))])  # fmt: skip
        yield s


@pytest.fixture
def empty(db_url: str) -> Iterator[Store]:
    with open_store(db_url) as s:
        yield s


# --- trades ---


def test_trades_are_oldest_first_with_names_and_vix(store: Store) -> None:
    t = j.trades(store)
    assert t.schema == j.TRADE_SCHEMA
    assert t["position_id"].to_list() == ["p1", "p2", "p3", "p4", "p5"]
    assert t["strategy"].to_list() == ["spx-strangle"] * 2 + ["ndx-condor"] * 2 + ["spx-strangle"]
    assert t["structure"].to_list()[2] == "IRON_CONDOR"
    assert t["win"].to_list() == [True, False, True, True, None]  # open: not scored
    assert t["holding_min"].to_list()[:3] == [270.0, 8 * 24 * 60 + 60, 330.0]
    assert t["holding_min"][4] is None
    assert t["vix_change"].to_list() == [-0.5, 6.0, 0.5, 0.5, None]  # exit - entry, points
    assert t["entry_regime"][0] == "low" and t["exit_regime"][1] == "medium"
    assert t["commissions"].to_list() == [5.0, 8.0, 3.0, 10.0, 6.0]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"strategy": "ndx-condor"}, ["p3", "p4"]),
        ({"strategy": "STRANGLE"}, ["p1", "p2", "p5"]),  # the structure matches too
        ({"start": date(2024, 2, 1)}, ["p3", "p4", "p5"]),
        ({"end": date(2024, 2, 5)}, ["p1", "p2", "p3"]),  # a date includes its whole day
        ({"start": ts("2024-02-05 14:30"), "end": ts("2024-02-20 15:00")}, ["p3"]),  # [start, end)
        ({"start": datetime(2024, 2, 5, 14, 30)}, ["p3", "p4", "p5"]),  # naive means UTC
        ({"strategy": "spx-strangle", "start": date(2024, 1, 20), "end": date(2024, 3, 31)},
         ["p2", "p5"]),
        ({"strategy": "nothing"}, []),
    ],
)  # fmt: skip
def test_trade_filters(store: Store, filters: dict[str, Any], expected: list[str]) -> None:
    assert j.trades(store, **filters)["position_id"].to_list() == expected


def test_a_trade_without_a_strategy_row_is_named_by_its_structure(store: Store) -> None:
    orphan = {**TRADES[0], "position_id": "p0", "strategy_id": None, "strategy": "PUT_SPREAD"}
    store.write([("trade_logs", frame("trade_logs", [orphan]))])
    t = j.trades(store, strategy="PUT_SPREAD")
    assert t["strategy"].to_list() == ["PUT_SPREAD"]
    assert "PUT_SPREAD" in j.strategy_names(store)


# --- aggregates ---


def test_summary(store: Store) -> None:
    s = j.summary(store).row(0, named=True)
    assert s == {
        "trades": 4, "open": 1, "wins": 3, "win_rate": 0.75, "avg_credit": 650.0,
        "total_pnl": 270.0, "avg_pnl": 67.5, "best_pnl": 300.0, "worst_pnl": -400.0,
        "commissions": 26.0,
    }  # fmt: skip
    text = j.summary_text(j.summary(store))
    assert "trades: 4 closed, 1 open" in text
    assert "win rate: 75% (3 of 4)" in text
    assert "$270.00 total" in text and "worst trade: -$400.00" in text
    condor = j.summary(store, strategy="ndx-condor").row(0, named=True)
    assert (condor["trades"], condor["win_rate"], condor["total_pnl"]) == (2, 1.0, 370.0)


def test_pnl_by_strategy(store: Store) -> None:
    expected = pl.DataFrame(
        {
            "strategy": ["ndx-condor", "spx-strangle"],
            "trades": [2, 2],
            "wins": [2, 1],
            "win_rate": [1.0, 0.5],
            "total_pnl": [370.0, -100.0],
            "avg_pnl": [185.0, -50.0],
            "avg_credit": [650.0, 650.0],
        }
    )
    assert_frame_equal(j.pnl_by(store, "strategy"), expected)


def test_pnl_by_month_of_close(store: Store) -> None:
    by = j.pnl_by(store, "month")  # p2 opened in January but closed in February
    assert by["month"].to_list() == [date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)]
    assert by["trades"].to_list() == [1, 2, 1]
    assert by["wins"].to_list() == [1, 1, 1]
    assert by["win_rate"].to_list() == [1.0, 0.5, 1.0]
    assert by["total_pnl"].to_list() == [300.0, -280.0, 250.0]
    assert by["avg_pnl"].to_list() == [300.0, -140.0, 250.0]
    assert by["avg_credit"].to_list() == [500.0, 550.0, 1000.0]


def test_pnl_by_dte(store: Store) -> None:
    by = j.pnl_by(store, "dte")
    assert by.rows() == [(0, 2, 2, 1.0, 420.0, 210.0, 400.0), (7, 2, 1, 0.5, -150.0, -75.0, 900.0)]
    assert j.pnl_by(store, "dte", strategy="ndx-condor")["total_pnl"].to_list() == [120.0, 250.0]


def test_equity_curve(store: Store) -> None:
    curve = j.equity_curve(store)
    assert curve.schema == j.EQUITY_SCHEMA
    assert curve["position_id"].to_list() == ["p1", "p2", "p3", "p4"]  # by close; p5 is open
    assert curve["closed_at"][1] == ts("2024-02-02 16:00")
    assert curve["equity"].to_list() == [300.0, -100.0, 20.0, 270.0]
    assert curve["drawdown"].to_list() == [0.0, -400.0, -280.0, -30.0]
    spx = j.equity_curve(store, strategy="spx-strangle")
    assert spx["equity"].to_list() == [300.0, -100.0]


def test_an_empty_store_gives_typed_empty_frames(empty: Store) -> None:
    assert j.trades(empty).schema == j.TRADE_SCHEMA and j.trades(empty).height == 0
    assert j.equity_curve(empty).schema == j.EQUITY_SCHEMA
    assert j.minute_bars(empty, "SPX").schema == j.BAR_SCHEMA
    for by in j.BY:
        assert j.pnl_by(empty, by).height == 0
    assert j.pnl_by(empty, "month").schema["month"] == pl.Date()
    s = j.summary(empty)
    assert s.schema == j.SUMMARY_SCHEMA
    assert s.row(0, named=True)["trades"] == 0 and s["total_pnl"][0] is None
    assert j.summary_text(s).startswith(j.NO_TRADES)
    assert j.summary_text(s, filtered=True) == "No trades match these filters."
    assert j.strategy_names(empty) == []


# --- minute bars ---


def test_minute_bars_of_an_underlying(store: Store) -> None:
    bars = j.minute_bars(store, "SPX")
    assert bars.schema == j.BAR_SCHEMA
    assert bars.rows() == [
        (ts("2024-01-19 14:30"), 4700.0, 4702.5, 4699.0, 4701.0, 4),
        (ts("2024-01-19 14:31"), 4701.5, 4701.5, 4701.5, 4701.5, 1),
        (ts("2024-01-19 14:33"), 4705.0, 4705.0, 4704.0, 4704.0, 2),  # no ticks, no 14:32 bar
    ]


def test_minute_bars_of_an_option_use_the_mid(store: Store) -> None:
    bars = j.minute_bars(store, OPTION)
    assert bars["minute"].to_list() == [ts("2024-01-19 14:30"), ts("2024-01-19 14:31")]
    assert bars.drop("minute", "ticks").rows() == [
        pytest.approx((2.1, 2.5, 1.9, 1.9)),  # the 9.99 print is not a mid: not in the bar
        pytest.approx((2.0, 2.0, 2.0, 2.0)),
    ]
    assert bars["ticks"].to_list() == [3, 1]


def test_minute_bars_within_a_time_range(store: Store) -> None:
    bars = j.minute_bars(store, "SPX", start=ts("2024-01-19 14:31"), end=ts("2024-01-19 14:33:20"))
    assert bars.rows() == [
        (ts("2024-01-19 14:31"), 4701.5, 4701.5, 4701.5, 4701.5, 1),
        (ts("2024-01-19 14:33"), 4705.0, 4705.0, 4705.0, 4705.0, 1),
    ]
    assert j.minute_bars(store, "SPX", start=date(2024, 1, 20)).height == 0
    assert j.minute_bars(store, "NDX").height == 0


# --- bad arguments ---


def test_bad_arguments_are_clear_value_errors(store: Store) -> None:
    with pytest.raises(ValueError, match=r"by must be one of .*strategy.*month.*dte.*'week'"):
        j.pnl_by(store, "week")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty time range"):
        j.trades(store, start=date(2024, 3, 1), end=date(2024, 2, 1))
    with pytest.raises(ValueError, match="start must be a date or datetime, not str"):
        j.summary(store, start="2024-01-01")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="end must be a date or datetime"):
        j.minute_bars(store, "SPX", end=1705000000)  # type: ignore[arg-type]


# --- Parquet export ---


def test_export_parquet_round_trips_with_uuids_as_text(store: Store, tmp_path: Path) -> None:
    """``query`` returns UUIDs as text on both backends; the Parquet file does too (DuckDB's
    own ``COPY … (FORMAT parquet)`` would write 16-byte UUIDs, read back as binary)."""
    path = tmp_path / "out" / "trade_logs.parquet"
    assert store.export_parquet("trade_logs", path) == len(TRADES)
    assert_frame_equal(pl.read_parquet(path).sort("position_id"), frame("trade_logs", TRADES))


def test_export_parquet_keeps_the_schema_of_an_all_null_column(
    empty: Store, tmp_path: Path
) -> None:
    """A column with no values yet (no trade has an exit IV) should still export as its
    schema's type. PostgresStore builds frames from Python values, so such a column comes back
    typed ``Null`` from ``query`` unless result types come from the column types."""
    rows = [{**t, "exit_iv": None} for t in TRADES]
    empty.write([("trade_logs", frame("trade_logs", rows))])
    path = tmp_path / "trade_logs.parquet"
    empty.export_parquet("trade_logs", path)
    assert pl.read_parquet_schema(path)["exit_iv"] == pl.Float64()


# --- the recorded auto day ---


def test_the_recorded_day_has_one_closed_spx_strangle(auto_day: tuple[list[dict], Path]) -> None:
    lines, db = auto_day
    summary = lines[-1]
    assert summary["kind"] == "summary"
    with open_store(db, read_only=True) as store:
        t = j.trades(store)
        bars = j.minute_bars(store, "SPX")
        stats = j.summary(store).row(0, named=True)
    assert t.height == 1
    row = t.row(0, named=True)
    assert (row["status"], row["structure"], row["underlying"]) == ("closed", "STRANGLE", "SPX")
    assert round(row["realized_pnl"], 2) == summary["realized_pnl"]
    assert round(row["commissions"], 2) == summary["commissions"]
    assert row["entry_vix"] is not None and row["exit_vix"] is not None
    assert row["win"] == (summary["realized_pnl"] > 0)
    assert stats["trades"] == 1 and round(stats["total_pnl"], 2) == summary["realized_pnl"]
    assert 385 <= bars.height <= 391  # one per minute of the 6.5-hour session
    assert (bars["ticks"] > 0).all() and (bars["low"] <= bars["high"]).all()


# --- the notebook ---


def run_notebook(db: Path, monkeypatch: pytest.MonkeyPatch, extra: str = "") -> Any:
    """Execute notebooks/journal.ipynb on ``db`` in a fresh kernel (it inherits the
    environment); ``extra`` is a cell appended for the test only."""
    monkeypatch.setenv("KIT_DB_URL", str(db))
    monkeypatch.delenv("DB_CONNECTION_STRING", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    if extra:
        nb.cells.append(nbformat.v4.new_code_cell(extra))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO)}}).execute()  # fmt: skip
    return nb


def stdout(nb: Any) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs if o.output_type == "stream")  # fmt: skip


def errors(nb: Any) -> list[Any]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type == "error"]  # fmt: skip


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_on_the_recorded_day(
    auto_day: tuple[list[dict], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, db = auto_day
    with open_store(db, read_only=True) as store:  # closed before the kernel opens the file
        pid = j.trades(store)["position_id"][0]
    # After the notebook: what its widgets hold, then a filter change (observe → render).
    extra = """print("table:", trade_table.value)
print("equity points:", len(equity.x))
from datetime import date
start.value = date(2030, 1, 1)
print("filtered:", stats.value)
print("equity points after filter:", len(equity.x))"""
    nb = run_notebook(db, monkeypatch, extra)
    assert not errors(nb)
    out = stdout(nb)
    assert "trades: 1 closed, 0 open" in out
    pnl = lines[-1]["realized_pnl"]
    assert f"P&L: {'-' if pnl < 0 else ''}${abs(pnl):,.2f} total" in out
    table = out[out.index("table:") : out.index("equity points:")]
    assert pid in table and "STRANGLE" not in table  # named by its strategy, not the structure
    assert "equity points: 1\n" in out
    assert "filtered: <pre>No trades match these filters.</pre>" in out
    assert "equity points after filter: 0" in out


def test_notebook_on_an_empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "empty.duckdb"
    open_store(db).close()
    nb = run_notebook(db, monkeypatch)
    assert not errors(nb)
    assert j.NO_TRADES in stdout(nb)


def test_notebook_without_a_database_names_the_command_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Voila starts the kernel in notebooks/; with KIT_DATA_DIR pointing at an empty directory
    the page must say how to record a day and must not leave a new database file behind."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("KIT_DATA_DIR", str(data))
    monkeypatch.delenv("KIT_DB_URL", raising=False)
    monkeypatch.delenv("DB_CONNECTION_STRING", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()  # fmt: skip
    out = stdout(nb)
    assert not errors(nb)
    assert f"No database at {data / 'desk.duckdb'} yet" in out
    assert j.RECORD_COMMAND in out and j.NO_TRADES in out
    assert list(data.iterdir()) == []

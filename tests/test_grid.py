"""The backtest grid's file format, CLI, outputs and executors (in-process, process pool, Dask).

Numbers are checked against a reference in ``tests/test_grid_honesty.py``; here: what a user
types and reads, and that every way of sharding gives the same trades.
"""

from __future__ import annotations

import json
import math
import shutil
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from kit.cli.main import main
from kit.research.grid import GridError, load_grid, parse_grid, run_grid
from kit.research.grid.spec import AXES
from kit.research.history.band import Band, sessions
from kit.research.history.build import run_build
from kit.research.history.sim import SimHistory

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "data" / "grids" / "spx_0dte_condor.toml"
SMALL = {
    "settings": {"capital": 25_000, "band_min_samples": 2, "trend_days": 2},
    "grid": {
        "strategy": ["iron_condor", "put_credit_spread"],
        "entry_time": ["10:00", "14:00"],
        "strikes": ["delta:0.12", "P90"],
        "wings": [10, 20],
        "profit_target_pct": [50],
        "stop_mult": [1.0, "none"],
        "exit_time": ["15:50"],
        "vix_regime": ["any", "very_low,low,medium"],
        "trend": ["any", "up,sideways"],
        "weekdays": ["any", "mon,wed,fri"],
        "sizing": ["contracts:1", "risk_pct:5"],
        "costs": ["default", "zero"],
    },
}


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("history")
    src = SimHistory("SPX", 3, 60, Band(max_dte=0, strike_pct=0.02))
    days = sessions(date(2025, 6, 2), date(2025, 6, 11))
    run_build(out, "SPX", days, src.make_day, src.signature, progress="off")
    return out


@pytest.fixture(scope="module")
def local(history):
    return run_grid(history, parse_grid(SMALL), workers=1)


def test_example_grid_is_the_product_of_its_axes():
    g = load_grid(EXAMPLE)
    text = EXAMPLE.read_text()
    assert len(g) == 2 * 3 * 4 * 2 * 3 * 3 * 2 == 864
    assert all(set(r) == {*AXES, "config_id"} for r in g.rows)
    assert [r["config_id"] for r in g.rows] == list(range(864))
    assert "[costs.tight]" in text
    assert len({tuple(sorted(r.items())) for r in g.rows}) == 864


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"grid": {"strategy": "iron_condor"}}, "strategy: every axis is a non-empty list"),
        ({"grid": {"strategy": ["butterfly"]}}, "strategy: unknown 'butterfly'"),
        ({"grid": {"strikes": ["delta:0.7"]}}, "strikes: delta must be in (0, 0.5)"),
        ({"grid": {"strikes": ["P101"]}}, "strikes: expected delta:X"),
        ({"grid": {"entry_time": ["25:00"]}}, "entry_time: not a time"),
        ({"grid": {"stop_mult": [0]}}, "stop_mult: 0 would stop every trade"),
        ({"grid": {"trailing": ["20:40"]}}, "trailing: need 0 <= lock < trigger"),
        ({"grid": {"vix_regime": ["calm"]}}, "vix_regime: unknown ['calm']"),
        ({"grid": {"iv_rank": ["80-20"]}}, "iv_rank: need 0 <= LO <= HI <= 100"),
        ({"grid": {"sizing": ["risk_pct:0"]}}, "sizing: expected contracts:N"),
        ({"grid": {"costs": ["cheap"]}}, "costs: unknown cost model 'cheap'"),
        ({"grid": {"wingz": [10]}}, "grid: unknown axis ['wingz']"),
        ({"settings": {"capital": -1}}, "settings: capital must be a positive number"),
        ({"settings": {"trend_days": 2.5}}, "settings: trend_days must be a positive whole"),
    ],
)
def test_bad_grids_are_one_line_errors(doc, message):
    with pytest.raises(GridError) as err:
        parse_grid(doc)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_cost_table_is_a_grid_error(history):
    doc = {"grid": {"costs": ["mine"]}, "costs": {"mine": {"commission_per_contract": -1}}}
    with pytest.raises(GridError, match=r"costs\.mine: commission_per_contract"):
        run_grid(history, parse_grid(doc), workers=1)


def test_results_table_and_filters(local):
    res, trades = local.results, local.trades
    assert res.height == len(parse_grid(SMALL))
    for col in ("config_id", "strategy", "entry_time", "dte", "strikes", "wings",
                "profit_target_pct", "stop_mult", "trades", "win_rate", "total_pnl", "roi",
                "sharpe", "sortino", "max_dd", "profit_factor", "composite_score", "cagr",
                "mar", "capture_rate", "var_95", "cvar_95", "max_losing_streak"):  # fmt: skip
        assert col in res.columns, col
    for col in ("config_id", "date", "entry_ts", "exit_ts", "exit_reason", "strikes", "credit",
                "pnl", "vix_regime", "trend"):  # fmt: skip
        assert col in trades.columns, col
    by_id = {r["config_id"]: r for r in res.iter_rows(named=True)}
    filters = res.select("config_id", "weekdays", "vix_regime", "trend", "sizing", "costs")
    t = trades.join(filters.rename({"vix_regime": "f_vix", "trend": "f_trend"}), on="config_id")
    # filters hold on every trade they let through
    wd = t.filter(pl.col("weekdays") == "mon,wed,fri")["date"].to_list()
    assert wd and all(d.weekday() in (0, 2, 4) for d in wd)
    assert set(t.filter(pl.col("f_vix") != "any")["vix_regime"]) <= {"very_low", "low", "medium"}
    assert set(t.filter(pl.col("f_trend") != "any")["trend"]) <= {"up", "sideways"}
    assert t.filter(pl.col("f_trend") != "any").height < t.filter(pl.col("f_trend") == "any").height
    # zero costs: no fees; risk_pct: contracts = floor(5% of capital / margin per contract)
    assert (t.filter(pl.col("costs") == "zero")["fees"] == 0).all()
    sized = t.filter(pl.col("sizing") == "risk_pct:5")
    per = sized["margin"] / sized["contracts"]
    assert (sized["contracts"] == (25_000 * 0.05 / per).floor()).all()
    assert (sized["contracts"] > 1).any()
    # the P90 rule has no trade before band_min_samples past sessions exist
    p90 = t.filter(pl.col("config_id").is_in([i for i, r in by_id.items()
                                               if r["strikes"] == "P90"]))  # fmt: skip
    assert p90.height and p90["date"].min() >= local.days[2]
    assert set(trades["exit_reason"]) <= {"stop", "profit_target", "exit_time", "expiry"}


def test_process_pool_and_dask_give_the_same_trades(history, local):
    from distributed import LocalCluster

    key = ["config_id", "date"]
    pooled = run_grid(history, parse_grid(SMALL), workers=2)
    assert pooled.trades.sort(key).equals(local.trades.sort(key))
    assert pooled.results.equals(local.results)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                      dashboard_address=None) as cluster:  # fmt: skip
        on_dask = run_grid(history, parse_grid(SMALL), dask=cluster.scheduler_address)
    assert on_dask.trades.sort(key).equals(local.trades.sort(key))
    assert on_dask.results.equals(local.results)


def test_cli_writes_duckdb_parquet_and_csv(history, tmp_path, capsys):
    grid = tmp_path / "g.toml"
    grid.write_text(
        '[settings]\ncapital = 30000\n[grid]\nstrategy = ["iron_condor", "short_strangle"]\n'
        'entry_time = ["10:30"]\nstrikes = ["delta:0.10", "otm_pct:0.5"]\n'
        'profit_target_pct = [50, "none"]\n'
    )
    out = tmp_path / "res"
    rc = main(["backtest", "grid", "--history", str(history), "--grid", str(grid), "--out",
               str(out), "--workers", "1", "--json", "--csv", "--progress", "off"])  # fmt: skip
    assert rc == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(line)[-5:] == ["configs", "days", "trades", "seconds", "results"]
    assert (line["configs"], line["days"]) == (8, 8)
    con = duckdb.connect(line["results"], read_only=True)
    n_trades = con.execute("SELECT count(*) FROM trades").fetchone()[0]
    best = con.execute(
        "SELECT config_id FROM results WHERE NOT isnan(composite_score) "
        "ORDER BY composite_score DESC, config_id LIMIT 1"
    ).fetchone()
    regimes = con.execute("SELECT DISTINCT dimension FROM by_regime").fetchall()
    con.close()
    assert n_trades == line["trades"] > 0
    assert best[0] == line["best_config"]
    assert {r[0] for r in regimes} <= {"vix_regime", "trend"} and regimes
    csv = pl.read_csv(out / "grid_results.csv")
    assert csv.height == 8 and csv["trades"].sum() == n_trades
    assert pl.read_parquet(out / "trades.parquet").height == n_trades
    assert math.isfinite(csv["total_pnl"].sum())


def test_cli_errors_are_one_line(history, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nstrikes = ['gamma:0.1']\n")
    cut = tmp_path / "cut"
    shutil.copytree(history, cut)
    victim = sorted(cut.glob("underlying=SPX/date=*/part-0.parquet"))[3]
    victim.write_bytes(victim.read_bytes()[:1000])  # a file cut short
    cases = [
        (["--history", str(tmp_path / "none"), "--grid", str(EXAMPLE)], "no history directory"),
        (["--history", str(history), "--grid", str(tmp_path / "x.toml")], "no grid file"),
        (["--history", str(history), "--grid", str(bad)], "strikes: expected delta:X"),
        (["--history", str(history), "--grid", str(EXAMPLE), "--workers", "0"],
         "--workers must be at least 1"),
        (["--history", str(history), "--grid", str(EXAMPLE), "--from", "2030-01-01"],
         "no SPX sessions"),
        (["--history", str(cut), "--grid", str(EXAMPLE), "--workers", "1"],
         f"{victim}: not a readable history session"),
    ]  # fmt: skip
    for extra, message in cases:
        rc = main(["backtest", "grid", "--out", str(tmp_path / "o"), "--progress", "off", *extra])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and message in err and "\n" not in err, (extra, err)


def test_a_later_from_date_keeps_the_earlier_sessions_as_context(history, local):
    """--from limits the sessions traded, not the past the filters and P-bands read: the
    trades from that day on are the full run's."""
    start = local.days[4]
    later = run_grid(history, parse_grid(SMALL), workers=1, date_from=start)
    assert later.days == local.days[4:]
    key = ["config_id", "date"]
    full = local.trades.filter(pl.col("date") >= start).sort(key)
    assert full.height > 0 and later.trades.sort(key).equals(full)

"""``kit backtest run``: one config through the real desk, day by day (issue 19 items 1-2).

A simulated session (the simulator conflated to 15 s batches) and a history replay: every
decision, order and fill as JSON lines, a summary per day and in total with the grid's
statistics, numbers that add up (a day's P&L is its fills' cash), configs from a TOML file or a
grid results row, and one-line errors for what the desk cannot trade.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from kit.cli.main import main
from kit.research.backtest import BacktestConfig, ConfigError, run_backtest
from kit.research.grid import parse_grid, run_grid
from kit.research.grid.run import write_results
from kit.research.grid.stats import STAT_COLUMNS
from kit.research.history.band import Band, sessions
from kit.research.history.build import run_build
from kit.research.history.sim import SimHistory

CONFIG = """
[grid]
strategy = "short_strangle"
entry_time = "10:00"
dte = 0
strikes = "delta:0.16"
profit_target_pct = 50
stop_mult = 2.0
exit_time = "15:45"
sizing = "contracts:2"
"""
GRID = {"grid": {"strategy": ["short_strangle"], "entry_time": ["10:00", "11:00"],
                 "strikes": ["delta:0.10", "delta:0.16"], "min_credit": [0.0],
                 "profit_target_pct": [50], "stop_mult": [2.0],
                 "exit_time": ["15:45"]}}  # fmt: skip
DAYS = (date(2024, 3, 11), date(2024, 3, 13))


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("history")
    src = SimHistory("SPX", 0, 60, Band(max_dte=0, strike_pct=0.04))
    run_build(out, "SPX", sessions(*DAYS), src.make_day, src.signature, progress="off")
    return out


@pytest.fixture(scope="module")
def results(history, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results")
    write_results(run_grid(history, parse_grid(GRID), workers=1), out)
    return out


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return path


def test_a_simulated_session_through_the_desk(config_file):
    """One simulated 0DTE session: the strangle is sold at 10:00 by the desk's order manager,
    closed by one of the config's exits or settled, and the day's P&L is exactly the cash its
    fills add up to (fees included); the total carries the grid's statistics."""
    cfg = BacktestConfig.from_toml(config_file)
    lines: list[dict] = []
    result = run_backtest(cfg, date(2024, 3, 12), date(2024, 3, 12), emit=lines.append)
    (day,) = result.days
    assert day.entered and len(day.trades) == 1 and day.fills >= 4
    (trade,) = day.trades
    assert trade["entry_ts"].startswith("2024-03-12T14:0")  # 10:00 New York, within the ladder
    assert trade["exit_reason"] in ("profit_target", "stop_loss", "time_stop", "settlement")
    assert trade["contracts"] == 2 and trade["premium"] > 0
    fills = [x for x in lines if x["kind"] == "fill"]
    assert round(sum(f["cash_flow"] for f in fills), 2) == pytest.approx(day.pnl, abs=0.01)
    assert day.fees == pytest.approx(sum(f["commission"] for f in fills))
    kinds = [x["kind"] for x in lines]
    assert {"decision", "order", "fill"} <= set(kinds)
    assert kinds[-2:] == ["day", "backtest"]
    total = lines[-1]
    assert total["trades"] == 1 and total["pnl"] == pytest.approx(day.pnl)
    assert {c for c in STAT_COLUMNS if c not in ("sessions", "trades")} <= set(total)
    assert total["win_rate"] == (100.0 if day.pnl > 0 else 0.0)
    assert day.events > 1000 and day.evaluations > 1000  # the whole session, batch by batch


def test_cli_json_on_a_history(history, config_file, capsys):
    """``kit backtest run --config-file --history --json``: JSON lines as ``kit run --jsonl``
    prints them, a day line per session and the total last."""
    argv = ["backtest", "run", "--config-file", str(config_file), "--history", str(history),
            "--from", "2024-03-11", "--to", "2024-03-13", "--json"]  # fmt: skip
    assert main(argv) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    days = [d for d in docs if d["kind"] == "day"]
    assert [d["day"] for d in days] == ["2024-03-11", "2024-03-12", "2024-03-13"]
    assert all(d["entered"] and d["trades"] == 1 for d in days)
    total = docs[-1]
    assert total["kind"] == "backtest" and total["sessions"] == 3 and total["trades"] == 3
    assert total["pnl"] == pytest.approx(sum(d["pnl"] for d in days), abs=0.02)
    fill = next(d for d in docs if d["kind"] == "fill")
    assert {"ts", "ts_ns", "contract", "side", "qty", "price", "cash_flow"} <= set(fill)
    assert all(d["seconds"] < 20 for d in days)


def test_a_grid_results_row(results, history):
    """``--config ID --results DIR`` runs exactly that row's parameters."""
    table = pl.read_parquet(results / "results.parquet").sort("config_id")
    row = table.filter(pl.col("config_id") == 3).row(0, named=True)
    cfg = BacktestConfig.from_results(results, 3)
    assert cfg.config_id == 3
    assert (cfg.row["entry_time"], cfg.row["strikes"]) == (row["entry_time"], row["strikes"])
    assert cfg.auto().first_entry.strftime("%H:%M") == row["entry_time"]
    assert cfg.auto().band.mid == pytest.approx(float(row["strikes"].split(":")[1]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[grid]\nstrategy = "put_credit_spread"', "trades short_strangle and iron_condor"),
        ('[grid]\nstrategy = "short_strangle"\ndte = 1\nexit_dte = 1', "exit_dte"),
        ('[grid]\nstrategy = "short_strangle"\nweekdays = "funday"', "weekdays"),
        ('[grid]\nstrategy = "short_strangle"\nentry_time = ["10:00", "11:00"]', "expands to 2"),
        ('[grid]\nstrategy = "short_strangle"\nstrikes = "delta:0.7"', "delta"),
        ("[grid\n", "not a TOML config"),
    ],
)
def test_configs_the_desk_cannot_trade_are_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        BacktestConfig.from_toml(path)
    assert main(["backtest", "run", "--config-file", str(path), "--from", "2024-03-12",
                 "--to", "2024-03-12"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message.split()[0] in err


def test_missing_results_and_rows(results, capsys):
    assert main(["backtest", "run", "--config", "1", "--from", "2024-03-12",
                 "--to", "2024-03-12"]) == 2  # fmt: skip
    assert "--results" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="config 99 is not in"):
        BacktestConfig.from_results(results, 99)
    with pytest.raises(ValueError, match="no sessions"):
        run_backtest(BacktestConfig.from_results(results, 0), date(2024, 3, 16),
                     date(2024, 3, 17))  # fmt: skip


@pytest.mark.parametrize(
    ("strategy", "entered"),
    [("short_strangle", True), ("iron_condor", False)],  # late 0DTE wings are bid at 0
)
def test_kit_run_auto_trades_a_backtest_config(tmp_path, capsys, strategy, entered):
    """The paper leg of the loop: ``kit run --auto --strategy FILE`` trades the config's entry
    and exits. From 15:30 (a short session): the strangle is sold at 15:31; the iron condor's
    25-point wing has no two-sided quote by then, which the order manager refuses, and the
    session goes on and says why instead of aborting."""
    path = tmp_path / "late.toml"
    path.write_text(f'[grid]\nstrategy = "{strategy}"\nentry_time = "15:31"\n'
                    'strikes = "delta:0.16"\nwings = 25\nprofit_target_pct = 50\n')  # fmt: skip
    assert main(["run", "--auto", "--strategy", str(path), "--from", "15:30", "--jsonl"]) == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary = docs[-1]
    assert summary["kind"] == "summary" and summary["entered"] is entered and summary["flat"]
    entries = [d["message"] for d in docs if d.get("decision") == "entry"]
    assert entries[0].startswith("selling short 0.16-delta strangle")
    if entered:
        assert "bt-20240312.open" in summary["intents"]
        assert summary["fills"] >= 2
    else:
        assert "no entry: the order manager refused it: no two-sided quote" in entries[-1]
    assert main(["run", "--strategy", str(path), "--script", "quiet"]) == 2
    assert "under --auto" in capsys.readouterr().err


def test_a_strike_rule_is_checked_where_the_strategy_is_read():
    """An autopilot strategy (a stored config, a TOML) with a strike rule the desk cannot pick
    by is a one-line error when read, not an exception at the entry."""
    from kit.app.autopilot import AutoConfig, config_doc, config_from_doc

    doc = config_doc(AutoConfig(strikes="otm_pct:1.5"))
    assert config_from_doc(doc).rule == ("otm_pct", 1.5)
    assert config_from_doc({**doc, "strikes": "band:-0.02:0.015"}).rule == ("band", -0.02, 0.015)
    for bad in ("otm_pct:x", "premium:0", "P95", "delta:0.1", "band:0.01:-0.01", "band:1"):
        with pytest.raises(ValueError, match=r"^strategy: strikes .*otm_pct:X or premium:X"):
            config_from_doc({**doc, "strikes": bad})


def test_a_p_band_config_needs_a_history(tmp_path, capsys):
    """``P90`` strikes sit beyond the session's move band, which the grid computes from past
    sessions: the simulator has none, and ``kit run --auto`` trades one session as it comes,
    so both refuse it in one line (``kit backtest run --history`` replays it)."""
    path = tmp_path / "band.toml"
    path.write_text('[grid]\nstrategy = "short_strangle"\nstrikes = "P90"\n')
    cfg = BacktestConfig.from_toml(path)
    assert cfg.band_key == (600, 0, 90.0)
    assert main(["backtest", "run", "--config-file", str(path), "--from", "2024-03-12",
                 "--to", "2024-03-12"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--history" in err
    with pytest.raises(ConfigError, match="cannot place it"):
        cfg.for_live()

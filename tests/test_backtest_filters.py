"""The grid's entry filters in the event-driven backtest (issue 19 follow-up).

A config with ``weekdays``, ``vix_regime``, ``iv_rank`` or ``trend`` replays: the backtest
computes each session's pre-trade context from the history it replays with the grid's own
functions and skips the session exactly when the grid does (checked against the grid's own
trades for 96 filter combinations), reports each skip as a decision naming the filter, and a
filtered config still agrees with the grid trade by trade. The simulator has no past sessions:
``weekdays`` works there, the data filters are a one-line error.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from kit.cli.main import main
from kit.research.backtest import BacktestConfig, ConfigError, run_backtest
from kit.research.backtest.agreement import compare, report
from kit.research.backtest.filters import session_contexts, skip_reason
from kit.research.backtest.runner import sessions as backtest_sessions
from kit.research.grid import parse_grid, run_grid
from kit.research.history.band import Band, sessions
from kit.research.history.build import run_build
from kit.research.history.sim import SimHistory

HISTORY_FROM, FIRST, LAST = date(2024, 2, 8), date(2024, 3, 11), date(2024, 3, 15)
# 21 sessions before FIRST: every session has an IV rank (20 closes), and a trend (a short
# look-back, so that the 5 sessions vary: the grid's settings reach the backtest too)
SETTINGS = {"trend_days": 3, "trend_band_pct": 0.5}
BASE = {"strategy": ["short_strangle"], "entry_time": ["10:00"], "strikes": ["delta:0.16"],
        "min_credit": [0.0], "profit_target_pct": [50], "stop_mult": [2.0],
        "exit_time": ["15:45"]}  # fmt: skip
FILTERS = {"vix_regime": ["any", "medium", "high", "low,very_low"],
           "trend": ["any", "sideways", "down", "up"],
           "weekdays": ["any", "mon,wed", "fri"], "iv_rank": ["any", "0-55"]}  # fmt: skip
CAUSES = {"fill", "exit_snapshot", "held_quote"}  # not strikes or entry


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("history")
    src = SimHistory("SPX", 0, 60, Band(max_dte=0, strike_pct=0.02))
    run_build(out, "SPX", sessions(HISTORY_FROM, LAST), src.make_day, src.signature,
              progress="off")  # fmt: skip
    return out


@pytest.fixture(scope="module")
def grid_run(history):
    grid = parse_grid({"settings": SETTINGS, "grid": {**BASE, **FILTERS}})
    return grid, run_grid(history, grid, workers=1, date_from=FIRST).trades


def test_filters_skip_exactly_the_sessions_the_grid_skips(history, grid_run):
    """For every filter combination the sessions the backtest would run are the grid's."""
    grid, trades = grid_run
    days = backtest_sessions(FIRST, LAST)
    base = next(i for i, r in enumerate(grid.rows) if all(r[a] == "any" for a in FILTERS))
    traded = lambda cid: set(trades.filter(pl.col("config_id") == cid)["date"])  # noqa: E731
    assert traded(base) == set(days)  # unfiltered, the grid trades every session
    ctxs, skipped_some, traded_some = None, 0, 0
    for cid, row in enumerate(grid.rows):
        cfg = BacktestConfig(dict(row), grid.settings, cid)
        cfg.check()
        ctxs = ctxs or session_contexts(cfg, days, history)
        runs = {d for d in days if skip_reason(cfg, ctxs[d]) is None}
        assert runs == traded(cid), (row, {d: skip_reason(cfg, ctxs[d]) for d in days})
        skipped_some += len(runs) < len(days)
        traded_some += bool(runs) and cfg.filtered
    assert skipped_some > 40 and traded_some > 10  # the filters bite and let through
    # the contexts are the grid's own (it labels its trades with them)
    labels = trades.filter(pl.col("config_id") == base).sort("date")
    assert labels["vix_regime"].to_list() == [ctxs[d].vix_regime for d in days]
    assert labels["trend"].to_list() == [ctxs[d].trend for d in days]
    ranks = [ctxs[d].iv_rank for d in days]
    assert labels["iv_rank"].to_list() == pytest.approx(ranks) and 0 < min(ranks) < 100


def test_skip_reasons_name_each_failing_filter(history, grid_run):
    grid, _ = grid_run
    days = backtest_sessions(FIRST, LAST)
    row = {**grid.rows[0], "weekdays": "fri", "vix_regime": "low,very_low", "iv_rank": "0-55"}
    cfg = BacktestConfig(row, grid.settings)
    ctx = session_contexts(cfg, days, history)[FIRST]  # a Monday
    why = skip_reason(cfg, ctx)
    assert why is not None and why.startswith("filter: ")
    assert "weekdays mon not in fri" in why
    assert f"vix_regime {ctx.vix_regime} not in low,very_low" in why
    assert (f"iv_rank {ctx.iv_rank:.1f} not in 0-55" in why) == (ctx.iv_rank > 55)


def test_a_filtered_config_replays_and_agrees_with_the_grid(history, grid_run):
    """A grid row with a weekday and a data filter: the desk runs only the sessions the grid
    trades, reports the others as skipped decisions, and agrees with the grid trade by trade
    on those it runs."""
    grid, trades = grid_run
    days = backtest_sessions(FIRST, LAST)
    count = trades.group_by("config_id").len()
    n = dict(zip(count["config_id"].to_list(), count["len"].to_list(), strict=True))
    data = lambda r: [a for a in ("vix_regime", "trend", "iv_rank") if r[a] != "any"]  # noqa: E731
    picks = [i for i, r in enumerate(grid.rows) if r["weekdays"] == "mon,wed"]
    cid = next(i for i in picks if len(data(grid.rows[i])) == 1 and n.get(i, 0) >= 1)
    cfg = BacktestConfig(dict(grid.rows[cid]), grid.settings, cid)
    cfg.check()
    assert cfg.filtered and n[cid] < len(days)
    mine = trades.filter(pl.col("config_id") == cid)
    lines: list[dict] = []
    desk = run_backtest(cfg, FIRST, LAST, history=history, emit=lines.append)
    entered = [d.day for d in desk.days if d.entered]
    assert entered == sorted(mine["date"]), cfg.name
    skips = [x for x in lines if x.get("kind") == "decision" and x.get("status") == "skipped"]
    assert [x["ts"][:10] for x in skips] == [d.isoformat() for d in days if d not in entered]
    assert all(x["reason"].startswith("filter: ") and x["rule"] == "filter" for x in skips)
    assert [d.skipped is None for d in desk.days] == [d in entered for d in days]
    days_json = [x for x in lines if x.get("kind") == "day"]
    assert [("skipped" in x) for x in days_json] == [d not in entered for d in days]
    rows = compare(mine, desk)
    text = report(rows)
    assert [r["date"] for r in rows] == [d.isoformat() for d in entered], text
    assert all(r["grid"] and r["desk"] for r in rows), text  # no grid_only / desk_only
    assert all(set(r["causes"]) <= CAUSES for r in rows), text
    assert all(r["desk"]["strikes"] == r["grid"]["strikes"] for r in rows), text


def test_weekdays_on_the_simulator_and_data_filters_need_a_history(tmp_path, capsys):
    """A simulated session the weekdays filter keeps out is not run; a VIX regime on the
    simulator is a one-line error (its days have no past closes)."""
    cfg = BacktestConfig.from_grid(parse_grid({"grid": {**BASE, "weekdays": ["tue"]}}))
    lines: list[dict] = []
    result = run_backtest(cfg, FIRST, FIRST, emit=lines.append)  # a Monday
    assert result.days[0].skipped == "filter: weekdays mon not in tue"
    assert result.days[0].seconds == 0.0 and result.trades == []
    assert lines[0]["status"] == "skipped" and lines[-1]["trades"] == 0
    path = tmp_path / "regime.toml"
    path.write_text('[grid]\nstrategy = "short_strangle"\nvix_regime = "low"\n')
    with pytest.raises(ConfigError, match="--history"):
        run_backtest(BacktestConfig.from_toml(path), FIRST, FIRST)
    assert main(["backtest", "run", "--config-file", str(path), "--from", "2024-03-11",
                 "--to", "2024-03-11"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "vix_regime" in err and "--history" in err


def test_cli_json_reports_the_skip(history, tmp_path, capsys):
    path = tmp_path / "thu.toml"
    path.write_text('[grid]\nstrategy = "short_strangle"\nweekdays = "thu"\n'
                    '[settings]\ntrend_days = 3\n')  # fmt: skip
    assert main(["backtest", "run", "--config-file", str(path), "--history", str(history),
                 "--from", "2024-03-11", "--to", "2024-03-11", "--json"]) == 0  # fmt: skip
    docs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert docs[0]["reason"] == "filter: weekdays mon not in thu"
    assert docs[1]["kind"] == "day" and docs[1]["entered"] is False
    assert docs[-1]["kind"] == "backtest" and docs[-1]["trades"] == 0


def test_kit_run_auto_refuses_a_filtered_config(tmp_path, capsys):
    """Live, the autopilot trades the session it is given: a filter it would not apply is a
    one-line refusal, not a silently unfiltered trade."""
    path = tmp_path / "fri.toml"
    path.write_text('[grid]\nstrategy = "short_strangle"\nweekdays = "fri"\n')
    assert main(["run", "--auto", "--strategy", str(path), "--jsonl"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "weekdays" in err and "kit backtest run" in err

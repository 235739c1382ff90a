"""Grid <-> desk agreement (issue 19 item 3): the same configs and sessions of a simulated history
through the grid's fast estimate and through the real desk, trade by trade.

Tolerances (``kit.research.backtest.agreement.Tolerance``): where the models agree the desk
enters the grid's strikes, its orders fill within 90 s of the grid's snapshot, the same exit
rule fires, and P&L is within $25 a contract (the ladder's fill a tick or so off the grid's
mid less slippage on each leg, both ways, and the paper broker's fees). Every other session
is listed with a cause the model documents.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from kit.research.backtest import BacktestConfig, BacktestResult, DayResult, run_backtest
from kit.research.backtest.agreement import Tolerance, compare, report
from kit.research.grid import parse_grid, run_grid
from kit.research.history.band import Band, sessions
from kit.research.history.build import run_build
from kit.research.history.sim import SimHistory
from kit.risk.rules import Lock

FIRST, LAST = date(2024, 3, 11), date(2024, 3, 15)
GRID = {"grid": {"strategy": ["short_strangle"], "entry_time": ["10:00", "11:00"],
                 "strikes": ["delta:0.10", "delta:0.16"], "min_credit": [0.0],
                 "profit_target_pct": [50], "stop_mult": [2.0],
                 "exit_time": ["15:45"]}}  # fmt: skip
CAUSES = {"fill", "exit_snapshot", "held_quote", "strikes", "entry"}


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("history")
    src = SimHistory("SPX", 0, 60, Band(max_dte=0, strike_pct=0.04))
    run_build(out, "SPX", sessions(FIRST, LAST), src.make_day, src.signature, progress="off")
    return out


@pytest.fixture(scope="module")
def grid_trades(history) -> tuple[pl.DataFrame, object]:
    grid = parse_grid(GRID)
    return run_grid(history, grid, workers=1).trades, grid


@pytest.mark.parametrize("config_id", [1, 2])  # 0.16 delta at 10:00; 0.10 delta at 11:00
def test_grid_and_desk_agree_trade_by_trade(history, grid_trades, config_id):
    trades, grid = grid_trades
    row = {**grid.rows[config_id]}
    cfg = BacktestConfig(row, grid.settings, config_id)
    cfg.check()
    desk = run_backtest(cfg, FIRST, LAST, history=history)
    rows = compare(trades.filter(pl.col("config_id") == config_id), desk)
    text = report(rows)
    assert len(rows) == 5, text  # a trade every session on both sides
    tol = Tolerance()
    for r in rows:
        assert set(r["causes"]) <= CAUSES, text
        assert (r["status"] == "agree") == (not r["causes"]), text
        if r["status"] == "agree":
            g, d = r["grid"], r["desk"]
            assert d["strikes"] == g["strikes"] and d["exit_reason"] == "profit_target", text
            assert abs(r["pnl_gap"]) <= tol.pnl_per_contract * g["contracts"], text
            assert 0 <= r["entry_lag_s"] <= tol.fill_s, text
    agree = sum(r["status"] == "agree" for r in rows)
    # measured: config 1 agrees on 5 of 5 sessions, config 2 on 2 (three exits a snapshot
    # or more apart, the desk's P&L being measured on its own fills)
    assert agree >= {1: 5, 2: 2}[config_id], text
    assert all(r["grid"]["strikes"] == r["desk"]["strikes"] for r in rows), text


def test_an_iron_condor_buys_the_grids_wings(history):
    """An iron condor row: the desk sells the grid's shorts and buys its wings 25 points
    beyond (the same four strikes every session both traded), and closes by the grid's rule:
    a 0DTE wing bid at 0 is left to expire while the shorts are bought back (before, it held
    the whole close and the condor settled). Measured: P&L within $7-39 of the grid's (the
    desk's fees on four legs and a kept wing; ``fill`` above $25), exits up to 35 minutes
    apart (``exit_snapshot``)."""
    grid = parse_grid({"grid": {**GRID["grid"], "strategy": ["iron_condor"], "wings": [25],
                                "entry_time": ["10:00"], "strikes": ["delta:0.16"]}})  # fmt: skip
    trades = run_grid(history, grid, workers=1).trades
    cfg = BacktestConfig.from_grid(grid, 0)
    assert cfg.auto().wing_width == 25.0
    desk = run_backtest(cfg, FIRST, date(2024, 3, 12), history=history)
    rows = compare(trades.filter(pl.col("date") <= date(2024, 3, 12)), desk)
    text = report(rows)
    assert rows and all(r["grid"] and r["desk"] for r in rows), text
    for r in rows:
        assert r["desk"]["strikes"] == r["grid"]["strikes"], text
        assert len(r["desk"]["strikes"].split("/")) == 4, text
        assert r["desk"]["exit_reason"] == "profit_target" == r["grid"]["exit_reason"], text
        assert set(r["causes"]) <= {"fill", "exit_snapshot"}, text


def test_differences_are_explained(grid_trades):
    """A desk trade the grid did not make, and exits that differ, each get their cause."""
    trades, _ = grid_trades
    g = trades.filter(pl.col("config_id") == 0).sort("entry_ts")
    first = g.row(0, named=True)
    ts, exit_ts = first["entry_ts"].isoformat(), first["exit_ts"].isoformat()

    held = {"entry_ts": ts, "exit_ts": exit_ts, "strikes": "1P/2C", "exit_reason": "settlement",
            "pnl": 0.0, "contracts": 1,
            "proposed": ["proposed: illiquid quotes, no automatic execution"]}  # fmt: skip
    extra = {
        **held,
        "entry_ts": "2024-03-18T14:00:00+00:00",
        "exit_ts": "2024-03-18T20:00:01+00:00",
    }
    desk = BacktestResult(BacktestConfig.from_grid(parse_grid({"grid": {
        "strategy": ["short_strangle"]}})), [DayResult(FIRST, True, [held, extra], 0.0, 0.0,
                                                       4, 2, 0, 0, 0.0)])  # fmt: skip
    rows = compare(g.head(1), desk)
    assert [r["status"] for r in rows] == ["differ", "desk_only"]
    assert set(rows[0]["causes"]) == {"strikes", "held_quote"}
    assert rows[1]["causes"] == ["entry"]
    assert "desk_only" in report(rows)


def test_a_trailing_stop_config_agrees_where_the_models_do(history):
    """``trailing = "20:0"`` (once 20% of the credit is made, close back at breakeven) is the
    desk's trailing stop armed at 20% that never tightens; ``exit_dte`` on a 0DTE row never
    fires in the grid and is accepted. Measured: 5 of 5 sessions agree, three of them exits by
    the trailing stop at the grid's snapshot (3 of 5 while a short leg quoted 0.00 / 0.05 could
    not be bought back, ``held_quote``)."""
    grid = parse_grid({"grid": {**GRID["grid"], "entry_time": ["10:00"],
                                "strikes": ["delta:0.16"], "profit_target_pct": [80],
                                "trailing": ["20:0"], "exit_dte": [1]}})  # fmt: skip
    trades = run_grid(history, grid, workers=1).trades
    cfg = BacktestConfig.from_grid(grid, 0)
    assert cfg.rules().trailing_stop.enabled and cfg.rules().trailing_stop.locks == (
        Lock(20.0, 0.0),)  # fmt: skip
    rows = compare(trades, run_backtest(cfg, FIRST, LAST, history=history))
    text = report(rows)
    assert len(rows) == 5 and all(r["grid"] and r["desk"] for r in rows), text
    assert all(set(r["causes"]) <= CAUSES - {"strikes", "entry"} for r in rows), text
    trailed = [r for r in rows if r["status"] == "agree"
               and r["desk"]["exit_reason"] == "trailing_stop"]  # fmt: skip
    assert len(trailed) >= 2 and all(r["grid"]["exit_reason"] == "trailing" for r in trailed)
    assert sum(r["status"] == "agree" for r in rows) >= 4, text


def test_an_exit_delta_config_closes_where_the_grid_does(history):
    """``exit_delta = 0.25`` (close once a short leg's |delta| reaches 0.25) is the desk's
    ``leg_delta`` rule at 0.25, closing; both read the largest |delta| of the short legs.
    Measured: 5 of 5 sessions agree, each exit by it within the snapshot (40 s here)."""
    grid = parse_grid({"grid": {**GRID["grid"], "entry_time": ["10:00"],
                                "strikes": ["delta:0.16"], "profit_target_pct": [80],
                                "exit_delta": [0.25]}})  # fmt: skip
    trades = run_grid(history, grid, workers=1).trades
    cfg = BacktestConfig.from_grid(grid, 0)
    cfg.check()
    on = cfg.rules().leg_delta
    assert on.enabled and on.levels[0].at == 0.25 and on.levels[0].action == "close_all"
    rows = compare(trades, run_backtest(cfg, FIRST, LAST, history=history))
    text = report(rows)
    assert len(rows) == 5 and all(r["grid"] and r["desk"] for r in rows), text
    by_delta = [r for r in rows if r["grid"]["exit_reason"] == "exit_delta"]
    assert len(by_delta) >= 3, text  # the rule is exercised, not only configured
    assert all(r["desk"]["exit_reason"] == "leg_delta" for r in by_delta), text
    assert sum(r["status"] == "agree" for r in rows) >= 4, text


@pytest.mark.parametrize("strikes", ["otm_pct:1.0", "premium:2.0"])
def test_strikes_by_distance_or_premium_are_the_grids(history, strikes):
    """``otm_pct:X`` and ``premium:X`` rows: the desk sells the grid's two strikes every
    session (strategies.nearest_otm is the grid's select_short). Measured: 5 of 5 and 4 of 5
    sessions agree (the other an exit a snapshot apart); 4 and 2 before a short leg quoted
    0.00 / 0.05 could be bought back."""
    grid = parse_grid({"grid": {**GRID["grid"], "entry_time": ["10:00"],
                                "strikes": [strikes]}})  # fmt: skip
    trades = run_grid(history, grid, workers=1).trades
    cfg = BacktestConfig.from_grid(grid, 0)
    cfg.check()
    assert cfg.auto().strikes == strikes and cfg.auto().nearest
    rows = compare(trades, run_backtest(cfg, FIRST, LAST, history=history))
    text = report(rows)
    assert len(rows) == 5 and all(r["grid"] and r["desk"] for r in rows), text
    assert all(r["desk"]["strikes"] == r["grid"]["strikes"] for r in rows), text
    assert all(set(r["causes"]) <= {"held_quote", "exit_snapshot"} for r in rows), text
    assert sum(r["status"] == "agree" for r in rows) >= 4, text


def test_a_p_band_config_skips_where_the_grid_cannot_place_it_and_sells_its_strikes(history):
    """``P90``: the put and the call first beyond the session's move band, which the grid
    computes from past horizons (here at least 2, ``band_min_samples``). The desk asks the
    grid's own contexts: the first two sessions have too few past moves and are skipped, as the
    grid skips them; the other three sell the grid's strikes."""
    grid = parse_grid({"settings": {"band_min_samples": 2},
                       "grid": {**GRID["grid"], "entry_time": ["10:00"],
                                "strikes": ["P90"]}})  # fmt: skip
    trades = run_grid(history, grid, workers=1).trades
    cfg = BacktestConfig.from_grid(grid, 0)
    cfg.check()
    desk = run_backtest(cfg, FIRST, LAST, history=history)
    skipped = [d for d in desk.days if not d.entered]
    assert [d.day for d in skipped] == [FIRST, date(2024, 3, 12)]
    rows = compare(trades, desk)
    text = report(rows)
    assert len(rows) == 3 and all(r["grid"] and r["desk"] for r in rows), text
    assert all(r["desk"]["strikes"] == r["grid"]["strikes"] for r in rows), text
    assert all(set(r["causes"]) <= {"exit_snapshot", "fill"} for r in rows), text


def test_trailing_tiers_with_locks_replay_as_the_grids_fixed_stops(history):
    """``trailing = "20:5,40:25"``: from a 20% peak close back at 5% of the credit, from 40% at
    25%: the trailing rule's fixed tiers (``locks``), its own stages never armed. Measured:
    5 of 5 sessions agree, four of them trailing exits at the grid's snapshot (over four tier
    sets, 19 of 20)."""
    grid = parse_grid({"grid": {**GRID["grid"], "entry_time": ["10:00"],
                                "strikes": ["delta:0.16"], "profit_target_pct": [80],
                                "trailing": ["20:5,40:25"]}})  # fmt: skip
    trades = run_grid(history, grid, workers=1).trades
    cfg = BacktestConfig.from_grid(grid, 0)
    assert cfg.rules().trailing_stop.locks == (Lock(20.0, 5.0), Lock(40.0, 25.0))
    rows = compare(trades, run_backtest(cfg, FIRST, LAST, history=history))
    text = report(rows)
    assert len(rows) == 5 and all(r["grid"] and r["desk"] for r in rows), text
    trailed = [r for r in rows if r["status"] == "agree"
               and r["desk"]["exit_reason"] == "trailing_stop"]  # fmt: skip
    assert len(trailed) >= 3 and all(r["grid"]["exit_reason"] == "trailing" for r in trailed)
    assert sum(r["status"] == "agree" for r in rows) >= 4, text

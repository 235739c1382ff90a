"""kit validate end to end: a short paper day recorded to DuckDB by the autopilot, replayed from
the store through the same desk and rules, and compared. Nothing differs: zero divergences.
Then one difference at a time, each found and explained: a fill 2 ticks worse (slippage), a quote
the recording misses (different quote seen), a close by hand (manual action)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import time
from pathlib import Path

import nbformat
import pytest
from helpers import REPO, run_notebook

from kit.app.autopilot import AutoConfig, run_auto
from kit.app.build import DEFAULT_DAY, Run
from kit.app.commands import Commands
from kit.core.clock import NEW_YORK
from kit.core.symbology import from_occ
from kit.execution.costs import tick_size
from kit.portfolio.strategies import DeltaBand
from kit.research.grid.plan import cost_model
from kit.research.validate.compare import compare
from kit.research.validate.day import validate_day
from kit.research.validate.replay import Timeline, load_timeline
from kit.store import open_store

DAY = DEFAULT_DAY
START = time(15, 30)  # half an hour to the close: an entry, a roll and a time stop (seed 3)
CONFIG = AutoConfig(band=DeltaBand(0.05, 0.30), first_entry=START, last_entry=time(15, 55),
                    quantity=2)  # fmt: skip
MANUAL_AT = time(15, 35)  # before the time stop closes it (15:38:43)
NOTEBOOK = REPO / "notebooks" / "validation.ipynb"
NOTEBOOK_CHECKS = """
assert result is not None and summary["divergences"] == []
assert isinstance(live_fig, bq.Figure) and isinstance(replay_fig, bq.Figure)
assert len(live_fig.marks) == 5 and len(live_fig.marks[1].x) > 100  # spot, P&L, 3 marker sets
assert len(pnl_lines.y) == 2 and np.allclose(pnl_lines.y[0], pnl_lines.y[1])
assert len(live_fig.marks[2].x) == len(replay_fig.marks[2].x) >= 2  # the entry's sells
assert "<table" in fill_table.value and shown.height == result.fills.height >= 6
assert surface.shape == (10, 14) and np.isfinite(surface).all()
print("VALIDATION NOTEBOOK CHECKS PASSED")
"""


def _record(path: Path, on_start=None) -> None:
    asyncio.run(run_auto(day=DAY, config=CONFIG, db=str(path), start=START, on_start=on_start))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    return dst


@pytest.fixture(scope="module")
def paper_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recorded paper day (the store kit run --auto --db writes)."""
    path = tmp_path_factory.mktemp("validate") / "desk.duckdb"
    _record(path)
    return path


@dataclass
class Clean:
    """The recorded day validated by ``kit validate --json`` (its replay kept in a workdir)."""

    line: dict
    live: Timeline
    replay: Timeline
    costs: Path


@pytest.fixture(scope="module")
def clean(paper_day: Path, tmp_path_factory: pytest.TempPathFactory) -> Clean:
    d = tmp_path_factory.mktemp("clean")
    db, work, costs = _copy(paper_day, d / "clean.duckdb"), d / "work", d / "out" / "live.toml"
    proc = subprocess.run([sys.executable, "-m", "kit", "validate", "--db", str(db), "--date",
                           DAY.isoformat(), "--json", "--workdir", str(work), "--cost-model",
                           str(costs)], capture_output=True, text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    with open_store(str(db)) as store:
        live = load_timeline(store, DAY)
    with open_store(str(work / f"replay-{DAY.isoformat()}.duckdb")) as store:
        replay = load_timeline(store, DAY)
    return Clean(line, live, replay, costs)


def test_a_recorded_paper_day_replays_with_zero_divergences(clean: Clean):
    line = clean.line
    assert {"decisions_live", "decisions_replay", "divergences", "pnl_live", "pnl_replay",
            "slippage_mean"} <= set(line)  # fmt: skip
    assert line["divergences"] == [] and compare(clean.live, clean.replay).divergences == []
    kinds = [r["decision"] for r in clean.live.records if r["kind"] == "decision"]
    assert {"entry", "intent", "action", "done"} <= set(kinds)  # entered, rolled, closed by rule
    assert line["decisions_live"] == line["decisions_replay"] >= 5
    assert line["fills_live"] == line["fills_replay"] == len(clean.live.fills) >= 6
    assert line["pnl_live"] == line["pnl_replay"] == clean.live.pnl != 0
    assert clean.live.position_pnl == clean.replay.position_pnl
    # slippage in dollars per contract, by hand from the fills and the quotes they met
    fills = [f for f in clean.live.fills if f["client_id"] != "settlement"]
    by_hand = sum(((f["price"] - (f["bid"] + f["ask"]) / 2) * (1 if f["side"] == "buy" else -1))
                  * 100 * f["qty"] for f in fills) / sum(f["qty"] for f in fills)  # fmt: skip
    assert line["slippage_mean"] == pytest.approx(by_hand, abs=1e-3) and by_hand > 0
    assert line["slippage_model"]["n"] == len(fills)


def test_the_fitted_slippage_is_a_cost_model_the_grid_reads(clean: Clean):
    """The loop closes: live fills become the backtest grid's costs."""
    tables = tomllib.loads(clean.costs.read_text())["costs"]
    model = cost_model("live", tables)
    assert set(model.slippage_frac) >= {1, 2, 4}
    fitted = clean.line["slippage_model"]["by_legs"]
    assert model.slippage_frac[2] == pytest.approx(max(fitted["2"], 0.0), abs=1e-4)


def test_a_fill_two_ticks_worse_is_reported_as_slippage(paper_day: Path, clean: Clean,
                                                        tmp_path: Path):  # fmt: skip
    db = _copy(paper_day, tmp_path / "worse.duckdb")
    with open_store(str(db)) as store:
        first = store.query("SELECT fill_id, contract, side, price, quantity, multiplier, "
                            "commission FROM fills ORDER BY ts, fill_id LIMIT 1")  # fmt: skip
        fill = first.row(0, named=True)
        assert fill["side"] == "sell"  # the entry: 2 ticks worse is 2 ticks lower
        worse = round(fill["price"] - 2 * tick_size(from_occ(fill["contract"]).root,
                                                    fill["price"]), 2)  # fmt: skip
        cash = worse * fill["quantity"] * fill["multiplier"] - fill["commission"]
        store.execute("UPDATE fills SET price = :p, cash_flow = :c WHERE fill_id = :f",
                      {"p": worse, "c": cash, "f": fill["fill_id"]})  # fmt: skip
        store.execute(
            "UPDATE audit SET record = json_merge_patch(record, json_object('price', :p, "
            "'cash_flow', :c)) WHERE kind = 'fill' AND record->>'fill_id' = :f",
            {"p": worse, "c": cash, "f": fill["fill_id"]},
        )
        live = load_timeline(store, DAY)
    # the replay is the clean one: a worse fill changes nothing the replay is fed
    found = compare(live, clean.replay).divergences
    fills = [d for d in found if d.kind == "fill"]
    assert len(fills) == 1 and fills[0].cause == "slippage"
    assert "2 ticks worse" in fills[0].detail and fill["contract"] in fills[0].detail
    assert {d.cause for d in found} == {"slippage"}  # the P&L gap is put down to it too
    pnl = [d for d in found if d.kind == "pnl"]
    gap = 2 * tick_size("SPXW", fill["price"]) * fill["quantity"] * 100
    assert pnl and clean.replay.pnl - live.pnl == pytest.approx(gap, abs=0.01)


def test_a_quote_the_recording_missed_is_reported_as_a_different_quote(
    paper_day: Path, tmp_path: Path
):
    db = _copy(paper_day, tmp_path / "missed.duckdb")
    with open_store(str(db)) as store:
        live = load_timeline(store, DAY)
        entry = next(r for r in live.records if r["kind"] == "decision"
                     and r["decision"] == "entry")  # fmt: skip
        deleted = None
        for f in live.fills:  # delete the quote(s) this fill met, back to a different one
            rows = store.query(
                "SELECT ts, bid, ask FROM quotes WHERE contract = :c AND ts <= :t "
                "AND ts > :e ORDER BY ts DESC",
                {"c": f["contract"], "t": _dt(f["ts_ns"]), "e": _dt(entry["ts_ns"])},
            )
            older = [r for r in rows.iter_rows(named=True) if (r["bid"], r["ask"]) != (f["bid"],
                     f["ask"])]  # fmt: skip
            if older:
                store.execute("DELETE FROM quotes WHERE contract = :c AND ts > :a AND ts <= :t",
                              {"c": f["contract"], "a": older[0]["ts"],
                               "t": _dt(f["ts_ns"])})  # fmt: skip
                deleted = f
                break
        assert deleted is not None
        result = asyncio.run(validate_day(store, DAY, tmp_path / "work"))
    found = result.comparison.divergences
    quote = [d for d in found if d.kind == "quote"]
    assert len(quote) == 1 and quote[0].cause == "different quote seen"
    assert deleted["contract"] in quote[0].detail and quote[0].ts_ns == deleted["ts_ns"]
    assert {d.cause for d in found} == {"different quote seen"}


def test_a_manual_close_is_reported_as_a_manual_action(tmp_path: Path):
    def by_hand(run: Run) -> None:
        """At MANUAL_AT a trader closes everything from the monitor's command path."""
        commands = Commands(run.desk, run.orders, run.subscribe_expiry)
        fired: list[object] = []

        def tick() -> None:
            now = run.clock.now().astimezone(NEW_YORK).time()
            if not fired and now >= MANUAL_AT:
                fired.append(asyncio.get_running_loop().create_task(
                    commands.run({"cmd": "close_all"}, who="trader")))  # fmt: skip

        run.desk.on_heartbeat.append(tick)

    db = tmp_path / "manual.duckdb"
    _record(db, on_start=by_hand)
    with open_store(str(db)) as store:
        result = asyncio.run(validate_day(store, DAY, tmp_path / "work"))
    found = result.comparison.divergences
    assert found and {d.cause for d in found} == {"manual action"}
    root = found[0]
    assert root.kind == "exit" and "trader" in root.detail
    assert root.ts_ns >= _ns_at(MANUAL_AT)
    # the replay, with no hand on the desk, closed later by its time stop
    assert any(d.kind == "action" or d.kind == "exit" for d in found[1:])
    assert result.comparison.pnl_live != result.comparison.pnl_replay


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_validation_notebook_runs_on_a_recorded_simulated_day(
    paper_day: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("KIT_DB_URL", str(_copy(paper_day, tmp_path / "notebook.duckdb")))
    monkeypatch.delenv("DB_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("KIT_VALIDATE_DATE", raising=False)
    _, text = run_notebook(NOTEBOOK, NOTEBOOK_CHECKS)
    assert "VALIDATION NOTEBOOK CHECKS PASSED" in text
    assert "0 divergences" in text and "[costs.live]" in text


def test_validate_refuses_a_missing_store_and_an_unrecorded_day(paper_day: Path, tmp_path: Path):
    missing = subprocess.run([sys.executable, "-m", "kit", "validate", "--db",
                              str(tmp_path / "none.duckdb")], capture_output=True, text=True,
                             timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "no database at" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    db = _copy(paper_day, tmp_path / "other.duckdb")
    other = subprocess.run([sys.executable, "-m", "kit", "validate", "--db", str(db), "--date",
                            "2024-03-13"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert other.returncode == 2 and "no recorded day 2024-03-13" in other.stderr


def _dt(ts_ns: int):
    from kit.core.clock import from_ns

    return from_ns(ts_ns)


def _ns_at(t: time) -> int:
    from datetime import datetime

    return int(datetime.combine(DAY, t, NEW_YORK).timestamp() * 1e9)

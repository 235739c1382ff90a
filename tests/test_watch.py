"""``kit watch``: the alert-only desk. Grid results are made by running the real grid on a small
simulated history; the scanner's trades are checked against the chain (strike rules, credit at
mid and natural, spreads' max risk = width - credit) and against the results tables read back
with DuckDB; a scripted simulated morning produces regime-change, opportunity and exit alerts
while no order can leave."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from kit.app.watch import Watch, WatchSpec
from kit.app.watch_config import WatchConfig
from kit.app.watch_scan import candidates, load_results
from kit.cli.main import main
from kit.core.clock import NEW_YORK
from kit.core.model import Alert, Severity
from kit.engine.records import AlertRecord
from kit.research.grid import parse_grid, run_grid, write_results
from kit.research.history.band import Band, sessions
from kit.research.history.build import run_build
from kit.research.history.sim import SimHistory
from kit.signals.regimes import VIX_REGIMES
from kit.sinks.jsonl import RotatingJsonlSink

GRID = {
    "settings": {"capital": 25_000, "band_min_samples": 2, "trend_days": 2},
    "grid": {
        "strategy": ["iron_condor", "put_credit_spread", "short_strangle"],
        "entry_time": ["10:00"],
        "strikes": ["delta:0.12", "otm_pct:1", "premium:2", "P90"],
        "wings": [10, 20],
        "vix_regime": ["any", "very_low,low"],
        "trend": ["any", "sideways"],
    },
}
LENIENT = """[watch]
min_score = -100.0
min_win_rate = 0.0
min_roi = -1000.0
min_sharpe = -100.0
min_trades = 1
top_n = 40
alert_log = "{tmp}/alerts.jsonl"
state_file = "{tmp}/state.json"
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A real grid run: 8 simulated SPX 0DTE sessions, 96 configs, written as the CLI does."""
    hist = tmp_path_factory.mktemp("history")
    src = SimHistory("SPX", 3, 60, Band(max_dte=0, strike_pct=0.02))
    run_build(hist, "SPX", sessions(date(2025, 6, 2), date(2025, 6, 11)), src.make_day,
              src.signature, progress="off")  # fmt: skip
    out = tmp_path_factory.mktemp("results")
    write_results(run_grid(hist, parse_grid(GRID), workers=1), out)
    return out


def config_file(tmp_path: Path, extra: str = "") -> str:
    """LENIENT thresholds, with ``extra``'s keys replacing theirs."""
    keys = {line.split("=")[0].strip() for line in extra.splitlines() if "=" in line}
    base = [ln for ln in LENIENT.format(tmp=tmp_path).splitlines()
            if ln.split("=")[0].strip() not in keys]  # fmt: skip
    p = tmp_path / "watch.toml"
    p.write_text("\n".join(base) + "\n" + extra)
    return str(p)


def once(capsys, tmp_path: Path, results: Path, *args: str, extra: str = "") -> dict:
    code = main(["watch", "--once", "--json", "--grid", str(results), "--file",
                 str(tmp_path / "manual.json"), "--config", config_file(tmp_path, extra),
                 *args])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


def _mid(leg: dict) -> float:
    return 0.5 * (leg["bid"] + leg["ask"])


def test_once_json_trades_follow_the_config_rules(capsys, tmp_path, results):
    doc = once(capsys, tmp_path, results, "--at", "2024-03-12T10:30", "--seed", "3")
    ctx = doc["context"]
    assert ctx["market_open"] is True and ctx["regime"] in VIX_REGIMES
    assert 4000 < ctx["price"] < 6000 and 5 < ctx["vix"] < 80 and 0 <= ctx["iv_rank"] <= 100
    assert ctx["gamma_regime"] in ("LOW_VOL", "HIGH_VOL", "CRASH")
    opps = doc["opportunities"]
    assert len(opps) >= 5
    con = duckdb.connect(str(results / "grid.duckdb"), read_only=True)
    rules_seen = set()
    for o in opps:
        assert {"config_id", "strategy", "expiry", "legs", "credit", "max_risk", "win_rate",
                "score", "in_entry_window"} <= set(o)  # fmt: skip
        assert o["expiry"] == "2024-03-12" and o["in_entry_window"] is True
        sells = [leg for leg in o["legs"] if leg["side"] == "sell"]
        buys = [leg for leg in o["legs"] if leg["side"] == "buy"]
        want = {"iron_condor": (2, 2), "put_credit_spread": (1, 1), "short_strangle": (2, 0)}
        assert (len(sells), len(buys)) == want[o["strategy"]]
        # credit at mid and at natural, recomputed from the legs' quotes
        mid = sum(_mid(x) for x in sells) - sum(_mid(x) for x in buys)
        nat = sum(x["bid"] for x in sells) - sum(x["ask"] for x in buys)
        assert o["credit"] == pytest.approx(mid, abs=1e-6)
        assert o["credit_natural"] == pytest.approx(nat, abs=1e-6)
        if buys:  # defined risk: the widest wing minus the credit, per contract in dollars
            width = max(abs(b["strike"] - s["strike"]) for b in buys for s in sells
                        if b["right"] == s["right"])  # fmt: skip
            assert o["max_risk"] == pytest.approx((width - mid) * 100, abs=0.01)
        # the strike rule, checked on the short legs
        rule = o["strike_rule"]
        rules_seen.add(rule.split(":")[0])
        for s in sells:
            if rule == "otm_pct:1":
                target = ctx["price"] * (0.99 if s["right"] == "P" else 1.01)
                assert abs(s["strike"] - target) <= 2.5 + 1e-9  # SPXW: 5-point strikes
            elif rule == "delta:0.12":
                assert abs(abs(s["delta"]) - 0.12) < 0.04
            elif rule == "premium:2":
                assert abs(_mid(s) - 2.0) < 0.6
        # the backtest's numbers are the grid's (its regime's rows when it has them)
        if o["stats_for"] == "all sessions":
            row = con.execute("SELECT win_rate, composite_score FROM results WHERE config_id=?",
                              [o["config_id"]]).fetchone()  # fmt: skip
        else:
            regime = o["stats_for"].split("=")[1]
            row = con.execute("SELECT win_rate, composite_score FROM by_regime WHERE "
                              "config_id=? AND dimension='vix_regime' AND value=?",
                              [o["config_id"], regime]).fetchone()  # fmt: skip
        assert o["win_rate"] == pytest.approx(row[0], abs=1e-3)
        assert o["score"] == pytest.approx(row[1], abs=1e-3)
    assert {"otm_pct", "delta", "premium"} <= rules_seen
    scores = [o["score"] for o in opps]
    assert scores == sorted(scores, reverse=True)
    trades = {(o["strategy"], tuple(x["strike"] for x in o["legs"])) for o in opps}
    assert len(trades) == len(opps)  # configs differing only in exits: one trade
    # the P90 rule needs past sessions' moves: those configs say so rather than guess
    p90 = con.execute("SELECT config_id FROM results WHERE strikes='P90'").fetchall()
    assert not {o["config_id"] for o in opps} & {r[0] for r in p90}


def test_trend_filter_and_regime(capsys, tmp_path, results):
    con = duckdb.connect(str(results / "grid.duckdb"), read_only=True)
    trend_of = dict(con.execute("SELECT config_id, trend FROM results").fetchall())
    regime_of = dict(con.execute("SELECT config_id, vix_regime FROM results").fetchall())
    auto = once(capsys, tmp_path, results, "--at", "2024-03-12T10:30", "--seed", "3")
    assert {trend_of[o["config_id"]] for o in auto["opportunities"]} == {"any"}
    regime = auto["context"]["regime"]
    grid, lenient = load_results(results), WatchConfig(min_score=-100, min_win_rate=0,
                                                       min_roi=-1000, min_sharpe=-100,
                                                       min_trades=1)  # fmt: skip
    pool_side = candidates(grid, regime, "sideways", lenient)["config_id"].to_list()
    pool_auto = candidates(grid, regime, None, lenient)["config_id"].to_list()
    pool_down = candidates(grid, regime, "down", lenient)["config_id"].to_list()
    assert {trend_of[c] for c in pool_side} == {"any", "sideways"}
    assert {trend_of[c] for c in pool_auto} == {trend_of[c] for c in pool_down} == {"any"}
    for o in auto["opportunities"]:
        assert regime_of[o["config_id"]] == "any" or regime in regime_of[o["config_id"]]


def test_says_why_when_there_is_nothing_to_do(capsys, tmp_path, results):
    early = once(capsys, tmp_path, results, "--at", "2024-03-12T09:35")
    assert any("outside entry window" in r for r in early["reasons"])
    assert early["opportunities"] and not any(o["in_entry_window"] for o in early["opportunities"])
    closed = once(capsys, tmp_path, results, "--at", "2024-03-12T09:50",
                  extra='trading_start = "10:00"\nentry_start = "10:15"\n')  # fmt: skip
    assert closed["opportunities"] == [] and "outside trading hours" in closed["reasons"]
    strict = once(capsys, tmp_path, results, "--at", "2024-03-12T10:30",
                  extra="min_trades = 1000\n")  # fmt: skip
    assert strict["opportunities"] == []
    assert any(r.startswith("no config for this regime") for r in strict["reasons"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("colour = 1\n", "unknown key 'colour'"),
        ('entry_start = "9h"\n', "entry_start: not a time"),
        ('timezone = "Mars/Olympus"\n', "timezone: unknown zone"),
        ("scan_interval_s = 0\n", "scan_interval_s: must be positive"),
        ('entry_start = "15:00"\nentry_end = "10:00"\n', "entry_start must be before entry_end"),
    ],
)
def test_bad_config_is_one_line(capsys, tmp_path, results, extra, message):
    cfg = config_file(tmp_path, extra)
    code = main(["watch", "--once", "--grid", str(results), "--config", cfg])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_missing_grid_is_one_line(capsys, tmp_path):
    code = main(["watch", "--once", "--grid", str(tmp_path), "--at", "2024-03-12T10:30"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "not grid results" in err and len(err.splitlines()) == 1


def test_scripted_morning_alerts_and_never_orders(capsys, tmp_path, results, monkeypatch):
    """09:35-10:06 on a seeded day with a VIX spike (script vol_spike): VIX regime changes,
    opportunities at the configs' 10:00 entry (each once), the manual strangle's exit alerts;
    nothing that could make an order is ever constructed."""

    def refuse(*_a, **_k):
        raise AssertionError("kit watch tried to construct a broker or an order manager")

    monkeypatch.setattr("kit.execution.live.make_broker", refuse)
    monkeypatch.setattr("kit.app.build.OrderManager", refuse)
    journal = tmp_path / "manual.json"
    assert main(["positions", "add", "strangle", "--underlying", "SPX", "--expiry", "2024-03-12",
                 "--put", "4990", "--call", "5010", "--contracts", "1", "--credit", "0.50",
                 "--file", str(journal), "--at", "2024-03-12T09:31-04:00"]) == 0  # fmt: skip
    capsys.readouterr()
    cfg = WatchConfig(min_score=-100, min_win_rate=0, min_roi=-1000, min_sharpe=-100, min_trades=1,
                      trading_end=datetime(2024, 3, 12, 10, 6).time(),  # the day's summary
                      alert_log=str(tmp_path / "alerts.jsonl"),
                      state_file=str(tmp_path / "state.json"))  # fmt: skip
    spec = WatchSpec(grid=str(results), config=cfg, day=date(2024, 3, 12),
                     start=datetime(2024, 3, 12, 9, 35).time(), seed=9, speed=None,
                     script="vol_spike", manual=journal)  # fmt: skip
    events: list[object] = []

    async def morning() -> Watch:
        w = await Watch(spec).start()
        assert w.run.broker is None and w.run.orders is None and not w.desk.auto_manage
        w.desk.listeners.append(events.append)
        passes = {"context": 0}
        update = w.update_context

        async def counted():
            passes["context"] += 1
            return await update()

        w.update_context = counted  # type: ignore[method-assign]
        w.start_loops()
        await w.clock.run_until(datetime(2024, 3, 12, 10, 6, tzinfo=NEW_YORK))
        w.passes = passes  # type: ignore[attr-defined]
        await w.close()
        return w

    w = asyncio.run(morning())
    alerts = [r.alert for r in w.desk.alerts.history]
    regime = [a for a in alerts if a.rule == "regime_change" and a.key == "vix"]
    assert regime and all(a.message.startswith("Regime change: ") for a in regime)
    assert "MEDIUM → HIGH (VIX " in regime[0].message
    opp = [a for a in alerts if a.rule == "opportunity"]
    assert opp and all(a.severity is Severity.INFO for a in opp)
    assert all(datetime.fromtimestamp(a.ts_ns / 1e9, NEW_YORK).time() >= datetime(2024, 3, 12, 10)
               .time() for a in opp)  # fmt: skip
    assert len({a.key for a in opp}) == len(opp)  # the 10:05 scan repeats none of 10:00's
    exits = {a.rule for a in alerts if a.position_id == "manual:m1"}
    assert "stop_loss" in exits, [(a.rule, a.position_id) for a in alerts]
    assert w.desk.rules.limits.max_open_positions == 5  # the watch's defaults (no --rules)
    assert [lv.at for lv in w.desk.rules.profit_target.levels] == [50.0]
    assert w.passes["context"] == 32  # 09:35 .. 10:06, one a minute
    (eod,) = [a for a in alerts if a.rule == "end_of_day"]
    assert eod.message.startswith(f"End of day 2024-03-12: {len(opp)} opportunities alerted, "
                                  f"{sum(a.rule == 'regime_change' for a in alerts)} regime "
                                  "changes; 1 open / 0 closed positions")  # fmt: skip
    kinds = {type(e).__name__ for e in events}
    assert not kinds & {"OrderState", "Fill"}
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["context"]["ts"].startswith("2024-03-12T14:06")
    assert [p["id"] for p in state["positions"]] == ["manual:m1"]
    assert state["portfolio"]["open"] == 1
    logged = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert {"regime_change", "opportunity"} <= {d.get("rule") for d in logged}


def test_alert_log_rotates(tmp_path):
    sink = RotatingJsonlSink(tmp_path / "a.jsonl", max_bytes=600, keep=2)
    rec = AlertRecord(1, Alert(1, Severity.INFO, "opportunity", "x" * 200))
    for _ in range(8):
        asyncio.run(sink.send([rec]))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["a.jsonl", "a.jsonl.1", "a.jsonl.2"]
    assert all(p.stat().st_size <= 600 for p in tmp_path.iterdir())
    assert sum(len(p.read_text().splitlines()) for p in tmp_path.iterdir()) <= 8


NB_CHECKS = """
html = scanner.page.value
for cid in WANT_IDS:
    assert f"#{cid} " in html, cid
assert html.count("<tr class='now'>") == WANT_NOW
assert "VIX " + str(WANT_VIX) in html, html[:1200]
assert "manual:m1" in html, html[-2000:]
assert scanner.client.hello["engine"]["mode"] == "alert_only"
assert scanner.client.hello["commands"] == []
from kit.remote.client import CommandRefusedError
try:
    await scanner.client.command("close_all")
    raise AssertionError("the watch took a command")
except CommandRefusedError as exc:
    assert "alert-only" in str(exc)
frames = scanner.frames
await scanner.client.next_snapshot(timeout_s=30)  # the test publishes a later pass
import asyncio
for _ in range(50):
    if scanner.frames > frames:
        break
    await asyncio.sleep(0.1)
assert scanner.frames > frames and "T14:31" in scanner.page.value, scanner.page.value[:400]
await scanner.stop()
print("SCANNER PAGE OK")
"""


def test_dashboard_notebook_follows_the_watch_live(capsys, tmp_path, results, monkeypatch):
    """notebooks/scanner.ipynb executed in a real kernel against a Watch serving its gateway in
    this process: every opportunity listed, the in-window ones highlighted, the manual position;
    the state file is deleted first (the page reads the wire, not the file), a command is
    refused (alert-only), and a later pass published while the kernel waits is drawn."""
    import nbformat
    from nbclient import NotebookClient

    from kit.core.clock import SimClock

    journal = tmp_path / "manual.json"
    assert main(["positions", "add", "put_spread", "--underlying", "SPX", "--expiry",
                 "2024-03-15", "--short", "4900", "--long", "4875", "--contracts", "2",
                 "--credit", "3.10", "--file", str(journal), "--at",
                 "2024-03-12T09:40-04:00"]) == 0  # fmt: skip
    capsys.readouterr()
    doc = once(capsys, tmp_path, results, "--at", "2024-03-12T10:30", "--seed", "3")
    nb_path = Path(__file__).resolve().parents[1] / "notebooks" / "scanner.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    assert all(not c.outputs for c in nb.cells if c.cell_type == "code")
    ids = [o["config_id"] for o in doc["opportunities"]]
    now = sum(o["in_entry_window"] for o in doc["opportunities"])
    nb.cells.append(nbformat.v4.new_code_cell(
        f"WANT_IDS, WANT_NOW, WANT_VIX = {ids!r}, {now}, '{doc['context']['vix']:,.2f}'\n"
        + NB_CHECKS))  # fmt: skip
    token = "watch-test-token-0123456789abcdef"
    monkeypatch.setenv("KIT_TOKEN", token)
    cfg = WatchConfig(min_score=-100, min_win_rate=0, min_roi=-1000, min_sharpe=-100,
                      min_trades=1, top_n=40, alert_log=str(tmp_path / "alerts.jsonl"),
                      state_file=str(tmp_path / "state.json"))  # fmt: skip
    spec = WatchSpec(grid=str(results), config=cfg, day=date(2024, 3, 12),
                     start=datetime(2024, 3, 12, 10, 30).time(), seed=3, speed=None,
                     manual=journal)  # fmt: skip

    async def served() -> dict:
        w = await Watch(spec).start()
        try:
            mine = await w.once()
            gateway = await w.serve(0)
            (tmp_path / "state.json").unlink()
            monkeypatch.setenv("KIT_WATCH_URL", f"ws://127.0.0.1:{gateway.port}")
            where = {"metadata": {"path": str(nb_path.parents[1])}}
            client = NotebookClient(nb, timeout=120, kernel_name="python3", resources=where)
            asked, refuse = asyncio.Event(), gateway._commands

            async def spy(message: object, who: str) -> dict:
                asked.set()  # the page has checked the first pass: publish the next one
                return await refuse(message, who)

            gateway._commands = spy
            run = asyncio.ensure_future(asyncio.to_thread(client.execute))
            while not asked.is_set() and not run.done():
                await asyncio.sleep(0.1)
            assert isinstance(w.clock, SimClock)
            await w.clock.run_until(datetime(2024, 3, 12, 10, 31, 5, tzinfo=NEW_YORK))
            await w.update_context()
            w.write_state()
            await run
            return mine
        finally:
            await w.close()

    mine = asyncio.run(served())
    assert [o["config_id"] for o in mine["opportunities"]] == ids
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], outputs
    assert "SCANNER PAGE OK" in "".join(o.get("text", "") for o in outputs)


def test_out_of_the_box_grid_gives_trend_and_p_bands(capsys, tmp_path, monkeypatch):
    """Without --grid: a simulated history and grid built on first run (24 sessions here); the
    history beside it gives --trend auto its trend and the P90 rule its band, both checked
    with plain polars/numpy on the history's files."""
    import numpy as np
    import polars as pl

    from kit.app import watch_grid

    monkeypatch.setattr(watch_grid, "SESSIONS", 24)
    out = watch_grid.ensure_grid("SPX", date(2024, 3, 12), base=tmp_path, progress="off")
    built = (out / "results.parquet").stat().st_mtime_ns
    assert watch_grid.ensure_grid("SPX", date(2024, 3, 12), base=tmp_path) == out
    assert (out / "results.parquet").stat().st_mtime_ns == built  # built once
    capsys.readouterr()
    doc = once(capsys, tmp_path, out, "--at", "2024-03-12T10:30", "--seed", "3",
               extra="top_n = 200\n")  # fmt: skip
    ctx = doc["context"]
    files = sorted((out / "history" / "underlying=SPX").glob("date=*/*.parquet"))
    closes, moves = [], []
    for f in files:
        s = pl.read_parquet(f, columns=["ts", "spot"]).unique("ts").sort("ts")
        ny = s["ts"].dt.convert_time_zone("America/New_York")
        at10 = s.filter(ny.dt.hour().cast(pl.Int32) * 60 + ny.dt.minute().cast(pl.Int32) >= 600)[
            "spot"
        ][0]
        closes.append(s["spot"][-1])
        moves.append(s["spot"][-1] / at10 - 1)
    move = closes[-1] / np.mean(closes[-20:]) * 100 - 100
    assert ctx["trend_source"] == "history"
    assert ctx["trend"] == ("up" if move > 1 else "down" if move < -1 else "sideways")
    banded = [o for o in doc["opportunities"] if o["strike_rule"] == "P90"
              and o["entry_time"] == "10:00"]  # fmt: skip
    assert banded, doc["reasons"]
    edge = {"P": np.quantile(moves, 0.10), "C": np.quantile(moves, 0.90)}
    for o in banded:
        for leg in (x for x in o["legs"] if x["side"] == "sell"):
            k, right = leg["strike"], leg["right"]
            level = ctx["price"] * (1 + edge[right])
            assert k <= level if right == "P" else k >= level, (k, level)
            assert abs(k - level) < 5 + 1e-9  # the first 5-point strike beyond it


def test_continuous_cli_runs_and_stops(tmp_path, results):
    """``kit watch`` as a user runs it (a child process, console sink, no dashboard) on the
    simulator at 60x from 10:01 until 10:06: it prints the first scan's opportunities and stops
    cleanly with status 0 at --until."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "kit", "watch", "--no-dashboard", "--grid", str(results),
         "--config", config_file(tmp_path), "--file", str(tmp_path / "manual.json"),
         "--at", "2024-03-12T10:01", "--seed", "3", "--speed", "60", "--until", "10:06"],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "kit watch: alert-only SPX on sim from 2024-03-12 10:0" in out
    assert "OPPORTUNITY SPX" in out and out.rstrip().endswith("kit watch: stopped")
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["context"]["ts"] >= "2024-03-12T14:03"  # later passes ran (a loaded machine lags)


def test_ndx_reads_its_own_chain(capsys, tmp_path, results):
    """NDX: its price comes from the feed's first NDX tick (the simulator's chain snapshot
    carries SPX, not NDX) and the trades are on the NDXP dailies' 25-point strikes."""
    doc = once(capsys, tmp_path, results, "--at", "2024-03-12T10:30", "--underlying", "NDX")
    assert doc["context"]["underlying"] == "NDX" and doc["context"]["price"] > 10_000
    assert doc["opportunities"]
    for o in doc["opportunities"]:
        assert o["root"] == "NDXP"
        assert all(leg["contract"].startswith("NDXP ") and leg["strike"] % 25 == 0
                   for leg in o["legs"])  # fmt: skip


def test_alerts_reach_the_store(capsys, tmp_path, results):
    """--db: the opportunity alerts of a scan are rows of the store's alerts table."""
    db = tmp_path / "desk.duckdb"
    doc = once(capsys, tmp_path, results, "--at", "2024-03-12T10:30", "--seed", "3",
               "--db", str(db))  # fmt: skip
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT message FROM alerts WHERE rule = 'opportunity'").fetchall()
    in_window = [o for o in doc["opportunities"] if o["in_entry_window"]]
    assert len(rows) == len(in_window) > 0
    for o in in_window:
        assert any(f"(config {o['config_id']}," in m for (m,) in rows)


def test_risk_limit_alerts_at_the_watch_defaults(capsys, tmp_path, results):
    """Six hand-traded 10-lot iron condors: more than the watch's 5 open positions and more
    than its $50,000 total risk, each one limits alert."""
    journal = tmp_path / "manual.json"
    for put in (4900, 4880, 4860, 4840, 4820, 4800):
        assert main(["positions", "add", "iron_condor", "--underlying", "SPX", "--expiry",
                     "2024-03-15", "--put", str(put), "--call", str(put + 250), "--wings", "25",
                     "--contracts", "10", "--credit", "2.00", "--file", str(journal), "--at",
                     "2024-03-12T09:40-04:00"]) == 0  # fmt: skip
    capsys.readouterr()
    cfg = WatchConfig(alert_log=str(tmp_path / "a.jsonl"), state_file=str(tmp_path / "s.json"))
    spec = WatchSpec(grid=str(results), config=cfg, day=date(2024, 3, 12), seed=3, speed=None,
                     start=datetime(2024, 3, 12, 10, 30).time(), manual=journal)  # fmt: skip

    async def one_pass() -> list[Alert]:
        w = await Watch(spec).start()
        try:
            await w.once()
            return [r.alert for r in w.desk.alerts.history]
        finally:
            await w.close()

    limits = {a.key: a for a in asyncio.run(one_pass()) if a.rule == "limits"}
    assert "6 open positions exceed the limit of 5" in limits["open_positions"].message
    assert "exceeds $50,000" in limits["total_risk"].message
    assert limits["total_risk"].inputs["total_risk"] > 50_000


def test_stated_pnl_for_contracts_the_feed_lacks(capsys, tmp_path):
    """``kit positions update ID --pnl X`` for positions the simulator does not quote (an SPY
    strangle, a far SPX expiry): the watch shows the stated P&L (flagged, with its time) and
    raises the rules' profit-target / stop alerts on it once per statement; a quoted position
    keeps its live mark whatever was stated."""
    f = ["--file", str(tmp_path / "manual.json")]
    for legs in (["--underlying", "SPY", "--expiry", "2024-03-15", "--put", "480", "--call", "520"],
                 ["--underlying", "SPX", "--expiry", "2024-06-21", "--put", "4000", "--call",
                  "6000"],
                 ["--underlying", "SPX", "--expiry", "2024-03-12", "--put", "4990", "--call",
                  "5010"]):  # fmt: skip
        assert main(["positions", "add", "strangle", *legs, "--contracts", "1", "--credit", "5",
                     *f, "--at", "2024-03-12T09:40-04:00"]) == 0  # fmt: skip
    for pid, pnl in (("m1", "300"), ("m2", "-1200"), ("m3", "12345")):
        assert main(["positions", "update", pid, "--pnl", pnl, *f, "--at",
                     "2024-03-12T10:20-04:00"]) == 0  # fmt: skip
    capsys.readouterr()
    cfg = WatchConfig(alert_log=str(tmp_path / "alerts.jsonl"),
                      state_file=str(tmp_path / "state.json"))  # fmt: skip
    spec = WatchSpec(config=cfg, day=date(2024, 3, 12), start=datetime(2024, 3, 12, 10, 30).time(),
                     seed=3, speed=None, manual=tmp_path / "manual.json")  # fmt: skip

    async def day() -> tuple[Watch, list[dict], list]:
        w = await Watch(spec).start()
        try:
            await w.once()
            for _ in range(3):
                rows = w.track()
            first = [r.alert for r in w.desk.alerts.history if r.alert.key.startswith("stated:")]
            assert main(["positions", "update", "m1", "--pnl", "320", *f, "--at",
                         "2024-03-12T10:40-04:00"]) == 0  # fmt: skip
            w.track()
            return w, rows, first
        finally:
            await w.close()

    w, rows, first = asyncio.run(day())
    by = {r["id"]: r for r in rows}
    assert by["manual:m1"]["pnl_source"] == "stated" and by["manual:m1"]["open_pnl"] == 300.0
    assert by["manual:m1"]["pnl_pct"] == pytest.approx(60.0)  # $300 of a $500 credit
    assert by["manual:m2"]["open_pnl"] == -1200.0 and by["manual:m2"]["pnl_at"].startswith(
        "2024-03-12T14:20")  # fmt: skip
    assert "pnl_source" not in by["manual:m3"] and by["manual:m3"]["open_pnl"] != 12345.0
    assert sorted((a.rule, a.position_id) for a in first) == [
        ("profit_target", "manual:m1"), ("stop_loss", "manual:m2")]  # fmt: skip
    assert "stated P&L $300.00 is +60.0% of the credit" in first[0].message + first[1].message
    stated = [r.alert for r in w.desk.alerts.history if r.alert.key.startswith("stated:")]
    assert len(stated) == 3 and "$320.00" in stated[-1].message  # the new statement, once
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["portfolio"]["unrealized_pnl"] == pytest.approx(
        300.0 - 1200.0 + by["manual:m3"]["open_pnl"])  # fmt: skip


def test_time_exit_a_day_before_expiry_but_not_for_0dte(capsys, tmp_path):
    """From 09:30 New York the calendar day before expiry, one WARNING ``time_exit`` for a
    position opened earlier than that (a Wednesday strangle opened on Monday, on Tuesday 10:30);
    none for a 0DTE, a 1DTE opened that morning, or a Friday expiry; once however many passes."""
    from kit.app.watch_config import WatchConfigError, parse_config

    f = ["--file", str(tmp_path / "manual.json")]
    trades = (("2024-03-13", "2024-03-11T10:00"), ("2024-03-12", "2024-03-12T09:40"),
              ("2024-03-15", "2024-03-11T10:00"), ("2024-03-13", "2024-03-12T09:45"))  # fmt: skip
    for expiry, at in trades:
        assert main(["positions", "add", "strangle", "--underlying", "SPX", "--expiry", expiry,
                     "--put", "4900", "--call", "5100", "--contracts", "1", "--credit", "5",
                     *f, "--at", f"{at}-04:00"]) == 0  # fmt: skip
    capsys.readouterr()
    cfg = WatchConfig(alert_log=str(tmp_path / "alerts.jsonl"),
                      state_file=str(tmp_path / "state.json"))  # fmt: skip
    spec = WatchSpec(config=cfg, day=date(2024, 3, 12), start=datetime(2024, 3, 12, 10, 30).time(),
                     seed=3, speed=None, manual=tmp_path / "manual.json")  # fmt: skip

    async def day() -> Watch:
        w = await Watch(spec).start()
        try:
            await w.once()
            await w.clock.run_until(datetime(2024, 3, 12, 10, 35, tzinfo=NEW_YORK))
            w.track()
            return w
        finally:
            await w.close()

    w = asyncio.run(day())
    exits = [r.alert for r in w.desk.alerts.history if r.alert.rule == "time_exit"]
    assert [(a.position_id, a.severity) for a in exits] == [("manual:m1", Severity.WARNING)]
    assert "expires 2024-03-13 (settles 2024-03-13 16:00)" in exits[0].message
    assert parse_config({"watch": {"time_exit_days": 2}}).time_exit_days == 2
    with pytest.raises(WatchConfigError, match="time_exit_days: must be positive"):
        parse_config({"watch": {"time_exit_days": 0}})

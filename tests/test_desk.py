"""The Desk end to end: scripted simulator sessions, freezes, the kill switch, bad events."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.app.scenarios import DEFAULT_DAY, SCENARIOS, run
from kit.core.clock import NEW_YORK, NS_PER_S, SimClock, to_ns
from kit.core.model import (
    Action,
    ActionKind,
    Contract,
    FeedState,
    FeedStatus,
    Fill,
    Leg,
    Position,
    Quote,
    Side,
    StrategyType,
    UnderlyingTick,
)
from kit.engine.desk import Desk
from kit.risk.rules import load_rules
from kit.sinks.jsonl import JsonlSink

DAY = date(2024, 3, 12)
PUT = Contract("SPXW", DAY, 4950.0, "P")
CALL = Contract("SPXW", DAY, 5050.0, "C")
QUIET = {rule: {"enabled": False} for rule in ("delta", "gamma", "liquidity", "strike_breach")}


def _first_seen(alerts, start_ns: int) -> dict[str, list[float]]:
    seen: dict[str, list[float]] = {}
    for record in alerts:
        a = record.alert
        seen.setdefault(a.rule, []).append((a.ts_ns - start_ns) / NS_PER_S)
    return seen


@pytest.mark.parametrize("name", ["rapid_drop", "vol_spike", "feed_pause", "zero_dte_close"])
async def test_each_scenario_fires_its_rule_inside_its_window(name, tmp_path):
    out = tmp_path / "alerts.jsonl"
    result = await run(name, sinks=[JsonlSink(out)])
    scenario = SCENARIOS[name]
    start = to_ns(datetime.combine(DEFAULT_DAY, scenario.start, NEW_YORK))
    seen = _first_seen(result.alerts, start)
    for rule, lo, hi in scenario.expects:
        assert any(lo <= t <= hi for t in seen.get(rule, [])), (rule, seen.get(rule))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    alerts = [d for d in lines if d["kind"] == "alert"]
    assert len(alerts) == len(result.alerts)  # the sink was flushed: nothing lost
    assert {a["rule"] for a in alerts} == {r.alert.rule for r in result.alerts}


async def test_a_scripted_day_raises_the_expected_alerts_in_order():
    result = await run("day")
    scenario = SCENARIOS["day"]
    start = to_ns(datetime.combine(DEFAULT_DAY, scenario.start, NEW_YORK))
    seen = _first_seen(result.alerts, start)
    times = []
    for rule, lo, hi in scenario.expects:
        inside = [t for t in seen.get(rule, []) if lo <= t <= hi]
        assert inside, (rule, seen.get(rule))
        times.append(inside[0])
    assert times == sorted(times)
    assert [p["id"] for p in result.snapshot.positions] == ["demo-4dte", "demo-0dte"]


def test_kit_run_prints_one_json_alert_per_line():
    proc = subprocess.run(
        [sys.executable, "-m", "kit", "run", "--feed", "sim", "--script", "feed_pause",
         "--speed", "max", "--jsonl"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    alerts = [r for r in rows if r["kind"] == "alert"]
    assert all({"ts", "severity", "rule", "message"} <= set(a) for a in alerts)
    assert "feed_stale" in {a["rule"] for a in alerts}
    summary = rows[-1]
    assert summary["kind"] == "summary" and summary["scenario"] == "feed_pause"
    assert summary["alerts"]["feed_stale"] == sum(a["rule"] == "feed_stale" for a in alerts)
    assert {r["kind"] for r in rows} >= {"alert", "decision", "feed", "summary"}


def test_kit_run_rejects_an_unknown_script_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "kit", "run", "--script", "nope"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "invalid choice: 'nope'" in proc.stderr


# --- a desk driven by hand on a stepped clock ---


def _at(hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(2024, 3, 12, hh, mm, ss, tzinfo=NEW_YORK)


def _market(clock: SimClock, put_mid: float, call_mid: float) -> list:
    ts = clock.now_ns()
    return [
        UnderlyingTick("SPX", 5000.0, ts),
        UnderlyingTick("SPY", 500.0, ts),
        Quote(PUT, put_mid - 0.05, put_mid + 0.05, 10, 10, ts),
        Quote(CALL, call_mid - 0.05, call_mid + 0.05, 10, 10, ts),
    ]


def _open_strangle(desk: Desk, put: float = 2.0, call: float = 2.0) -> None:
    now = desk.clock.now_ns()
    pos = Position("S1", StrategyType.STRANGLE, (Leg(PUT, -1), Leg(CALL, -1)), 1, now)
    fills = [Fill(f"f{i}", "c1", c, Side.SELL, 1.0, p, now)
             for i, (c, p) in enumerate(((PUT, put), (CALL, call)))]  # fmt: skip
    desk.open_position(pos, fills)


class Recorder:
    """The execution side as the desk sees it (the order manager arrives with execution)."""

    def __init__(self) -> None:
        self.actions: list[Action] = []

    async def __call__(self, action: Action) -> None:
        self.actions.append(action)


async def test_a_feed_outage_freezes_actions_until_fresh_data_then_acts():
    clock = SimClock(_at(15, 20))
    executor = Recorder()
    desk = Desk(clock, rules=load_rules(overrides=QUIET), executor=executor, auto_manage=True)
    events = []
    desk.hooks.subscribers.append(queue := asyncio.Queue())
    desk.process(_market(clock, 1.6, 1.6))
    _open_strangle(desk)  # 20% profit: no profit target yet, the time stop will want it
    clock.advance_to(_at(15, 29))
    desk.process(_market(clock, 1.6, 1.6))
    clock.advance(30)
    desk.evaluate()
    assert desk.frozen
    clock.advance_to(_at(15, 30))
    desk.evaluate()  # 30 minutes to the close with 20% profit: time stop, but frozen
    await asyncio.sleep(0)
    assert executor.actions == []
    clock.advance(5)
    desk.process(_market(clock, 1.6, 1.6))  # fresh data
    await asyncio.sleep(0)
    assert not desk.frozen
    assert [(a.kind, a.rule) for a in executor.actions] == [(ActionKind.CLOSE_ALL, "time_stop")]
    while not queue.empty():
        events.append(queue.get_nowait())
    statuses = [e.params["status"] for e in events if isinstance(e, Action)
                and e.rule == "time_stop"]  # fmt: skip
    assert statuses == ["held: frozen by feed outage", "executed"]
    await desk.close()


async def test_the_kill_switch_stops_automation_at_once():
    clock = SimClock(_at(15, 20))
    executor = Recorder()
    desk = Desk(clock, rules=load_rules(overrides=QUIET), executor=executor, auto_manage=True)
    desk.process(_market(clock, 2.0, 2.0))
    _open_strangle(desk)
    desk.kill("test")
    assert not desk.auto_manage and desk.killed
    desk.process(_market(clock, 0.4, 0.4))  # 80%: profit targets propose closing
    await asyncio.sleep(0)
    assert executor.actions == []
    with pytest.raises(RuntimeError, match="kill switch"):
        desk.set_auto_manage(True)
    desk.reset_kill()
    desk.set_auto_manage(True)
    assert desk.auto_manage
    await desk.close()


async def test_illiquid_legs_are_never_executed_automatically():
    clock = SimClock(_at(11, 0))
    executor = Recorder()
    rules = load_rules(overrides=QUIET | {"liquidity": {"enabled": True}})
    desk = Desk(clock, rules=rules, executor=executor, auto_manage=True)
    desk.process(_market(clock, 0.5, 3.5))
    _open_strangle(desk, 0.5, 3.5)
    ts = clock.now_ns()
    desk.process([Quote(PUT, 0.3, 0.6, 1, 1, ts), Quote(CALL, 0.49, 0.51, 1, 1, ts)])
    await asyncio.sleep(0)
    assert executor.actions == []  # 75% profit on the marks, but the put is 66% wide
    snap = desk.snapshot()
    assert snap.positions[0]["stale"] is True
    assert {r.alert.rule for r in snap.alerts} >= {"liquidity", "profit_target"}
    await desk.close()


JUNK = st.one_of(
    st.none(), st.integers(), st.text(max_size=5), st.binary(max_size=5),
    st.builds(UnderlyingTick, st.sampled_from(["SPX", "???", "BTC"]),
              st.floats(1, 1e6), st.integers(0, 2**62)),
    st.builds(FeedStatus, st.just("sim"), st.sampled_from(list(FeedState)), st.integers(0, 2**62)),
    st.builds(Quote, st.sampled_from([PUT, CALL, Contract("SPY", DAY, 1.0, "C")]),
              st.floats(0, 10), st.floats(10, 20), st.floats(1, 10), st.floats(1, 10),
              st.integers(0, 2**62)),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(JUNK, max_size=30))
def test_bad_events_never_crash_the_desk(events):
    clock = SimClock(_at(11, 0))
    desk = Desk(clock)
    desk.process(_market(clock, 2.0, 2.0))
    _open_strangle(desk)
    desk.process(events)
    junk = sum(not isinstance(e, Quote | UnderlyingTick | FeedStatus) for e in events)
    assert desk.stats["rejected"] == junk
    assert desk.snapshot().positions[0]["id"] == "S1"


async def test_entry_check_reports_each_failed_condition():
    clock = SimClock(_at(11, 0))
    desk = Desk(clock)
    desk.process(_market(clock, 2.0, 2.0))
    desk.process([Quote(CALL, 1.9, 2.1, 10, 10, clock.now_ns())])  # 10% of mid and $0.20 wide
    pos = Position("new", StrategyType.STRANGLE, (Leg(PUT, -1), Leg(CALL, -1)), 20,
                   clock.now_ns())  # fmt: skip
    check = desk.check_entry(pos)
    assert not check.ok
    text = "; ".join(check.failures)
    assert "spread 10.0% of mid ≥ 2% and wider than $0.1" in text and "open interest" in text
    assert "IV rank unknown" in text and "size 20 > the position limit 10" in text
    assert check.finding.alert.rule == "entry" and check.finding.alert.inputs["quantity"] == 20
    await desk.close()


def test_day_pnl_keeps_what_closed_today_and_open_pnl_leaves_out_what_was_realised():
    """The monitor's header: a position closed at a loss today still counts in DAY P&L, and a
    half-closed one shows only its held units' marks as OPEN P&L."""
    from kit.engine.snapshot import build_snapshot

    desk = Desk(SimClock(_at(11, 0)), rules=load_rules(overrides={"delta": {"enabled": False}}))
    desk.process(_market(desk.clock, 2.0, 2.0))
    now = desk.clock.now_ns()
    pos = Position("S1", StrategyType.STRANGLE, (Leg(PUT, -1), Leg(CALL, -1)), 2, now)
    desk.open_position(pos, [Fill("a", "c1", PUT, Side.SELL, 2.0, 2.0, now),
                             Fill("b", "c1", CALL, Side.SELL, 2.0, 2.0, now)])  # fmt: skip
    desk.process(_market(desk.clock, 3.0, 2.0))  # the put is up a dollar: -$100 per lot
    for fid, c, price in (("c", PUT, 3.0), ("d", CALL, 2.0)):  # close one of the two lots
        desk.book.apply_fill(Fill(fid, "c1", c, Side.BUY, 1.0, price, now), "S1")
    desk.evaluate()
    snap = build_snapshot(desk)
    row = snap.positions[0]
    assert row["realized_pnl"] == pytest.approx(-100.0) and row["open_pnl"] == pytest.approx(-100.0)
    assert snap.totals["open_pnl"] == pytest.approx(-100.0)  # the held lot's marks only
    assert row["original_credit"] == pytest.approx(800.0)  # 2 lots x (2.00 + 2.00) x 100
    assert row["net_credit"] == pytest.approx(300.0)  # less the 5.00 paid back for one lot
    assert snap.totals["day_pnl"] == pytest.approx(-200.0)
    for fid, c, price in (("e", PUT, 3.0), ("f", CALL, 2.0)):  # now close the rest
        desk.book.apply_fill(Fill(fid, "c1", c, Side.BUY, 1.0, price, now), "S1")
    desk.evaluate()
    snap = build_snapshot(desk)
    assert not snap.positions[0]["open"] and snap.totals["open_pnl"] == 0.0
    assert snap.totals["day_pnl"] == pytest.approx(-200.0)  # closed today: still today's P&L


async def test_a_profit_level_halves_a_position_once_even_when_it_clears_and_returns():
    clock = SimClock(_at(11, 0))
    executor = Recorder()
    rules = load_rules(overrides=QUIET | {"time_stop": {"enabled": False},
                                          "trailing_stop": {"enabled": False}})  # fmt: skip
    desk = Desk(clock, rules=rules, executor=executor, auto_manage=True)
    desk.process(_market(clock, 2.0, 2.0))
    _open_strangle(desk)  # credit $400
    # 55%, 35% (cleared), then 55% again after the alert's 300 s cool-down
    for put, call in ((0.9, 0.9), (1.3, 1.3), (0.9, 0.9)):
        clock.advance(400)
        desk.process(_market(clock, put, call))
        await asyncio.sleep(0)
    halves = [a for a in executor.actions if a.kind is ActionKind.CLOSE_HALF]
    assert len(halves) == 1 and halves[0].rule == "profit_target"
    await desk.close()

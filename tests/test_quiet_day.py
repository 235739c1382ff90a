"""The quiet script: on a calm simulated day the default 0DTE autopilot enters and then makes no
delta or gamma adjustment until its profit target, time stop or expiry. The shock scripts'
rules still fire (tests/test_desk.py runs each scenario against its ``expects``)."""

from __future__ import annotations

from datetime import time

from kit.adapters.sim.feed import SCRIPTS
from kit.adapters.sim.market import SimConfig
from kit.app.autopilot import AutoConfig, run_auto
from kit.app.scenarios import SCENARIOS, run, sim_setup
from kit.risk.rules import load_rules

# The simulator's 0DTE chain lists 25-70 contracts of open interest at the 0.10-0.15-delta
# strikes (real SPXW dailies: 190-2,000) and quotes them 0.10-0.15 wide, under the entry rule's
# 100 and $0.10: without this the autopilot never enters on the simulator at all. Only the entry
# filter is relaxed; the delta, gamma, profit, stop and time rules under test are the defaults.
SIM_ENTRY = {"entry": {"min_open_interest": 0.0, "max_spread": 0.25}}
ADJUSTING = ("delta", "gamma")  # the rules that must stay quiet (their actions adjust a position)
EXITS = ("profit_target", "time_stop", "trailing_stop")


def test_quiet_is_a_calm_market_without_shocks():
    steps, market = sim_setup("quiet")
    assert steps == () and market is not None
    assert market.vol_regime == "calm"
    assert market.variance_premium > SimConfig().variance_premium  # implied well above realised
    spx = next(u for u in market.underlyings if u.symbol == "SPX")
    assert spx.jumps_per_year == 0
    assert sim_setup("rapid_drop") == (SCRIPTS["rapid_drop"], None)  # shocks, default market
    assert SCENARIOS["quiet"].expects == ()


async def test_the_default_autopilot_enters_a_quiet_day_and_adjusts_nothing():
    """From 13:00 (the stepped clock, as fast as the simulator goes): the default 0DTE strangle
    is sold, then left alone by the delta and gamma rules until it exits or expires."""
    lines: list[dict] = []
    rules = load_rules(overrides=SIM_ENTRY)
    result = await run_auto(script="quiet", start=time(13, 0), rules=rules, config=AutoConfig(),
                            emit=lines.append)  # fmt: skip
    assert result.entered and result.flat
    entry = next(r for r in lines if r["kind"] == "decision" and r["decision"] == "entry")
    assert "entry passed" in entry["message"]
    actions = [r for r in lines if r["kind"] == "decision" and r["decision"] == "action"]
    assert [a for a in actions if a["rule"] in ADJUSTING] == []
    executed = [a for a in actions if a["status"] == "executed"]
    assert {a["rule"] for a in executed} <= set(EXITS), executed
    settled = [r for r in lines if r["kind"] == "decision" and r["decision"] == "settlement"]
    assert executed or settled  # it left by a profit target or a time stop, or expired
    alerts = [r for r in lines if r["kind"] == "alert" and r["rule"] in ADJUSTING]
    acting = {(rule, lv.at) for rule in ADJUSTING for lv in getattr(rules, rule).levels
              if lv.action}  # fmt: skip
    assert not [a for a in alerts if (a["rule"], a["inputs"]["threshold"]) in acting]


async def test_the_quiet_scenario_demo_needs_no_adjustment():
    """``kit run --script quiet``: the demo 0DTE strangle through a calm afternoon, alert only."""
    result = await run("quiet")
    assert [p["id"] for p in result.snapshot.positions] == ["demo-strangle"]
    acting = [r.alert for r in result.alerts if r.alert.rule in ADJUSTING
              and r.alert.key in {f"{lv.at:g}" for lv in getattr(load_rules(), r.alert.rule).levels
                                  if lv.action}]  # fmt: skip
    assert acting == []

"""The auto-managed paper session end to end, its JSON lines, and the live-trading gate."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, time

import pytest

from kit.adapters.cpapi.broker import CpApiBroker
from kit.adapters.paper.broker import PaperBroker
from kit.app.autopilot import AutoConfig, run_auto
from kit.app.scenarios import DEFAULT_DAY
from kit.core.clock import SimClock
from kit.core.config import ConfigError
from kit.core.symbology import from_occ
from kit.execution.live import make_broker
from kit.portfolio.market import MarketState
from kit.portfolio.strategies import DeltaBand
from kit.risk.rules import load_rules

HOLD = {rule: {"enabled": False} for rule in
        ("delta", "gamma", "strike_breach", "time_stop", "profit_target", "stop_loss",
         "trailing_stop", "liquidity")}  # fmt: skip


def _cash(fill: dict) -> float:
    sign = 1 if fill["side"] == "buy" else -1
    return -sign * fill["qty"] * fill["price"] * fill["multiplier"] - fill["commission"]


@pytest.fixture
def auto_lines(auto_day) -> list[dict]:
    """The CLI auto day's JSON lines (the session fixture in conftest also records it)."""
    return auto_day[0]


def test_auto_session_prints_orders_fills_decisions_and_alerts(auto_lines):
    kinds = {row["kind"] for row in auto_lines}
    assert {"order", "fill", "decision", "alert"} <= kinds
    assert auto_lines[-1]["kind"] == "summary"
    assert sum(r["kind"] == "summary" for r in auto_lines) == 1
    fills = [r for r in auto_lines if r["kind"] == "fill"]
    assert all({"side", "qty", "price", "multiplier", "commission"} <= set(f) for f in fills)
    assert {f["side"] for f in fills} == {"buy", "sell"}
    assert all(f["multiplier"] == 100 and f["commission"] > 0 for f in fills)


def test_auto_session_enters_by_the_band_manages_and_ends_flat(auto_lines):
    summary = auto_lines[-1]
    assert summary["entered"] and summary["flat"]
    entry = next(r for r in auto_lines if r["kind"] == "decision" and r["decision"] == "entry")
    assert "entry passed" in entry["message"]
    first = [r for r in auto_lines if r["kind"] == "fill"][:2]
    assert {from_occ(f["contract"]).right.value for f in first} == {"P", "C"}
    assert all(f["side"] == "sell" for f in first)
    # the rules, not a script, closed or rolled it: auto-managed actions were executed
    executed = [r for r in auto_lines if r["kind"] == "decision" and r["decision"] == "action"
                and r["status"] == "executed"]  # fmt: skip
    assert executed and all(r["position_id"] == entry["position_id"] for r in executed)
    assert all(status == "done" for status in summary["intents"].values())
    # every order the manager worked ended filled or cancelled
    last = {}
    for r in auto_lines:
        if r["kind"] == "order":
            last[r["client_id"]] = r["status"]
    assert set(last.values()) <= {"filled", "cancelled"}


def test_auto_session_realized_pnl_is_what_the_fills_add_up_to(auto_lines):
    fills = [r for r in auto_lines if r["kind"] == "fill"]
    summary = auto_lines[-1]
    assert summary["fills"] == len(fills)
    assert round(sum(_cash(f) for f in fills), 2) == pytest.approx(
        summary["realized_pnl"], abs=0.005
    )
    held: dict[str, float] = {}
    for f in fills:
        held[f["contract"]] = held.get(f["contract"], 0) + (f["qty"] if f["side"] == "buy"
                                                            else -f["qty"])  # fmt: skip
    assert all(q == 0 for q in held.values())  # flat by the fills alone


async def test_a_position_held_into_the_close_settles_at_intrinsic_value():
    rules = load_rules(overrides=HOLD)
    cfg = AutoConfig(
        band=DeltaBand(0.05, 0.30), first_entry=time(15, 0), last_entry=time(15, 45), quantity=2
    )  # late in a 0DTE day deltas jump strike to strike: a wide band
    lines: list[dict] = []
    result = await run_auto(day=DEFAULT_DAY, rules=rules, config=cfg, emit=lines.append)
    assert result.entered and result.flat
    assert result.realized_pnl == pytest.approx(result.fills_cash, abs=0.005)
    settled = [r for r in lines if r["kind"] == "fill" and r["client_id"] == "settlement"]
    assert len(settled) == 2 and all(f["commission"] == 0 for f in settled)
    spot = next(r for r in reversed(lines) if r["kind"] == "decision"
                and r["decision"] == "settlement")["inputs"]["spots"]["SPX"]  # fmt: skip
    for f in settled:
        c = from_occ(f["contract"])
        intrinsic = max(spot - c.strike, 0) if c.is_call else max(c.strike - spot, 0)
        assert f["price"] == pytest.approx(intrinsic) and f["side"] == "buy"


async def test_no_entry_when_the_entry_check_refuses_says_why():
    rules = load_rules(overrides={"entry": {"min_iv_rank": 100.0}})
    cfg = AutoConfig(band=DeltaBand(0.05, 0.30), first_entry=time(15, 0), last_entry=time(15, 20))
    lines: list[dict] = []
    result = await run_auto(day=DEFAULT_DAY, rules=rules, config=cfg, emit=lines.append)
    assert not result.entered and result.flat and result.fills == 0 and result.orders == 0
    skips = [r for r in lines if r["kind"] == "decision" and r["decision"] == "entry"]
    assert len(skips) == 2 and all("IV rank" in r["message"] for r in skips)


async def test_a_finished_recorded_day_is_not_traded_again(tmp_path):
    db = str(tmp_path / "desk.duckdb")
    cfg = AutoConfig(band=DeltaBand(0.05, 0.30), first_entry=time(15, 0), last_entry=time(15, 45),
                     quantity=1)  # fmt: skip
    first = await run_auto(day=DEFAULT_DAY, config=cfg, db=db, start=time(14, 55))
    assert first.entered and first.flat and first.fills > 0
    lines: list[dict] = []
    again = await run_auto(day=DEFAULT_DAY, config=cfg, db=db, start=time(14, 55),
                           emit=lines.append)  # fmt: skip
    assert again.summary["already_done"] and "already finished" in again.summary["message"]
    assert (again.fills, again.orders, again.entered) == (0, 0, False)
    assert [r["kind"] for r in lines] == ["summary"]  # not one order, fill or alert replayed


def test_auto_run_rejects_a_holiday_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "kit", "run", "--auto", "--date", "2024-12-25"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "not a US trading session" in proc.stderr


# --- the live-trading gate ---

LIVE_ENV = {"KIT_LIVE_TRADING": "yes", "IBKR_CPAPI_URL": "https://127.0.0.1:5000/v1/api",
            "IBKR_ACCOUNT_ID": "U7654321"}  # fmt: skip


def _gate(**kw):
    return make_broker(SimClock(datetime(2024, 3, 12, 15, tzinfo=UTC)), MarketState(), **kw)


def test_paper_is_the_default_broker():
    broker = _gate()
    assert isinstance(broker, PaperBroker) and not broker.live


def test_live_trading_needs_the_setting():
    with pytest.raises(ConfigError, match="KIT_LIVE_TRADING=yes"):
        _gate(live=True, env={**LIVE_ENV, "KIT_LIVE_TRADING": ""}, confirm="U7654321")


def test_live_trading_needs_a_confirmation_naming_the_account():
    for confirm in (None, "yes", "U0000000"):
        with pytest.raises(ConfigError, match="confirmation naming the account"):
            _gate(live=True, env=LIVE_ENV, confirm=confirm)


def test_live_trading_with_both_opt_ins_builds_the_live_broker(caplog):
    broker = _gate(live=True, env=LIVE_ENV, confirm="U7654321")
    assert isinstance(broker, CpApiBroker) and broker.live
    assert "LIVE TRADING" in caplog.text


def test_unknown_live_broker_is_refused():
    with pytest.raises(ConfigError, match="unknown live broker"):
        _gate(live=True, env=LIVE_ENV, confirm="U7654321", broker="etrade")

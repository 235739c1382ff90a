"""The daily Delta strangle: its pure decisions, the CLI's --once selection over a real emulator
subprocess (cross-checked with the official client), and emulated days end to end: a dry run,
a "live" day on the Delta broker, a restart mid-entry, an exchange position that blocks entry,
and bad keys."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time as wall
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time, timedelta

import pytest
from delta_rest_client import DeltaRestClient
from service_helpers import free_port
from venues import DELTA_KEY as KEY
from venues import DELTA_SECRET as SECRET
from venues import delta_config as config
from venues import delta_live_env

from kit.adapters.delta.broker import DeltaBroker
from kit.adapters.delta.client import DeltaClient
from kit.adapters.delta.config import DeltaConfig
from kit.adapters.delta.emulator import DeltaEmulator
from kit.adapters.paper.broker import PaperBroker, PaperConfig
from kit.app.delta_strategy import (
    Candidate,
    ExitTracker,
    SettingsError,
    TraderSettings,
    entry_prices,
    select_strangle,
)
from kit.app.delta_trader import (
    DeltaTrader,
    StoreDocs,
    TraderBlockedError,
    attach_logs,
    detach_logs,
)
from kit.core.clock import KOLKATA, SimClock
from kit.core.model import Contract
from kit.execution.state import JsonStateStore
from kit.portfolio.market import MarketState
from kit.store import open_store

# --- pure decisions ---


def cand(strike: float, right: str, delta: float, bid=10.0, ask=11.0, oi=100.0) -> Candidate:
    c = Contract("BTC", date(2026, 1, 2), strike, right)
    return Candidate(c, f"{right}-BTC-{strike:g}-020126", delta, bid, ask, (bid + ask) / 2, oi)


def test_selection_takes_the_band_midpoint_among_liquid_strikes():
    s = TraderSettings(max_spread_pct=20, min_oi=50)
    chain = [cand(95000, "C", 0.09), cand(94000, "C", 0.11), cand(93500, "C", 0.124, oi=10),
             cand(93000, "C", 0.13), cand(92000, "C", 0.16), cand(86000, "P", -0.121, bid=1,
             ask=3), cand(85500, "P", -0.105), cand(87000, "P", -0.149)]  # fmt: skip
    chosen, why = select_strangle(chain, s)
    assert why == "ok"
    assert chosen.call.symbol == "C-BTC-93000-020126"  # 0.124 has too little open interest
    assert chosen.put.symbol == "P-BTC-85500-020126"  # -0.121's spread is 67% of its mid
    assert chosen.premium == pytest.approx(21.0)
    none, why = select_strangle([c for c in chain if c.contract.is_call], s)
    assert none is None and why.startswith("put: no strike in the delta band")


def test_ladder_walks_from_mid_to_the_natural_price_on_the_tick():
    assert entry_prices(10.0, 12.0, 4, sell=True, tick=0.5) == [11.0, 10.5, 10.0]
    assert entry_prices(10.0, 12.0, 3, sell=False, tick=0.5) == [11.0, 11.5, 12.0]
    assert entry_prices(10.0, 10.5, 4, sell=True, tick=0.5) == [10.5, 10.0]


@pytest.mark.parametrize(("path", "reason"), [
    ([90, 150, 201], "max_loss"),  # cost to close 201 of a 100 premium: -101%
    ([80, 40, 19], "max_profit"),  # 81% profit
    ([70, 58, 80, 100], "trailing_stop"),  # 42% armed the stop at breakeven; back to 0
    ([60, 45, 35, 44, 46], "trailing_stop"),  # best 65%: the stop trails at 55%; 54% exits
    ([60, 50, 60], "trailing_stop"),  # best 50%: stop at 40% (tight); 40% profit exits
])  # fmt: skip
def test_exit_triggers(path, reason):
    t = ExitTracker(TraderSettings(), premium=100.0)
    got = [t.update(cost) for cost in path]
    assert got[-1] == reason and all(g is None for g in got[:-1])


def test_scheduled_and_forced_exits_and_status():
    t = ExitTracker(TraderSettings(), premium=100.0)
    assert t.update(95.0) is None
    assert t.update(95.0, scheduled=True) == "scheduled_exit"
    assert t.update(95.0, forced=True) == "force_exit"
    st = t.status(95.0, qty=2, size=0.001)
    assert st["pnl_usd"] == pytest.approx(0.01) and st["to_max_profit_pct"] == 75.0
    assert st["to_trail_arm_pct"] == 35.0 and st["trailing_stop_pct"] is None


def test_presets_are_validated(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('underlying = "ETH"\ndelta_min = 0.08\nquantity = 3\n')
    s = TraderSettings.load(p, underlying=None)
    assert (s.underlying, s.delta_min, s.quantity, s.delta_max) == ("ETH", 0.08, 3, 0.15)
    p.write_text("delta_mni = 0.1\n")
    with pytest.raises(SettingsError, match=r"unknown setting.*delta_mni"):
        TraderSettings.load(p)
    with pytest.raises(SettingsError, match="delta band"):
        TraderSettings(delta_min=0.2, delta_max=0.1)
    with pytest.raises(SettingsError, match="exit_time"):
        TraderSettings(exit_time="5pm")
    with pytest.raises(SettingsError, match="before the 17:30 IST settlement"):
        TraderSettings(exit_time="17:45")


# --- the CLI against a real emulator process ---


def test_cli_once_prints_the_strangle_the_official_client_confirms(tmp_path):
    port = free_port()
    emu = subprocess.Popen([sys.executable, "-m", "kit", "emulate", "delta", "--port", str(port),
                            "--api-key", KEY, "--api-secret", SECRET], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert emu.stdout.readline().startswith("Delta Exchange emulator")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DELTA_")}
        env |= {"DELTA_BASE_URL": f"http://127.0.0.1:{port}", "KIT_DATA_DIR": str(tmp_path)}
        out = subprocess.run([sys.executable, "-m", "kit", "delta", "run", "--dry-run", "--feed",
                              "delta", "--once", "--json"], env=env, capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)  # fmt: skip
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["call"].startswith("C-BTC-") and doc["put"].startswith("P-BTC-")
        assert 0.10 <= doc["call_delta"] <= 0.15 and -0.15 <= doc["put_delta"] <= -0.10
        expiry = datetime.now(KOLKATA).date() + timedelta(days=1)
        assert doc["call"].endswith(f"{expiry:%d%m%y}") and doc["expiry"] == expiry.isoformat()
        official = DeltaRestClient(base_url=f"http://127.0.0.1:{port}")
        call, put = official.get_ticker(doc["call"]), official.get_ticker(doc["put"])
        assert float(call["greeks"]["delta"]) == pytest.approx(doc["call_delta"], abs=0.02)
        assert float(put["greeks"]["delta"]) == pytest.approx(doc["put_delta"], abs=0.02)
        assert doc["premium"] == pytest.approx(doc["call_mid"] + doc["put_mid"])
        assert (tmp_path / "delta" / "delta_trader_summary.log").exists()
    finally:
        emu.terminate()
        emu.communicate(timeout=10)


def test_the_desk_engine_refuses_rest_polling_with_one_line(capsys):
    from kit.cli.main import main

    assert main(["delta", "run", "--feed", "rest"]) == 2  # the desk engine is the default
    err = capsys.readouterr().err
    assert err == ("kit delta: error: --feed rest is for --engine legs: the desk engine reads "
                   "the socket\n")  # fmt: skip


# --- emulated days ---


def start_ist(hh: int, mm: int) -> datetime:
    return datetime.combine(datetime.now(KOLKATA).date(), time(hh, mm), KOLKATA)


def run_market(clock: SimClock, speed: float) -> asyncio.Task:
    """Drive a stepped clock at ``speed`` x the wall, from now on: the market stands still while
    a test sets up (so the chain the trader selects from is always the one at the start time,
    however slow the machine), then flows."""

    async def drive() -> None:
        last = wall.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = wall.monotonic()
            clock.advance((now - last) * speed)
            last = now

    return asyncio.create_task(drive())


SPEEDY = {
    "expiry_days": 0,
    "entry_retries": 2,
    "fill_wait_s": 5.0,
    "poll_s": 5.0,
    "status_every_s": 60.0,
    "exit_time": "17:00",
    "max_spread_pct": 100.0,
    "delta_min": 0.05,
    "delta_max": 0.45,
}  # fmt: skip  (40 minutes before a 0DTE expiry)


# only the scheduled (or forced) exit can end these days: the tests are about the machinery
HOLD = {"max_loss_pct": 1000.0, "max_profit_pct": 100.0, "trail_start_pct": 100.0,
        "trail_tight_pct": 100.0}  # fmt: skip


async def live_trader(emu, tmp_path, state=None, **kw) -> tuple[DeltaTrader, DeltaBroker]:
    cfg = config(emu)
    broker = DeltaBroker(cfg, emu.clock)
    await broker.connect()
    trader = DeltaTrader(TraderSettings(**(SPEEDY | kw)), DeltaClient(cfg), broker,
                         clock=emu.clock, state=state or JsonStateStore(tmp_path / "state"),
                         log_dir=tmp_path, live=True)  # fmt: skip
    return trader, broker


async def test_emulated_live_day_enters_and_exits_on_schedule(tmp_path):
    clock = SimClock(start_ist(16, 50))
    async with DeltaEmulator(api_key=KEY, api_secret=SECRET, clock=clock, tick_s=0.02) as emu:
        store = open_store(str(tmp_path / "desk.duckdb"))
        trader, broker = await live_trader(emu, tmp_path, StoreDocs(store), **HOLD)
        handlers = attach_logs(tmp_path)
        market = run_market(clock, 240.0)
        try:
            report = await asyncio.wait_for(trader.run(), 60)
        finally:
            detach_logs(handlers)
            market.cancel()
        await broker.close()
        assert report["exit_reason"] == "scheduled_exit"
        assert clock.now().astimezone(KOLKATA).time() >= time(17, 0)
        sells = [f for f in report["fills"] if f["side"] == "sell"]
        buys = [f for f in report["fills"] if f["side"] == "buy"]
        assert sum(f["quantity"] for f in sells) == 2 == sum(f["quantity"] for f in buys)
        assert emu.exchange.positions() == []
        assert report["premium"] > 0 and "pnl_usd" in report
        assert (tmp_path / "status.json").exists()
        summary = (tmp_path / "delta_trader_summary.log").read_text()
        assert "status: {" in summary and "exit: scheduled_exit" in summary
        detailed = (tmp_path / "delta_trader_detailed.log").read_text()
        assert len(detailed) >= len(summary) and SECRET not in detailed
        saved = store.load_state(f"{trader.key}_report")  # the trade report, in the store
        assert saved["exit_reason"] == "scheduled_exit" and saved["settings"]["quantity"] == 1
        assert len(saved["fills"]) == len(report["fills"])
        store.close()


async def test_dry_run_day_trades_on_paper_and_stop_forces_the_exit(tmp_path):
    clock = SimClock(start_ist(11, 0))
    async with DeltaEmulator(api_key=KEY, api_secret=SECRET, clock=clock, tick_s=0.02) as emu:
        market = MarketState()
        paper = PaperBroker(clock, market, PaperConfig(latency_ms=0.0))
        cfg = DeltaConfig.from_env({"DELTA_BASE_URL": emu.base_url})
        trader = DeltaTrader(TraderSettings(**SPEEDY | {"expiry_days": 1}), DeltaClient(cfg),
                             paper, clock=clock, state=JsonStateStore(tmp_path / "s"),
                             log_dir=tmp_path, market=market)  # fmt: skip
        driver = run_market(clock, 120.0)
        task = asyncio.create_task(trader.run())
        async with asyncio.timeout(60):
            while trader.trade.phase != "open":
                await asyncio.sleep(0.05)
        (tmp_path / "STOP").write_text("stop")
        report = await asyncio.wait_for(task, 60)
        driver.cancel()
        assert report["exit_reason"] == "force_exit" and not report["live"]
        assert emu.exchange.orders == {}  # a dry run sends nothing to the exchange
        assert await paper.positions() == {}
        assert len(report["fills"]) >= 4


# the desk engine keeps the exchange's own time (its clock is the feed's): a wall-clock day with
# the window open, tomorrow's expiry, short waits; a STOP ends it
DESK_DAY = {"window_start": "00:00", "window_end": "23:59", "expiry_days": 1, "poll_s": 0.2,
            "status_every_s": 1.0, "fill_wait_s": 0.2}  # fmt: skip


async def trader_on(engine: str, emu: DeltaEmulator, tmp_path, monkeypatch, state=None,
                    **kw) -> tuple[DeltaTrader, Callable[[], Awaitable[None]]]:  # fmt: skip
    """A live trader on ``emu`` with the ``engine`` given, and what closes its broker (legs) or
    its desk (desk: built like ``kit delta run --engine desk --live``)."""
    if engine == "legs":
        trader, broker = await live_trader(emu, tmp_path, state, **kw)
        return trader, broker.close
    from kit.app.delta_desk import desk_trader

    for k, v in delta_live_env(emu).items():
        monkeypatch.setenv(k, v)
    trader, run = await desk_trader(TraderSettings(**(SPEEDY | DESK_DAY | kw)),
                                    DeltaClient(config(emu)), live=True, confirm=KEY,
                                    state=state or JsonStateStore(tmp_path / "state"),
                                    log_dir=tmp_path)  # fmt: skip
    return trader, run.close


def traded(emu: DeltaEmulator) -> dict[tuple[str, str], int]:
    """Contracts the exchange executed, by (symbol, side)."""
    out: dict[tuple[str, str], int] = {}
    for f in emu.exchange.fills:
        key = (f["product_symbol"], f["side"])
        out[key] = out.get(key, 0) + int(f["size"])
    return out


@pytest.mark.parametrize("away", ["resting", "filled"])
@pytest.mark.parametrize("engine", ["legs", "desk"])
async def test_restart_mid_entry_neither_duplicates_nor_loses_an_order(tmp_path, monkeypatch,
                                                                       engine, away):  # fmt: skip
    """The process dies with the first leg's order resting; while it is down that order either
    rests on or fills (the market came to it). The restarted trader adopts it either way: its
    fill counts once, under the id the desk knows, and nothing is sent twice."""
    desk = engine == "desk"
    # the desk engine's time flows (at the wall's rate) from a fixed hour: any hour CI runs at
    clock = SimClock(start_ist(11, 0), speed=1.0) if desk else SimClock(start_ist(16, 50))
    async with DeltaEmulator(api_key=KEY, api_secret=SECRET, clock=clock, tick_s=0.02) as emu:
        trader, close = await trader_on(engine, emu, tmp_path, monkeypatch, fill_wait_s=60.0,
                                        **HOLD)  # fmt: skip
        # the market stands still until the restart (legs): a resting order cannot fill before
        # the first process dies, however slow the machine (it did, now and then, under load)
        driver = None
        task = asyncio.create_task(trader.run())
        async with asyncio.timeout(30):
            while not emu.exchange.orders:
                await asyncio.sleep(0.01)
        task.cancel()  # the process dies with the first leg's first order resting
        await asyncio.gather(task, return_exceptions=True)
        await close()
        assert trader.trade.phase == "entering" and len(emu.exchange.open_orders()) == 1
        if away == "filled":  # a buyer lifts the resting sale while nobody watches
            (resting,) = emu.exchange.open_orders()
            await emu.exchange.edit({"id": resting["id"], "limit_price": 0.5})
            assert emu.exchange.open_orders() == [] and len(emu.exchange.fills) == 1
        trader2, close2 = await trader_on(engine, emu, tmp_path, monkeypatch, **HOLD)
        driver = None if desk else run_market(emu.clock, 240.0)
        try:
            task = asyncio.create_task(trader2.run())
            if desk:  # the desk's day has no scheduled exit in reach: the panel's Stop ends it
                async with asyncio.timeout(60):
                    while trader2.trade.phase != "open":
                        await asyncio.sleep(0.05)
                (tmp_path / "STOP").write_text("stop")
            report = await asyncio.wait_for(task, 60)
        finally:
            if driver is not None:
                driver.cancel()
            await close2()
        coids = [r.client_order_id for r in emu.exchange.orders.values()]
        assert len(coids) == len(set(coids))  # no client id sent twice
        s = report["strangle"]
        # exactly the quantity, each leg: the resting order was adopted, not resent
        assert traded(emu) == {(s["call"], "sell"): 1, (s["put"], "sell"): 1,
                               (s["call"], "buy"): 1, (s["put"], "buy"): 1}  # fmt: skip
        want = "force_exit" if desk else "scheduled_exit"
        assert report["exit_reason"] == want and emu.exchange.positions() == []


@pytest.mark.parametrize("engine", ["legs", "desk"])
async def test_an_exchange_position_blocks_entry_and_bad_keys_are_clear(tmp_path, monkeypatch,
                                                                        engine):  # fmt: skip
    async with DeltaEmulator(api_key=KEY, api_secret=SECRET, tick_s=0.05) as emu:
        ex = emu.exchange
        pid = next(p for p in ex.alive() if ex.products[p].root == "BTC")
        await ex.place({"product_id": pid, "size": 1, "side": "buy", "order_type": "market_order"})
        trader, close = await trader_on(engine, emu, tmp_path, monkeypatch)
        try:
            with pytest.raises(TraderBlockedError, match=r"already holds positions in .*close "):
                await trader.run()
        finally:
            await close()
        assert len(ex.orders) == 1  # only the position's own order: the trader sent nothing
        bad = DeltaTrader(TraderSettings(), DeltaClient(config(emu, "wrong")), trader.broker,
                          clock=emu.clock, state=JsonStateStore(tmp_path / "b"),
                          log_dir=tmp_path, live=True)  # fmt: skip
        with pytest.raises(TraderBlockedError, match="Signature Mismatch: the API secret"):
            await bad.prerequisites()


@pytest.mark.parametrize(("settings", "shock", "reason"), [
    ({"max_loss_pct": 50.0}, -0.03, "max_loss"),  # BTC -3% in a minute: the put explodes
    (HOLD | {"max_profit_pct": 50.0}, 0.0, "max_profit"),  # the last half hour's decay
    (HOLD | {"trail_start_pct": 10.0, "trail_tight_pct": 15.0, "trail_gap_pct": 5.0,
             "max_profit_pct": 99.0}, 0.0, "trailing_stop"),
])  # fmt: skip
async def test_emulated_live_day_exits_by_each_trigger(tmp_path, settings, shock, reason):
    from kit.adapters.delta.emulator import crypto_config
    from kit.adapters.sim.market import Shock

    clock = SimClock(start_ist(16, 40))
    # seed 3: a day whose decay reaches 50% profit before 17:20 (seed 0's crosses a strike)
    async with DeltaEmulator(api_key=KEY, api_secret=SECRET, clock=clock, tick_s=0.02,
                             config=crypto_config(3)) as emu:  # fmt: skip
        trader, broker = await live_trader(emu, tmp_path, **{"exit_time": "17:20", **settings})
        driver = run_market(clock, 240.0)
        task = asyncio.create_task(trader.run())
        if shock:  # once both legs are sold: BTC moves over the next market minute
            async with asyncio.timeout(60):
                while trader.trade.phase != "open":
                    await asyncio.sleep(0.01)
            at = clock.now_ns() + 5 * 10**9
            emu.market.shock(Shock("BTC", at, at + 60 * 10**9, log_return=shock))
        report = await asyncio.wait_for(task, 90)
        driver.cancel()
        await broker.close()
        assert report["exit_reason"] == reason
        assert emu.exchange.positions() == [] and emu.exchange.open_orders() == []
        if reason == "max_loss":
            assert report["pnl_usd"] < 0
        else:
            assert report["pnl_usd"] > 0


async def test_desk_engine_trades_the_day_through_the_order_manager(tmp_path, monkeypatch):
    """``--engine desk``: the same day, worked by the desk's order manager on a desk built with
    --feed delta (live: the Delta broker through the gate); the desk's book holds the strangle
    while it is open, STOP closes it, and the exchange ends flat."""
    from kit.app.delta_desk import desk_trader

    clock = SimClock(start_ist(11, 0), speed=1.0)  # a fixed hour, flowing: any hour CI runs at
    async with DeltaEmulator(api_key=KEY, api_secret=SECRET, clock=clock, tick_s=0.05) as emu:
        for k, v in delta_live_env(emu).items():
            monkeypatch.setenv(k, v)
        settings = TraderSettings(window_start="00:00", window_end="23:59", fill_wait_s=0.2,
                                  entry_retries=2, poll_s=0.2, status_every_s=1.0,
                                  max_spread_pct=100.0, **HOLD)  # fmt: skip
        trader, run = await desk_trader(settings, DeltaClient(config(emu)), live=True,
                                        confirm=KEY, state=JsonStateStore(tmp_path / "s"),
                                        log_dir=tmp_path)  # fmt: skip
        try:
            task = asyncio.create_task(trader.run())
            async with asyncio.timeout(60):
                while trader.trade.phase != "open":
                    await asyncio.sleep(0.05)
            held = run.desk.book.held(trader.key)
            assert held is not None and held.quantity == 1  # the desk's book holds it
            assert sorted(p["size"] for p in emu.exchange.positions()) == [-1, -1]
            (tmp_path / "STOP").write_text("stop")
            report = await asyncio.wait_for(task, 60)
        finally:
            await run.close()
        assert report["exit_reason"] == "force_exit" and report["live"]
        assert emu.exchange.positions() == [] and run.desk.book.held(trader.key) is None
        coids = {r.client_order_id for r in emu.exchange.orders.values()}
        assert all(c.startswith(f"{trader.key}-") for c in coids)  # the manager's, readable

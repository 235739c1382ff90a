"""The autopilot (``kit run --auto --feed ibkr``) on TWS's market through the unmodified
``ib_async`` client and the TWS API emulator: the session's last minutes, so it runs at the wall's
pace in seconds. It enters a 1DTE strangle (30 s before the close a 0DTE chain has no 0.10-delta
strikes left) on TWS's quotes, the paper broker fills it against them, nothing reaches TWS's
order book, and the run ends at TWS's 16:00 close holding the position overnight."""

from __future__ import annotations

from datetime import datetime, time

import pytest

from kit.adapters.ibkr.emulator import TwsEmulator
from kit.app.autopilot import AutoConfig, run_auto
from kit.core.clock import NEW_YORK, SimClock
from kit.execution.ladder import ManagerConfig
from kit.risk.rules import load_rules

FAST = ManagerConfig(wait_s=1.0, backoff=1.0)  # the ladder reaches the bid within seconds
START = datetime(2024, 3, 11, 15, 59, 30, tzinfo=NEW_YORK)  # a Monday, 30 s before the close


async def test_the_autopilot_trades_a_session_on_tws(monkeypatch: pytest.MonkeyPatch, tmp_path):
    rules = tmp_path / "rules.toml"  # entries pass on any second of this short session
    rules.write_text("[entry]\nmax_spread_pct = 50.0\nmin_iv_rank = 0.0\n")
    async with TwsEmulator(clock=SimClock(START, speed=1.0), market_data_lines=300) as emu:
        for k, v in {"IBKR_HOST": "127.0.0.1", "IBKR_PORT": str(emu.port),
                     "IBKR_CLIENT_ID": "7", "IBKR_MARKET_DATA_LINES": "300"}.items():  # fmt: skip
            monkeypatch.setenv(k, v)
        records: list[dict] = []
        cfg = AutoConfig(dte=1, quantity=1, last_entry=time(16, 0))
        result = await run_auto(feed="ibkr", config=cfg, manager=FAST, rules=load_rules(str(rules)),
                                emit=records.append)  # fmt: skip
    assert result.entered and result.fills >= 2 and not result.flat, result.summary
    fills = [r for r in records if r["kind"] == "fill"]
    assert {f["side"] for f in fills} == {"sell"} and fills[0]["ts"] < "2024-03-11T20:00"
    assert result.fills_cash > 0  # a credit: sold premium at TWS's quotes
    assert emu.orders_received == 0  # paper broker: nothing reached TWS's order book

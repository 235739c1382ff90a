"""The monitor's service (``kit serve --feed ibkr --broker ibkr``) against the TWS emulator: a
client connected as the monitor is sees the feed LIVE, previews the order ticket's
``open_strangle`` (its buying power from TWS's what-if order, nothing sent), sends it, and the
strangle reaches TWS as one combo order, fills and shows in the snapshot with its legs; the
autopilot switch is accepted on that desk."""

from __future__ import annotations

from pathlib import Path

from service_helpers import TOKEN, until

import kit
from kit.adapters.ibkr.emulator import TwsEmulator
from kit.app.service import DeskService, ServiceConfig
from kit.remote.gateway import GatewayConfig

ACCOUNT = "DU1234567"


async def test_monitor_service_trades_a_strangle_through_tws(monkeypatch, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"  # entries pass on any simulated second
    rules.write_text("[entry]\nmax_spread_pct = 50.0\nmin_iv_rank = 0.0\n")
    async with TwsEmulator(account=ACCOUNT) as emu:
        for k, v in {"IBKR_PORT": str(emu.port), "IBKR_CLIENT_ID": "1", "KIT_TOKEN": TOKEN,
                     "IBKR_ACCOUNT_ID": ACCOUNT, "KIT_LIVE_TRADING": "yes"}.items():  # fmt: skip
            monkeypatch.setenv(k, v)
        cfg = ServiceConfig(gateway=GatewayConfig(port=0), feed="ibkr", broker="ibkr",
                            confirm_live=ACCOUNT, demo=False, rules=str(rules))  # fmt: skip
        svc = DeskService(cfg)
        await svc.start()
        c = await kit.connect(f"ws://127.0.0.1:{svc.gateway.port}", TOKEN, name="pytest")
        try:
            await until(lambda: c.snapshot and c.snapshot["feed"]["state"] == "LIVE")
            band = {"delta_low": 0.03, "delta_high": 0.3}
            preview = await c.command("open_strangle", strategy="tws", preview=True, **band)
            assert preview["checks"]["ok"], preview["checks"]
            assert preview["buying_power_source"] == "ibkr what-if"  # TWS's margin, not Reg-T
            assert preview["buying_power"] > 1000 and emu.orders_received == 0
            out = await c.command("open_strangle", strategy="tws", **band)
            assert out["status"] == "accepted" and len(out["legs"]) == 2
            pos = await until(lambda: next((p for p in c.snapshot["positions"]
                                            if p["id"] == out["position"]), None))  # fmt: skip
            assert len(pos["legs"]) == 2
            assert emu.orders_received == 1  # one BAG order for both legs
            assert {e.contract.sec_type for e in emu.executions} == {"OPT"}
            assert len(emu.executions) >= 2 and {e.side for e in emu.executions} == {"SLD"}
            assert (await c.command("auto_manage", on=True))["auto_manage"] is True
        finally:
            await c.close()
            await svc.close()

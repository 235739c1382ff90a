"""The monitor's Settings panel against a real service: every rule's thresholds are shown, a
changed level goes out as that rule's whole table, and the service's validation answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from service_helpers import TOKEN, until

import kit
from kit.app.service import DeskService, ServiceConfig
from kit.remote.client import CommandRefusedError, DeskClient
from kit.remote.gateway import GatewayConfig
from kit.risk.rules import RULE_IDS
from kit.ui.settings import SettingsPanel


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[DeskClient]:
    monkeypatch.setenv("KIT_TOKEN", TOKEN)
    cfg = ServiceConfig(gateway=GatewayConfig(port=0), speed=20.0, demo=False)
    async with DeskService(cfg) as svc:
        c = await kit.connect(f"ws://127.0.0.1:{svc.gateway.port}", TOKEN, name="settings")
        try:
            await until(lambda: c.snapshot)
            yield c
        finally:
            await c.close()


async def test_every_rule_is_editable_and_the_service_validates(client: DeskClient) -> None:
    settings = client.snapshot["settings"]
    assert set(settings) == set(RULE_IDS)  # every rule, not a hand-picked five
    sent: list[dict] = []
    panel = SettingsPanel(lambda cmd, **kw: sent.append({"cmd": cmd, **kw}))
    panel.show(settings)
    stop = panel.inputs["stop_loss", "levels", 0]
    assert stop.value == settings["stop_loss"]["levels"][0]["at"]
    assert ("entry", "min_iv_rank", None) in panel.inputs
    assert ("time_stop", "only_expiring_today", None) in panel.inputs  # a switch
    panel.submit()
    assert sent == []  # nothing changed: nothing sent
    stop.value = 150.0
    panel.inputs["time_stop", "minutes_to_close", None].value = 20.0
    panel.submit()
    rules = sent[-1]["rules"]
    assert set(rules) == {"stop_loss", "time_stop"}
    assert rules["stop_loss"]["levels"][0] == {**settings["stop_loss"]["levels"][0], "at": 150.0}
    assert rules["time_stop"] == {"minutes_to_close": 20.0}
    await client.command("settings", rules=rules)  # what Apply sends is what the service takes
    await until(lambda: client.snapshot["settings"]["stop_loss"]["levels"][0]["at"] == 150.0)
    panel.show(client.snapshot["settings"])
    panel.inputs["time_stop", "minutes_to_close", None].value = -5.0
    panel.submit()
    with pytest.raises(CommandRefusedError, match="minutes_to_close"):
        await client.command("settings", rules=sent[-1]["rules"])
    panel.show(client.snapshot["settings"])
    panel.inputs["limits", "max_position_size", None].value *= 10
    panel.submit()
    with pytest.raises(CommandRefusedError, match="loosening"):
        await client.command("settings", rules=sent[-1]["rules"])

"""The desk service's gateway protocol, against a real service on 127.0.0.1: auth, snapshots,
events, validated commands, one engine for many clients, and the client's reconnects."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from service_helpers import TOKEN, until
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import kit
from kit.app.service import DeskService, ServiceConfig
from kit.core.config import ConfigError
from kit.remote.client import CommandRefusedError, DeskClient
from kit.remote.gateway import UNAUTHORIZED, GatewayConfig, service_token


@pytest.fixture
async def service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[DeskService]:
    monkeypatch.setenv("KIT_TOKEN", TOKEN)
    rules = tmp_path / "rules.toml"  # entries pass on any simulated second, not just some
    rules.write_text(  # and one alert that holds while a position is open, to acknowledge
        "[entry]\nmax_spread_pct = 50.0\nmin_iv_rank = 0.0\n"
        '[strike_breach]\nlevels = [{ at = 60.0, severity = "WARNING" }]\n'
    )
    cfg = ServiceConfig(
        gateway=GatewayConfig(port=0, auth_timeout_s=0.5), speed=20.0, rules=str(rules)
    )
    svc = DeskService(cfg)
    await svc.start()
    yield svc
    await svc.close()


def url(svc: DeskService) -> str:
    return f"ws://127.0.0.1:{svc.gateway.port}"


@pytest.fixture
async def client(service: DeskService) -> AsyncIterator[DeskClient]:
    c = await kit.connect(url(service), TOKEN, name="pytest")
    yield c
    await c.close()


async def held(client: DeskClient, quantity: float | None = None) -> dict:
    """The first open position once it is fully entered (and has ``quantity`` lots)."""

    def ready():
        s = client.snapshot
        for p in (s or {}).get("positions", []):
            if p["open"] and p["status"] == "open" and quantity in (None, p["quantity"]):
                return p
        return None

    return await until(ready)


async def raw_session(svc: DeskService, token: str | None = TOKEN):
    ws = await ws_connect(url(svc), compression=None)
    if token is not None:
        await ws.send(json.dumps({"type": "auth", "token": token, "client": "raw"}))
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"
    return ws


async def command(ws, **msg) -> dict:
    await ws.send(json.dumps({"type": "command", **msg}))
    while True:
        doc = json.loads(await ws.recv())
        if doc["type"] in ("reply", "error"):
            return doc


# --- auth ---


async def test_wrong_token_is_refused_and_closed(service: DeskService) -> None:
    ws = await raw_session(service, token=None)
    await ws.send(json.dumps({"type": "auth", "token": "nope"}))
    assert json.loads(await ws.recv())["error"].startswith("unauthorized")
    with pytest.raises(ConnectionClosed) as info:
        await ws.recv()
    assert info.value.rcvd.code == UNAUTHORIZED


async def test_silent_client_is_dropped_after_the_auth_timeout(service: DeskService) -> None:
    ws = await raw_session(service, token=None)
    assert json.loads(await ws.recv())["type"] == "error"  # 0.5 s later, no auth sent
    with pytest.raises(ConnectionClosed):
        await ws.recv()


async def test_commands_before_auth_are_not_executed(service: DeskService) -> None:
    ws = await raw_session(service, token=None)
    await ws.send(json.dumps({"type": "command", "id": "x", "cmd": "kill", "on": True}))
    assert json.loads(await ws.recv())["type"] == "error"
    assert not service.desk.killed


async def test_browsers_are_refused(service: DeskService) -> None:
    with pytest.raises(InvalidStatus) as info:
        await ws_connect(url(service), origin="http://evil.example")
    assert info.value.response.status_code == 403


async def test_client_with_the_wrong_token_reports_why(service: DeskService) -> None:
    with pytest.raises(ConnectionError, match="unauthorized"):
        await kit.connect(url(service), "wrong", timeout_s=1.5)


def test_token_file_is_created_user_only_and_reused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("KIT_TOKEN", raising=False)
    path = tmp_path / "cfg" / "service.token"
    first = service_token(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert service_token(path) == first  # a restart keeps the token the tabs know
    os.chmod(path, 0o644)
    assert service_token(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # made private again
    monkeypatch.setenv("KIT_TOKEN", "from-the-environment")
    assert service_token(path) == "from-the-environment"


@pytest.mark.parametrize("token", ["short", "   ", "0123456789abcde"])
def test_an_empty_or_short_token_is_refused_at_start_up(tmp_path: Path, monkeypatch, token):
    monkeypatch.delenv("KIT_TOKEN", raising=False)
    path = tmp_path / "cfg" / "service.token"
    path.parent.mkdir(mode=0o700)
    path.write_text(token)
    with pytest.raises(ConfigError, match=r"token file .* holds a \d+-character token: use at"):
        service_token(path)
    monkeypatch.setenv("KIT_TOKEN", token)
    if token.strip():  # whitespace is no token at all: the file decides, and it is refused too
        with pytest.raises(ConfigError, match="KIT_TOKEN holds a"):
            service_token(path)
    else:
        with pytest.raises(ConfigError, match="token file"):
            service_token(path)


def test_an_open_token_directory_is_made_private(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("KIT_TOKEN", raising=False)
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o777)
    service_token(folder / "service.token")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


async def test_the_token_never_reaches_a_log_even_at_debug(service: DeskService, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    c = await kit.connect(url(service), TOKEN)
    await c.next_snapshot()
    await c.close()
    assert "auth" in caplog.text  # the frames were logged ...
    assert TOKEN not in caplog.text  # ... with the token masked


# --- snapshots and events ---


async def test_snapshots_stream_at_most_ten_a_second(client: DeskClient) -> None:
    seen: list[dict] = []
    client.on_snapshot.append(seen.append)
    await asyncio.sleep(1.5)
    assert 4 <= len(seen) <= 16  # 10 Hz at most (fewer only on a starved machine)
    s = seen[-1]
    assert s["feed"]["state"] == "LIVE" and s["feed"]["age_s"] < 2
    assert s["spots"]["SPX"]["last"] > 0
    assert s["ts_ns"] > seen[0]["ts_ns"]  # the market moves on


async def test_demo_position_and_its_fills_arrive(client: DeskClient) -> None:
    p = await held(client, 2.0)
    assert p["strategy"] == "STRANGLE" and len(p["legs"]) == 2
    assert {leg["qty"] for leg in p["legs"]} == {-2.0}
    assert p["credit"] > 0 and p["time_left_s"] > 0
    fills = [e for e in client.events if e["kind"] == "fill"]
    assert len(fills) >= 2 and all(f["side"] == "sell" for f in fills)
    assert client.snapshot["account"]["buying_power_used"] > 0


async def test_one_engine_serves_every_client(service: DeskService, client: DeskClient) -> None:
    other = await kit.connect(url(service), TOKEN, name="second")
    try:
        await until(lambda: (other.snapshot or {}).get("engine", {}).get("clients") == 2)
        assert other.hello["engine"]["id"] == client.hello["engine"]["id"]
        assert len(service.gateway.viewers) == 2
    finally:
        await other.close()
    await until(lambda: len(service.gateway.viewers) == 1)


# --- commands ---


async def test_close_half_halves_the_position(client: DeskClient) -> None:
    p = await held(client, 2.0)
    out = await client.command("close_half", position=p["id"])
    assert out["intents"][0]["position"] == p["id"]
    after = await held(client, 1.0)
    assert after["id"] == p["id"]
    buys = [e for e in client.events if e["kind"] == "fill" and e["side"] == "buy"]
    assert len(buys) == 2  # one per leg, one lot each
    assert any(f["side"] == "buy" for f in client.snapshot["fills"])


async def test_a_resent_command_does_not_trade_twice(service: DeskService) -> None:
    ws = await raw_session(service)
    c = await kit.connect(url(service), TOKEN)
    try:
        p = await held(c, 2.0)
        msg = {"id": "click-1", "cmd": "close_half", "position": p["id"]}
        first, second = await command(ws, **msg), await command(ws, **msg)
        assert first["ok"] and second["ok"]
        assert first["result"]["intents"][0]["intent"] == second["result"]["intents"][0]["intent"]
        await held(c, 1.0)
        await asyncio.sleep(1.0)
        assert (await held(c))["quantity"] == 1.0
    finally:
        await c.close()
        await ws.close()


async def test_a_resent_entry_never_trades_twice_even_once_flat(service: DeskService) -> None:
    ws = await raw_session(service)
    c = await kit.connect(url(service), TOKEN)

    def flat() -> bool:
        s = c.snapshot or {}
        return bool(s.get("positions")) and not any(p["open"] for p in s["positions"])

    try:
        await held(c, 2.0)  # the demo
        await c.command("close_all")
        await until(flat)
        msg = {"id": "entry-1", "cmd": "open_strangle", "strategy": "again",
               "delta_low": 0.03, "delta_high": 0.3}  # fmt: skip
        first = await command(ws, **msg)
        assert first["ok"], first
        await held(c)
        await c.command("close_all")
        await until(flat)
        second = await command(ws, **msg)  # after a reconnect, say: the same request again
        assert second["ok"] and second["result"]["duplicate"]
        assert second["result"]["intent"] == first["result"]["intent"]
        assert second["result"]["position"] == first["result"]["position"]
        await asyncio.sleep(1.0)
        assert flat()
        entries = [r for r in service.orders.records.values() if r.intent.strategy_id == "again"
                   and r.intent.kind.value == "open"]  # fmt: skip
        assert len(entries) == 1
    finally:
        await c.close()
        await ws.close()


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        ({"cmd": "launch_rockets"}, "unknown command"),
        ({"cmd": "close_half", "position": "nope"}, "is not held"),
        ({"cmd": "close_half", "size": 3}, "unknown parameter 'size'"),
        ({"cmd": "auto_manage"}, "missing parameter 'on'"),
        ({"cmd": "auto_manage", "on": "yes"}, "expected bool"),
        ({"cmd": "ack", "seq": 0}, "outside"),
        ({"cmd": "ack", "seq": 99999}, "ack:"),
        ({"cmd": "open_strangle", "quantity": 1.5}, "expected int"),
        ({"cmd": "open_strangle", "delta_low": 0.6}, "outside"),
        ({"cmd": "settings", "rules": {"stop_loss": {"bogus": 1}}}, "unknown key 'bogus'"),
        ({"cmd": "settings", "rules": {"rapid_move": {"window_s": 60}}}, "restart"),
        ({"cmd": "close_all", "id": "bad id!"}, "id:"),
    ],
)
async def test_bad_commands_get_a_clear_error(service: DeskService, msg: dict, error: str) -> None:
    ws = await raw_session(service)
    reply = await command(ws, **msg)
    assert reply["type"] == "reply" and reply["ok"] is False
    assert error in reply["error"]
    assert (await command(ws, cmd="auto_manage", on=False))["ok"]  # the socket stays usable
    await ws.close()


async def test_malformed_frames_get_an_error_and_the_socket_stays(service: DeskService) -> None:
    ws = await raw_session(service)
    nan = json.dumps({"type": "command", "cmd": "ack", "seq": float("nan")})  # not JSON
    for frame in ("{not json", nan, json.dumps([1, 2]), json.dumps({"type": "dance"})):
        await ws.send(frame)
        while (doc := json.loads(await ws.recv()))["type"] != "error":
            pass
        assert doc["error"]
    assert (await command(ws, cmd="auto_manage", on=True))["ok"]
    await ws.send("[" * 30_000)  # deeper than any command: refused before parsing
    while (doc := json.loads(await ws.recv()))["type"] != "error":
        pass
    assert "nested deeper than 16 levels" in doc["error"]
    assert (await command(ws, cmd="auto_manage", on=False))["ok"]  # the socket stays
    await ws.close()


async def test_a_deeply_nested_auth_frame_is_refused_cleanly(service: DeskService, caplog) -> None:
    ws = await ws_connect(url(service), compression=None)
    await ws.send("[" * 30_000)
    doc = json.loads(await ws.recv())
    assert doc["type"] == "error" and "unauthorized" in doc["error"]
    assert not [r for r in caplog.records if r.exc_info]  # no traceback anywhere
    await ws.close()
    assert (await command(await raw_session(service), cmd="auto_manage", on=False))["ok"]


async def test_switches_ack_and_settings(service: DeskService, client: DeskClient) -> None:
    await held(client)  # the kill switch would stop the demo entry: let it fill first
    assert (await client.command("auto_manage", on=True))["auto_manage"] is True
    await until(lambda: client.snapshot["auto_manage"])
    await client.command("kill", on=True)
    await until(lambda: client.snapshot["killed"] and not client.snapshot["auto_manage"])
    with pytest.raises(CommandRefusedError, match="kill switch"):
        await client.command("auto_manage", on=True)
    await client.command("kill", on=False)
    alert = await until(lambda: next(iter(client.snapshot["alerts"]), None))
    await client.command("ack", seq=alert["seq"])
    await until(lambda: alert["seq"] not in {a["seq"] for a in client.snapshot["alerts"]})
    out = await client.command("settings", rules={"time_stop": {"minutes_to_close": 45}})
    assert out["rules"]["time_stop"]["minutes_to_close"] == 45
    assert service.desk.rules.time_stop.minutes_to_close == 45.0
    await until(lambda: client.snapshot["settings"]["time_stop"]["minutes_to_close"] == 45)


async def test_entries_pass_the_risk_limits(service: DeskService, client: DeskClient) -> None:
    await held(client)
    band = {"delta_low": 0.03, "delta_high": 0.3}  # some strike fits whatever the market does
    with pytest.raises(CommandRefusedError, match="already has position"):
        await client.command("open_strangle", strategy="demo", **band)  # no duplicate trade
    with pytest.raises(CommandRefusedError, match="size 1000 > "):
        await client.command("open_strangle", strategy="big", quantity=1000, **band)
    assert not any(r.intent.strategy_id == "big" for r in service.orders.records.values())


async def test_client_reconnects_when_the_service_comes_back(service: DeskService) -> None:
    c = await kit.connect(url(service), TOKEN)
    try:
        port = service.gateway.port
        await service.gateway.close()
        await until(lambda: not c.connected)
        with pytest.raises(ConnectionError):
            await c.command("auto_manage", on=True)
        service.gateway.config = GatewayConfig(port=port)
        await service.gateway.start()
        await until(lambda: c.connected, timeout_s=15)
        assert c.connects == 2
        await c.next_snapshot()
        assert (await c.command("auto_manage", on=False))["auto_manage"] is False
    finally:
        await c.close()


async def test_no_service_gives_a_clear_error() -> None:
    with pytest.raises(ConnectionError, match="no desk service"):
        await kit.connect("ws://127.0.0.1:9", "t", timeout_s=1.0)


async def test_manual_positions_are_alert_only(monkeypatch, tmp_path: Path) -> None:
    """A position logged with `kit positions` appears in the service's book within a
    heartbeat, raises the desk's alerts, and refuses orders (it is traded elsewhere)."""
    from kit.cli.main import main

    monkeypatch.setenv("KIT_TOKEN", TOKEN)
    journal = tmp_path / "manual.json"
    cfg = ServiceConfig(gateway=GatewayConfig(port=0), speed=20.0, demo=False, manual=journal)
    async with DeskService(cfg) as svc:
        c = await kit.connect(url(svc), TOKEN)
        try:
            assert main(["positions", "add", "strangle", "--underlying", "SPX", "--expiry",
                         "2024-03-12", "--put", "4990", "--call", "5010", "--contracts", "2",
                         "--credit", "1.00", "--at", "2024-03-12T10:00:00-04:00",
                         "--file", str(journal)]) == 0  # fmt: skip
            p = await until(lambda: next((p for p in c.snapshot["positions"]
                                          if p["id"].startswith("manual:")), None))  # fmt: skip
            assert p["alert_only"] and p["quantity"] == 2.0 and p["credit"] == 200.0
            with pytest.raises(CommandRefusedError, match="alert-only"):
                await c.command("close_half", position=p["id"])
            assert main(["positions", "close", p["id"].split(":")[1], "--price", "0.40",
                         "--contracts", "1", "--at", "2024-03-12T10:01:00-04:00",
                         "--file", str(journal)]) == 0  # fmt: skip
            await until(lambda: next(q for q in c.snapshot["positions"]
                                     if q["id"] == p["id"])["quantity"] == 1.0)  # fmt: skip
            assert not svc.orders.records  # nothing was ever sent to the broker
            # tight strikes around spot: the desk's rules raise their exit alerts on it
            await until(lambda: any(a["position_id"] == p["id"] for a in c.snapshot["alerts"]))
        finally:
            await c.close()

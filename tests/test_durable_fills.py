"""Viewers see a fill only once the store has it, so a crash never rewrites what a trader saw:
the writer's durability callback on a real DuckDB file (through an outage), every fill a served
desk publishes checked against its store at the moment of publishing, and a ``kit serve``
killed with SIGKILL the instant its first fill reaches a viewer."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import duckdb_locked
from service_helpers import REPO, TOKEN, free_port, until

import kit
from kit.app.service import DeskService, ServiceConfig
from kit.remote.gateway import GatewayConfig
from kit.store import open_store
from kit.store.writer import StoreWriter, WriterConfig

FILL = ("f1", 1_710_250_000_000_000_000, "c1", "p1", "SPXW240312C05100000", "sell", 1.0, 2.5,
        100.0, 1.3, 248.7)  # fmt: skip


async def test_when_durable_waits_for_the_database_even_through_an_outage(tmp_path: Path):
    path = tmp_path / "desk.duckdb"
    open_store(path).close()
    seen: list[list[str]] = []
    with duckdb_locked(path):
        store = open_store(path, migrate=False)
        w = StoreWriter(store, WriterConfig(spool_dir=None, flush_s=0.05, retry_s=(0.05,)))
        await w.start()
        w.put("fills", FILL)
        w.when_durable(lambda: seen.append(store.query("SELECT fill_id FROM fills")
                                           ["fill_id"].to_list()))  # fmt: skip
        await until(lambda: not w.available)
        await asyncio.sleep(0.3)  # several failed attempts: still not shown
        assert seen == []
    await until(lambda: seen)
    assert seen == [["f1"]]  # called once, when the row was in the file
    w.when_durable(lambda: seen.append(["now"]))  # nothing pending: called at once
    assert seen[-1] == ["now"]
    await w.close()
    store.close()


@pytest.fixture
async def recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("KIT_TOKEN", TOKEN)
    rules = tmp_path / "rules.toml"  # entries pass on any simulated second
    rules.write_text("[entry]\nmax_spread_pct = 50.0\nmin_iv_rank = 0.0\n")
    cfg = ServiceConfig(gateway=GatewayConfig(port=0), speed=20.0, rules=str(rules),
                        db=str(tmp_path / "desk.duckdb"))  # fmt: skip
    svc = DeskService(cfg)
    await svc.start()
    yield svc
    await svc.close()


async def test_every_fill_a_viewer_is_shown_is_already_in_the_store(recorded: DeskService):
    svc = recorded
    assert svc.store is not None
    stored = lambda: set(svc.store.query("SELECT fill_id FROM fills")["fill_id"].to_list())  # noqa: E731
    shown: list[tuple[str, bool]] = []
    publish_event, publish_snapshot = svc.gateway.publish_event, svc.gateway.publish_snapshot

    def event(doc):  # observe the boundary to the viewers, then pass the frame on
        if doc.get("kind") == "fill":
            shown.append((doc["fill_id"], doc["fill_id"] in stored()))
        publish_event(doc)

    def snapshot(doc):
        in_store = stored()
        shown.extend((f["fill_id"], f["fill_id"] in in_store) for f in doc.get("fills", []))
        publish_snapshot(doc)

    svc.gateway.publish_event, svc.gateway.publish_snapshot = event, snapshot
    client = await kit.connect(f"ws://127.0.0.1:{svc.gateway.port}", TOKEN, name="pytest")
    try:
        await until(lambda: len([e for e in client.events if e["kind"] == "fill"]) >= 2)
    finally:
        await client.close()
    assert shown and all(ok for _, ok in shown), shown


def test_a_kill_9_right_after_a_fill_is_shown_never_loses_it(tmp_path: Path):
    db, port, rules = tmp_path / "desk.duckdb", free_port(), tmp_path / "rules.toml"
    rules.write_text("[entry]\nmax_spread_pct = 50.0\nmin_iv_rank = 0.0\n")
    env = {**os.environ, "KIT_TOKEN": TOKEN, "KIT_MANUAL_POSITIONS": str(tmp_path / "m.json")}
    child = subprocess.Popen(
        [sys.executable, "-m", "kit", "serve", "--port", str(port), "--speed", "20",
         "--db", str(db), "--rules", str(rules), "--no-demo"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    async def watch() -> list[str]:
        async with asyncio.timeout(90):
            while True:
                try:
                    client = await kit.connect(f"ws://127.0.0.1:{port}", TOKEN, name="pytest")
                    break
                except Exception:
                    await asyncio.sleep(0.2)
            await client.command("open_strangle", strategy="crash", delta_low=0.03,
                                 delta_high=0.3)  # fmt: skip
            while not (fills := [e["fill_id"] for e in client.events if e["kind"] == "fill"]):
                await asyncio.sleep(0.001)
            child.send_signal(signal.SIGKILL)  # the instant the first fill is on screen
            await client.close()
            return fills

    try:
        shown = asyncio.run(watch())
    finally:
        child.kill()
        child.wait(10)
    with open_store(db, migrate=False) as store:
        kept = set(store.query("SELECT fill_id FROM fills")["fill_id"].to_list())
    assert set(shown) <= kept

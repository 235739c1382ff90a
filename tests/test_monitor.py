"""The monitor's widgets in a kernel-less process and the notebook executed headlessly, both
against a real desk service."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from service_helpers import REPO, TOKEN, free_port, until

import kit
from kit.app.service import DeskService, ServiceConfig
from kit.remote.gateway import GatewayConfig
from kit.ui import Monitor
from kit.ui.monitor import query_symbol

NOTEBOOK = REPO / "notebooks" / "monitor.ipynb"


@pytest.fixture
async def service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[DeskService]:
    monkeypatch.setenv("KIT_TOKEN", TOKEN)
    cfg = ServiceConfig(gateway=GatewayConfig(port=0), speed=20.0, manual=tmp_path / "m.json")
    async with DeskService(cfg) as svc:
        yield svc


async def attached(svc: DeskService, **kw) -> Monitor:
    client = await kit.connect(f"ws://127.0.0.1:{svc.gateway.port}", TOKEN, name="monitor")
    m = Monitor(client, **kw)
    m.start()
    return m


def quantity(m: Monitor) -> str:
    text = m.summary.widget.value
    return text.split('class="kit-quantity">')[1].split("<")[0] if "kit-quantity" in text else ""


async def test_panels_follow_the_desk(service: DeskService) -> None:
    m = await attached(service)
    try:
        await until(lambda: quantity(m) == "2")
        assert "LIVE" in m.header.feed.value and "data-age" in m.header.feed.value
        assert "demo-" in m.summary.widget.value and m.selector.value.startswith("demo-")
        assert len(m.graph.lines["expiry"].y) == 201 and len(m.graph.lines["t0"].y) == 201
        assert len(m.graph.lines["t1"].y) == 0
        m.graph.t1.value = True  # the T+1 toggle adds its curve at once
        assert len(m.graph.lines["t1"].y) == 201
        assert m.greeks.delta.value is not None and "<svg" in m.greeks.delta.widget.value
        frames = m.frames
        await asyncio.sleep(1.0)
        assert 3 <= m.frames - frames <= 12  # live, and never above the service's 10 Hz
        assert int(m.lag.value) > 0  # the wall time of the snapshot on screen
    finally:
        await m.stop()
        await m.client.close()


async def test_close_half_asks_first_then_halves(service: DeskService) -> None:
    m = await attached(service)
    try:
        await until(lambda: quantity(m) == "2")
        m._ask("close_half")
        assert m.confirm.layout.display == "flex" and "Close 50%" in m.confirm_text.value
        m.no.click()
        assert m.confirm.layout.display == "none"
        await asyncio.sleep(0.5)
        assert all(i.endswith(".open") for i in service.orders.records)  # Cancel sent nothing
        m.buttons[1].click()  # Close 50%
        m.yes.click()
        await until(lambda: "✓ close_half" in m.result.value)
        await until(lambda: quantity(m) == "1")
        assert "buy" in m.table.widget.value  # the closing fills are listed
        m.send("close_half", position="nope")
        await until(lambda: "✗ close_half" in m.result.value)
        assert "is not held" in m.result.value
    finally:
        await m.stop()
        await m.client.close()


async def test_render_pauses_without_a_viewer(service: DeskService) -> None:
    """No page heartbeat (a closed tab): the kernel stops sending, so it can go idle and be
    culled; a heartbeat brings it back."""
    m = await attached(service, viewer_timeout_s=0.5)
    try:
        await until(lambda: m.paused, timeout_s=5)
        frames = m.frames
        await asyncio.sleep(0.5)
        assert m.frames == frames
        m.heartbeat.value += 1  # what the page's Play widget does every second
        await until(lambda: m.frames > frames, timeout_s=5)
    finally:
        await m.stop()
        await m.client.close()


def test_symbol_comes_from_the_query_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUERY_STRING", "symbol=ndx&x=1")
    assert query_symbol() == "NDX"
    monkeypatch.setenv("QUERY_STRING", "symbol=<script>")
    assert query_symbol() == "SPX"
    monkeypatch.delenv("QUERY_STRING")
    assert query_symbol("SPY") == "SPY"


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_runs_headless_against_the_service(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "KIT_TOKEN": TOKEN, "KIT_MANUAL_POSITIONS": str(tmp_path / "m.json")}
    proc = subprocess.Popen([sys.executable, "-m", "kit", "serve", "--port", str(port),
                             "--speed", "10"], cwd=REPO, env=env)  # fmt: skip
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(
            "import asyncio\nawait asyncio.sleep(1.5)\n"
            "print('frames', m.frames, 'connected', m.client.connected)\n"
            "print('engine', m.client.hello['engine']['pid'])"))  # fmt: skip
        os.environ.update(KIT_TOKEN=TOKEN, KIT_SERVICE_URL=f"ws://127.0.0.1:{port}")
        try:
            NotebookClient(nb, timeout=120, kernel_name="python3",
                           resources={"metadata": {"path": str(REPO)}}).execute()  # fmt: skip
        finally:
            for k in ("KIT_TOKEN", "KIT_SERVICE_URL"):
                os.environ.pop(k)
        outs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outs if o.output_type == "error"]
        assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                   for o in outs)  # fmt: skip
        text = "".join(o.get("text", "") for o in outs)
        assert "connected True" in text and f"engine {proc.pid}" in text
        assert int(text.split("frames ")[1].split()[0]) >= 5
    finally:
        proc.terminate()
        proc.wait(30)


async def test_a_switch_toggles_from_its_commands_answer_before_the_next_snapshot(
    service: DeskService,
) -> None:
    """Auto-manage turned ON, then clicked again before a snapshot built after the answer is
    drawn: the page asks to turn it OFF (it asked to turn it ON again, and sent ON twice)."""
    m = await attached(service)
    try:
        await until(lambda: m._drawn is not None)
        await m.stop()  # no snapshot drawn from here on: the page shows the one before
        assert m._drawn is not None and m._drawn["auto_manage"] is False
        m._ask("auto_manage")
        assert "Turn auto-manage ON" in m.confirm_text.value
        m.yes.click()
        await until(lambda: "✓ auto_manage" in m.result.value)
        assert service.desk.auto_manage is True
        m._ask("auto_manage")
        assert "Turn auto-manage OFF" in m.confirm_text.value
        m.yes.click()
        await until(lambda: service.desk.auto_manage is False)
        m._drawn = {**m._drawn, "auto_manage": True, "wall_ns": 2**62}  # a newer snapshot wins
        assert m._switch("auto_manage") is True
    finally:
        await m.client.close()

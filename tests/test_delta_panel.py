"""The Delta control panel: its lock (two tabs never start two traders), presets, and the
notebook itself executed in a real kernel against ``kit emulate delta``: the expiry dropdown is
read from the chain, Start launches a dry-run trader, a second Start is refused, Stop & Exit
Positions makes the trader buy its legs back and finish, and the metrics show the result."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from kit.app import delta_panel as panel
from kit.app.delta_strategy import SettingsError, TraderSettings

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "delta_trader.ipynb"


def test_lock_refuses_a_second_trader_and_takes_over_a_dead_ones(tmp_path):
    panel.acquire_lock(tmp_path)
    assert panel.running(tmp_path) == os.getpid()
    with pytest.raises(panel.PanelError, match=f"already running \\(pid {os.getpid()}"):
        panel.acquire_lock(tmp_path)
    with pytest.raises(panel.PanelError, match="already running"):
        panel.start(tmp_path, {"underlying": "BTC"})
    panel.release_lock(tmp_path)
    assert panel.running(tmp_path) is None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (tmp_path / panel.LOCK).write_text(dead)
    panel.acquire_lock(tmp_path)  # the dead process's lock is taken over
    assert panel.running(tmp_path) == os.getpid()
    panel.release_lock(tmp_path)


def test_presets_round_trip_and_are_validated(tmp_path):
    settings = TraderSettings(underlying="ETH", delta_min=0.08, exit_time="16:45").to_dict()
    path = panel.save_preset(tmp_path, "eth-wide", settings)
    assert TraderSettings.load(path) == TraderSettings(**settings)
    assert list(panel.presets(tmp_path)) == ["eth-wide"]
    with pytest.raises(SettingsError, match="delta band"):
        panel.save_preset(tmp_path, "bad", settings | {"delta_max": 0.05})
    with pytest.raises(panel.PanelError, match="preset name"):
        panel.save_preset(tmp_path, "../x", settings)
    with pytest.raises(panel.PanelError, match="API key"):
        panel.start(tmp_path, settings, live=True)


CHECKS = """
import time
assert expiry.options and all(days >= 0 for _, days in expiry.options), expiry.options
fast = {"window_start": "00:00", "window_end": "23:59", "fill_wait_s": 1.0,
        "entry_retries": 2, "poll_s": 1.0, "status_every_s": 1.0, "max_spread_pct": 100.0}
for name, value in fast.items():
    inputs[name].value = value
on_start(None)
assert "trader started" in message.value, message.value
deadline = time.time() + 60
while panel.running(LOG_DIR) is None and time.time() < deadline:
    time.sleep(0.2)
assert panel.running(LOG_DIR), (LOG_DIR / "trader.out").read_text()
on_start(None)
assert "already running" in message.value, message.value
while panel.read_status(LOG_DIR).get("phase") != "open" and time.time() < deadline:
    time.sleep(0.2)
assert panel.read_status(LOG_DIR).get("phase") == "open", (LOG_DIR / "trader.out").read_text()
on_stop(None)
while panel.running(LOG_DIR) is not None and time.time() < deadline:
    time.sleep(0.2)
assert panel.running(LOG_DIR) is None
render()
assert "not running" in metrics.value and "P&L (USD)" in metrics.value
assert "exit: force_exit" in summary.value, summary.value
print("panel checks passed")
"""


def test_the_panel_notebook_drives_a_dry_run_trader(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    emu = subprocess.Popen([sys.executable, "-m", "kit", "emulate", "delta", "--port", str(port),
                            "--api-key", "pk", "--api-secret", "ps"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert emu.stdout.readline().startswith("Delta Exchange emulator")
        for k in ("DELTA_API_KEY", "DELTA_API_SECRET", "DELTA_WS_URL", "KIT_LIVE_TRADING"):
            monkeypatch.delenv(k, raising=False)
        monkeypatch.setenv("DELTA_BASE_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("KIT_DATA_DIR", str(tmp_path))
        nb.cells.append(nbformat.v4.new_code_cell(CHECKS))
        where = {"metadata": {"path": str(REPO / "notebooks")}}  # where Voila starts its kernel
        NotebookClient(nb, timeout=120, kernel_name="python3", resources=where).execute()
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        assert "panel checks passed" in "".join(o.get("text", "") for o in outputs)
        reports = list((tmp_path / "delta").glob("delta_*_report.json"))
        assert len(reports) == 1 and '"exit_reason": "force_exit"' in reports[0].read_text()
    finally:
        emu.terminate()
        emu.communicate(timeout=10)

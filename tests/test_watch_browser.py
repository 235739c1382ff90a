"""The watch page in Debian's Chromium (pytest-playwright): ``kit watch`` started as a user
starts it (a child process with its Voila dashboard) on the simulator at 60x; the page shows the
market context and the scan's opportunities with the in-window ones highlighted, follows the
watch live over its loopback gateway as it makes new passes, and Ctrl-C stops the watch and its
Voila server together."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from test_watch import LENIENT, results  # noqa: F401  (the module's grid fixture)

from kit.app.launch import ROOT, free_port


@pytest.fixture(scope="module")
def browser(browser_type_launch_args: dict) -> Iterator[Browser]:
    """A Playwright for this module only (see tests/test_browser.py for why)."""
    with sync_playwright() as pw:
        b = pw.chromium.launch(**browser_type_launch_args)
        yield b
        b.close()


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_watch_page_in_chromium(tmp_path: Path, results: Path, browser: Browser) -> None:  # noqa: F811
    cfg = tmp_path / "watch.toml"
    cfg.write_text(LENIENT.format(tmp=tmp_path))
    port, service_port = free_port(), free_port()
    env = {**os.environ, "KIT_TOKEN": "watch-browser-token-0123456789abcdef"}
    log = tmp_path / "watch.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kit", "watch", "--grid", str(results), "--config", str(cfg),
             "--file", str(tmp_path / "manual.json"), "--at", "2024-03-12T10:01", "--seed", "3",
             "--speed", "60", "--port", str(port), "--service-port", str(service_port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            state = tmp_path / "state.json"
            wait(
                lambda: state.exists() and listening(port) and listening(service_port),
                90,
                f"the page on {port} and the gateway on {service_port}",
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/", timeout=90_000)
            expect(page.get_by_text("Opportunities")).to_be_visible(timeout=90_000)
            doc = json.loads(state.read_text())
            first = doc["opportunities"][0]
            expect(page.locator("tr.now").first).to_be_visible(timeout=30_000)
            expect(page.get_by_text(f"#{first['config_id']} {first['strategy']}").first
                   ).to_be_visible()  # fmt: skip
            shown = page.locator(".ctx").first.inner_text()
            assert "VIX" in shown and "market open" in shown
            # the page follows the watch: a later pass's time appears without a reload
            expect(page.locator(".ctx").first).not_to_have_text(shown, timeout=30_000)
            page.close()
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
    assert proc.returncode == 0, log.read_text()
    assert "kit watch: stopped" in log.read_text()
    wait(lambda: not listening(port), 20, "Voila to stop with the watch")
    assert not listening(service_port)

"""The Voila monitor over `kit serve --feed ibkr-cpapi`, live, against `kit emulate cpapi`: the
user's real path to the IBKR Client Portal (processes, ports, the REST login, the smd socket and
Chromium); the demo strangle opens on paper against the gateway's streamed quotes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from service_helpers import REPO, free_port, monitor_process


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    port = free_port()
    log = tmp_path_factory.mktemp("emulator") / "emulator.log"
    with log.open("w") as out:
        cmd = [sys.executable, "-m", "kit", "emulate", "cpapi", "--port", str(port)]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (m := re.search(r"REST (\S+) .* account (\S+)", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield {"IBKR_CPAPI_URL": m.group(1), "IBKR_ACCOUNT_ID": m.group(2)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(browser_type_launch_args: dict) -> Iterator[Browser]:
    with sync_playwright() as pw:  # module-scoped, as in test_browser.py
        b = pw.chromium.launch(**browser_type_launch_args)
        yield b
        b.close()


def test_the_monitor_runs_live_on_the_client_portal_feed(
    gateway: dict[str, str], browser: Browser, tmp_path: Path
) -> None:
    with monitor_process(tmp_path, "--feed", "ibkr-cpapi", env=gateway) as (port, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1150})
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.locator(".kit-header")).to_be_visible(timeout=90_000)
        expect(page.locator("[data-key=feed-status] .val")).to_have_text("LIVE", timeout=60_000)
        expect(page.locator("[data-key=feed-name] .val")).to_have_text("ibkr-cpapi")
        # the demo strangle opens on paper against the gateway's smd quotes
        expect(page.locator("[data-key=quantity] .val")).to_have_text("2", timeout=90_000)
        seen = {page.locator("[data-key=market-time] .val").inner_text()}
        deadline = time.monotonic() + 20
        while len(seen) < 3 and time.monotonic() < deadline:  # market time keeps moving
            time.sleep(0.5)
            seen.add(page.locator("[data-key=market-time] .val").inner_text())
        assert len(seen) >= 3
        page.screenshot(path=str(tmp_path / "monitor-cpapi.png"))
        page.close()

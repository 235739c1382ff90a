"""The Voila monitor over `kit serve --feed ibkr --broker ibkr`, live, against `kit emulate tws`:
the user's real path to Interactive Brokers (processes, ports, the unmodified ib_async client
in the service, TWS's API socket and Chromium), orders going to TWS behind the live gate."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from service_helpers import REPO, free_port, monitor_process

ACCOUNT = "DU1234567"


@pytest.fixture(scope="module")
def tws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    port = free_port()
    log = tmp_path_factory.mktemp("emulator") / "emulator.log"
    with log.open("w") as out:
        cmd = [sys.executable, "-m", "kit", "emulate", "tws", "--port", str(port)]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "TWS API emulator on" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield {"IBKR_HOST": "127.0.0.1", "IBKR_PORT": str(port), "IBKR_CLIENT_ID": "1",
               "IBKR_ACCOUNT_ID": ACCOUNT, "KIT_LIVE_TRADING": "yes"}  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(browser_type_launch_args: dict) -> Iterator[Browser]:
    with sync_playwright() as pw:  # module-scoped, as in test_browser.py
        b = pw.chromium.launch(**browser_type_launch_args)
        yield b
        b.close()


def test_the_monitor_runs_live_on_tws(tws: dict[str, str], browser: Browser,
                                      tmp_path: Path) -> None:  # fmt: skip
    args = ("--feed", "ibkr", "--broker", "ibkr", "--confirm-live", ACCOUNT)
    with monitor_process(tmp_path, *args, env=tws) as (port, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1150})
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.locator(".kit-header")).to_be_visible(timeout=90_000)
        expect(page.locator("[data-key=feed-status] .val")).to_have_text("LIVE", timeout=60_000)
        expect(page.locator("[data-key=feed-name] .val")).to_have_text("ibkr")
        # the demo strangle is sold at TWS as one combo order and fills there
        expect(page.locator("[data-key=quantity] .val")).to_have_text("2", timeout=90_000)
        seen = {page.locator("[data-key=market-time] .val").inner_text()}
        deadline = time.monotonic() + 20
        while len(seen) < 3 and time.monotonic() < deadline:  # market time keeps moving
            time.sleep(0.5)
            seen.add(page.locator("[data-key=market-time] .val").inner_text())
        assert len(seen) >= 3
        page.screenshot(path=str(tmp_path / "monitor-ibkr.png"))
        page.close()

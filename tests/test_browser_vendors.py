"""The Voila monitor live on each vendor's feed, against that vendor's emulator in its own
process: a user's real path (processes, ports, the vendor's protocol and Chromium, nothing
in-process). ThetaData (its Terminal), tastytrade (the SDK's login and DXLink), the IBKR Client
Portal (REST login and the smd socket) and TWS (the unmodified ib_async client in the service,
orders going to TWS behind the live gate). On each the feed goes LIVE, the demo strangle opens
and market time keeps moving."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from service_helpers import REPO, free_port, monitor_process

ACCOUNT = "DU1234567"


@dataclass(frozen=True)
class Vendor:
    feed: str  # kit serve --feed, and the header's feed name
    emulate: Callable[[], tuple[list[str], dict[str, str]]]  # emulate args, env from ports
    ready: str  # a regex on the emulator's banner; its groups fill {0}, {1} in the env
    monitor_args: tuple[str, ...] = ()


def _thetadata() -> tuple[list[str], dict[str, str]]:
    rest, ws = free_port(), free_port()
    return (["thetadata", "--rest-port", str(rest), "--ws-port", str(ws)],
            {"THETADATA_HOST": "127.0.0.1", "THETADATA_REST_PORT": str(rest),
             "THETADATA_WS_PORT": str(ws)})  # fmt: skip


def _tastytrade() -> tuple[list[str], dict[str, str]]:
    port = free_port()
    return (["tastytrade", "--port", str(port)],
            {"TT_API_URL": f"http://127.0.0.1:{port}", "TT_SECRET": "any-secret",
             "TT_REFRESH": "any-refresh"})  # fmt: skip


def _cpapi() -> tuple[list[str], dict[str, str]]:  # URL and account from the banner
    return ["cpapi", "--port", str(free_port())], {
        "IBKR_CPAPI_URL": "{0}",
        "IBKR_ACCOUNT_ID": "{1}",
    }


def _tws() -> tuple[list[str], dict[str, str]]:
    port = free_port()
    return (["tws", "--port", str(port)],
            {"IBKR_HOST": "127.0.0.1", "IBKR_PORT": str(port), "IBKR_CLIENT_ID": "1",
             "IBKR_ACCOUNT_ID": ACCOUNT, "KIT_LIVE_TRADING": "yes"})  # fmt: skip


VENDORS = {
    "thetadata": Vendor("thetadata", _thetadata, r"ThetaData emulator:"),
    "tastytrade": Vendor("tastytrade", _tastytrade, r"tastytrade emulator:"),
    "ibkr-cpapi": Vendor("ibkr-cpapi", _cpapi, r"REST (\S+) .* account (\S+)"),
    "ibkr": Vendor(
        "ibkr", _tws, r"TWS API emulator on", ("--broker", "ibkr", "--confirm-live", ACCOUNT)
    ),
}


@pytest.fixture(params=list(VENDORS))
def vendor(request, tmp_path: Path) -> Iterator[tuple[Vendor, dict[str, str]]]:
    """The vendor's emulator started as ``kit emulate``, and the environment pointing at it."""
    v = VENDORS[request.param]
    args, env = v.emulate()
    log = tmp_path / "emulator.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kit", "emulate", *args], cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (m := re.search(v.ready, log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield v, {k: val.format(*m.groups()) for k, val in env.items()}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(browser_type_launch_args: dict) -> Iterator[Browser]:
    with sync_playwright() as pw:  # module-scoped, as in test_browser.py
        b = pw.chromium.launch(**browser_type_launch_args)
        yield b
        b.close()


def test_the_monitor_runs_live_on_the_vendors_feed(
    vendor: tuple[Vendor, dict[str, str]], browser: Browser, tmp_path: Path
) -> None:
    v, env = vendor
    with monitor_process(tmp_path, "--feed", v.feed, *v.monitor_args, env=env) as (port, _):
        page = browser.new_page(viewport={"width": 1400, "height": 1150})
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.locator(".kit-header")).to_be_visible(timeout=90_000)
        expect(page.locator("[data-key=feed-status] .val")).to_have_text("LIVE", timeout=60_000)
        expect(page.locator("[data-key=feed-name] .val")).to_have_text(v.feed)
        # the demo strangle opens: on paper against the vendor's quotes, or at TWS (ibkr)
        expect(page.locator("[data-key=quantity] .val")).to_have_text("2", timeout=90_000)
        seen = {page.locator("[data-key=market-time] .val").inner_text()}
        deadline = time.monotonic() + 20
        while len(seen) < 3 and time.monotonic() < deadline:  # market time keeps moving
            time.sleep(0.5)
            seen.add(page.locator("[data-key=market-time] .val").inner_text())
        assert len(seen) >= 3
        page.screenshot(path=str(tmp_path / f"monitor-{v.feed}.png"))
        page.close()

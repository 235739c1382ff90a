"""End to end in Debian's Chromium (pytest-playwright): `kit monitor` serves the Voila app;
the page goes live, Close 50% halves the position, two tabs share one engine, and a closed
tab's kernel goes away. The live page is screenshotted into the test's temp directory; `make
screenshot` sets ``KIT_SCREENSHOT=docs/monitor.png`` to refresh the README's picture instead."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from service_helpers import REPO, monitor_process

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def screenshot_path(tmp_path: Path) -> Path:
    """``KIT_SCREENSHOT`` (relative to the repository) when set, else a temp file: a test run
    never rewrites a tracked file."""
    target = os.environ.get("KIT_SCREENSHOT")
    return REPO / target if target else tmp_path / "monitor.png"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with monitor_process(tmp_path_factory.mktemp("monitor"), speed=5.0) as (port, _):
        yield f"http://127.0.0.1:{port}/", port


@pytest.fixture(scope="module")
def browser(browser_type_launch_args: dict) -> Iterator[Browser]:
    """pytest-playwright's launch settings (conftest: Debian's Chromium), but a Playwright
    that lives for this module only: the plugin's session-wide one keeps its event loop
    running in the main thread, which breaks every asyncio test collected after this file."""
    with sync_playwright() as pw:
        b = pw.chromium.launch(**browser_type_launch_args)
        yield b
        b.close()


def kernels(voila_port: int) -> list[int]:
    """Pids of the kernels the Voila server on ``voila_port`` runs (its ipykernel children)."""
    procs = {}
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = stat.read_bytes().replace(b"\0", b" ").decode()
            ppid = int((stat.parent / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        procs[int(stat.parent.name)] = (cmd, ppid)
    voila = [pid for pid, (cmd, _) in procs.items() if f"--port={voila_port}" in cmd]
    return [pid for pid, (cmd, ppid) in procs.items()
            if "ipykernel_launcher" in cmd and ppid in voila]  # fmt: skip


def value(page: Page, key: str) -> str:
    return page.locator(f"[data-key={key}] .val").inner_text()


def wait_for(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_monitor_end_to_end(app: tuple[str, int], browser: Browser, tmp_path: Path) -> None:
    url, port = app
    context = browser.new_context(viewport={"width": 1400, "height": 1150})
    page = context.new_page()
    page.goto(url)
    expect(page.locator(".kit-header")).to_be_visible(timeout=90_000)
    quantity = page.locator("[data-key=quantity] .val")
    expect(quantity).to_have_text("2", timeout=60_000)  # the demo strangle, entered on paper

    # live: market time, P&L and data age keep moving
    seen_time, seen_pnl = {value(page, "market-time")}, {value(page, "pnl")}
    for _ in range(20):
        page.wait_for_timeout(250)
        seen_time.add(value(page, "market-time"))
        seen_pnl.add(value(page, "pnl"))
    assert len(seen_time) >= 3 and len(seen_pnl) >= 2
    assert float(value(page, "data-age").rstrip("s")) < 3
    assert value(page, "feed-status") == "LIVE"
    shot = screenshot_path(tmp_path)
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    png = shot.read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000, f"{shot}: not a screenshot"
    assert int.from_bytes(png[16:20], "big") == 1400  # IHDR width: the viewport's

    # Close 50%: asks first, then the position halves and the closing fills appear
    page.click(".kit-btn-close-half")
    expect(page.locator(".kit-confirm")).to_be_visible()
    expect(page.locator(".kit-confirm-text")).to_contain_text("Close 50%")
    page.click(".kit-confirm-yes")
    expect(page.locator(".kit-result")).to_contain_text("✓ close_half", timeout=20_000)
    expect(quantity).to_have_text("1", timeout=60_000)
    expect(page.locator(".kit-fills")).to_contain_text("buy")

    # a second tab attaches to the same engine: one desk, two viewers, two kernels
    engine = value(page, "engine").split(" · ")[0]
    second = context.new_page()
    second.goto(url)
    expect(second.locator("[data-key=engine] .val")).to_contain_text(engine, timeout=90_000)
    expect(page.locator("[data-key=engine] .val")).to_contain_text("2 viewers", timeout=20_000)
    expect(second.locator("[data-key=quantity] .val")).to_have_text("1")
    wait_for(lambda: len(kernels(port)) == 2)

    # closing a tab shuts its kernel down (Voila's unload beacon), and the service sees it go
    second.close(run_before_unload=True)
    wait_for(lambda: len(kernels(port)) == 1)
    expect(page.locator("[data-key=engine] .val")).to_contain_text("1 viewer", timeout=20_000)
    context.close()


# the demo's mechanics and the ticket, not the entry rule's judgement, are tested here
LENIENT = ("[entry]\nmax_spread_pct = 50.0\nmin_iv_rank = 0.0\nmax_abs_delta = 0.4\n"
           "min_open_interest = 1\n")  # fmt: skip


@pytest.fixture(scope="module")
def lenient_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    tmp = tmp_path_factory.mktemp("lenient")
    (tmp / "rules.toml").write_text(LENIENT)
    with monitor_process(tmp, "--rules", str(tmp / "rules.toml"), speed=5.0) as (port, _):
        yield f"http://127.0.0.1:{port}/", port


def confirm(page: Page, button: str, says: str, result: str | re.Pattern[str]) -> None:
    """Click an action, check the confirmation says what will be sent, confirm, see it sent,
    then wait until nothing is being worked (a newer intent would supersede a working one)."""
    page.click(button)
    expect(page.locator(".kit-confirm-text")).to_contain_text(says)
    page.click(".kit-confirm-yes")
    expect(page.locator(".kit-result")).to_contain_text(result, timeout=30_000)
    working = page.locator(".kit-positions table").first
    expect(working).not_to_contain_text("working", timeout=90_000)


def test_every_action_keeps_the_engine_healthy_then_a_condor_opens_from_the_ticket(
    lenient_app: tuple[str, int], browser: Browser, tmp_path: Path
) -> None:
    url, _ = lenient_app
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    page = context.new_page()
    page.goto(url)
    quantity = page.locator("[data-key=quantity] .val")
    expect(quantity).to_have_text("2", timeout=90_000)
    positions = page.locator(".kit-positions table").first  # open positions (fills follow)

    # a roll is done, or refused with the reason when no strike improves the side
    for side in ("put", "call"):
        done = re.compile(f"✓ roll_{side}|✗ roll_{side}: .*already delta-neutral")
        confirm(page, f".kit-btn-roll-{side}", f"Roll the {side} of demo-", done)
    # two wings at once: the amend that once desynchronised the book and killed the engine
    confirm(page, ".kit-btn-protect", "buy 2 wings beyond each naked short", "✓ add_protection")
    expect(positions).to_contain_text("IRON_CONDOR", timeout=60_000)
    confirm(page, ".kit-btn-reduce", "buy back 1 of 2 units", "✓ reduce_25")
    expect(quantity).to_have_text("1", timeout=60_000)
    confirm(page, ".kit-btn-auto", "Turn auto-manage ON", "✓ auto_manage")
    confirm(page, ".kit-btn-auto", "Turn auto-manage OFF", "✓ auto_manage")
    confirm(page, ".kit-btn-close-all", "Close ALL open positions", "✓ close_all")
    expect(positions).not_to_contain_text("demo-", timeout=60_000)
    # the engine stayed healthy through all of it: live data, no degraded or stale banner
    assert value(page, "feed-status") == "LIVE"
    assert float(value(page, "data-age").rstrip("s")) < 3
    expect(page.locator(".kit-banner")).not_to_contain_text("DEGRADED")
    expect(page.locator(".kit-banner")).not_to_contain_text("not updating")

    # the ticket: an iron condor by delta, previewed, then sent once
    ticket = page.locator(".kit-ticket")
    ticket.locator("button", has_text="Iron condor").click()
    page.click(".kit-ticket-preview")
    expect(ticket.locator(".kit-preview-verdict")).to_contain_text("entry checks passed",
                                                                   timeout=30_000)  # fmt: skip
    expect(ticket.locator(".kit-preview-figures")).to_contain_text("Reg-T")
    expect(ticket.locator(".kit-preview-legs tr")).to_have_count(5)  # header + four legs
    page.click(".kit-ticket-send")
    expect(ticket.locator(".kit-ticket-result")).to_contain_text("✓ sent: sell 1 × SPXW",
                                                                 timeout=30_000)  # fmt: skip
    expect(positions).to_contain_text("ticket-condor", timeout=60_000)
    expect(positions).to_contain_text("IRON_CONDOR")
    page.screenshot(path=str(tmp_path / "ticket.png"), full_page=True)
    assert (tmp_path / "ticket.png").read_bytes().startswith(PNG_SIGNATURE)
    context.close()

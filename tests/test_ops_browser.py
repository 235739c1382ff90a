"""The operations page live in Debian's Chromium (pytest-playwright): `kit monitor
--metrics-port` serves the Voila app, and ``?page=ops`` shows the feed LIVE with its message
rate, the latency figures against their targets and the readiness checks, refreshing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from service_helpers import free_port, monitor_process


@pytest.fixture(scope="module")
def browser(browser_type_launch_args: dict) -> Iterator[Browser]:
    with sync_playwright() as pw:  # module-scoped, as in test_browser.py
        b = pw.chromium.launch(**browser_type_launch_args)
        yield b
        b.close()


def test_the_ops_page_is_live_in_the_browser(browser: Browser, tmp_path: Path) -> None:
    with monitor_process(tmp_path, "--metrics-port", str(free_port())) as (port, _):
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/?page=ops")
        ops = page.locator(".kit-ops")
        expect(ops).to_be_visible(timeout=90_000)
        status = page.locator(".kit-ops-status")
        expect(status).to_contain_text("feed sim", timeout=30_000)
        expect(status).to_contain_text("LIVE")
        expect(status).to_contain_text("msg/s", timeout=30_000)  # a second refresh: a rate
        expect(page.locator(".kit-ops-latency")).to_contain_text("data processing")
        expect(page.locator(".kit-ops-latency")).to_contain_text("50.0 ms")  # the target
        expect(page.locator(".kit-ops-errors")).to_contain_text("malformed frames")
        expect(ops).to_contain_text("ready,", timeout=30_000)
        first = page.locator(".kit-ops h3").inner_text()
        expect(page.locator(".kit-ops h3")).not_to_have_text(first, timeout=30_000)  # refreshes
        page.screenshot(path=str(tmp_path / "ops.png"))
        page.close()


# The page's own Notification, wrapped to record what it shows (the real one still runs)
RECORD_NOTIFICATIONS = """
const Real = window.Notification;
window.__notes = [];
window.Notification = class extends Real {
  constructor(title, options) { super(title, options); window.__notes.push([title, options.body]); }
};
"""


def test_a_critical_alert_raises_a_browser_notification(browser: Browser, tmp_path: Path) -> None:
    # a strike-breach level every position is within: CRITICAL as soon as the demo is entered
    rules = tmp_path / "rules.toml"
    rules.write_text('[strike_breach]\nlevels = [{ at = 50.0, severity = "CRITICAL", '
                     'action = "roll_untested" }]\n')  # fmt: skip
    with monitor_process(tmp_path, "--rules", str(rules)) as (port, _):
        context = browser.new_context(permissions=["notifications"])
        context.add_init_script(RECORD_NOTIFICATIONS)
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("window.__notes.length > 0", timeout=120_000)
        title, body = page.evaluate("window.__notes")[0]
        assert title == "Theta Desk CRITICAL: strike_breach" and "within 50% of a short" in body
        assert page.locator(".kit-alert-sound audio").count() == 1  # and the beep
        context.close()

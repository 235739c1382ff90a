"""The research pages under Voila in Chromium, as a user opens them: Signal Lab and the Journal
render on the dark theme with their figures and tables, and never show a Python or polars repr,
a traceback, or a raw frame. Each page is screenshotted into the test's temp directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from kit.app.launch import ROOT, free_port

RAW = ("shape: (", "PinSignal(", "GexLevels(", "RegimeChange(", "Traceback", "Error:",
       "<polars", "dtype:")  # fmt: skip


@pytest.fixture(scope="module")
def browser(browser_type_launch_args: dict) -> Iterator[Browser]:
    with sync_playwright() as pw:  # this module's own Playwright (see tests/test_browser.py)
        b = pw.chromium.launch(**browser_type_launch_args)
        yield b
        b.close()


@pytest.fixture(scope="module")
def voila(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Voila serving notebooks/ from the checkout, as `make monitor` starts it, with an empty
    data directory (the journal then says how to record a day)."""
    tmp = tmp_path_factory.mktemp("pages")
    port = free_port()
    env = {**os.environ, "KIT_DATA_DIR": str(tmp / "data")}
    log = (tmp / "voila.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", "notebooks", f"--port={port}", "--no-browser",
         "--Voila.ip=127.0.0.1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "http://127.0.0.1" not in (tmp / "voila.log").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, "Voila did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/voila/render/"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()


def shown(browser: Browser, url: str, ready: str, shot: Path) -> str:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    expect(page.locator(ready).first).to_be_visible(timeout=180_000)
    page.wait_for_timeout(1500)  # the figures draw
    page.screenshot(path=str(shot), full_page=True)
    text = page.locator("body").inner_text()
    context.close()
    assert shot.read_bytes().startswith(b"\x89PNG")
    return text


def test_signal_lab_reads_as_a_page_not_a_repl(voila: str, browser: Browser, tmp_path: Path):
    text = shown(browser, voila + "signal_lab.ipynb", ".signal-lab-history",
                 tmp_path / "signal_lab.png")  # fmt: skip
    for raw in RAW:
        assert raw not in text, raw
    assert "Pinning:" in text and "New York" in text
    assert "zero gamma" in text and "convention" in text  # the levels table, labelled


def test_journal_without_a_database_says_how_to_record_one(voila: str, browser: Browser,
                                                           tmp_path: Path):  # fmt: skip
    text = shown(browser, voila + "journal.ipynb", ".journal-summary", tmp_path / "journal.png")
    for raw in RAW:
        assert raw not in text, raw
    assert "kit run --feed sim --auto --db data/desk.duckdb" in text

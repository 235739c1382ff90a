"""Shared by the service, monitor and browser tests: the token, polling, free ports and the
`kit monitor` processes (the same launcher `make monitor` runs)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TOKEN = "test-token-123"


async def until(predicate, timeout_s: float = 20.0, every_s: float = 0.05):
    """Poll ``predicate`` (sync) until it returns something truthy; its value."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for the condition on line "
                                 f"{predicate.__code__.co_firstlineno}")  # fmt: skip
        await asyncio.sleep(every_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def monitor_process(tmp: Path, *args: str, speed: float = 5.0) -> Iterator[tuple[int, int]]:
    """`kit monitor` (service + Voila) on free ports with its own token; yields the ports and
    stops both with Ctrl-C (SIGINT) as a user would, checking that they really stopped."""
    port, service_port = free_port(), free_port()
    env = {**os.environ, "KIT_TOKEN": TOKEN, "KIT_MANUAL_POSITIONS": str(tmp / "manual.json"),
           "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")}  # fmt: skip
    log = (tmp / "monitor.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit", "monitor", "--port", str(port), "--service-port",
         str(service_port), "--speed", str(speed), *args],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "Theta Desk monitor:" not in (tmp / "monitor.log").read_text():
            assert proc.poll() is None, (tmp / "monitor.log").read_text()
            assert time.monotonic() < deadline, "kit monitor did not start"
            time.sleep(0.2)
        yield port, service_port
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        log.close()

"""``kit monitor`` (what ``make monitor`` runs): the desk service and the Voila monitor as two
child processes, started in order, stopped together.

The service starts first and must answer on its port before Voila starts (a tab opened early
would otherwise show a connection error). Ctrl-C or SIGTERM stops Voila first (its kernels say
goodbye to the service), then the service (which stops its orders cleanly); a child that dies
on its own takes the other one down too, so nothing lingers on the ports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "notebooks/monitor.ipynb"
# Headless Debian Chromium for the browser test, the lag benchmark and the README screenshot:
# without the background-networking switches it keeps dialling Google's hosts, which a closed
# network refuses many times a second.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync")  # fmt: skip


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before it listened "
                               f"on 127.0.0.1:{port}")  # fmt: skip
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:g} s")


def _stop(proc: subprocess.Popen | None, timeout_s: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(port: int, service_port: int, serve_args: list[str], *, timeout_s: float = 60.0) -> int:
    """Start both, print the URL, wait until Ctrl-C/SIGTERM or a child exits; returns 0 on a
    clean stop, 1 when a child failed."""
    if port == service_port:
        raise ValueError(f"--port and --service-port are both {port}: Voila and the desk "
                         "service need a port each")  # fmt: skip
    for p, what in ((service_port, "the desk service"), (port, "Voila")):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", p)) == 0:
                raise ValueError(f"127.0.0.1:{p} is already in use ({what}'s port): stop what "
                                 "runs there or pick another port")  # fmt: skip
    env = {**os.environ, "KIT_SERVICE_URL": f"ws://127.0.0.1:{service_port}"}
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    service = voila = None
    try:
        service = subprocess.Popen(
            [sys.executable, "-m", "kit", "serve", "--port", str(service_port), *serve_args],
            cwd=ROOT, env=env, start_new_session=True)  # fmt: skip
        _wait_port(service_port, service, "the desk service", timeout_s)
        voila = subprocess.Popen(
            [sys.executable, "-m", "voila", NOTEBOOK, f"--port={port}", "--no-browser",
             "--Voila.ip=127.0.0.1"], cwd=ROOT, env=env, start_new_session=True)  # fmt: skip
        _wait_port(port, voila, "Voila", timeout_s)
        print(f"\n  Theta Desk monitor: http://127.0.0.1:{port}/   (Ctrl-C stops both)\n",
              flush=True)  # fmt: skip
        while not stopping and service.poll() is None and voila.poll() is None:
            time.sleep(0.2)
        failed = not stopping
        if failed:
            who = "the desk service" if service.poll() is not None else "Voila"
            print(f"kit monitor: {who} stopped unexpectedly; stopping the other", file=sys.stderr)
        return 1 if failed else 0
    finally:
        _stop(voila)
        _stop(service)
        for s, handler in old.items():
            signal.signal(s, handler)
        print("kit monitor: stopped", flush=True)


def voila(notebook: str, port: int, **env: str) -> subprocess.Popen:
    """Voila serving ``notebook`` (relative to the checkout) on 127.0.0.1:``port`` in its own
    session, with ``env`` added to this process's environment (how a page finds its service)."""
    return subprocess.Popen(
        [sys.executable, "-m", "voila", notebook, f"--port={port}", "--no-browser",
         "--Voila.ip=127.0.0.1"], cwd=ROOT, env={**os.environ, **env}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def spawned(
    log: Path, *args: str, speed: float = 5.0, env: Mapping[str, str] | None = None,
    timeout_s: float = 90.0,
) -> Iterator[tuple[int, int]]:  # fmt: skip
    """``kit monitor`` as a child process on free ports (the browser test and the lag
    benchmark): yields (Voila port, service port) once the URL is printed, and stops it with
    Ctrl-C as a user would. Its output goes to ``log``."""
    port, service_port = free_port(), free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kit", "monitor", "--port", str(port), "--service-port",
             str(service_port), "--speed", str(speed), *args],
            cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout_s
            while "Theta Desk monitor:" not in log.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"kit monitor did not start:\n{log.read_text()}")
                time.sleep(0.2)
            yield port, service_port
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)

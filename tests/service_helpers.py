"""Shared by the service, monitor and browser tests: the token, polling, free ports and the
`kit monitor` processes (the same launcher `make monitor` runs)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kit.app.launch import free_port, spawned

REPO = Path(__file__).resolve().parent.parent
TOKEN = "test-token-123456789"


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


@contextmanager
def monitor_process(
    tmp: Path, *args: str, speed: float = 5.0, env: dict[str, str] | None = None
) -> Iterator[tuple[int, int]]:
    """`kit monitor` on free ports with the test token and its own manual-positions file."""
    env = {"KIT_TOKEN": TOKEN, "KIT_MANUAL_POSITIONS": str(tmp / "manual.json"), **(env or {})}
    with spawned(tmp / "monitor.log", *args, speed=speed, env=env) as ports:
        yield ports


__all__ = ["REPO", "TOKEN", "free_port", "monitor_process", "until"]

"""The engine's own health: no desk stage or task may fail silently.

A stage (evaluation, a batch or heartbeat hook, the snapshot, a command) that raises is caught
by its caller and reported here. The first occurrence of each distinct error is logged with its
traceback and raised as one CRITICAL alert; repeats only count (logged again at 10, 100, 1000...
so a failure that recurs every tick cannot flood the log). While any stage is failing the engine
is DEGRADED: the desk vetoes every automatic action (a broken evaluation must not trade on stale
numbers), and the snapshot says so. A stage that succeeds again clears its fault; when none are
left the engine is OK again and an INFO alert says automation may resume.

Manual Close All and the kill switch do not go through the failing stages (they need only the
book, the quotes and the broker), so they keep working while degraded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kit.core.model import Severity

log = logging.getLogger(__name__)

Notify = Callable[[Severity, str, str], Any]


@dataclass
class Fault:
    stage: str
    error: str
    since_ns: int
    count: int = 1


def signature(exc: BaseException) -> str:
    """One line naming the error (what de-duplicates repeats)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


class Health:
    """Faults by stage; ``degraded`` while any stage is failing."""

    def __init__(self, notify: Notify, now_ns: Callable[[], int]) -> None:
        self.notify = notify
        self.now_ns = now_ns
        self.faults: dict[str, Fault] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self.restarts: dict[str, int] = {}

    @property
    def degraded(self) -> bool:
        return bool(self.faults)

    def failed(self, stage: str, exc: BaseException) -> None:
        """Report that ``stage`` raised ``exc`` (call from inside the ``except``)."""
        sig = signature(exc)
        key = (stage, sig)
        n = self.counts[key] = self.counts.get(key, 0) + 1
        fault = self.faults.get(stage)
        if fault is None or fault.error != sig:
            self.faults[stage] = Fault(stage, sig, self.now_ns(), n)
        else:
            fault.count = n
        if n == 1:
            log.error("engine: %s failed: %s", stage, sig, exc_info=exc)
            self._notify(Severity.CRITICAL, f"engine DEGRADED: {stage} failed ({sig}); "
                         "automation frozen, Close All and the kill switch still work")  # fmt: skip
        elif _is_power_of_ten(n):
            log.error("engine: %s failed again: %s (%d times)", stage, sig, n)

    def ok(self, stage: str) -> None:
        """``stage`` succeeded: its fault (if any) is over."""
        if stage not in self.faults:
            return
        fault = self.faults.pop(stage)
        log.warning("engine: %s recovered after %d failures", stage, fault.count)
        if not self.faults:
            self._notify(Severity.INFO, f"engine healthy again: {stage} recovered")

    def state(self) -> dict[str, Any]:
        """What a snapshot shows: ``OK`` or ``DEGRADED`` and the current faults."""
        return {
            "state": "DEGRADED" if self.faults else "OK",
            "faults": [
                {"stage": f.stage, "error": f.error, "count": f.count, "since_ns": f.since_ns}
                for f in self.faults.values()
            ],
            "restarts": dict(self.restarts),
        }

    def _notify(self, severity: Severity, message: str) -> None:
        try:
            self.notify(severity, "engine", message)
        except Exception:  # the alert path itself is broken: the log still has it
            log.exception("engine: could not raise the health alert %r", message)

    async def supervise(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        *,
        max_restarts: int = 5,
        backoff_s: float = 0.5,
        on_give_up: Callable[[str], None] | None = None,
    ) -> None:
        """Run a long-lived task body, restarting it when it dies (a stream that ends is
        restarted too); after ``max_restarts`` in a row without a healthy minute it gives up
        and calls ``on_give_up`` (the desk halts visibly)."""
        loop = asyncio.get_running_loop()
        streak = 0
        while True:
            started = loop.time()
            try:
                await run()
                raise RuntimeError(f"task {name} ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed(f"task {name}", exc)
                streak = 1 if loop.time() - started > 60 else streak + 1
                self.restarts[name] = self.restarts.get(name, 0) + 1
                if streak > max_restarts:
                    message = f"task {name} died {streak} times in a row: {signature(exc)}"
                    log.critical("engine: %s; giving up", message)
                    if on_give_up is not None:
                        on_give_up(message)
                    return
                await asyncio.sleep(backoff_s * 2 ** (streak - 1))


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1

"""The desk's extension points, declared in one table: who else hears what the desk does.

Everything here runs synchronously on the desk's loop, in registration order, so a hook sees the
desk exactly as it is at that moment (no copy, no lag); a hook must therefore be quick. A failing
batch or heartbeat hook is reported to :class:`~kit.engine.health.Health` (the engine turns
DEGRADED and automation stops until it succeeds again); a failing listener is logged. Neither
stops the desk or the other hooks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kit.engine.alerts import DeskRecord
    from kit.engine.health import Health

log = logging.getLogger(__name__)

Hook = Callable[[], None]
Listener = Callable[["DeskRecord"], None]


@dataclass
class DeskHooks:
    """The table of hooks (each also reachable as the desk attribute of the same name).

    ``on_batch``: after each batch of market data is applied, before it is evaluated (a
    simulated venue matches its resting orders against the new quotes).
    ``on_heartbeat``: every heartbeat, after the time-driven evaluation (risk snapshots, journal
    saves, manual-position sync).
    ``listeners``: every desk event (alerts, actions, decisions, orders, fills, feed states) as
    it is published; unlike :meth:`Desk.events` subscribers they never lose one.
    ``tape``: every accepted market event (the recorder), or None.
    ``subscribers``: the bounded queues of :meth:`stream` readers (a slow one loses the oldest).
    """

    on_batch: list[Hook] = field(default_factory=list)
    on_heartbeat: list[Hook] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    tape: Callable[[Any], None] | None = None
    subscribers: list[asyncio.Queue[DeskRecord]] = field(default_factory=list)

    def add_batch(self, hook: Hook) -> Hook:
        self.on_batch.append(hook)
        return hook

    def add_heartbeat(self, hook: Hook) -> Hook:
        self.on_heartbeat.append(hook)
        return hook

    def add_listener(self, listener: Listener) -> Listener:
        self.listeners.append(listener)
        return listener

    def run(self, where: str, hooks: list[Hook], health: Health) -> None:
        """Call each of ``hooks``; a failure is a health fault of its own stage."""
        for hook in hooks:
            stage = f"{where} hook {getattr(hook, '__qualname__', hook)!s:.60}"
            try:
                hook()
            except Exception as exc:
                health.failed(stage, exc)
            else:
                if health.faults:
                    health.ok(stage)

    def publish(self, event: DeskRecord) -> None:
        """Hand ``event`` to every listener (a failing one is logged and skipped), then to
        every stream subscriber."""
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("desk: event listener failed")
        for q in self.subscribers:
            if q.full():
                q.get_nowait()  # newest wins for a slow viewer
            q.put_nowait(event)

    async def stream(self, size: int) -> AsyncIterator[DeskRecord]:
        """Events as they are published, from now on, through a queue of ``size``."""
        q: asyncio.Queue[DeskRecord] = asyncio.Queue(size)
        self.subscribers.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self.subscribers.remove(q)

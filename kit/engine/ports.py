"""The ports the desk drives: what it asks of whoever carries out orders, declared as protocols.

The desk owns state; order flow (working intents into broker orders) lives in
:mod:`kit.execution`, which depends on the desk, not the other way round. The desk only holds
an :class:`OrderFlow` and an :data:`Executor` handed to it by whatever attaches (the
:class:`~kit.execution.manager.OrderManager`), so the engine never imports execution code and a
test can attach a stub.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, runtime_checkable

from kit.core.model import Action

Executor = Callable[[Action], Awaitable[None]]  # carries out an auto-managed rule action


@runtime_checkable
class OrderFlow(Protocol):
    """What the desk needs from the order flow attached to it."""

    def pending_entry(self, position_id: str | None) -> bool:
        """Whether an entry of ``position_id`` (None: of any position) is still being worked:
        the desk then only proposes rule actions for it (acting on a half-filled entry would
        trade against it)."""
        ...

    def halt(self, reason: str) -> Coroutine[Any, Any, None]:
        """Stop working every intent now; return the coroutine that cancels their orders (the
        kill switch runs it as a task)."""
        ...

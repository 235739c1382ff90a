"""Stopping asyncio tasks the one way every component needs: cancel, then wait until the task
has really stopped, so a close never returns while the task still runs (and a second close is
harmless). A task's own error other than the cancel is raised to the caller, not swallowed."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel each task (None is skipped) and wait for all of them to stop."""
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    for task in live:
        with contextlib.suppress(asyncio.CancelledError):
            await task

"""What the sinks share: the give-up error, retries of transient failures, New York times."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from kit.core.clock import NEW_YORK, from_ns

log = logging.getLogger(__name__)


class SinkError(RuntimeError):
    """A sink gave up on a batch (rejected, or still failing after its retries)."""


def ny_time(ts_ns: int) -> str:
    return from_ns(ts_ns).astimezone(NEW_YORK).strftime("%H:%M:%S")


async def with_retries(
    what: str,
    attempt: Callable[[], Awaitable[None]],
    transient: tuple[type[Exception], ...],
    delays_s: Sequence[float],
) -> None:
    """Run ``attempt``, retrying transient failures after each delay in turn, then give up.

    Real seconds (asyncio.sleep), not the desk clock: the pace is set by a real remote server.
    """
    for delay in (*delays_s, None):
        try:
            await attempt()
            return
        except transient as exc:
            if delay is None:
                raise SinkError(
                    f"{what}: gave up after {len(delays_s) + 1} tries: {exc!r}"
                ) from exc
            log.warning("%s failed (%r); retrying in %.2f s", what, exc, delay)
            await asyncio.sleep(delay)

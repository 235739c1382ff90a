"""``kit run --feed replay:PATH`` (or ``--feed thetadata``) without ``--auto``: the desk's rules
over a recorded day or a vendor's stream, alert-only, to the end of the recording (or Ctrl-C).

The same builder as every other run, so the recording goes through the same desk, rules and
store a live session uses; ``--auto`` instead trades the autopilot's strategy on it (paper).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from kit.app.build import FeedSpec, RunSpec, build
from kit.core.clock import NEW_YORK, SimClock
from kit.engine.alerts import AlertSink, DeskRecord
from kit.risk.rules import Rules


async def watch(
    feed: FeedSpec,
    *,
    rules: Rules | None = None,
    sinks: Sequence[AlertSink] = (),
    speed: float | None = None,
    db: str | None = None,
    listener: Callable[[DeskRecord], None] | None = None,
) -> dict[str, Any]:
    """Run an alert-only desk on ``feed`` until it ends; returns the summary line."""
    spec = RunSpec(mode="alert_only", feed=feed, rules=rules, sinks=tuple(sinks), db=db,
                   speed=speed if feed.kind == "replay" else 1.0, listener=listener,
                   resume_key="watch")  # fmt: skip
    run = await build(spec)
    clock = run.clock
    assert isinstance(clock, SimClock)
    first = clock.now()
    await run.start()
    try:
        finished = getattr(run.feed, "finished", None)
        while finished is None or not finished.is_set():
            if clock.speed is None:  # stepped: as fast as the desk keeps up
                await clock.run_until(clock.now() + timedelta(seconds=1))
                await asyncio.sleep(0)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await (finished.wait() if finished else asyncio.Event().wait())
    finally:
        await run.close()
    counts: dict[str, int] = {}
    for record in run.desk.alerts.history:
        counts[record.alert.rule] = counts.get(record.alert.rule, 0) + 1
    stats = run.feed.stats
    return {"kind": "summary", "feed": str(feed), "from": first.astimezone(NEW_YORK).isoformat(),
            "to": clock.now().astimezone(NEW_YORK).isoformat(), "alerts": counts,
            "events": run.desk.stats["events"], "malformed": stats.malformed}  # fmt: skip

"""What makes a backtest session fast must not change the market it sees (issue 19 item 2).

A conflated simulator (one batch per ``conflate_s``, quotes priced a chunk of batches ahead in
one vectorised call) delivers, at each batch, exactly the quotes and ticks the 1 s feed shows
at that instant, including for a contract subscribed mid-block; nothing from later steps leaks
into the chain source. The speed itself is measured by ``benchmarks/replay.py``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from itertools import pairwise

from kit.adapters.sim.feed import SimFeed
from kit.adapters.sim.source import SimChainSource
from kit.core.clock import NEW_YORK, SimClock, to_ns
from kit.core.model import Quote, UnderlyingTick

OPEN = datetime(2024, 3, 12, 9, 30, tzinfo=NEW_YORK)


async def _stream(conflate_s: float | None, until: datetime, late_at: datetime) -> tuple:
    """Events of a feed from the open to ``until``; a far put is subscribed at ``late_at``."""
    clock = SimClock(OPEN)
    feed = SimFeed(clock, conflate_s=conflate_s)
    chain = feed.market.chain("SPXW", core=True)
    expiry = min(c.expiry for c in chain)
    today = [c for c in chain if c.expiry == expiry]
    await feed.subscribe([*today[::3], "SPX", "VIX"])
    events: list = []
    source = SimChainSource(feed.market, clock)
    async with feed:

        async def read() -> None:
            async for ev in feed:
                events.append(ev)

        task = asyncio.create_task(read())
        await clock.run_until(late_at)
        await feed.subscribe([today[1]])
        snap = await source.snapshot([today[1]])
        await clock.run_until(until)
        await asyncio.sleep(0)
        task.cancel()
    return events, feed.market, snap, today[1]


def test_conflated_batches_equal_the_live_feed_at_their_instants():
    until = datetime(2024, 3, 12, 10, 0, tzinfo=NEW_YORK)
    late = datetime(2024, 3, 12, 9, 45, 7, tzinfo=NEW_YORK)  # inside a block of batches
    fast, market, snap, added = asyncio.run(_stream(15.0, until, late))
    live, live_market, live_snap, _ = asyncio.run(_stream(None, until, late))
    quotes = [e for e in fast if isinstance(e, Quote)]
    stamps = sorted({e.ts_ns for e in fast if isinstance(e, Quote | UnderlyingTick)})
    assert len(stamps) >= 100 and all(b - a == 15 * 10**9 for a, b in pairwise(stamps))
    # every conflated quote is the simulator's own quote at its step, bit for bit
    for q in quotes[::7]:
        (ref,) = market.quotes([q.contract], market.step_index(q.ts_ns))
        assert (q.bid, q.ask, q.bid_size, q.ask_size) == (ref.bid, ref.ask, ref.bid_size,
                                                          ref.ask_size)  # fmt: skip
    # ... and the latest the 1 s feed had shown for that contract by then
    by_contract: dict = {}
    for e in live:
        if isinstance(e, Quote):
            by_contract.setdefault(e.contract, []).append(e)
    for q in quotes[::5]:
        shown = [e for e in by_contract[q.contract] if e.ts_ns <= q.ts_ns]
        assert (q.bid, q.ask) == (shown[-1].bid, shown[-1].ask)
    # the contract subscribed mid-block is quoted from the next batch on
    assert any(q.contract == added and q.ts_ns > to_ns(late) for q in quotes)
    # same market path: the SPX ticks match the 1 s feed's at the batch instants
    live_spx = {e.ts_ns: e.price for e in live if isinstance(e, UnderlyingTick)
                and e.symbol == "SPX"}  # fmt: skip
    fast_spx = [e for e in fast if isinstance(e, UnderlyingTick) and e.symbol == "SPX"]
    assert fast_spx and all(live_spx.get(e.ts_ns, e.price) == e.price for e in fast_spx)
    # pricing ahead leaks nothing: the chain snapshot mid-block is the live one
    assert snap.events and snap.events == live_snap.events
    assert market.now_ns == live_market.now_ns == to_ns(until)

import asyncio
import time
from datetime import datetime

import polars as pl
import pytest

from kit.adapters.replay.feed import SCHEMA, ReplayFeed, record
from kit.adapters.sim.feed import SimFeed
from kit.core.clock import NEW_YORK, SimClock
from kit.core.model import FeedStatus, Quote, Trade, UnderlyingTick


async def collect(feed, until=None, clock=None) -> list:
    events: list = []

    async def consume() -> None:
        async for ev in feed:
            if not isinstance(ev, FeedStatus):
                events.append(ev)

    task = asyncio.create_task(consume())
    await feed.start()
    if clock is not None:
        await clock.run_until(until)
    else:
        await feed.finished.wait()
    await feed.close()
    await task
    return events


@pytest.fixture
async def recorded(tmp_path):
    """Ten minutes of a simulated morning, recorded to Parquet."""
    clock = SimClock(datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK))
    sim = SimFeed(clock)
    contracts = sim.market.chain("SPXW")[300:320]
    await sim.subscribe([*contracts, "SPX", "VIX"])
    events = await collect(sim, datetime(2024, 1, 19, 10, 10, tzinfo=NEW_YORK), clock)
    path = tmp_path / "morning.parquet"
    assert record(events, path) == len(events)
    return path, events, contracts


async def test_replay_on_a_stepped_clock_reproduces_the_session(recorded):
    path, original, _ = recorded
    assert {type(e) for e in original} == {Quote, Trade, UnderlyingTick}
    clock = SimClock(datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK))
    replayed = await collect(
        ReplayFeed(path, clock=clock), datetime(2024, 1, 19, 10, 11, tzinfo=NEW_YORK), clock
    )
    assert replayed == sorted(original, key=lambda e: e.ts_ns)


async def test_paced_replay_runs_at_the_requested_speed(recorded):
    path, original, _ = recorded
    feed = ReplayFeed(path, speed=1000)
    started = time.monotonic()
    replayed = await collect(feed)
    elapsed = time.monotonic() - started
    assert len(replayed) == len(original)
    span_s = (original[-1].ts_ns - original[0].ts_ns) / 1e9
    assert elapsed >= span_s / 1000 * 0.9  # it waited for market time, it did not dump


async def test_subscriptions_filter_the_replay(recorded):
    path, _, contracts = recorded
    feed = ReplayFeed(path, speed=1000)
    await feed.subscribe([contracts[0], "SPX"])
    replayed = await collect(feed)
    keys = {e.symbol if isinstance(e, UnderlyingTick) else e.contract for e in replayed}
    assert keys == {contracts[0], "SPX"}


async def test_bad_rows_are_counted_and_skipped(tmp_path):
    rows = [
        {"kind": "tick", "ts_ns": 1, "symbol": "SPX", "price": 5000.0},
        {"kind": "tick", "ts_ns": 2, "symbol": "SPX", "price": float("nan")},
        {"kind": "quote", "ts_ns": 3, "root": "SPXW", "expiry": datetime(2024, 1, 19).date(),
         "strike": 5000.0, "right": "C", "bid": 2.0, "ask": 1.0, "bid_size": 1.0, "ask_size": 1.0},
        {"kind": "bogus", "ts_ns": 4, "symbol": "SPX", "price": 1.0},
        {"kind": "tick", "ts_ns": 5, "symbol": "SPX", "price": 5001.0},
    ]  # fmt: skip
    path = tmp_path / "bad.parquet"
    pl.DataFrame(rows, schema=SCHEMA).write_parquet(path)
    feed = ReplayFeed(path, speed=1000)
    replayed = await collect(feed)
    assert [e.price for e in replayed] == [5000.0, 5001.0]
    assert feed.stats.malformed == 3


def test_bad_arguments_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no recording"):
        ReplayFeed(tmp_path / "missing.parquet")
    with pytest.raises(ValueError, match="speed"):
        ReplayFeed(pl.DataFrame(schema=SCHEMA), speed=5000)
    with pytest.raises(ValueError, match="empty"):
        ReplayFeed(pl.DataFrame(schema=SCHEMA))
    with pytest.raises(ValueError, match="missing columns"):
        ReplayFeed(pl.DataFrame({"ts_ns": [1]}))

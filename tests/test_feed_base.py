import random
from datetime import UTC, date, datetime

import numpy as np

from kit.adapters.base import Backoff, EventSink, Feed, FeedConfig, FeedStats, StreamingFeed
from kit.core.clock import SimClock
from kit.core.model import Contract, FeedState, FeedStatus, Quote, UnderlyingTick

C = Contract("SPXW", date(2024, 1, 19), 4800, "C")


def q(ts: int, bid: float = 1.0) -> Quote:
    return Quote(C, bid, bid + 0.1, 1, 1, ts)


def drain(sink: EventSink) -> list:
    out = []
    while not sink.queue.empty():
        out.append(sink.queue.get_nowait())
    return out


def test_backoff_grows_exponentially_with_bounded_jitter_and_a_cap():
    b = Backoff(initial_s=0.5, factor=2.0, max_s=10.0, jitter=0.2)
    rng = random.Random(1)
    for attempt, base in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 10.0)]:
        delays = [b.delay(attempt, rng) for _ in range(200)]
        assert min(delays) >= base * 0.8
        assert max(delays) <= base * 1.2
        assert max(delays) - min(delays) > base * 0.2  # really jittered


def test_watermark_drops_repeats_but_keeps_distinct_events_at_the_same_time():
    stats = FeedStats()
    sink = EventSink(stats)
    for ev in (q(1), q(2), q(2), q(2, bid=1.5), q(1), q(3)):
        sink.emit(ev)
    assert [(e.ts_ns, e.bid) for e in drain(sink)] == [(1, 1.0), (2, 1.0), (2, 1.5), (3, 1.0)]
    assert stats.duplicates_dropped == 2
    assert stats.events == 4


def test_hold_and_release_put_backfill_before_live_events_without_duplicates():
    sink = EventSink(FeedStats())
    sink.emit(q(1))
    sink.hold()
    sink.emit(q(5))  # live, arrives during the backfill
    sink.emit(FeedStatus("f", FeedState.LIVE, 6))  # status is never held back
    sink.emit(UnderlyingTick("SPX", 5000.0, 5))
    sink.release([q(4), q(2), q(1), q(3), q(5)])  # backfill overlaps both ends
    out = drain(sink)
    assert isinstance(out[1], FeedStatus)
    assert [e.ts_ns for e in out if isinstance(e, Quote)] == [1, 2, 3, 4, 5]
    assert [e.ts_ns for e in out if isinstance(e, UnderlyingTick)] == [5]


class _DroppingFeed(StreamingFeed):
    """A vendor that accepts the connection and hangs up: one frame the first time, then none."""

    def __init__(self, clock: SimClock) -> None:
        super().__init__("dropping", clock=clock, config=FeedConfig(
            backoff=Backoff(initial_s=1.0, factor=2.0, max_s=64.0, jitter=0.0)))  # fmt: skip
        self.connect_times: list[int] = []

    async def _connect(self):
        self.connect_times.append(self.clock.now_ns())
        return object()

    async def _send_subscribe(self, conn, keys, add) -> None:
        return None

    async def _frames(self, conn):
        if len(self.connect_times) == 1:
            yield "hello"

    def _parse(self, frame):
        return ()

    async def _close_conn(self, conn) -> None:
        return None


async def test_backoff_keeps_growing_when_every_connection_drops_at_once():
    clock = SimClock(datetime(2024, 1, 19, 15, tzinfo=UTC))
    feed = _DroppingFeed(clock)
    await feed.start()
    await clock.run_until(datetime(2024, 1, 19, 15, 2, tzinfo=UTC))
    await feed.close()
    gaps = np.diff(feed.connect_times) / 1e9
    # the first session delivered data (retry after 1 s); then 2, 4, 8, ... not 1 s forever
    assert list(gaps[:5]) == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert len(feed.connect_times) < 10


def test_every_feed_satisfies_the_feed_protocol(tmp_path):
    from kit.adapters.replay.feed import ReplayFeed, record
    from kit.adapters.sim.feed import SimFeed
    from kit.adapters.thetadata.config import ThetaDataConfig
    from kit.adapters.thetadata.feed import ThetaDataFeed

    clock = SimClock(datetime(2024, 1, 19, 15, tzinfo=UTC))
    record([UnderlyingTick("SPX", 5000.0, 1)], tmp_path / "r.parquet")
    feeds = [SimFeed(clock), ThetaDataFeed(ThetaDataConfig()), ReplayFeed(tmp_path / "r.parquet")]
    assert all(isinstance(f, Feed) for f in feeds)

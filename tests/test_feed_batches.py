"""Batch delivery on the feed path (issue 27): websockets messages per socket read
(kit/adapters/wsbatch.py), the batch parse (kit/adapters/ingest.py) and the sink's queue
(kit/adapters/sink.py EventQueue), each against what it replaced."""

import asyncio
from datetime import date

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosedError

from kit.adapters.base import FeedConfig, MalformedFrameError, StreamingFeed
from kit.adapters.ingest import FrameBatch
from kit.adapters.sink import EventQueue
from kit.adapters.wsbatch import BatchingConnection
from kit.core.clock import NS_PER_S, SimClock, from_ns
from kit.core.model import Contract, Quote

C = Contract("SPXW", date(2024, 1, 19), 4800, "C")
T0 = 1_705_676_400 * NS_PER_S  # 2024-01-19 15:00 UTC


async def _collect(handler) -> tuple[list[bytes], int, BaseException | None]:
    """Serve ``handler`` on a free loopback port; read it through batches()."""
    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}"
        async with connect(url, compression=None, create_connection=BatchingConnection) as ws:
            got: list[bytes] = []
            batches, error = 0, None
            try:
                async for batch in ws.batches():
                    assert type(batch) is FrameBatch
                    batches += 1
                    got.extend(batch)
            except ConnectionClosedError as exc:
                error = exc
            return got, batches, error


def test_batches_carry_every_message_in_order_then_end_on_a_normal_close():
    async def handler(ws):
        for i in range(500):
            await ws.send(f'{{"i":{i}}}')
        await ws.send(["frag", "mented"])  # one message in three frames
        await ws.send(b"\x00binary")
        await ws.send("é")
        await ws.close()

    got, batches, error = asyncio.run(_collect(handler))
    assert got == [f'{{"i":{i}}}'.encode() for i in range(500)] + [
        b"fragmented",
        b"\x00binary",
        "é".encode(),
    ]
    assert error is None
    assert batches < 500  # messages that arrived together came together


def test_batches_raise_connection_closed_error_when_the_peer_drops():
    async def handler(ws):
        await ws.send("one")
        await ws.send("two")
        await (await ws.ping())  # the client answered: it has both messages
        ws.transport.abort()  # no close frame: an abnormal end

    got, _, error = asyncio.run(_collect(handler))
    assert got == [b"one", b"two"]
    assert isinstance(error, ConnectionClosedError)


class _Feed(StreamingFeed):
    """A feed whose frames are ints: negative ones are malformed."""

    async def _connect(self):  # pragma: no cover - not connected in these tests
        raise OSError

    async def _send_subscribe(self, conn, keys, add):  # pragma: no cover
        return None

    def _frames(self, conn):  # pragma: no cover
        raise NotImplementedError

    def _parse(self, frame):
        if frame < 0:
            raise MalformedFrameError(f"bad {frame}")
        return (Quote(C, 1.0, 1.1, 1, 1, T0 + frame),)


def test_a_batch_counts_a_malformed_frame_and_goes_on_with_the_next():
    feed = _Feed("t", clock=SimClock(from_ns(T0)), config=FeedConfig(max_ahead_s=60.0))
    feed._on_frames(FrameBatch([1, -1, 2, 3, 120 * NS_PER_S, 4]))
    out = []
    while (ev := feed.get_nowait()) is not None:
        out.append(ev.ts_ns - T0)
    assert out == [1, 2, 3, 4]
    assert (feed.stats.frames, feed.stats.malformed, feed.stats.out_of_window) == (6, 1, 1)


def test_the_window_edges_are_decided_exactly_as_before():
    feed = _Feed("t", clock=SimClock(from_ns(T0)), config=FeedConfig(max_ahead_s=1.0))
    feed._on_frames(FrameBatch([NS_PER_S, NS_PER_S + 1]))  # on the edge: in; 1 ns past: out
    assert feed.get_nowait().ts_ns == T0 + NS_PER_S
    assert feed.get_nowait() is None
    assert feed.stats.out_of_window == 1


def test_event_queue_is_fifo_wakes_waiters_and_passes_a_cancelled_wake_up_on():
    async def main() -> None:
        q = EventQueue()
        with pytest.raises(asyncio.QueueEmpty):
            q.get_nowait()
        assert q.poll() is None and q.empty()
        first = asyncio.create_task(q.get())
        second = asyncio.create_task(q.get())
        await asyncio.sleep(0)  # both wait
        q.put_nowait("a")
        first.cancel()  # woken, then cancelled before it ran: the item must reach `second`
        assert await second == "a"
        with pytest.raises(asyncio.CancelledError):
            await first
        for x in "bcd":
            q.put_nowait(x)
        assert (q.qsize(), await q.get(), q.get_nowait(), q.poll(), q.poll()) == (
            3,
            "b",
            "c",
            "d",
            None,
        )

    asyncio.run(main())

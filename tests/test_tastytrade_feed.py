"""The tastytrade DXLink feed end to end against the emulator over real loopback sockets:
subscriptions and vendor Greeks, silence -> STALE -> reconnect and resubscribe with the current
values, a token that expires mid-stream, chunked subscriptions of a large chain (which the SDK's
single message cannot do), and bad frames / NaN rows counted, never fatal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from tastytrade import DXLinkStreamer, Session
from tastytrade.dxfeed import Quote as SdkQuote
from tastytrade.utils import TastytradeError

from kit.adapters.tastytrade import dxlink
from kit.adapters.tastytrade.api import TastyApi
from kit.adapters.tastytrade.chains import TastytradeChainSource
from kit.adapters.tastytrade.config import TastyConfig
from kit.adapters.tastytrade.emulator import TastytradeEmulator
from kit.adapters.tastytrade.feed import TastytradeFeed
from kit.adapters.tastytrade.wiring import probe
from kit.core.clock import SimClock, from_ns
from kit.core.model import FeedState, FeedStatus, Greeks, Quote, UnderlyingTick


class Collector:
    """Everything a feed yields, with a way to await a condition on it."""

    def __init__(self, feed: TastytradeFeed) -> None:
        self.feed, self.events = feed, []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for ev in self.feed:
            self.events.append(ev)
            self._changed.set()

    async def until(self, pred: Callable[[list[Any]], bool], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not pred(self.events):
                self._changed.clear()
                await self._changed.wait()

    def since(self, n: int) -> list[Any]:
        return self.events[n:]


@pytest.fixture
async def emu():
    # the server's KEEPALIVE every 0.2 s: a healthy line is never silent for the short
    # liveness windows below, so a STALE can only come from a fault
    async with TastytradeEmulator(max_message_bytes=8_192, keepalive_s=0.2) as e:
        yield e


async def open_feed(emu, **cfg: Any) -> tuple[TastytradeFeed, TastytradeChainSource]:
    config = TastyConfig(api_url=emu.url, secret="s", refresh="r", **cfg)
    api = await TastyApi(config).open()
    clock = SimClock(from_ns(await probe(api)), speed=1.0)
    return TastytradeFeed(api, clock=clock, owns_api=True), TastytradeChainSource(api)


async def expiry(chains: TastytradeChainSource, n: int | None = None):
    exp = (await chains.expirations("SPXW"))[0]
    chain = await chains.contracts("SPXW", exp)
    if n is None:
        return chain
    mid = len(chain) // 2
    return chain[mid - n // 2 : mid + n // 2]


def statuses(events: list[Any], state: FeedState) -> int:
    return sum(isinstance(e, FeedStatus) and e.state is state for e in events)


async def test_quotes_underlyings_and_vendor_greeks(emu):
    feed, chains = await open_feed(emu)
    contracts = await expiry(chains, 6)
    async with feed:
        got = Collector(feed)
        await feed.subscribe([*contracts, "SPX"])
        await got.until(lambda evs: {e.contract for e in evs if isinstance(e, Greeks)}
                        >= set(contracts))  # fmt: skip
        await got.until(lambda evs: any(isinstance(e, UnderlyingTick) for e in evs))
        await got.until(lambda evs: statuses(evs, FeedState.LIVE) > 0)
    greeks = [e for e in got.events if isinstance(e, Greeks)]
    assert {g.source for g in greeks} == {"tastytrade"}
    for g in greeks:
        assert (0 < g.delta < 1) if g.contract.right.value == "C" else (-1 < g.delta < 0)
    assert {e.contract for e in got.events if isinstance(e, Quote)} == set(contracts)
    assert set(feed.open_interest) == set(contracts) and min(feed.open_interest.values()) > 0
    assert feed.greeks[contracts[0]].contract == contracts[0]
    assert feed.stats.malformed == 0


async def test_silence_goes_stale_reconnects_and_resubscribes(emu):
    feed, chains = await open_feed(emu, liveness_s=0.8)
    contracts = await expiry(chains, 4)
    async with feed:
        got = Collector(feed)
        await feed.subscribe(contracts)
        await got.until(lambda evs: statuses(evs, FeedState.LIVE) > 0)
        frames = feed.stats.frames
        await got.until(lambda evs: feed.stats.frames > frames + 8)  # > 1.6 s of keepalives
        assert feed.stats.stale == 0 and feed.stats.reconnects == 0  # healthy: never stale
        subs_before = sum('"FEED_SUBSCRIPTION"' in m for m in emu.messages)
        emu.silence(1.5)
        await got.until(lambda evs: statuses(evs, FeedState.STALE) > 0)
        mark = len(got.events)
        await got.until(lambda evs: statuses(evs[mark:], FeedState.LIVE) > 0)
        # the current value of every subscription arrives again on the new connection
        await got.until(lambda evs: {e.contract for e in evs[mark:] if isinstance(e, Greeks)}
                        >= set(contracts))  # fmt: skip
    assert feed.stats.reconnects >= 1 and feed.stats.stale >= 1
    assert sum('"FEED_SUBSCRIPTION"' in m for m in emu.messages) > subs_before
    assert emu.connections >= 2


async def test_token_expiry_reauthenticates_and_resumes(emu):
    feed, chains = await open_feed(emu)
    contracts = await expiry(chains, 2)
    async with feed:
        got = Collector(feed)
        await feed.subscribe(contracts)
        await got.until(lambda evs: statuses(evs, FeedState.LIVE) > 0)
        emu.expire_auth()  # REST 401s, the socket hears UNAUTHORIZED
        mark = len(got.events)
        await got.until(lambda evs: statuses(evs[mark:], FeedState.CONNECTING) > 0)
        await got.until(lambda evs: statuses(evs[mark:], FeedState.LIVE) > 0)
        mark = len(got.events)
        await got.until(lambda evs: any(isinstance(e, Quote | Greeks) for e in evs[mark:]))
    assert feed.api.refreshes >= 1  # the session refreshed its token after the 401
    assert emu.connections >= 2


async def test_a_large_chain_is_subscribed_in_chunks_the_sdk_cannot(emu, monkeypatch):
    feed, chains = await open_feed(emu, chunk_bytes=4_000)
    chain = [c for exp in (await chains.expirations("SPXW"))[:4]
             for c in await chains.contracts("SPXW", exp)]  # fmt: skip
    assert len(chain) > 250  # a FEED_SUBSCRIPTION of them all is ~14 kB
    async with feed:
        got = Collector(feed)
        await feed.subscribe(chain)
        await got.until(lambda evs: len({e.contract for e in evs if isinstance(e, Greeks)})
                        == len(chain), timeout=20)  # fmt: skip
    sent = [m for m in emu.messages if '"FEED_SUBSCRIPTION"' in m]
    assert max(len(m) for m in sent) <= 4_000 < emu.max_message_bytes
    assert feed.stats.reconnects == 0  # never closed for size
    # the SDK sends the whole chain in one message: DXLink closes it (1009)
    monkeypatch.setattr("tastytrade.session.API_URL", emu.url)
    symbols = [dxlink.symbols_for([c])["Quote"][0] for c in chain]

    async def sdk_subscribe(s: Session) -> None:
        async with DXLinkStreamer(s) as st:
            await st.subscribe(SdkQuote, symbols)
            await asyncio.wait_for(st.get_event(SdkQuote), 10)

    async with Session("s", "r") as s:
        with pytest.raises(TastytradeError, match="too long"):
            await sdk_subscribe(s)


async def test_bad_frames_and_nan_rows_are_counted_not_fatal(emu):
    feed, chains = await open_feed(emu)
    contracts = await expiry(chains, 4)
    async with feed:
        got = Collector(feed)
        await feed.subscribe(contracts)
        await got.until(lambda evs: statuses(evs, FeedState.LIVE) > 0)
        emu.nan_rows = 3
        bad_len = {"type": "FEED_DATA", "channel": dxlink.CHANNELS["Quote"],
                   "data": ["Quote", [".SPXW1", 1, 2]]}  # fmt: skip
        emu.inject("not json at all", json.dumps(bad_len), json.dumps({"no": "type"}))
        await got.until(lambda evs: feed.stats.malformed >= 6)
        mark = len(got.events)
        await got.until(lambda evs: any(isinstance(e, Quote) for e in evs[mark:]))
    assert feed.stats.reconnects == 0
    assert feed.state is FeedState.CLOSED


async def test_a_dropped_socket_reconnects_and_the_data_resumes(emu):
    feed, chains = await open_feed(emu)
    contracts = await expiry(chains, 2)
    async with feed:
        got = Collector(feed)
        await feed.subscribe(contracts)
        await got.until(lambda evs: statuses(evs, FeedState.LIVE) > 0)
        await emu.drop()
        mark = len(got.events)
        await got.until(lambda evs: statuses(evs[mark:], FeedState.DISCONNECTED) > 0)
        await got.until(lambda evs: statuses(evs[mark:], FeedState.LIVE) > 0)
        await got.until(lambda evs: {e.contract for e in evs[mark:] if isinstance(e, Quote)}
                        >= set(contracts))  # fmt: skip
    assert feed.stats.reconnects == 1 and emu.connections == 2

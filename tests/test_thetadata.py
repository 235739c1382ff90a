"""The ThetaData adapter end to end against the loopback emulator, over real sockets."""

import asyncio
import json
from datetime import date, datetime

import numpy as np
import pytest
from websockets.asyncio.client import connect

from kit.adapters.base import FeedConfig
from kit.adapters.thetadata.config import ThetaDataConfig, ThetaDataError
from kit.adapters.thetadata.emulator import ThetaDataEmulator
from kit.adapters.thetadata.feed import ThetaDataFeed
from kit.adapters.thetadata.rest import ThetaDataREST
from kit.core.clock import NEW_YORK, SimClock
from kit.core.model import FeedState, FeedStatus, Quote, Trade, UnderlyingTick

SPEED = 20.0  # market seconds per wall second: a minute of market in three seconds


@pytest.fixture
async def emu():
    clock = SimClock(datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK), speed=SPEED)
    async with ThetaDataEmulator(clock=clock) as e:
        yield e


def config(emu: ThetaDataEmulator, **kw) -> ThetaDataConfig:
    return ThetaDataConfig(rest_port=emu.rest_port, ws_port=emu.ws_port, retry_initial_s=0.05, **kw)


def zero_dte(emu: ThetaDataEmulator, n: int = 6):
    chain = [c for c in emu.market.chain("SPXW") if c.expiry.day == 19]
    mid = len(chain) // 2
    return chain[mid - n // 2 : mid + n // 2]


class Collector:
    def __init__(self, feed) -> None:
        self.events: list = []
        self.task = asyncio.create_task(self._run(feed))

    async def _run(self, feed) -> None:
        async for ev in feed:
            self.events.append(ev)

    def quotes(self, contract=None) -> list[Quote]:
        return [e for e in self.events if isinstance(e, Quote)
                and (contract is None or e.contract == contract)]  # fmt: skip

    def states(self) -> list[FeedState]:
        return [e.state for e in self.events if isinstance(e, FeedStatus)]

    async def until(self, predicate, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)


async def market_seconds(emu: ThetaDataEmulator, seconds: float) -> None:
    await asyncio.sleep(seconds / SPEED)


def assert_exact(emu, col: Collector, contracts) -> None:
    """What the adapter delivered equals the vendor's history: no duplicate, no hole."""
    for c in contracts:
        got = col.quotes(c)
        assert got, c
        assert got == emu.market.quote_history(c, got[0].ts_ns, got[-1].ts_ns), c


async def test_subscribe_delivers_normalised_quotes_and_index_ticks(emu):
    contracts = zero_dte(emu)
    feed = ThetaDataFeed(config(emu), clock=emu.clock)
    col = Collector(feed)
    await feed.subscribe([*contracts, "SPX"])
    async with feed:
        await col.until(lambda: all(col.quotes(c) for c in contracts))
        await col.until(lambda: any(isinstance(e, UnderlyingTick) for e in col.events))
    await col.task
    q = col.quotes(contracts[0])[0]
    assert q.contract is not None and q.contract.root == "SPXW"
    assert q.bid <= q.ask
    assert col.states()[:2] == [FeedState.CONNECTING, FeedState.LIVE]
    assert col.states()[-1] is FeedState.CLOSED
    assert feed.stats.malformed == 0
    assert_exact(emu, col, contracts)


async def test_dropped_socket_reconnects_resubscribes_and_backfills_exactly(emu):
    contracts = zero_dte(emu)
    feed = ThetaDataFeed(config(emu), clock=emu.clock)
    col = Collector(feed)
    await feed.subscribe(contracts)
    async with feed:
        await col.until(lambda: len(col.quotes()) > 20)
        await emu.drop()
        await market_seconds(emu, 8)  # the market moves while we are away
        await col.until(lambda: feed.stats.connects >= 2 and feed.state is FeedState.LIVE)
        before = len(col.quotes())
        await col.until(lambda: len(col.quotes()) > before + 20)
    await col.task
    assert FeedState.DISCONNECTED in col.states()
    assert feed.stats.reconnects >= 1
    assert feed.stats.backfilled > 0
    assert emu.connections >= 2
    assert_exact(emu, col, contracts)


async def test_silence_goes_stale_within_the_timeout_then_recovers(emu):
    contracts = zero_dte(emu, 2)
    timeout_s = 3.0
    feed = ThetaDataFeed(config(emu), clock=emu.clock,
                         feed_config=FeedConfig(liveness_timeout_s=timeout_s))  # fmt: skip
    col = Collector(feed)
    await feed.subscribe(contracts)
    async with feed:
        await col.until(lambda: len(col.quotes()) > 5)
        emu.go_silent(12)
        silent_from = emu.clock.now_ns()
        await col.until(lambda: FeedState.STALE in col.states())
        stale = next(
            e for e in col.events if isinstance(e, FeedStatus) and e.state is FeedState.STALE
        )
        await col.until(lambda: col.states()[-1] is FeedState.LIVE and feed.stats.connects >= 2)
        n = len(col.quotes())
        await col.until(lambda: len(col.quotes()) > n + 5)
    await col.task
    # STALE is raised within the timeout plus one watchdog tick (timeout / 4) of the silence
    assert (stale.ts_ns - silent_from) / 1e9 <= timeout_s * 1.25 + 1.0
    assert feed.stats.stale >= 1
    assert_exact(emu, col, contracts)


async def test_upstream_disconnected_status_is_reported_and_the_gap_backfilled(emu):
    contracts = zero_dte(emu, 2)
    feed = ThetaDataFeed(config(emu), clock=emu.clock)
    col = Collector(feed)
    await feed.subscribe(contracts)
    async with feed:
        await col.until(lambda: len(col.quotes()) > 5)
        emu.upstream_down(6)
        await col.until(lambda: FeedState.DISCONNECTED in col.states())
        await col.until(lambda: col.states()[-1] is FeedState.LIVE)
        n = len(col.quotes())
        await col.until(lambda: len(col.quotes()) > n + 5)
    await col.task
    down = next(
        e for e in col.events if isinstance(e, FeedStatus) and e.state is FeedState.DISCONNECTED
    )
    assert "DISCONNECTED" in down.detail
    assert feed.stats.connects == 1  # our socket never dropped
    assert feed.stats.backfilled > 0
    assert_exact(emu, col, contracts)


async def test_malformed_frames_are_counted_and_the_feed_carries_on(emu, caplog):
    contracts = zero_dte(emu, 2)
    feed = ThetaDataFeed(config(emu), clock=emu.clock)
    col = Collector(feed)
    await feed.subscribe(contracts)
    good = ('{"header":{"type":"QUOTE","status":"CONNECTED"},"contract":{"security_type":"OPTION",'
            '"root":"SPXW","expiration":20240119,"strike":5000000,"right":"C"},"quote":{"ms_of_day":'
            '36000000,"bid_size":1,"bid":BID,"ask_size":1,"ask":ASK,"date":20240119}}')  # fmt: skip
    async with feed:
        await col.until(lambda: len(col.quotes()) > 3)
        emu.inject(
            "not json at all",
            good.replace("BID", "NaN").replace("ASK", "1.0"),  # NaN is not JSON
            good.replace("BID", "-1.0").replace("ASK", "1.0"),  # negative bid
            good.replace("BID", "2.0").replace("ASK", "1.0"),  # crossed
            good.replace("BID", '"x"').replace("ASK", "1.0"),  # wrong type
            '{"header":{"type":"MYSTERY"}}',
            good.replace('"right":"C"', '"right":"Z"').replace("BID", "1").replace("ASK", "2"),
        )
        await col.until(lambda: feed.stats.malformed == 7)
        n = len(col.quotes())
        await col.until(lambda: len(col.quotes()) > n + 3)
    await col.task
    assert feed.state is FeedState.CLOSED
    assert "malformed frame" in caplog.text
    assert feed.stats.connects == 1


OHLC_FRAME = (
    '{"header":{"type":"OHLC","status":"CONNECTED"},"contract":{"root":"SPXW",'
    '"expiration":20240119,"strike":5000000,"right":"C"},"ohlc":{"ms_of_day":1,'
    '"open":1,"high":1,"low":1,"close":1,"volume":1,"count":1,"date":20240119}}'
)


async def test_trades_stream_when_asked_and_ohlc_frames_are_understood(emu):
    contracts = emu.market.chain("SPXW")[150:190]
    feed = ThetaDataFeed(config(emu, stream_trades=True), clock=emu.clock)
    col = Collector(feed)
    await feed.subscribe(contracts)
    async with feed:
        await col.until(lambda: len([e for e in col.events if isinstance(e, Trade)]) >= 3)
        emu.inject(OHLC_FRAME)
        n, size = feed.stats.frames, feed.stats.bytes
        await col.until(lambda: feed.stats.frames > n + 5)
        assert feed.stats.bytes > size + len(OHLC_FRAME)  # the wire's size is counted too
    await col.task
    trades = [e for e in col.events if isinstance(e, Trade)]
    for t in trades:  # exactly the prints the market made at that moment
        step = emu.market.step_index(t.ts_ns)
        assert t in emu.market.trades(contracts, step)
    assert feed.stats.malformed == 0


async def test_one_streaming_connection_only(emu):
    feed = ThetaDataFeed(config(emu), clock=emu.clock)
    col = Collector(feed)
    await feed.subscribe(zero_dte(emu, 2))
    async with feed:
        await col.until(lambda: len(col.quotes()) > 2)
        async with connect(f"ws://127.0.0.1:{emu.ws_port}/v1/events") as second:
            await second.wait_closed()
        assert second.close_code == 1008
        assert "only one connection" in second.close_reason
        n = len(col.quotes())
        await col.until(lambda: len(col.quotes()) > n + 2)  # the first one is unaffected
    await col.task
    assert emu.refused_connections == 1


async def test_stream_limits_and_permissions_are_counted(emu):
    emu.max_streams = 3
    feed = ThetaDataFeed(config(emu), clock=emu.clock)
    col = Collector(feed)
    await feed.subscribe(zero_dte(emu, 6))
    async with feed:
        await col.until(lambda: feed.stats.rejected.get("MAX_STREAMS_REACHED") == 3)
    await col.task
    assert {q.contract for q in col.quotes()} <= set(zero_dte(emu, 6)[:3])


async def test_request_ids_must_strictly_increase(emu):
    req = {
        "msg_type": "STREAM",
        "sec_type": "OPTION",
        "req_type": "QUOTE",
        "add": True,
        "id": 5,
        "contract": {"root": "SPXW", "expiration": 20240119, "strike": 5000000, "right": "C"},
    }
    async with connect(f"ws://127.0.0.1:{emu.ws_port}/v1/events") as ws:
        responses = []
        for rid in (5, 5, 4, 6):
            await ws.send(json.dumps(req | {"id": rid}))
            while True:
                msg = json.loads(await ws.recv())
                if msg["header"]["type"] == "REQ_RESPONSE":
                    responses.append(msg["header"]["response"])
                    break
    assert responses == ["SUBSCRIBED", "ERROR", "ERROR", "SUBSCRIBED"]


async def test_no_permission_is_reported(emu):
    emu.permissions = frozenset()
    feed = ThetaDataFeed(config(emu), clock=emu.clock)
    col = Collector(feed)
    await feed.subscribe(zero_dte(emu, 2))
    async with feed:
        await col.until(lambda: feed.stats.rejected.get("INVALID_PERMS") == 2)
    await col.task
    assert col.quotes() == []


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
async def test_rest_lists_snapshots_and_history_in_both_formats(emu, fmt):
    rest = ThetaDataREST(config(emu, rest_format=fmt))
    try:
        exps = await rest.expirations("SPXW")
        assert exps == sorted({c.expiry for c in emu.market.chain("SPXW", alive=False)})
        strikes = await rest.strikes("SPXW", exps[0])
        assert strikes == sorted(
            {c.strike for c in emu.market.chain("SPXW") if c.expiry == exps[0]}
        )
        c = zero_dte(emu, 2)[0]
        snap = await rest.snapshot_quotes("SPXW", c.expiry, c.strike, c.right.value)
        assert [q.contract for q in snap] == [c]
        await market_seconds(emu, 5)
        start = emu.market.step_time(0)
        hist = await rest.history_quotes(c, start)
        assert hist == emu.market.quote_history(c, start, hist[-1].ts_ns)
        tick = await rest.index_price("SPX")
        assert tick is not None
        assert abs(tick.price - emu.market.spot("SPX")) < 50
    finally:
        await rest.aclose()


async def test_rest_errors_are_clear_and_transient_ones_retried(emu):
    rest = ThetaDataREST(config(emu, retries=3))
    try:
        with pytest.raises(ThetaDataError, match=r"473 INVALID_PARAMS.*bad date") as err:
            await rest.get("/option/list/strikes", symbol="SPXW", expiration="2024-13-45x")
        assert err.value.code == 473
        assert await rest.expirations("NOPE") == []  # 472 NO_DATA is an empty answer
        emu.fail_rest(571, times=2)
        emu.fail_rest(429)
        assert await rest.expirations("SPXW")  # retried through 571, 571, 429
        emu.fail_rest(474, times=10)
        with pytest.raises(ThetaDataError, match="474 DISCONNECTED"):
            await rest.expirations("SPXW")
        emu.faults.rest_failures.clear()
        emu.faults.rest_garbage = 1
        ndjson = ThetaDataREST(config(emu, rest_format="ndjson"))
        with pytest.raises(ThetaDataError, match="unparseable response"):
            await ndjson.expirations("SPXW")
        await ndjson.aclose()
        emu.fail_rest(471)
        with pytest.raises(ThetaDataError, match="471 PERMISSION"):
            await rest.expirations("SPXW")
    finally:
        await rest.aclose()


async def test_unreachable_terminal_is_a_clear_error():
    rest = ThetaDataREST(ThetaDataConfig(rest_port=1, retries=1, retry_initial_s=0.01))
    try:
        with pytest.raises(ThetaDataError, match="Terminal unreachable"):
            await rest.expirations("SPXW")
    finally:
        await rest.aclose()


def test_config_from_environment(monkeypatch):
    monkeypatch.setenv("THETADATA_HOST", "10.0.0.5")
    monkeypatch.setenv("THETADATA_REST_PORT", "26000")
    monkeypatch.setenv("THETADATA_WS_PORT", "26001")
    cfg = ThetaDataConfig.from_env()
    assert cfg.rest_url == "http://10.0.0.5:26000/v3"
    assert cfg.ws_url == "ws://10.0.0.5:26001/v1/events"
    monkeypatch.setenv("THETADATA_WS_PORT", "twenty")
    with pytest.raises(ValueError, match="THETADATA_"):
        ThetaDataConfig.from_env()


async def test_the_chain_source_lists_snapshots_and_gives_vix_closes_as_iv_history(emu):
    from kit.adapters.thetadata.chains import ThetaDataChainSource

    rest = ThetaDataREST(config(emu))
    try:
        chains = ThetaDataChainSource(rest, emu.clock)
        expiries = await chains.expirations("SPXW")
        assert expiries[0] == date(2024, 1, 19) and expiries == sorted(expiries)
        contracts = await chains.contracts("SPXW", expiries[0])
        listed = {c for c in emu.market.chain("SPXW", alive=False) if c.expiry == expiries[0]}
        assert set(contracts) == listed  # every strike, both rights
        some = contracts[len(contracts) // 2 - 4 : len(contracts) // 2 + 4]
        snap = await chains.snapshot(some)
        assert {q.contract for q in snap.events} == set(some)
        assert snap.open_interest == dict(zip(some, emu.market.open_interest(some), strict=True))
        history = await chains.iv_history("SPX")
        expected = emu.market.iv_history("SPX")
        assert history is not None and len(history) == len(expected)
        assert np.allclose(history, np.round(expected, 2))
        assert await chains.iv_history("BTC") is None
    finally:
        await rest.aclose()

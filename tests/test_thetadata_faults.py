"""No lost quote, ever silently: the ThetaData adapter under the emulator's fault switches,
flipped over HTTP (``POST /faults``) as a script would, against the vendor's own history."""

import asyncio
import logging
import random
from datetime import date, datetime

import httpx
import pytest
from test_thetadata import Collector, assert_exact, config, zero_dte

from kit.adapters.base import FeedConfig
from kit.adapters.thetadata.emulator import ThetaDataEmulator
from kit.adapters.thetadata.feed import ThetaDataFeed
from kit.core.backoff import Backoff
from kit.core.clock import NEW_YORK, SimClock
from kit.core.model import Contract, FeedState, FeedStatus, Quote, Severity, UnderlyingTick
from kit.engine.desk import Desk

SPEED = 10.0  # market seconds per wall second: a 1.5 s heartbeat hole is 150 ms of wall


@pytest.fixture
async def emu():
    clock = SimClock(datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK), speed=SPEED)
    async with ThetaDataEmulator(clock=clock) as e:
        yield e


async def fault(emu: ThetaDataEmulator, body: object) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(f"http://127.0.0.1:{emu.rest_port}/faults", json=body)


def holes(emu: ThetaDataEmulator, col: Collector, contracts) -> dict:
    """Per contract, the vendor's quotes not delivered and the delivered ones it never sent
    (market seconds since 10:00), between the first and last delivered: {} when exact."""
    out = {}
    t0 = emu.market.step_time(0)
    for c in contracts:
        got = col.quotes(c)
        want = emu.market.quote_history(c, got[0].ts_ns, got[-1].ts_ns)
        if got != want:
            missing = [(q.ts_ns - t0) / 1e9 for q in want if q not in got]
            extra = [(q.ts_ns - t0) / 1e9 for q in got if q not in want]
            out[str(c)] = (missing, extra, len(got) - len(set(got)))
    return out


def key_states(col: Collector) -> list[tuple[str, FeedState, str]]:
    return [(e.feed, e.state, e.detail) for e in col.events
            if isinstance(e, FeedStatus) and ":" in e.feed]  # fmt: skip


async def test_the_fault_endpoint_applies_a_valid_request_and_refuses_a_bad_one_whole(emu):
    r = await fault(emu, {"silence_s": 8, "rest_error": {"code": 473, "count": 3}})
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert emu.faults.rest_failures == [473, 473, 473]
    assert emu.faults.silent_until_ns > emu.clock.now_ns()
    for bad, says in [
        ({"silence_s": "long"}, "silence_s"),
        ({"silence_s": float("1e9")}, "silence_s"),
        ({"rest_error": {"code": 200}}, "rest_error.code"),
        ({"rest_error": {"code": 473, "count": 0}}, "rest_error.count"),
        ({"bad_frame": "sideways"}, "bad_frame"),
        ({"fire": 1}, "unknown fault 'fire'"),
        ([1, 2], "JSON object"),
        ({"drop": 1, "nonsense": True}, "nonsense"),  # nothing applied: not even the drop
    ]:
        r = await fault(emu, bad)
        assert r.status_code == 400, bad
        assert says in r.json()["error"], (bad, r.json())
    async with httpx.AsyncClient() as client:
        r = await client.post(f"http://127.0.0.1:{emu.rest_port}/faults", content=b"[" * 30_000)
    assert r.status_code == 400
    r = await fault(emu, {"clear": True})
    assert r.json() == {"ok": True} and emu.faults.rest_failures == []


async def test_many_silences_and_drops_deliver_exactly_the_vendor_history(emu):
    """Silences shorter and longer than the liveness timeout, dropped sockets, and an upstream
    outage, one after another: every contract's quotes equal the vendor's history from the
    first to the last one delivered, with no hole and no duplicate."""
    contracts = zero_dte(emu, 6)
    feed = ThetaDataFeed(config(emu), clock=emu.clock)
    col = Collector(feed)
    await feed.subscribe(contracts)
    rng = random.Random(7)
    faults = [{"silence_s": 2.5}, {"silence_s": 8}, {"drop": 1}, {"silence_s": 5},
              {"upstream_down_s": 4}, {"silence_s": 2}, {"drop": 1}, {"silence_s": 12}]  # fmt: skip
    faults += [rng.choice(faults) for _ in range(4)]
    async with feed:
        await col.until(lambda: all(col.quotes(c) for c in contracts))
        for f in faults:
            assert (await fault(emu, f)).json() == {"ok": True}
            await asyncio.sleep(float(max(f.values())) / SPEED)  # the fault runs its course
            await col.until(lambda: feed.state is FeedState.LIVE and not feed._backfilling, 30)
            n = len(col.quotes())
            await col.until(lambda n=n: len(col.quotes()) > n + 10, 30)
    await col.task
    assert feed.stats.silences + feed.stats.stale >= 6  # the silences were noticed ...
    assert feed.stats.backfilled > 0  # ... and their gaps fetched
    assert feed.stats.backfill_failures == 0
    assert holes(emu, col, contracts) == {}, (feed.stats, [
        (round((e.ts_ns - emu.market.step_time(0)) / 1e9, 2), e.state.value, e.detail)
        for e in col.events if isinstance(e, FeedStatus)])  # fmt: skip


async def test_a_failing_backfill_is_retried_until_the_gap_is_whole(emu, caplog):
    contracts = zero_dte(emu, 4)
    feed = ThetaDataFeed(config(emu, retries=0), clock=emu.clock)
    col = Collector(feed)
    await feed.subscribe(contracts)
    async with feed:
        await col.until(lambda: all(col.quotes(c) for c in contracts))
        await fault(emu, {"silence_s": 6, "rest_error": {"code": 473, "count": 3}})
        await col.until(lambda: feed.stats.gaps_filled_late >= 1 and not feed._repairs)
        n = len(col.quotes())
        await col.until(lambda: len(col.quotes()) > n + 10)
    await col.task
    assert feed.stats.backfill_failures == 3
    assert feed.stats.gaps_lost == 0
    states = key_states(col)
    stale = {k for k, s, _ in states if s is FeedState.STALE}
    assert stale and all(k.startswith("thetadata:SPXW") for k in stale)
    # every key marked STALE came back LIVE, after (never before) its STALE mark
    for k in stale:
        mine = [s for kk, s, _ in states if kk == k]
        assert mine[0] is FeedState.STALE and mine[-1] is FeedState.LIVE
    assert "backfill of" in caplog.text and "retrying" in caplog.text
    assert_exact(emu, col, contracts)


async def test_a_gap_failing_past_the_limit_is_declared_lost_then_filled_when_rest_returns(
    emu, caplog
):
    contracts = zero_dte(emu, 2)
    cfg = FeedConfig(liveness_timeout_s=3.0, backfill_give_up_s=6.0,
                     backfill_retry=Backoff(0.5, 2.0, 2.0, 0.2))  # fmt: skip
    feed = ThetaDataFeed(config(emu, retries=0), clock=emu.clock, feed_config=cfg)
    col = Collector(feed)
    await feed.subscribe(contracts)
    async with feed:
        await col.until(lambda: all(col.quotes(c) for c in contracts))
        await fault(emu, {"silence_s": 5, "rest_error": {"code": 570, "count": 1000}})
        with caplog.at_level(logging.CRITICAL):
            await col.until(lambda: feed.stats.gaps_lost >= 1)
        held = {c: len(col.quotes(c)) for c in contracts}
        await asyncio.sleep(4 / SPEED)
        lost = [c for c in contracts if feed._sink.suspended(feed._mark(c))]
        assert lost and all(len(col.quotes(c)) == held[c] for c in lost)  # nothing out of order
        await fault(emu, {"clear": True})
        await col.until(lambda: not feed._repairs)
        n = len(col.quotes())
        await col.until(lambda: len(col.quotes()) > n + 10)
    await col.task
    crit = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert crit and "LOST" in crit[0].getMessage() and "no automation" in crit[0].getMessage()
    details = [d for _, s, d in key_states(col) if s is FeedState.STALE]
    assert any("LOST" in d for d in details)
    assert feed.stats.gaps_filled_late >= 1
    assert_exact(emu, col, contracts)  # whole again: the lost gap was filled after all


@pytest.mark.parametrize("kind", ["future_ts", "past_ts"])
async def test_a_frame_outside_the_clock_window_is_refused_and_never_lifts_a_watermark(emu, kind):
    contracts = zero_dte(emu, 2)
    feed = ThetaDataFeed(config(emu), clock=emu.clock)
    col = Collector(feed)
    await feed.subscribe(contracts)
    async with feed:
        await col.until(lambda: all(col.quotes(c) for c in contracts))
        assert (await fault(emu, {"bad_frame": kind})).json() == {"ok": True}
        await col.until(lambda: feed.stats.out_of_window == 1)
        n = {c: len(col.quotes(c)) for c in contracts}
        await col.until(lambda: all(len(col.quotes(c)) > n[c] + 3 for c in contracts))
    await col.task
    now = emu.clock.now_ns()
    assert all(abs(q.ts_ns - now) < 3600e9 for q in col.quotes())
    assert_exact(emu, col, contracts)


async def test_the_desk_freezes_automation_while_a_contract_is_stale_and_resumes_when_whole():
    """The per-contract status is a feed the desk sees as not LIVE: after the rules'
    ``feed_stale.after_s`` the desk freezes automation with a CRITICAL alert naming it, even
    though the other quotes keep flowing, and resumes once the gap is filled."""
    clock = SimClock(datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK))
    desk = Desk(clock, auto_manage=True)
    key = "thetadata:SPXW240119C4940"
    after = desk.rules.feed_stale.after_s
    other = Contract("SPXW", date(2024, 1, 19), 4900.0, "P")
    desk.process([FeedStatus(key, FeedState.STALE, clock.now_ns(), "gap LOST")])
    for _ in range(int(after) + 2):  # fresh data every second: only the contract is stale
        clock.advance(1.0)
        now = clock.now_ns()
        emitted = desk.process([UnderlyingTick("SPX", 4900.0, now),
                                Quote(other, 1.0, 1.1, 5, 5, now)])  # fmt: skip
        if desk.frozen:
            break
    assert desk.frozen
    stale = [r.alert for r in emitted if r.alert.rule == "feed_stale"]
    assert stale and stale[0].severity is Severity.CRITICAL and key in stale[0].message
    desk.process([FeedStatus(key, FeedState.LIVE, clock.now_ns(), "gap filled")])
    assert not desk.frozen


def test_the_sink_holds_a_suspended_key_and_releases_up_to_a_new_gap():
    from kit.adapters.sink import EventSink, FeedStats

    c1 = Contract("SPXW", date(2024, 1, 19), 4900.0, "P")
    c2 = Contract("SPXW", date(2024, 1, 19), 4905.0, "P")

    def q(c, ts):
        return Quote(c, 1.0, 1.1, 1, 1, ts)

    def drain(sink):
        out = []
        while not sink.queue.empty():
            out.append(sink.queue.get_nowait())
        return [(e.contract.strike, e.ts_ns) for e in out]

    sink = EventSink(FeedStats())
    sink.emit(q(c1, 1))
    sink.emit(q(c2, 1))
    sink.suspend((Quote, c1))  # c1's gap could not be fetched: its events wait
    sink.emit(q(c1, 5))
    sink.emit(q(c2, 5))
    assert drain(sink) == [(4900.0, 1), (4905.0, 1), (4905.0, 5)]
    assert sink.resume((Quote, c1), [q(c1, 3), q(c1, 2)])  # the gap, then what waited
    assert drain(sink) == [(4900.0, 2), (4900.0, 3), (4900.0, 5)]

    sink.hold()  # a backfill runs; a silence ends after two held events
    for ts in (6, 7, 9, 10):
        sink.emit(q(c2, ts))
    sink.release([q(c2, 6)], upto=2)
    assert drain(sink) == [(4905.0, 6), (4905.0, 7)] and sink.held == 2
    sink.release([q(c2, 8), q(c2, 9)])  # the next round's fetch fills the new hole
    assert drain(sink) == [(4905.0, 8), (4905.0, 9), (4905.0, 10)] and sink.held == 0

    sink.MAX_HELD = 2  # past the bound, held events are dropped and the gap fetched again
    sink.suspend((Quote, c1))
    for ts in (11, 12, 13):
        sink.emit(q(c1, ts))
    assert sink.stats.held_overflow == 2
    assert not sink.resume((Quote, c1), [q(c1, 11)])  # fetched before the drop: fetch again
    assert sink.resume((Quote, c1), [q(c1, 11), q(c1, 12), q(c1, 13)])
    assert drain(sink) == [(4900.0, 11), (4900.0, 12), (4900.0, 13)]

    sink.suspend((Quote, c1))  # unsubscribed while its gap was pending: its events are dropped
    sink.emit(q(c1, 20))
    sink.forget((Quote, c1))
    sink.emit(q(c1, 21))
    assert drain(sink) == [(4900.0, 21)] and not sink.suspended((Quote, c1))

"""The IBKR Client Portal streaming feed against the emulated gateway on the simulated market:
real sockets on 127.0.0.1, the feed's own session, the emulator's fault switches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from kit.adapters.base import FeedConfig
from kit.adapters.cpapi.broker import CpApiConfig
from kit.adapters.cpapi.chains import CpApiChainSource
from kit.adapters.cpapi.feed import CpApiFeed
from kit.adapters.cpapi.session import CpApiSession
from kit.adapters.cpapi.simulated import SimGateway
from kit.adapters.sim.market import SimConfig
from kit.core.backoff import Backoff
from kit.core.model import Contract, FeedState, FeedStatus, Greeks, Quote, UnderlyingTick

ACCOUNT = "DU1234567"


async def until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


class Rig:
    """A gateway on the simulator, a session, a chain source and a feed collecting events."""

    def __init__(self, gw: SimGateway, feed: CpApiFeed, chains: CpApiChainSource) -> None:
        self.gw, self.feed, self.chains = gw, feed, chains
        self.events: list[Any] = []

    def of(self, kind: type, contract: Contract | None = None) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)
                and (contract is None or getattr(e, "contract", None) == contract)]  # fmt: skip

    async def atm_call(self) -> Contract:
        """The nearest expiry's call closest to the money."""
        expiry = (await self.chains.expirations("SPXW"))[0]
        chain = await self.chains.contracts("SPXW", expiry)
        spot = self.gw.sim.spot("SPX")
        return min((c for c in chain if c.is_call), key=lambda c: abs(c.strike - spot))


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with SimGateway(config=SimConfig(seed=3), tick_s=0.05, heartbeat_s=0.3) as gw:
        session = CpApiSession(CpApiConfig(gw.emu.url, ACCOUNT, tickle_s=0.2))
        config = FeedConfig(liveness_timeout_s=1.0, silence_gap_s=0.8,
                            backoff=Backoff(0.05, 2.0, 0.2, 0.0))  # fmt: skip
        feed = CpApiFeed(session, clock=gw.clock, feed_config=config, tic_s=0.2, renew_s=0.5)
        chains = CpApiChainSource(session, gw.clock)
        r = Rig(gw, feed, chains)

        async def collect() -> None:
            async for event in feed:
                r.events.append(event)

        await feed.start()
        task = asyncio.create_task(collect())
        try:
            yield r
        finally:
            await feed.close()
            await task


async def test_streams_quotes_vendor_greeks_and_the_index(rig: Rig) -> None:
    call = await rig.atm_call()
    await rig.feed.subscribe([call, "SPX"])
    await until(lambda: rig.of(Quote, call) and rig.of(Greeks, call) and rig.of(UnderlyingTick))
    conid = rig.feed.conids[call]
    sent = [m for m in rig.gw.emu.stream.messages if m.startswith(f"smd+{conid}+")]
    assert json.loads(sent[0].split("+", 2)[2])["fields"][:3] == ["31", "84", "86"]
    # what arrived is what the gateway's market shows (its own book and its own Greeks)
    m, i = rig.gw.market, rig.gw.market.index[call]
    await until(lambda: rig.of(Quote, call)[-1].bid == m.bid[i] and rig.of(Quote, call)[-1].ask
                == m.ask[i], timeout=5)  # fmt: skip
    g = rig.of(Greeks, call)[-1]
    assert g.source == "ibkr" and 0.2 < g.delta < 0.8 and g.gamma > 0 and 0.05 < g.iv < 1.5
    assert rig.feed.availability[call] == "real-time"
    assert rig.of(UnderlyingTick)[-1].symbol == "SPX"
    # keep-alive: tic on the socket and one tickle per period on REST
    await until(lambda: rig.feed.tics >= 2 and "tic" in rig.gw.emu.stream.messages)
    assert "POST /tickle" in rig.gw.emu.requests
    # before IBKR's 10-minute cut-off the subscriptions are renewed (here every 0.5 s)
    await until(
        lambda: (
            rig.feed.renewals >= 1
            and len([m for m in rig.gw.emu.stream.messages if m.startswith(f"smd+{conid}+")]) >= 2
        )
    )
    # umd stops the stream
    await rig.feed.unsubscribe([call])
    await until(lambda: f"umd+{conid}+{{}}" in rig.gw.emu.stream.messages)


async def test_changed_fields_merge_and_bad_fields_or_frames_are_counted(rig: Rig) -> None:
    call = await rig.atm_call()
    await rig.feed.subscribe([call])
    await until(lambda: rig.of(Quote, call))
    conid, stream = rig.feed.conids[call], rig.gw.emu.stream
    stream.silence(30)  # only what we inject from here on
    last = rig.of(Quote, call)[-1]
    ms = rig.gw.clock.now_ns() // 1_000_000 + 1
    only_bid = {"topic": f"smd+{conid}", "conid": conid, "_updated": ms, "84": "0.05"}
    stream.faults.silent_until = 0
    stream.inject(json.dumps(only_bid))  # only the bid changed: the ask is the merged one
    stream.silence(30)
    await until(lambda: rig.of(Quote, call)[-1].bid == 0.05)
    assert rig.of(Quote, call)[-1].ask == last.ask
    before = len(rig.of(Quote, call))
    stream.faults.silent_until = 0
    stream.inject("{not json")
    stream.inject(json.dumps({**only_bid, "_updated": ms + 1, "84": "NaN", "86": "1,234.5"}))
    await until(lambda: rig.feed.stats.malformed == 1 and rig.feed.bad_fields == 1)
    await until(lambda: len(rig.of(Quote, call)) > before)
    q = rig.of(Quote, call)[-1]
    assert (q.bid, q.ask) == (0.05, 1234.5)  # the NaN bid kept its previous value
    assert rig.feed.state is FeedState.LIVE


async def test_delayed_data_marks_the_contract_stale(rig: Rig) -> None:
    call = await rig.atm_call()
    await rig.feed.subscribe([call])
    await until(lambda: rig.of(Quote, call))

    def keyed() -> list[FeedState]:
        return [e.state for e in rig.events
                if isinstance(e, FeedStatus) and e.feed.startswith("ibkr-cpapi:")]  # fmt: skip

    assert keyed() == []  # real-time data: no per-key status at all
    async with httpx.AsyncClient() as http:  # the fault switches over HTTP, as by hand
        answer = await http.post(f"{rig.gw.emu.url}/kit/faults", json={"availability": "DpB"})
    assert answer.json()["availability"] == "DpB" and answer.json()["sockets"] == 1
    await until(lambda: rig.feed.availability.get(call) == "delayed")
    await until(lambda: keyed() == [FeedState.STALE])
    rig.gw.emu.stream.faults.availability = "RpB"
    await until(lambda: keyed() == [FeedState.STALE, FeedState.LIVE])


@pytest.mark.parametrize("competing", [False, True], ids=["daily-expiry", "competing-login"])
async def test_session_expiry_reauthenticates_and_resubscribes(rig: Rig, competing: bool) -> None:
    call = await rig.atm_call()
    await rig.feed.subscribe([call, "SPX"])
    await until(lambda: rig.of(Quote, call) and rig.feed.state is FeedState.LIVE)
    conid = rig.feed.conids[call]
    old_session = rig.feed.session.session_id
    rig.feed.renew_s = 3600.0  # only the resubscription counts below
    sent = len(rig.gw.emu.stream.messages)
    rig.gw.emu.stream.expire_session(competing)  # sts authenticated false, socket closed
    await until(lambda: rig.feed.session.reauths == 1 and rig.feed.stats.reconnects == 1)
    assert rig.feed.auth_lost == 1 and "POST /iserver/auth/ssodh/init" in rig.gw.emu.requests
    assert rig.feed.session.session_id != old_session  # the new socket carries the new token
    await until(lambda: any(m.startswith(f"smd+{conid}+")
                            for m in rig.gw.emu.stream.messages[sent:]))  # fmt: skip
    n = len(rig.of(Quote, call))
    await until(lambda: len(rig.of(Quote, call)) > n and rig.feed.state is FeedState.LIVE)


async def test_silence_goes_stale_then_reconnects_without_a_hole(rig: Rig) -> None:
    call = await rig.atm_call()
    await rig.feed.subscribe([call])
    await until(lambda: rig.of(Quote, call) and rig.feed.state is FeedState.LIVE)
    rig.gw.emu.stream.silence(1.6)  # no heartbeat, no data
    await until(lambda: rig.feed.state is FeedState.STALE, timeout=5)
    await until(lambda: rig.feed.state is FeedState.LIVE and rig.feed.stats.reconnects >= 1,
                timeout=10)  # fmt: skip
    # the gap was backfilled from the snapshot: the book matches the gateway's, in order
    m, i = rig.gw.market, rig.gw.market.index[call]
    await until(lambda: (rig.of(Quote, call)[-1].bid, rig.of(Quote, call)[-1].ask)
                == (m.bid[i], m.ask[i]), timeout=5)  # fmt: skip
    stamps = [q.ts_ns for q in rig.of(Quote, call)]
    assert stamps == sorted(stamps)
    assert rig.feed.stats.backfilled >= 1


async def test_a_dropped_socket_reconnects_and_resubscribes(rig: Rig) -> None:
    call = await rig.atm_call()
    await rig.feed.subscribe([call])
    await until(lambda: rig.of(Quote, call) and rig.feed.state is FeedState.LIVE)
    conid, sent = rig.feed.conids[call], len(rig.gw.emu.stream.messages)
    rig.gw.emu.stream.drop()  # no close handshake: the connection just ends
    await until(lambda: rig.feed.stats.reconnects == 1 and rig.feed.state is FeedState.LIVE)
    assert any(m.startswith(f"smd+{conid}+") for m in rig.gw.emu.stream.messages[sent:])
    assert rig.feed.session.reauths == 0  # the session was fine: no re-authentication
    n = len(rig.of(Quote, call))
    await until(lambda: len(rig.of(Quote, call)) > n)


async def test_a_gateway_that_wants_a_strike_is_asked_strike_by_strike(rig: Rig) -> None:
    expiry = (await rig.chains.expirations("SPXW"))[0]
    listed = await rig.chains.contracts("SPXW", expiry)
    rig.gw.emu.strike_required = True
    strict = CpApiChainSource(rig.feed.session, rig.gw.clock, strike_window_pct=1.0)
    before = rig.gw.emu.requests.count("GET /iserver/secdef/info")
    near = await strict.contracts("SPXW", expiry)
    spot = rig.gw.sim.spot("SPX")
    assert set(near) <= set(listed) and all(abs(c.strike / spot - 1) < 0.011 for c in near)
    assert {c for c in listed if abs(c.strike / spot - 1) < 0.009} <= set(near)
    assert rig.gw.emu.requests.count("GET /iserver/secdef/info") - before > len(near) // 2


async def test_a_stale_session_token_is_refused_by_the_socket(rig: Rig) -> None:
    from websockets.asyncio.client import connect

    url = rig.gw.emu.url.replace("http", "ws") + "/ws"
    async with connect(url, additional_headers={"Cookie": 'api={"session":"nope"}'}) as ws:
        doc = json.loads(await ws.recv())
    assert doc["topic"] == "sts" and doc["args"]["authenticated"] is False

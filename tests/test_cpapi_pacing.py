"""The Client Portal session keeps under the gateway's request limit: calls are paced
(``max_rps``), a 429 is waited out and retried, and a gateway that keeps refusing gives one
clear error. Against the emulator with its limit switched on (``emu.limit.rps``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kit.adapters.cpapi.broker import CpApiConfig
from kit.adapters.cpapi.session import CpApiSession
from kit.adapters.cpapi.simulated import SimGateway
from kit.adapters.sim.market import SimConfig
from kit.core.config import ConfigError
from kit.execution.broker import BrokerError

ACCOUNT = "DU1234567"


@pytest.fixture
async def gw() -> AsyncIterator[SimGateway]:
    async with SimGateway(config=SimConfig(seed=3), tick_s=0.05) as g:
        yield g


async def lookups(session: CpApiSession, gw: SimGateway, n: int) -> list[int]:
    """``n`` option conids resolved at once (secdef/info each): a chain loading."""
    chain = [c for c in gw.listing("SPX") if c.is_call][:n]
    assert len(chain) == n
    await session.acquire()
    try:
        await session.underlying(chain[0].underlying)  # searched once, then cached
        return await asyncio.gather(*(session.conid(c) for c in chain))
    finally:
        await session.release()


async def test_a_burst_of_lookups_is_paced_under_the_gateway_limit(gw):
    gw.emu.limit.rps = 10  # IBKR's gateway: 10 requests a second
    session = CpApiSession(CpApiConfig(gw.emu.url, ACCOUNT))  # paced at 8 a second
    conids = await lookups(session, gw, 20)
    assert len(set(conids)) == 20
    assert gw.emu.limit.refused == 0 and session.rate_limited == 0


async def test_an_unpaced_burst_is_refused_then_waited_out_and_retried(gw):
    gw.emu.limit.rps = 5
    config = CpApiConfig(gw.emu.url, ACCOUNT, max_rps=1000.0, retry_s=0.5)
    session = CpApiSession(config)
    conids = await lookups(session, gw, 8)
    assert len(set(conids)) == 8  # every lookup answered in the end
    assert gw.emu.limit.refused > 0 and session.rate_limited == gw.emu.limit.refused


async def test_a_gateway_that_keeps_refusing_gives_one_clear_error(gw, caplog):
    session = CpApiSession(CpApiConfig(gw.emu.url, ACCOUNT, retry_s=0.01))
    gw.emu.fail_next(4, 429)
    await session.acquire()
    try:
        with pytest.raises(BrokerError, match=r"^IBKR POST /tickle: HTTP 429: "):
            await session.tickle()
        assert session.rate_limited == 3 and "HTTP 429 (rate limited): retrying" in caplog.text
        gw.emu.fail_next(2, 429)
        assert await session.tickle()  # two refusals, then the answer
    finally:
        await session.release()


def test_the_rate_setting_is_validated():
    env = {"IBKR_CPAPI_URL": "http://127.0.0.1:1/v1/api", "IBKR_ACCOUNT_ID": ACCOUNT}
    assert CpApiConfig.from_env(env).max_rps == 8.0
    assert CpApiConfig.from_env(env | {"IBKR_CPAPI_MAX_RPS": "40"}).max_rps == 40.0
    for bad in ("0", "-3", "fast", "nan"):
        with pytest.raises(ConfigError, match="IBKR_CPAPI_MAX_RPS"):
            CpApiConfig.from_env(env | {"IBKR_CPAPI_MAX_RPS": bad})

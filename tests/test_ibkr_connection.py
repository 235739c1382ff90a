"""Connection life of ``--feed ibkr`` against the TWS emulator's fault switches: a dropped
socket, TWS's 1100/1102 and 1101 (subscriptions lost), a TWS that goes silent and the nightly
restart each take the feed out of LIVE (the desk freezes automation) and back, resubscribed,
with the current quote delivered again; a client id in use is named plainly."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kit.adapters.base import FeedConfig
from kit.adapters.ibkr.config import IbkrConfig
from kit.adapters.ibkr.connection import IbConnection
from kit.adapters.ibkr.emulator import TwsEmulator
from kit.adapters.ibkr.feed import IbkrFeed
from kit.core.backoff import Backoff
from kit.core.model import Event, FeedState, FeedStatus, Quote
from kit.core.symbology import to_occ

FAST = Backoff(0.05, 2.0, 0.3, 0.1)


async def until(predicate: Any, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


class Watch:
    """A feed on the emulator and everything it delivered."""

    def __init__(self, emu: TwsEmulator, client_id: int = 3) -> None:
        cfg = IbkrConfig(port=emu.port, client_id=client_id, probe_s=0.3, probe_timeout_s=0.5,
                         timeout_s=3.0)  # fmt: skip
        self.emu = emu
        self.conn = IbConnection(cfg, backoff=FAST)
        fast = FeedConfig(liveness_timeout_s=1.0, backoff=FAST)
        self.feed = IbkrFeed(cfg, clock=emu.clock, connection=self.conn, feed_config=fast)
        self.events: list[Event] = []
        self._task: asyncio.Task[None] | None = None
        spot = emu.sim.spot("SPX")
        listed = emu.sim.chain("SPXW")
        first = min(c.expiry for c in listed)
        self.put = min((c for c in listed if c.expiry == first and not c.is_call),
                       key=lambda c: abs(c.strike - spot + 25))  # fmt: skip

    async def start(self) -> None:
        await self.feed.start()
        await self.feed.subscribe(["SPX", self.put])
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for ev in self.feed:
            self.events.append(ev)

    def states(self) -> list[FeedState]:
        return [e.state for e in self.events if isinstance(e, FeedStatus) and e.feed == "ibkr"]

    def quotes(self) -> list[Quote]:
        return [e for e in self.events if isinstance(e, Quote) and e.contract == self.put]

    async def recovers(self, fault: Any, *down: FeedState) -> None:
        """Apply ``fault``; the feed leaves LIVE (to one of ``down``), comes back LIVE and
        delivers the venue's current quote again (no stale hole after the gap)."""
        await until(lambda: self.feed.state is FeedState.LIVE)
        seen, mark = len(self.states()), len(self.quotes())
        result = fault()
        if asyncio.iscoroutine(result):
            await result
        await until(lambda: any(s in down for s in self.states()[seen:]))
        await until(lambda: self.feed.state is FeedState.LIVE and len(self.quotes()) > mark)
        row = self.emu.market.index[self.put]

        def current() -> bool:
            last = self.quotes()[-1]
            return (last.bid, last.ask) == (self.emu.market.bid[row], self.emu.market.ask[row])

        await until(current)

    async def close(self) -> None:
        await self.feed.close()
        if self._task is not None:
            await self._task
        await self.conn.close()


async def test_drop_1100_1101_silence_and_nightly_restart_recover_resubscribed() -> None:
    async with TwsEmulator() as emu:
        w = Watch(emu)
        await w.start()
        try:
            await until(lambda: w.feed.state is FeedState.LIVE and bool(w.quotes()))
            await w.recovers(emu.drop, FeedState.DISCONNECTED)
            assert w.feed.stats.reconnects >= 1 and w.conn.generation >= 2

            def lost() -> None:
                emu.connectivity(False)
                asyncio.get_running_loop().call_later(0.5, emu.connectivity, True)

            await w.recovers(lost, FeedState.DISCONNECTED)
            detail = [e.detail for e in w.events if isinstance(e, FeedStatus)
                      and e.state is FeedState.DISCONNECTED]  # fmt: skip
            assert any("1100" in d for d in detail)

            def data_lost() -> None:
                emu.connectivity(False)
                asyncio.get_running_loop().call_later(0.3, lambda: emu.connectivity(
                    True, data_lost=True))  # fmt: skip

            await w.recovers(data_lost, FeedState.DISCONNECTED)  # 1101: resubscribed

            def silent() -> None:
                emu.faults.silent = True
                asyncio.get_running_loop().call_later(1.5, setattr, emu.faults, "silent", False)

            # the connection's probe (0.3 s) notices before the feed's 1 s liveness watchdog
            await w.recovers(silent, FeedState.STALE, FeedState.DISCONNECTED)
            await w.recovers(lambda: emu.restart(1.0), FeedState.DISCONNECTED)
            assert w.feed.stats.malformed == 0
        finally:
            await w.close()


async def test_client_id_in_use_is_named() -> None:
    async with TwsEmulator() as emu:
        first = IbConnection(IbkrConfig(port=emu.port, client_id=9, timeout_s=2.0))
        await first.acquire()
        second = IbConnection(IbkrConfig(port=emu.port, client_id=9, timeout_s=1.5), backoff=FAST)
        try:
            with pytest.raises(ConnectionError, match="client id 9 is already in use"):
                await second.acquire()
        finally:
            await second.close()
            await first.close()


async def test_requests_are_paced_at_50_per_second() -> None:
    """IBKR disconnects clients that send more than 50 messages a second: a burst of 120
    requests reaches TWS spread so that no one-second window holds more than 50."""
    async with TwsEmulator() as emu:
        conn = IbConnection(IbkrConfig(port=emu.port, client_id=4, timeout_s=3.0))
        await conn.acquire()
        try:
            before = len(emu.arrivals)
            for _ in range(120):
                conn.ib.client.reqCurrentTime()
            await until(lambda: len(emu.arrivals) - before >= 120)
            times = emu.arrivals[before:]
            busiest = max(sum(1 for t in times if s <= t < s + 0.95) for s in times)
            assert busiest <= 50 and times[-1] - times[0] >= 2.0
        finally:
            await conn.close()


async def test_delayed_and_unpermitted_market_data_are_shown() -> None:
    async with TwsEmulator() as emu:
        emu.faults.delayed_only = True
        w = Watch(emu)
        await w.start()
        try:
            await until(lambda: bool(w.quotes()))  # delayed quotes still flow ...
            name = f"ibkr:{to_occ(w.put, padded=False)}"
            delayed = await_status(w, name)
            await until(lambda: delayed() is not None)
            assert "DELAYED" in delayed().detail and "10167" in delayed().detail
            assert 10167 in w.feed.notices
            emu.faults.delayed_only, emu.faults.no_permission = False, True
            call = next(c for c in emu.sim.chain("SPXW") if c.expiry == w.put.expiry
                        and c.is_call and c.strike == w.put.strike)  # fmt: skip
            await w.feed.subscribe([call])
            refused = await_status(w, f"ibkr:{to_occ(call, padded=False)}")
            await until(lambda: refused() is not None)
            assert refused().state is FeedState.STALE and "354" in refused().detail
        finally:
            await w.close()


def await_status(w: Watch, name: str) -> Any:
    """The latest status event of ``name`` (a feed:contract key), or None."""

    def latest() -> FeedStatus | None:
        return next((e for e in reversed(w.events)
                     if isinstance(e, FeedStatus) and e.feed == name), None)  # fmt: skip

    return latest

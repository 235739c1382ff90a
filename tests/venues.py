"""Venues the broker tests run against, shared by the per-broker tests and the contract suite
(:mod:`broker_contract`): the IBKR Client Portal gateway emulated over a real PaperBroker,
and the Delta Exchange emulator with its keys. Real servers on 127.0.0.1, nothing stubbed."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any

from kit.adapters.cpapi.broker import CpApiBroker, CpApiConfig
from kit.adapters.cpapi.emulator import CpApiEmulator
from kit.adapters.delta.config import DeltaConfig
from kit.adapters.delta.emulator import DeltaEmulator
from kit.adapters.paper.broker import PaperBroker, PaperConfig
from kit.core.clock import NEW_YORK, SimClock
from kit.core.model import Contract, Fill, Quote
from kit.execution.broker import OrderState, OrderStatus
from kit.portfolio.market import MarketState


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it holds; a TimeoutError after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


# --- IBKR Client Portal: the gateway emulator over a paper engine ---

ACCOUNT = "DU1234567"
EXP = date(2024, 1, 19)
PUT = Contract("SPXW", EXP, 4700.0, "P")
CALL = Contract("SPXW", EXP, 4900.0, "C")
AM_PUT = Contract("SPX", EXP, 4700.0, "P")  # same month, strike and right: other trading class
ORDERS = f"POST /iserver/account/{ACCOUNT}/orders"


class CpApiDesk:
    """The venue (market + paper engine + emulated gateway) and one adapter with its events."""

    def __init__(self, clock: SimClock, market: MarketState, paper: PaperBroker,
                 emu: CpApiEmulator) -> None:  # fmt: skip
        self.clock, self.market, self.paper, self.emu = clock, market, paper, emu
        self.config = CpApiConfig(emu.url, ACCOUNT, poll_s=0.01)
        self.events: list[OrderState | Fill] = []
        self.broker = CpApiBroker(self.config, clock)
        self.broker.subscribe(self.events.append)
        self._seq = 0

    def quote(self, c: Contract, bid: float, ask: float, size: float = 10) -> None:
        self._seq += 1  # a new quote_ts: paper fills take fresh quoted size
        self.market.on_quote(Quote(c, bid, ask, size, size, self.clock.now_ns() + self._seq))
        self.paper.on_market()

    def fills(self, client_id: str) -> list[Fill]:
        return [e for e in self.events if isinstance(e, Fill) and e.client_id == client_id]

    def states(self, client_id: str) -> list[OrderState]:
        return [e for e in self.events if isinstance(e, OrderState) and e.client_id == client_id]

    def status(self, client_id: str) -> OrderStatus | None:
        states = self.states(client_id)
        return states[-1].status if states else None


@asynccontextmanager
async def cpapi_desk() -> AsyncIterator[CpApiDesk]:
    """The gateway on a free port, SPXW quotes in, the adapter connected (closed after)."""
    clock = SimClock(datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK), speed=1.0)
    market = MarketState()
    paper = PaperBroker(clock, market, PaperConfig(latency_ms=1.0))
    async with CpApiEmulator(paper, account=ACCOUNT) as emu:
        d = CpApiDesk(clock, market, paper, emu)
        d.quote(PUT, 10.0, 10.5)
        d.quote(CALL, 5.0, 5.4)
        d.quote(AM_PUT, 9.0, 9.6)
        await d.broker.connect()
        try:
            yield d
        finally:
            await d.broker.close()
            await paper.close()


# --- Delta Exchange: the emulator and its keys ---

DELTA_KEY, DELTA_SECRET = "venue-key", "venue-secret-7f3a9c"  # distinct: logs are searched for it


def delta_config(emu: DeltaEmulator, secret: str = DELTA_SECRET) -> DeltaConfig:
    """The broker's settings for ``emu`` (a wrong ``secret`` to test refusals)."""
    return DeltaConfig.from_env({"DELTA_BASE_URL": emu.base_url, "DELTA_API_KEY": DELTA_KEY,
                                 "DELTA_API_SECRET": secret})  # fmt: skip


def delta_live_env(emu: DeltaEmulator) -> dict[str, str]:
    """The environment of a live Delta desk on ``emu``: its URL, the keys, the gate opened."""
    return {"DELTA_BASE_URL": emu.base_url, "DELTA_API_KEY": DELTA_KEY,
            "DELTA_API_SECRET": DELTA_SECRET, "KIT_LIVE_TRADING": "yes"}  # fmt: skip


def delta_emulator(tick_s: float = 0.05) -> DeltaEmulator:
    """An emulator for :data:`DELTA_KEY` that steps its market every ``tick_s`` seconds."""
    return DeltaEmulator(api_key=DELTA_KEY, api_secret=DELTA_SECRET, tick_s=tick_s)


def eth_call(emu: DeltaEmulator) -> tuple[Contract, dict[str, Any]]:
    """A listed ETH call near 0.3 delta (bid and offer both quoted) and its ticker."""
    ex = emu.exchange
    tickers = ex.tickers([p for p in ex.alive() if ex.products[p].root == "ETH"
                          and ex.products[p].is_call])  # fmt: skip
    t = min(tickers, key=lambda t: abs(float(t["greeks"]["delta"]) - 0.3))
    return ex.products[t["product_id"]], t


# --- Interactive Brokers TWS: the TWS API emulator and the ib_async broker ---

TWS_ACCOUNT = "DU1234567"


class TwsDesk:
    """The emulated TWS (its simulator and paper engine) and one connected broker."""

    def __init__(self, emu: Any, client_id: int = 11) -> None:
        from kit.adapters.ibkr.broker import IbkrBroker
        from kit.adapters.ibkr.config import IbkrConfig
        from kit.adapters.ibkr.connection import IbConnection

        self.emu = emu
        self.config = IbkrConfig(port=emu.port, client_id=client_id, account_id=TWS_ACCOUNT,
                                 probe_s=0.5)  # fmt: skip
        self.broker = IbkrBroker(self.config, connection=IbConnection(self.config))
        self.put = self.near("P", -25.0)

    def near(self, right: str, offset: float) -> Contract:
        """The first SPXW expiry's contract nearest spot + ``offset`` (quoted by the venue)."""
        sim = self.emu.sim
        spot = sim.spot("SPX")
        first = min(c.expiry for c in sim.chain("SPXW"))
        c = min((c for c in sim.chain("SPXW") if c.expiry == first and c.right.value == right),
                key=lambda c: abs(c.strike - spot - offset))  # fmt: skip
        self.emu.track(c)
        return c

    def touch(self, c: Contract) -> tuple[float, float]:
        row = self.emu.market.index[c]
        return float(self.emu.market.bid[row]), float(self.emu.market.ask[row])

    async def restart(self, client_id: int) -> Any:
        """A second process on the same account (its own client id): adopts, never resends."""
        from kit.adapters.ibkr.broker import IbkrBroker
        from kit.adapters.ibkr.connection import IbConnection

        cfg = dataclasses.replace(self.config, client_id=client_id)
        other = IbkrBroker(cfg, connection=IbConnection(cfg))
        await other.connect()
        return other


@asynccontextmanager
async def tws_desk() -> AsyncIterator[TwsDesk]:
    """``kit emulate tws`` in-process on a free port, the broker connected (closed after)."""
    from kit.adapters.ibkr.emulator import TwsEmulator

    async with TwsEmulator(account=TWS_ACCOUNT) as emu:
        d = TwsDesk(emu)
        await d.broker.connect()
        try:
            yield d
        finally:
            await d.broker.close()

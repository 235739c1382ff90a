"""The emulated gateway on the simulated market: ``kit emulate cpapi --port P``.

:class:`SimGateway` puts :class:`~kit.adapters.cpapi.emulator.CpApiEmulator` in front of the
simulator: its secdef routes list the simulator's options (the core strikes), and every
``tick_s`` the market advances to the clock, the contracts someone streams or trades are quoted
into the paper engine's market (so orders fill against what the socket shows), working orders are
matched, and the socket publishes changed fields and its heartbeat. The gateway's market time is
10:00 New York on the latest session at start (as the ThetaData emulator's), flowing with the
wall: a desk on it runs at that hour whatever the real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from kit.adapters.cpapi.emulator import CpApiEmulator
from kit.adapters.paper.broker import PaperBroker
from kit.adapters.sim.market import DERIVED, MarketSim, SimConfig
from kit.adapters.thetadata.emulator import default_start
from kit.core.clock import NEW_YORK, Clock, SimClock
from kit.core.model import Contract
from kit.core.tasks import cancel
from kit.portfolio.market import MarketState

log = logging.getLogger(__name__)


class SimGateway:
    """The simulator, a paper engine and the emulated gateway, stepped together."""

    def __init__(self, *, clock: Clock | None = None, config: SimConfig | None = None,
                 port: int = 0, tick_s: float = 0.25, heartbeat_s: float = 10.0,
                 account: str = "DU1234567") -> None:  # fmt: skip
        self.clock = clock or SimClock(default_start(datetime.now(NEW_YORK)), speed=1.0)
        self.sim = MarketSim(self.clock.now(), config)
        self.market = MarketState()
        self.paper = PaperBroker(self.clock, self.market)
        self.emu = CpApiEmulator(self.paper, account=account, port=port,
                                 heartbeat_s=heartbeat_s, listing=self.listing)  # fmt: skip
        self.emu.stream.on_subscribe = self.quote
        self.emu.history = self.vol_index_history
        self.tick_s = tick_s
        self._indexes = list(dict.fromkeys([*self.sim.symbols, *DERIVED]))  # SPY, VIX too
        self.steps = 0
        self._task: asyncio.Task[None] | None = None

    def listing(self, symbol: str) -> list[Contract]:
        """The simulator's live core options on ``symbol``."""
        return [c for c in self.sim.chain(core=True) if c.underlying == symbol]

    def vol_index_history(self, symbol: str, days: int) -> list[float]:
        """VIX's daily closes: the simulator's SPX 30-day ATM implied vol (what VIX measures)."""
        return self.sim.iv_history("SPX", days).tolist() if symbol == "VIX" else []

    def quote(self, c: Contract) -> None:
        """Quote one option now (a new subscription's first update carries every field)."""
        for q in self.sim.quotes([c]):
            self.market.on_quote(q)
            self.market.set_open_interest([c], self.sim.open_interest([c]).tolist())

    def step(self) -> None:
        """Advance the market to the clock, quote what is streamed or tracked, match, publish."""
        self.sim.advance_to(self.clock.now_ns())
        wanted = sorted(self.emu.stream.subscribed() | set(self.market.contracts), key=str)
        for q in self.sim.quotes(wanted):
            self.market.on_quote(q)
        if wanted:
            self.market.set_open_interest(wanted, self.sim.open_interest(wanted).tolist())
        for tick in self.sim.ticks(self._indexes):
            self.market.on_underlying(tick)
        self.paper.on_market()
        self.emu.stream.tick()
        self.steps += 1

    async def _run(self) -> None:
        while True:
            try:
                self.step()
            except Exception:  # a bug: loud, and the gateway keeps serving
                log.exception("cpapi emulator: market step failed")
            await asyncio.sleep(self.tick_s)

    async def start(self) -> SimGateway:
        await self.emu.start()
        self.step()
        self._task = asyncio.create_task(self._run(), name="cpapi-emulator:steps")
        return self

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
        await self.emu.close()
        with contextlib.suppress(Exception):
            await self.paper.close()

    async def __aenter__(self) -> SimGateway:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self.emu.port


async def serve_forever(port: int, seed: int, speed: float) -> None:
    """``kit emulate cpapi``: run until interrupted."""
    clock = SimClock(default_start(datetime.now(NEW_YORK)), speed=speed)
    async with SimGateway(clock=clock, config=SimConfig(seed=seed), port=port) as gw:
        print(f"IBKR Client Portal emulator: REST {gw.emu.url}  socket ws://127.0.0.1:"
              f"{gw.port}/v1/api/ws  account {gw.emu.account}\nmarket time "
              f"{clock.now().astimezone(NEW_YORK):%Y-%m-%d %H:%M %Z} at {speed:g}x; "
              "Ctrl-C to stop", flush=True)  # fmt: skip
        while True:
            await asyncio.sleep(3600)

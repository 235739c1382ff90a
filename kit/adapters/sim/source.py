"""The simulator as a chain source: its listings, quotes, open interest and IV history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np

from kit.adapters.chains import ChainSnapshot
from kit.adapters.sim.market import MarketSim
from kit.core.clock import Clock
from kit.core.model import Contract

IV_PROXY = {"SPX": "SPX", "SPY": "SPX"}  # SPY options price off SPX vol in the simulator


INDICES = ("SPX", "SPY", "VIX")  # a snapshot carries the index levels, as a vendor's does


class SimChainSource:
    """Reads the simulated market a :class:`~kit.adapters.sim.feed.SimFeed` runs on, brought
    to the clock's time first (a stepped clock may be ahead of the feed's last step)."""

    def __init__(self, market: MarketSim, clock: Clock) -> None:
        self.market, self.clock = market, clock

    async def expirations(self, root: str) -> list[date]:
        return sorted({c.expiry for c in self.market.chain(root)})

    async def contracts(self, root: str, expiry: date) -> list[Contract]:
        """The expiry's core strikes (+/- 4 sd on the root's grid): what the desk subscribes
        to and the feed streams. The far wings the simulator also lists (for open interest,
        GEX and ``kit sim chain``) carry no tradable premium, and quoting them every tick would
        double the desk's work for nothing."""
        return [c for c in self.market.chain(root, core=True) if c.expiry == expiry]

    async def snapshot(self, contracts: Sequence[Contract]) -> ChainSnapshot:
        m = self.market
        m.advance_to(self.clock.now_ns())
        oi = m.open_interest(contracts)
        return ChainSnapshot([*m.ticks(INDICES), *m.quotes(contracts)],
                             dict(zip(contracts, map(float, oi), strict=True)))  # fmt: skip

    async def iv_history(self, underlying: str) -> np.ndarray | None:
        proxy = IV_PROXY.get(underlying)
        return None if proxy is None else self.market.iv_history(proxy)

"""Delta Exchange as a chain source: listed BTC/ETH options, REST ticker snapshots, open interest.

Expiries are the settlement days (17:30 IST); a snapshot is one ``/v2/tickers`` call per expiry
(``expiry_date`` DD-MM-YYYY), which also leaves the exchange's Greeks in :attr:`greeks` for the
strike selection of :mod:`kit.app.delta_select`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date

import numpy as np

from kit.adapters.chains import ChainSnapshot
from kit.adapters.delta.client import DeltaClient
from kit.adapters.delta.parsing import contract_of, greeks_of, num, quote_of, ticker_ts_ns
from kit.core.model import Contract, Event, Greeks, ModelError, UnderlyingTick

log = logging.getLogger(__name__)


class DeltaChainSource:
    """Listings and snapshots from Delta's REST API (products cached on first use)."""

    def __init__(self, client: DeltaClient) -> None:
        self.client = client
        self.by_symbol: dict[str, Contract] = {}
        self.product_ids: dict[Contract, int] = {}
        self.greeks: dict[Contract, Greeks] = {}
        self.tickers: dict[Contract, dict] = {}
        self.ticks: dict[Contract, float] = {}  # price increment per product

    async def load(self, refresh: bool = False) -> None:
        if self.by_symbol and not refresh:
            return
        for p in await self.client.products():
            try:
                c = contract_of(p)
            except ModelError as exc:
                log.warning("delta chains: skipping %s: %s", p.get("symbol"), exc)
                continue
            self.by_symbol[p["symbol"]] = c
            self.product_ids[c] = int(p["id"])
            self.ticks[c] = num(p.get("tick_size"), 0.1)

    async def expirations(self, root: str) -> list[date]:
        await self.load()
        return sorted({c.expiry for c in self.by_symbol.values() if c.root == root})

    async def contracts(self, root: str, expiry: date) -> list[Contract]:
        await self.load()
        return sorted((c for c in self.by_symbol.values() if c.root == root and c.expiry == expiry),
                      key=lambda c: (c.strike, c.right.value))  # fmt: skip

    async def snapshot(self, contracts: Sequence[Contract]) -> ChainSnapshot:
        """Quotes, coin prices and open interest (contracts) of one expiry's ``contracts``."""
        await self.load()
        wanted = set(contracts)
        events: list[Event] = []
        oi: dict[Contract, float] = {}
        for root, expiry in sorted({(c.root, c.expiry) for c in contracts}):
            rows = await self.client.tickers(root, f"{expiry:%d-%m-%Y}")
            spot_done = False
            for t in rows:
                c = self.by_symbol.get(str(t.get("symbol")))
                if c is None or c not in wanted:
                    continue
                self.tickers[c] = t
                if not spot_done and num(t.get("spot_price")) > 0:
                    ts = ticker_ts_ns(t)
                    events.append(UnderlyingTick(root, num(t["spot_price"]), ts))
                    spot_done = True
                q = quote_of(c, t)
                if q is not None:
                    events.append(q)
                g = greeks_of(c, t)
                if g is not None:
                    self.greeks[c] = g
                oi[c] = num(t.get("oi_contracts"), 0.0)
        return ChainSnapshot(events, oi)

    async def iv_history(self, underlying: str) -> np.ndarray | None:
        return None  # Delta publishes no IV index history over this API

"""tastytrade as a chain source: listings from the SDK's nested option-chain endpoint, snapshots
from its market-data endpoint (quotes and open interest, 100 symbols a call: the API's limit).

A root is listed under its underlying's chain (``SPXW`` in ``/option-chains/SPX/nested``): the
chain of each underlying is read once and cached; :meth:`TastytradeChainSource.streamer_symbols`
keeps tastytrade's own streamer symbol for every contract (what DXLink subscriptions use).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import date

import numpy as np

from kit.adapters.chains import ChainSnapshot
from kit.adapters.tastytrade import dxlink
from kit.adapters.tastytrade.api import TastyApi
from kit.adapters.tastytrade.feed import DXLinkConnection
from kit.adapters.thetadata.chains import VOL_INDEX
from kit.core.clock import Clock, LiveClock
from kit.core.model import Contract, Event, ModelError, Quote, Right, UnderlyingTick
from kit.core.symbology import from_occ, to_occ

log = logging.getLogger(__name__)

UNDERLYING_OF = {"SPXW": "SPX", "NDXP": "NDX", "RUTW": "RUT", "XSP": "XSP"}
BATCH = 100  # market-data/by-type: at most 100 symbols per call


class TastytradeChainSource:
    """Listings and snapshots through the SDK (chains cached per underlying)."""

    def __init__(self, api: TastyApi, clock: Clock | None = None) -> None:
        self.api = api
        self.clock = clock or LiveClock()  # the vendor's time: a year of history before it
        self.listed: dict[str, dict[date, list[Contract]]] = {}  # root -> expiry -> contracts
        self.streamer_symbols: dict[Contract, str] = {}
        self._loaded: set[str] = set()

    async def load(self, underlying: str) -> None:
        from tastytrade.instruments import NestedOptionChain

        if underlying in self._loaded:
            return
        chains = await self.api.call(lambda: NestedOptionChain.get(self.api.session, underlying))
        for chain in chains:
            by_exp = self.listed.setdefault(chain.root_symbol, {})
            for exp in chain.expirations:
                out = by_exp.setdefault(exp.expiration_date, [])
                for k in exp.strikes:
                    for occ, streamer in ((k.put, k.put_streamer_symbol),
                                          (k.call, k.call_streamer_symbol)):  # fmt: skip
                        try:
                            c = from_occ(occ)
                        except (ModelError, ValueError) as exc:
                            log.warning("tastytrade chains: skipping %r: %s", occ, exc)
                            continue
                        out.append(c)
                        self.streamer_symbols[c] = streamer
        self._loaded.add(underlying)

    async def expirations(self, root: str) -> list[date]:
        await self.load(UNDERLYING_OF.get(root, root))
        return sorted(self.listed.get(root, {}))

    async def contracts(self, root: str, expiry: date) -> list[Contract]:
        await self.load(UNDERLYING_OF.get(root, root))
        got = self.listed.get(root, {}).get(expiry, [])
        return sorted(got, key=lambda c: (c.strike, c.right is Right.CALL))

    async def snapshot(self, contracts: Sequence[Contract]) -> ChainSnapshot:
        from tastytrade.market_data import get_market_data_by_type

        events: list[Event] = []
        oi: dict[Contract, float] = {}
        roots = sorted({UNDERLYING_OF.get(c.root, c.root) for c in contracts})
        session = self.api.session
        rows = await self.api.call(lambda: get_market_data_by_type(session, indices=roots))
        for r in rows:
            if r.mark is not None:
                events.append(UnderlyingTick(r.symbol, float(r.mark),
                                             int(r.updated_at.timestamp() * 1e9)))  # fmt: skip
        occs = [to_occ(c) for c in contracts]
        for i in range(0, len(occs), BATCH):
            part = occs[i : i + BATCH]
            rows = await self.api.call(lambda p=part: get_market_data_by_type(session, options=p))
            for r in rows:
                try:
                    c = from_occ(r.symbol)
                    ts = int(r.updated_at.timestamp() * 1e9)
                    events.append(Quote(c, float(r.bid or 0), float(r.ask or 0),
                                        float(r.bid_size), float(r.ask_size), ts))  # fmt: skip
                except (ModelError, ValueError) as exc:
                    log.debug("tastytrade chains: no quote for %s: %s", r.symbol, exc)
                    continue
                if r.open_interest is not None:
                    oi[c] = float(r.open_interest)
        return ChainSnapshot(events, oi)

    async def iv_history(self, underlying: str) -> np.ndarray | None:
        """VIX daily closes over the last year for SPX/SPY (the IV rank traders quote), from
        DXLink daily candles (``VIX{=1d}``); None for other underlyings or when none come."""
        index = VOL_INDEX.get(underlying)
        if index is None:
            return None
        url, token = await self.api.quote_token()
        timeout = self.api.config.timeout_s
        conn = await DXLinkConnection.open(url, token, timeout, kinds=("Candle",))
        try:
            since_ms = self.clock.now_ns() // 1_000_000 - 366 * 86_400_000
            await conn.send(dxlink.candle_subscription(index, "1d", since_ms))
            async with asyncio.timeout(timeout):
                while True:
                    doc = dxlink.decode(await conn.ws.recv())
                    if doc["type"] == "FEED_CONFIG":
                        conn.fields.update(dxlink.config_fields(doc))
                    elif doc["type"] == "FEED_DATA":
                        rows = dxlink.compact_rows(doc.get("data"), conn.fields)
                        break
        except (TimeoutError, dxlink.DXLinkError) as exc:
            log.warning("tastytrade chains: no %s history: %s", index, exc)
            return None
        finally:
            await conn.close()
        closes = sorted((dxlink.num(r.get("time")), dxlink.num(r.get("close"))) for _, r in rows)
        values = np.array([c for _, c in closes if c == c and c > 0], dtype=float)
        return values if len(values) else None

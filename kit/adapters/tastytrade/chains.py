"""tastytrade as a chain source: listings from the SDK's nested option-chain endpoint, snapshots
from its market-data endpoint (quotes and open interest, 100 symbols a call: the API's limit).

A root is listed under its underlying's chain (``SPXW`` in ``/option-chains/SPX/nested``): the
chain of each underlying is read once and cached; :meth:`TastytradeChainSource.streamer_symbols`
keeps tastytrade's own streamer symbol for every contract (what DXLink subscriptions use).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date

import numpy as np

from kit.adapters.chains import ChainSnapshot
from kit.adapters.tastytrade.api import TastyApi
from kit.core.model import Contract, Event, ModelError, Quote, Right, UnderlyingTick
from kit.core.symbology import from_occ, to_occ

log = logging.getLogger(__name__)

UNDERLYING_OF = {"SPXW": "SPX", "NDXP": "NDX", "RUTW": "RUT", "XSP": "XSP"}
BATCH = 100  # market-data/by-type: at most 100 symbols per call


class TastytradeChainSource:
    """Listings and snapshots through the SDK (chains cached per underlying)."""

    def __init__(self, api: TastyApi) -> None:
        self.api = api
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
        return None  # not offered through the SDK: IV rank falls back to the desk's default

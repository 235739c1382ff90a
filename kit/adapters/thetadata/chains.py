"""ThetaData as a chain source: listings, snapshots and open interest from the Terminal's REST
API, and VIX closes as the IV history of SPX/SPY options (the IV rank traders quote)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np

from kit.adapters.chains import ChainSnapshot
from kit.adapters.thetadata.rest import ThetaDataREST
from kit.core.clock import NEW_YORK, Clock
from kit.core.model import Contract

VOL_INDEX = {"SPX": "VIX", "SPY": "VIX"}


class ThetaDataChainSource:
    """Uses the feed's REST client; the dates are the vendor's (market) dates."""

    def __init__(self, rest: ThetaDataREST, clock: Clock) -> None:
        self.rest, self.clock = rest, clock

    def _today(self) -> date:
        return self.clock.now().astimezone(NEW_YORK).date()

    async def expirations(self, root: str) -> list[date]:
        today = self._today()
        return [e for e in await self.rest.expirations(root) if e >= today]

    async def contracts(self, root: str, expiry: date) -> list[Contract]:
        strikes = await self.rest.strikes(root, expiry)
        return [Contract(root, expiry, k, r) for k in strikes for r in ("P", "C")]

    async def snapshot(self, contracts: Sequence[Contract]) -> ChainSnapshot:
        if not contracts:
            return ChainSnapshot()
        root, expiry = contracts[0].root, contracts[0].expiry
        wanted = set(contracts)
        quotes = [q for q in await self.rest.snapshot_quotes(root, expiry) if q.contract in wanted]
        oi = {c: v for c, v in (await self.rest.open_interest(root, expiry)).items()
              if c in wanted}  # fmt: skip
        return ChainSnapshot(list(quotes), oi)

    async def iv_history(self, underlying: str) -> np.ndarray | None:
        index = VOL_INDEX.get(underlying)
        if index is None:
            return None
        today = self._today()
        closes = await self.rest.index_eod(index, today - timedelta(days=366), today)
        return np.array([v for d, v in closes if d < today], dtype=float) if closes else None

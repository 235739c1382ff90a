"""IBKR as a chain source: ``reqSecDefOptParams`` for the expiries of a trading class, contract
details for an expiry's listing, a ticker snapshot for its quotes.

``contracts`` keeps the strikes within four standard deviations of spot to the expiry's close
(25% vol, between 1.5% and 20% of spot), as the simulator's core strikes: what the desk quotes.
A whole SPXW expiry is hundreds of strikes and IBKR allows 100 market data lines by default.
Open interest is what the feed has streamed (generic tick 101; snapshots carry no generic
ticks). The IV history is a year of daily VIX closes (``reqHistoricalData``), as with ThetaData.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import date, datetime, time

import numpy as np
from ib_async import Contract as IbContract
from ib_async import Option

from kit.adapters.chains import ChainSnapshot
from kit.adapters.ibkr.feed import IbkrFeed
from kit.core.clock import NEW_YORK
from kit.core.model import ROOT_UNDERLYING, Contract, Event, UnderlyingTick
from kit.core.symbology import from_ibkr

log = logging.getLogger(__name__)

VOL_INDEX = {"SPX": "VIX", "SPY": "VIX"}
BAND_VOL = 0.25
BAND_SD = 4.0


class IbkrChainSource:
    """Listings and snapshots over the feed's TWS connection."""

    def __init__(self, feed: IbkrFeed) -> None:
        self.feed = feed
        self._params: dict[str, list] = {}
        self._listing: dict[tuple[str, date], list[Contract]] = {}

    @property
    def ib(self):
        return self.feed.ib

    async def _chain_params(self, root: str) -> list:
        und = ROOT_UNDERLYING.get(root, root)
        if und not in self._params:
            index = await self.feed.qualify(und)
            if index is None:
                return []
            self._params[und] = await self.ib.reqSecDefOptParamsAsync(und, "", "IND",
                                                                      index.conId)  # fmt: skip
        return [p for p in self._params[und] if p.tradingClass == root and p.exchange == "SMART"]

    async def expirations(self, root: str) -> list[date]:
        today = self.feed.clock.now().astimezone(NEW_YORK).date()
        days = {datetime.strptime(e, "%Y%m%d").date() for p in await self._chain_params(root)
                for e in p.expirations}  # fmt: skip
        return sorted(d for d in days if d >= today)

    async def spot(self, underlying: str) -> float:
        index = await self.feed.qualify(underlying)
        if index is None:
            return math.nan
        [t] = await self.ib.reqTickersAsync(index)
        price = t.last if t.last == t.last and t.last > 0 else t.close
        return float(price) if price == price and price > 0 else math.nan

    async def contracts(self, root: str, expiry: date) -> list[Contract]:
        key = (root, expiry)
        if key not in self._listing:
            und = ROOT_UNDERLYING.get(root, root)
            wanted = Option(und, f"{expiry:%Y%m%d}", exchange="SMART", tradingClass=root)
            details = await self.ib.reqContractDetailsAsync(wanted)
            listed = []
            for d in details:
                try:
                    listed.append(from_ibkr(d.contract))
                except ValueError as exc:
                    log.warning("ibkr chains: skipping %s: %s", d.contract, exc)
            self._listing[key] = listed
            for c, d in zip(listed, details, strict=False):
                self.feed.qualified.setdefault(c, d.contract)
        spot = await self.spot(ROOT_UNDERLYING.get(root, root))
        close = datetime.combine(expiry, time(16), NEW_YORK)  # PM-settled: the day's close
        years = max((close - self.feed.clock.now()).total_seconds() / 3.15576e7, 1 / 8766)
        width = min(max(BAND_SD * BAND_VOL * math.sqrt(years), 0.015), 0.20)
        listed = self._listing[key]
        keep = [c for c in listed if spot != spot or abs(c.strike / spot - 1) <= width]
        return sorted(keep, key=lambda c: (c.strike, c.right.value))

    async def snapshot(self, contracts: Sequence[Contract]) -> ChainSnapshot:
        events: list[Event] = []
        now = self.feed.clock.now_ns()
        for und in sorted({c.underlying for c in contracts}):
            spot = await self.spot(und)
            if spot == spot:
                events.append(UnderlyingTick(und, spot, now))
        wanted = [self.feed.qualified.get(c) or IbContract(**_kw(c)) for c in contracts]
        tickers = await self.ib.reqTickersAsync(*wanted)
        by_id = {t.contract.conId: t for t in tickers}
        for c, ib_c in zip(contracts, wanted, strict=True):
            t = by_id.get(ib_c.conId)
            if t is not None:
                quotes = [e for e in self.feed._events(c, t, now) if not hasattr(e, "source")]
                events.extend(quotes)  # the Greeks come with the stream
        oi = {c: self.feed.open_interest[c] for c in contracts if c in self.feed.open_interest}
        return ChainSnapshot(events, oi)

    async def iv_history(self, underlying: str) -> np.ndarray | None:
        """A year of daily VIX closes (the IV rank traders quote for SPX/SPY options), before
        today; None for other underlyings or when TWS has no VIX history (no CBOE data)."""
        if underlying not in VOL_INDEX:
            return None
        vix = await self.feed.qualify(VOL_INDEX[underlying])
        if vix is None:
            return None
        bars = await self.ib.reqHistoricalDataAsync(vix, "", "1 Y", "1 day", "TRADES", True)
        today = self.feed.clock.now().astimezone(NEW_YORK).date()
        closes = [b.close for b in bars or () if _day(b.date) < today and b.close > 0]
        return np.array(closes, dtype=float) if closes else None


def _day(value: date | datetime | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return datetime.strptime(str(value)[:8], "%Y%m%d").date()


def _kw(c: Contract) -> dict:
    from kit.core.symbology import to_ibkr

    return to_ibkr(c)

"""IBKR Client Portal as a chain source: listings from ``secdef`` search/strikes/info, snapshots
from ``iserver/marketdata/snapshot`` (quotes and option open interest, field 7638).

Expirations: the search's OPT months; for each of the nearest ``months`` (3: what a premium seller
trades), the month's strikes and one ``secdef/info`` row set at its middle strike give the
expiries and their trading classes (SPX monthlies vs SPXW). Contracts of an expiry: one
``secdef/info`` for the month (every strike; a gateway that insists on a strike, as IBKR's docs
say, is asked strike by strike within ``strike_window_pct`` of the money), with every conid
kept in the shared session so subscribing costs no further lookup. IV history (IV rank's
input): VIX's daily closes from ``iserver/marketdata/history`` for SPX and SPY, as the ThetaData
source reads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np

from kit.adapters.chains import ChainSnapshot
from kit.adapters.cpapi.marketdata import OPTION_FIELDS, ConidValues, merge, quote_of
from kit.adapters.cpapi.parsing import MONTHS
from kit.adapters.cpapi.session import CpApiSession
from kit.adapters.thetadata.chains import VOL_INDEX
from kit.core.clock import NEW_YORK, Clock
from kit.core.model import ROOT_UNDERLYING, Contract, Event, ModelError
from kit.core.symbology import right_code
from kit.execution.broker import BrokerError

SNAPSHOT_CHUNK = 50  # conids per snapshot request


def _month(d: date) -> str:
    return f"{MONTHS[d.month - 1]}{d:%y}"


class CpApiChainSource:
    """Listings and snapshots through the session the feed and broker share."""

    def __init__(self, session: CpApiSession, clock: Clock, months: int = 3,
                 strike_window_pct: float = 5.0) -> None:  # fmt: skip
        self.session, self.clock, self.months = session, clock, months
        self.strike_window_pct = strike_window_pct  # strike-by-strike listing: near the money
        self._expiries: dict[str, list[date]] = {}
        self._chains: dict[tuple[str, date], list[Contract]] = {}

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[None]:
        """The session for one call (the builder reads IV history before the feed starts)."""
        await self.session.acquire()
        try:
            yield
        finally:
            await self.session.release()

    def _today(self) -> date:
        return self.clock.now().astimezone(NEW_YORK).date()

    async def _opt_months(self, symbol: str) -> list[str]:
        rows = await self.session.call("GET", "/iserver/secdef/search", params={"symbol": symbol})
        for r in rows or []:
            if isinstance(r, dict) and r.get("symbol") == symbol:
                for s in r.get("sections") or []:
                    if s.get("secType") == "OPT":
                        return [m for m in str(s.get("months") or "").split(";") if m]
        return []

    async def _info(self, und: int, month: str, strike: float | None = None) -> list[Any]:
        params: dict[str, Any] = {"conid": und, "sectype": "OPT", "month": month}
        if strike is not None:
            params["strike"] = f"{strike:g}"
        rows = await self.session.call("GET", "/iserver/secdef/info", params=params)
        return [r for r in rows or [] if isinstance(r, dict)]

    async def _near(self, und: int, strikes: list[float]) -> list[float]:
        """The strikes within ``strike_window_pct`` of the underlying's last price (all of them
        when it has none): IBKR paces secdef requests, and far strikes are not traded."""
        rows = await self.session.call("GET", "/iserver/marketdata/snapshot",
                                       params={"conids": str(und), "fields": "31"})  # fmt: skip
        state = ConidValues()
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict):
                merge(state, row, 0)
        spot = state.values.get("31")
        if not spot:
            return strikes
        return [k for k in strikes if abs(k / spot - 1) * 100 <= self.strike_window_pct]

    async def _strikes(self, und: int, month: str) -> list[float]:
        params = {"conid": und, "sectype": "OPT", "month": month}
        doc = await self.session.call("GET", "/iserver/secdef/strikes", params=params)
        doc = doc if isinstance(doc, dict) else {}
        return sorted({float(k) for side in ("call", "put") for k in doc.get(side) or []})

    async def expirations(self, root: str) -> list[date]:
        async with self._open():
            return await self._expirations(root)

    async def contracts(self, root: str, expiry: date) -> list[Contract]:
        async with self._open():
            return await self._contracts(root, expiry)

    async def snapshot(self, contracts: Sequence[Contract]) -> ChainSnapshot:
        """Quotes and open interest of ``contracts`` (the gateway's current values)."""
        async with self._open():
            return await self._snapshot(contracts)

    async def _expirations(self, root: str) -> list[date]:
        if root not in self._expiries:
            symbol = ROOT_UNDERLYING.get(root, root)
            und = await self.session.underlying(symbol)
            found: set[date] = set()
            for month in (await self._opt_months(symbol))[: self.months]:
                strikes = await self._strikes(und, month)
                if strikes:
                    for r in await self._info(und, month, strikes[len(strikes) // 2]):
                        if r.get("tradingClass") == root:
                            found.add(datetime.strptime(str(r["maturityDate"]), "%Y%m%d").date())
            self._expiries[root] = sorted(found)
        today = self._today()
        return [e for e in self._expiries[root] if e >= today]

    async def _contracts(self, root: str, expiry: date) -> list[Contract]:
        key = (root, expiry)
        if key not in self._chains:
            und = await self.session.underlying(ROOT_UNDERLYING.get(root, root))
            month = _month(expiry)
            try:
                rows = await self._info(und, month)
            except BrokerError:  # IBKR's docs make the strike required for OPT
                rows = []
            if not rows:  # a gateway that wants a strike: ask strike by strike, near the money
                for k in await self._near(und, await self._strikes(und, month)):
                    rows += await self._info(und, month, k)
            out: dict[Contract, None] = {}
            ymd = f"{expiry:%Y%m%d}"
            for r in rows:
                if r.get("tradingClass") != root or str(r.get("maturityDate")) != ymd:
                    continue
                try:
                    c = Contract(root, expiry, float(r["strike"]), right_code(r["right"]),
                                 float(r.get("multiplier") or 100))  # fmt: skip
                except (KeyError, ValueError, ModelError):
                    continue
                self.session.conids[c] = int(r["conid"])
                out[c] = None
            self._chains[key] = sorted(out, key=lambda c: (c.strike, c.right.value))
        return list(self._chains[key])

    async def _snapshot(self, contracts: Sequence[Contract]) -> ChainSnapshot:
        by_conid = {await self.session.conid(c): c for c in contracts}
        conids = list(by_conid)
        events: list[Event] = []
        oi: dict[Contract, float] = {}
        for i in range(0, len(conids), SNAPSHOT_CHUNK):
            chunk = ",".join(str(c) for c in conids[i : i + SNAPSHOT_CHUNK])
            rows = await self.session.call("GET", "/iserver/marketdata/snapshot",
                                           params={"conids": chunk,
                                                   "fields": ",".join(OPTION_FIELDS)})  # fmt: skip
            for row in rows if isinstance(rows, list) else []:
                c = by_conid.get(int(row.get("conid") or 0)) if isinstance(row, dict) else None
                if c is None:
                    continue
                state = ConidValues()
                merge(state, row, self.clock.now_ns())
                if (q := quote_of(c, state)) is not None:
                    events.append(q)
                if "7638" in state.values:
                    oi[c] = state.values["7638"]
        return ChainSnapshot(events, oi)

    async def iv_history(self, underlying: str) -> np.ndarray | None:
        """The vol index's daily closes over a year (VIX for SPX and SPY) from
        ``iserver/marketdata/history``; None when there is no index or no data."""
        index = VOL_INDEX.get(underlying)
        if index is None:
            return None
        async with self._open():
            conid = await self.session.underlying(index, options=False)
            params = {"conid": conid, "period": "1y", "bar": "1d"}
            doc = await self.session.call("GET", "/iserver/marketdata/history", params=params)
        bars = doc.get("data") if isinstance(doc, dict) else None
        closes = [float(b["c"]) for b in bars or [] if isinstance(b, dict) and "c" in b]
        return np.array(closes, dtype=float) if closes else None

"""Async client for the ThetaData Terminal's REST v3 API, returning domain records."""

from __future__ import annotations

import asyncio
import csv
import logging
from datetime import date, timedelta
from typing import Any

import httpx

from kit.adapters.thetadata.config import ThetaDataConfig, ThetaDataError
from kit.adapters.thetadata.parsing import (
    RETRYABLE,
    parse_date,
    parse_rows,
    parse_timestamp,
    quote_row,
)
from kit.core.clock import NEW_YORK, Clock, from_ns
from kit.core.model import Contract, Quote, UnderlyingTick

log = logging.getLogger(__name__)


class ThetaDataREST:
    """Async client for the Terminal's REST v3 API, returning domain records."""

    def __init__(
        self,
        config: ThetaDataConfig | None = None,
        *,
        clock: Clock | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config or ThetaDataConfig.from_env()
        self._clock = clock
        self._client = client or httpx.AsyncClient(timeout=self.config.timeout_s)
        self._own_client = client is None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def _sleep(self, seconds: float) -> None:
        await (self._clock.sleep(seconds) if self._clock else asyncio.sleep(seconds))

    async def get(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """GET ``/v3{path}``; rows as dicts. NO_DATA -> []; 429/474/571 retried with backoff."""
        params = {k: v for k, v in params.items() if v is not None}
        params.setdefault("format", self.config.rest_format)
        url = f"{self.config.rest_url}{path}"
        delay = self.config.retry_initial_s
        for attempt in range(self.config.retries + 1):
            try:
                resp = await self._client.get(url, params=params)
            except httpx.TransportError as exc:
                if attempt == self.config.retries:
                    raise ThetaDataError(474, f"Terminal unreachable: {exc}", url) from None
            else:
                if resp.status_code == 200:
                    try:
                        return parse_rows(resp.text, params["format"])
                    except (ValueError, csv.Error) as exc:
                        raise ThetaDataError(470, f"unparseable response: {exc}", url) from None
                if resp.status_code == 472:
                    return []
                if resp.status_code not in RETRYABLE or attempt == self.config.retries:
                    raise ThetaDataError(resp.status_code, resp.text, str(resp.url))
                log.info("ThetaData %s on %s; retry %d", resp.status_code, path, attempt + 1)
            await self._sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")  # pragma: no cover

    async def expirations(self, symbol: str) -> list[date]:
        rows = await self.get("/option/list/expirations", symbol=symbol)
        return sorted(parse_date(r["expiration"]) for r in rows)

    async def strikes(self, symbol: str, expiration: date) -> list[float]:
        rows = await self.get(
            "/option/list/strikes", symbol=symbol, expiration=f"{expiration:%Y%m%d}"
        )
        return sorted(float(r["strike"]) for r in rows)

    async def snapshot_quotes(
        self, symbol: str, expiration: date, strike: float | None = None, right: str | None = None
    ) -> list[Quote]:
        rows = await self.get(
            "/option/snapshot/quote",
            symbol=symbol,
            expiration=f"{expiration:%Y%m%d}",
            strike=None if strike is None else f"{strike:.3f}",
            right={"C": "call", "P": "put"}.get(right or "", right),
        )
        return [q for r in rows if (q := quote_row(r)) is not None]

    async def open_interest(self, symbol: str, expiration: date) -> dict[Contract, float]:
        """Open interest of every contract of one expiry (``/option/snapshot/open_interest``)."""
        rows = await self.get("/option/snapshot/open_interest", symbol=symbol,
                              expiration=f"{expiration:%Y%m%d}")  # fmt: skip
        out: dict[Contract, float] = {}
        for r in rows:
            try:
                c = Contract(r["symbol"], parse_date(r["expiration"]), float(r["strike"]),
                             r["right"][0].upper())  # fmt: skip
                out[c] = float(r["open_interest"])
            except (KeyError, ValueError, IndexError) as exc:
                log.warning("ThetaData: bad open interest row %r: %s", r, exc)
        return out

    async def index_eod(self, symbol: str, start: date, end: date) -> list[tuple[date, float]]:
        """Daily closes of an index (``/index/history/eod``), oldest first."""
        rows = await self.get("/index/history/eod", symbol=symbol,
                              start_date=f"{start:%Y%m%d}", end_date=f"{end:%Y%m%d}")  # fmt: skip
        out = []
        for r in rows:
            try:
                out.append((parse_date(r["date"]), float(r["close"])))
            except (KeyError, ValueError) as exc:
                log.warning("ThetaData: bad EOD row %r: %s", r, exc)
        return sorted(out)

    async def history_quotes(
        self, contract: Contract, start_ns: int, end_ns: int | None = None
    ) -> list[Quote]:
        """Every quote from ``start_ns`` (inclusive) through ``end_ns`` or the latest."""
        start = from_ns(start_ns).astimezone(NEW_YORK)
        end = from_ns(end_ns).astimezone(NEW_YORK) if end_ns else None
        rows = await self.get(
            "/option/history/quote",
            symbol=contract.root,
            expiration=f"{contract.expiry:%Y%m%d}",
            strike=f"{contract.strike:.3f}",
            right="call" if contract.is_call else "put",
            start_date=f"{start:%Y%m%d}",
            # open-ended: the Terminal stops at its present; a gap never spans a week
            end_date=f"{end if end else start + timedelta(days=7):%Y%m%d}",
            start_time=start.strftime("%H:%M:%S.%f")[:-3],
            end_time=end.strftime("%H:%M:%S.%f")[:-3] if end else None,
            interval="tick",
        )
        quotes = [q for r in rows if (q := quote_row(r, contract)) is not None]
        return [q for q in quotes if q.ts_ns >= start_ns and (end_ns is None or q.ts_ns <= end_ns)]

    async def index_price(self, symbol: str) -> UnderlyingTick | None:
        rows = await self.get("/index/snapshot/price", symbol=symbol)
        if not rows:
            return None
        r = rows[-1]
        try:
            return UnderlyingTick(symbol, float(r["price"]), parse_timestamp(r["timestamp"]))
        except (KeyError, ValueError) as exc:
            log.warning("ThetaData: bad index row %r: %s", r, exc)
            return None

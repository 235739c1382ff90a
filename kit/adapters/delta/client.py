"""The async Delta Exchange REST client (httpx): signing, clock skew, 429 backoff, pagination.

Every request is signed like the official client does (:mod:`kit.adapters.delta.signing`), with
the timestamp corrected by the measured clock offset: Delta refuses a signature older than 5 s,
so a computer whose clock is a few seconds behind would fail every private call. The offset is
read from the server's ``Date`` header (:meth:`DeltaClient.measure_skew`) and from the
``server_time`` Delta returns with ``SignatureExpired`` (then the request is retried once).

A 429 waits ``X-RATE-LIMIT-RESET`` milliseconds (capped) and retries; a dropped connection is
retried with exponential backoff for reads only (a retried POST could trade twice; orders carry a
``client_order_id`` so the caller can look them up instead). Failures arrive as
:class:`~kit.adapters.delta.parsing.DeltaError` subclasses whose message says what to do.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from kit.adapters.delta.config import DeltaConfig
from kit.adapters.delta.parsing import (
    DeltaAuthError,
    DeltaError,
    DeltaRateLimitError,
    error_from,
)
from kit.adapters.delta.signing import USER_AGENT, auth_headers, body_string, query_string

log = logging.getLogger(__name__)


class DeltaClient:
    """One session with a Delta host (``async with DeltaClient(config) as client``)."""

    def __init__(self, config: DeltaConfig, *, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self.skew_s = 0.0  # server clock - local clock
        self.requests = 0
        self.rate_limited = 0
        self._http = httpx.AsyncClient(base_url=config.base_url, timeout=config.timeout_s,
                                       transport=transport)  # fmt: skip

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> DeltaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def timestamp(self) -> str:
        return str(int(time.time() + self.skew_s))

    # --- the one request path ---

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        auth: bool = False,
    ) -> tuple[Any, dict[str, Any]]:
        """``(result, meta)`` of one call; raises DeltaError (or a subclass)."""
        cfg = self.config
        if auth and not cfg.has_keys:
            raise DeltaAuthError("InvalidApiKey", 401, None, "DELTA_API_KEY/DELTA_API_SECRET unset")
        qs, text = query_string(query), body_string(body)
        what = f"{method} {path}"
        resynced = False
        attempt = 0
        while True:
            headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json"}
            if auth:
                headers = auth_headers(cfg.api_key, cfg.api_secret, method, self.timestamp(),
                                       path, qs, text)  # fmt: skip
            self.requests += 1
            try:
                r = await self._http.request(method, path + qs, content=text or None,
                                             headers=headers)  # fmt: skip
            except httpx.TransportError as exc:
                if method != "GET" or attempt >= cfg.retries:
                    why = f"{what} at {cfg.host}: {type(exc).__name__}"
                    raise DeltaError("unreachable", 0, None, why) from None
                await asyncio.sleep(min(cfg.max_backoff_s, 0.2 * 2**attempt))
                attempt += 1
                continue
            if r.status_code == 429:
                self.rate_limited += 1
                reset_ms = int(r.headers.get("X-RATE-LIMIT-RESET") or 1000)
                if attempt >= cfg.retries:
                    raise DeltaRateLimitError(reset_ms, what)
                log.warning("delta: rate limited on %s, waiting %d ms", what, reset_ms)
                await asyncio.sleep(min(cfg.max_backoff_s, reset_ms / 1000))
                attempt += 1
                continue
            try:
                doc = r.json()
            except ValueError:
                raise error_from(r.status_code, r.text[:200], what) from None
            if isinstance(doc, dict) and doc.get("success") is True:
                return doc.get("result"), doc.get("meta") or {}
            err = error_from(r.status_code, doc, what)
            if err.code == "SignatureExpired" and not resynced:
                server = (err.context or {}).get("server_time") if isinstance(
                    err.context, dict) else None  # fmt: skip
                if server is not None:
                    self.skew_s = float(server) - time.time()
                    log.warning(
                        "delta: clock offset %.1f s from the server; re-signing", self.skew_s
                    )
                    resynced = True
                    continue
            raise err

    async def measure_skew(self) -> float:
        """The server's clock minus ours, from the ``Date`` header (1 s resolution); kept for
        signing when it is a second or more."""
        t0 = time.time()
        r = await self._http.get("/v2/products/0", headers={"User-Agent": USER_AGENT})
        t1 = time.time()
        date = r.headers.get("Date")
        if not date:
            return self.skew_s
        server = email.utils.parsedate_to_datetime(date).timestamp()
        skew = server - (t0 + t1) / 2
        self.skew_s = skew if abs(skew) >= 1.0 else 0.0
        return skew

    async def paginate(self, path: str, query: Mapping[str, Any] | None = None, *,
                       auth: bool = False, page_size: int = 100) -> AsyncIterator[Any]:  # fmt: skip
        """Every row of a cursor-paginated list, page by page (``meta.after``)."""
        after: str | None = None
        while True:
            q = dict(query or {}) | {"page_size": page_size} | ({"after": after} if after else {})
            rows, meta = await self.request("GET", path, query=q, auth=auth)
            for row in rows or []:
                yield row
            after = meta.get("after")
            if not after:
                return

    # --- endpoints ---

    async def products(self, coins: str = "BTC,ETH") -> list[dict[str, Any]]:
        q = {"contract_types": "call_options,put_options", "underlying_asset_symbols": coins,
             "states": "live"}  # fmt: skip
        return [p async for p in self.paginate("/v2/products", q)]

    async def tickers(self, coin: str, expiry_ddmmyyyy: str | None = None) -> list[dict]:
        q = {"contract_types": "call_options,put_options", "underlying_asset_symbols": coin}
        if expiry_ddmmyyyy:
            q["expiry_date"] = expiry_ddmmyyyy
        rows, _ = await self.request("GET", "/v2/tickers", query=q)
        return list(rows or [])

    async def ticker(self, symbol: str) -> dict[str, Any]:
        row, _ = await self.request("GET", f"/v2/tickers/{symbol}")
        return row

    async def place_order(self, order: dict[str, Any]) -> dict[str, Any]:
        row, _ = await self.request("POST", "/v2/orders", body=order, auth=True)
        return row

    async def batch_orders(self, product_id: int, orders: list[dict]) -> list[dict]:
        rows, _ = await self.request("POST", "/v2/orders/batch", auth=True,
                                     body={"product_id": product_id, "orders": orders})  # fmt: skip
        return rows

    async def edit_order(self, order: dict[str, Any]) -> dict[str, Any]:
        row, _ = await self.request("PUT", "/v2/orders", body=order, auth=True)
        return row

    async def cancel_order(self, order_id: int, product_id: int) -> dict[str, Any]:
        row, _ = await self.request("DELETE", "/v2/orders", auth=True,
                                    body={"id": order_id, "product_id": product_id})  # fmt: skip
        return row

    async def order_by_client_id(self, client_order_id: str) -> dict[str, Any] | None:
        try:
            row, _ = await self.request("GET", f"/v2/orders/client_order_id/{client_order_id}",
                                        auth=True)  # fmt: skip
        except DeltaError as exc:
            if exc.status == 404:
                return None
            raise
        return row

    async def open_orders(self) -> list[dict[str, Any]]:
        return [o async for o in self.paginate("/v2/orders", auth=True)]

    async def order_history(self) -> list[dict[str, Any]]:
        return [o async for o in self.paginate("/v2/orders/history", auth=True)]

    async def positions(self) -> list[dict[str, Any]]:
        rows, _ = await self.request("GET", "/v2/positions/margined", auth=True)
        return list(rows or [])

    async def balances(self) -> list[dict[str, Any]]:
        rows, _ = await self.request("GET", "/v2/wallet/balances", auth=True)
        return list(rows or [])

    async def fills(self) -> list[dict[str, Any]]:
        return [f async for f in self.paginate("/v2/fills", auth=True)]

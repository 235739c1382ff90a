"""One Client Portal gateway session, shared by the broker and the streaming feed.

The gateway holds one brokerage session per login; a second REST client of our own would only
double the keep-alive traffic and race the re-authentication. So :class:`CpApiSession` owns the
HTTP client, the request helper (errors become one-line :class:`BrokerError`s naming the
endpoint, never the account), the ``/tickle`` keep-alive (at most one per ``tickle_s`` whoever
asks: the broker's poll and the feed both call :meth:`keepalive`) and the re-authentication
(``iserver/auth/status``; when it is not authenticated, ``iserver/auth/ssodh/init`` then
``iserver/accounts``, which the gateway requires before market data and orders). Conids are
resolved here too, once for both: an underlying by ``secdef/search``, an option by
``secdef/info`` for its month, strike and right (the row with its expiry and trading class).

Every request is paced below the gateway's limit (``max_rps``, 8 a second against IBKR's 10): a
chain's conid look-ups at start-up would otherwise burst past it. A 429 that still comes back
(another client of the same gateway) is waited out (``Retry-After``, else ``retry_s`` doubling:
1, 2, 4 s) and retried three times; then the call fails with a one-line error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import httpx

from kit.adapters.cpapi.parsing import option_conid, secdef_params, underlying_conid
from kit.core.model import Contract
from kit.execution.broker import BrokerError, OrderRejectedError

if TYPE_CHECKING:
    from kit.adapters.cpapi.broker import CpApiConfig

log = logging.getLogger(__name__)


class CpApiSession:
    """The gateway's HTTP client and session state (see the module docstring)."""

    def __init__(self, config: CpApiConfig, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:  # fmt: skip
        self.config = config
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._users = 0
        self._auth_lock = asyncio.Lock()
        self.session_id = ""  # the gateway's session token (``/tickle``): the socket's cookie
        self.last_tickle_s = 0.0  # loop time of the last tickle
        self.reauths = 0  # successful re-authentications (ssodh/init) since start
        self.conids: dict[Contract, int] = {}
        self.underlyings: dict[str, int] = {}
        self._next_slot = 0.0  # loop time the next request may go out (pacing)
        self.rate_limited = 0  # 429 answers received (each waited out and retried)

    @property
    def open(self) -> bool:
        return self._client is not None

    async def acquire(self) -> None:
        """Open the client (first user) and count the user: the last :meth:`release` closes."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.config.base_url, verify=self.config.verify_tls,
                timeout=self.config.timeout_s, transport=self._transport,
            )  # fmt: skip
        self._users += 1

    async def release(self) -> None:
        self._users = max(self._users - 1, 0)
        if self._users == 0 and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                   body: Any = None, order: bool = False) -> Any:  # fmt: skip
        """One request; failures become BrokerError naming the endpoint (a 4xx or an
        ``{"error"}`` answer to an order call is the order's rejection)."""
        if self._client is None:
            raise BrokerError("IBKR CP API: not connected (call connect() first)")
        where = f"{method} {path.replace(self.config.account_id, '{accountId}')}"
        try:
            for attempt in range(4):
                await self._pace()
                resp = await self._client.request(method, path, params=params, json=body)
                if resp.status_code != 429 or attempt == 3:
                    break
                self.rate_limited += 1
                wait = _retry_after(resp.headers.get("Retry-After"),
                                    self.config.retry_s * 2.0**attempt)  # fmt: skip
                log.warning("IBKR %s: HTTP 429 (rate limited): retrying in %.1f s", where, wait)
                await asyncio.sleep(wait)
            data = resp.json() if resp.content else None
        except httpx.TimeoutException:
            raise BrokerError(f"IBKR {where}: no answer in {self.config.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise BrokerError(f"IBKR {where}: gateway unreachable ({exc!r})") from None
        except ValueError:
            raise BrokerError(f"IBKR {where}: HTTP {resp.status_code}, not JSON") from None
        error = data.get("error") if isinstance(data, dict) else None
        if resp.status_code == 401:
            raise BrokerError(f"IBKR {where}: not authenticated: log in on the gateway's web page")
        if resp.status_code >= 400 or error:
            detail = error or resp.reason_phrase
            if order and resp.status_code < 500:
                raise OrderRejectedError(f"IBKR rejected the order: {detail}")
            raise BrokerError(f"IBKR {where}: HTTP {resp.status_code}: {detail}")
        return data

    async def _pace(self) -> None:
        """Wait for this request's slot: at most ``max_rps`` requests a second, in call order."""
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next_slot)
        self._next_slot = slot + 1.0 / self.config.max_rps
        if slot > now:
            await asyncio.sleep(slot - now)

    async def tickle(self) -> str:
        """``POST /tickle``: keeps the session and returns its token (also kept)."""
        self.last_tickle_s = asyncio.get_running_loop().time()
        data = await self.call("POST", "/tickle")
        if isinstance(data, dict) and data.get("session"):
            self.session_id = str(data["session"])
        return self.session_id

    async def keepalive(self) -> None:
        """Tickle when ``tickle_s`` has passed since the last one (by anyone)."""
        if asyncio.get_running_loop().time() - self.last_tickle_s >= self.config.tickle_s:
            await self.tickle()

    async def authenticate(self) -> dict[str, Any]:
        """Make sure the brokerage session is authenticated: status first, then one
        ``ssodh/init`` when it is not (an expired or competing session), then the accounts
        call the gateway needs before market data. Raises BrokerError when still refused."""
        async with self._auth_lock:
            auth = await self.call("POST", "/iserver/auth/status")
            if not (isinstance(auth, dict) and auth.get("authenticated")):
                why = auth.get("message") if isinstance(auth, dict) else auth
                log.warning("IBKR gateway session not authenticated (%s): re-authenticating", why)
                await self.call("POST", "/iserver/auth/ssodh/init",
                                body={"publish": True, "compete": True})  # fmt: skip
                auth = await self.call("POST", "/iserver/auth/status")
                if not (isinstance(auth, dict) and auth.get("authenticated")):
                    host = httpx.URL(self.config.base_url).host
                    msg = auth.get("message") if isinstance(auth, dict) else None
                    why = f" ({msg})" if msg else ""
                    raise BrokerError(f"IBKR gateway at {host} is not authenticated{why}: log "
                                      "in on its web page")  # fmt: skip
                self.reauths += 1
            accounts = await self.call("GET", "/iserver/accounts")
            if self.config.account_id not in (accounts or {}).get("accounts", []):
                raise BrokerError("IBKR_ACCOUNT_ID is not among the accounts of this session")
            await self.tickle()
            return auth

    async def underlying(self, symbol: str, *, options: bool = True) -> int:
        """The conid of ``symbol`` (with listed options, unless ``options`` is False: an index
        streamed for its price); OrderRejectedError when IBKR lists none."""
        if (und := self.underlyings.get(symbol)) is None:
            rows = await self.call("GET", "/iserver/secdef/search", params={"symbol": symbol})
            und = underlying_conid(rows, symbol)
            if und is None and not options:
                und = next((int(r["conid"]) for r in rows or [] if isinstance(r, dict)
                            and r.get("symbol") == symbol and r.get("conid")), None)  # fmt: skip
            if und is None:
                what = "options on" if options else "contract for"
                raise OrderRejectedError(f"IBKR lists no {what} {symbol}")
            self.underlyings[symbol] = und
        return und

    async def conid(self, c: Contract) -> int:
        """The option's conid (cached); OrderRejectedError when IBKR has no such option."""
        if (conid := self.conids.get(c)) is not None:
            return conid
        und = await self.underlying(c.underlying)
        rows = await self.call("GET", "/iserver/secdef/info", params=secdef_params(c, und))
        if (conid := option_conid(rows, c)) is None:
            raise OrderRejectedError(f"IBKR has no {c.root} {c.expiry} {c.strike:g}"
                                     f"{c.right.value} option (secdef/info)")  # fmt: skip
        self.conids[c] = conid
        return conid


def _retry_after(header: str | None, default: float) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds form), else ``default``; capped
    at a minute so a bad header cannot stall the desk."""
    try:
        wait = float(header) if header else default
    except ValueError:
        wait = default
    return min(max(wait, 0.0), 60.0) if wait == wait else default

"""IBKR Client Portal streaming market data (``smd``) as the desk's events (``--feed ibkr-cpapi``).

The wire behaviour follows IBKR's CP Web API v1 WebSocket documentation and the reference client
``ibind`` (``IbkrWsClient``), which is tested against the same emulator:

* before the socket: the REST session is made sure of (``iserver/auth/status``, re-authenticated
  by ``ssodh/init`` if needed, ``iserver/accounts``) by the :class:`CpApiSession` the feed shares
  with :class:`~kit.adapters.cpapi.broker.CpApiBroker`; its ``/tickle`` token is the socket's
  cookie ``api={"session": TOKEN}``;
* the socket (``/v1/api/ws``) must say ``sts`` authenticated before anything is subscribed; then
  ``smd+CONID+{"fields": [...]}`` per contract (no polling for prices), ``umd+CONID+{}`` to stop;
  conids come from ``secdef`` search/info (cached in the session);
* only changed fields arrive: :mod:`kit.adapters.cpapi.marketdata` merges them per conid and
  builds a :class:`~kit.core.model.Quote` when a book field changed, vendor
  :class:`~kit.core.model.Greeks` (``source="ibkr"``) when a Greek changed, an
  :class:`~kit.core.model.UnderlyingTick` for index/stock conids; unreadable fields are counted
  (:attr:`CpApiFeed.bad_fields`) and skipped, unreadable frames counted as malformed;
* keep-alive: ``tic`` on the socket and ``/tickle`` on REST every ``tic_s`` (60 s); a receive
  watchdog on the server's ``hb`` (every 10 s: 25 s of silence is STALE and a reconnect);
* ``sts`` authenticated false (a daily expiry, a competing login) closes the socket: the
  reconnect re-authenticates, resubscribes everything and backfills the gap from
  ``iserver/marketdata/snapshot`` (IBKR keeps no tick history for this API: the current
  values are what was missed).

Field 6509 (availability) is kept per key in :attr:`CpApiFeed.availability`; a key that is not
real time is reported as a per-key STALE status (``ibkr-cpapi:KEY``), so no automation runs on
delayed or frozen prices.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from websockets.asyncio.client import connect

from kit.adapters.base import FeedConfig, MalformedFrameError, StreamingFeed, SubKey
from kit.adapters.cpapi.marketdata import (
    GREEK_FIELDS,
    OPTION_FIELDS,
    QUOTE_FIELDS,
    UNDERLYING_FIELDS,
    ConidValues,
    greeks_of,
    merge,
    quote_of,
    tick_of,
)
from kit.adapters.cpapi.session import CpApiSession
from kit.core.clock import Clock
from kit.core.model import Contract, FeedState, Greeks
from kit.core.tasks import cancel
from kit.execution.broker import BrokerError, OrderRejectedError

log = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT_S = 25.0  # the gateway beats every ~10 s
SILENCE_GAP_S = 15.0  # a longer hole between frames on a live socket is backfilled
RENEW_S = 540.0  # IBKR ends a market-data stream after ~10 min: renewed at 9 (as ibind does)
STS_WAIT_S = 2.0  # for the socket's sts; then the REST status decides


def ws_url_of(base_url: str) -> str:
    """``https://localhost:5000/v1/api`` -> ``wss://localhost:5000/v1/api/ws``."""
    head, _, rest = base_url.rstrip("/").partition("://")
    return f"{'wss' if head == 'https' else 'ws'}://{rest}/ws"


class CpApiFeed(StreamingFeed):
    """Quotes, index prices and the vendor's Greeks from the gateway's socket."""

    def __init__(self, session: CpApiSession, *, clock: Clock | None = None,
                 feed_config: FeedConfig | None = None, ws_url: str | None = None,
                 tic_s: float = 60.0, renew_s: float = RENEW_S,
                 name: str = "ibkr-cpapi") -> None:  # fmt: skip
        config = feed_config or FeedConfig(liveness_timeout_s=HEARTBEAT_TIMEOUT_S,
                                           silence_gap_s=SILENCE_GAP_S)  # fmt: skip
        super().__init__(name, clock=clock, config=config)
        self.session = session
        self.ws_url = ws_url or ws_url_of(session.config.base_url)
        self.tic_s, self.renew_s = tic_s, renew_s
        self.renewals = 0
        self.conids: dict[SubKey, int] = {}
        self.keys: dict[int, SubKey] = {}
        self.values: dict[int, ConidValues] = {}
        self.availability: dict[SubKey, str] = {}
        self.greeks: dict[Contract, Greeks] = {}  # the latest vendor Greeks per contract
        self.bad_fields = 0
        self.auth_lost = 0  # sts authenticated false / competing, each one a re-authentication
        self.tics = 0
        self._acquired = False

    # --- lifecycle ---

    async def _on_start(self) -> None:
        await self.session.acquire()
        self._acquired = True

    async def _on_close(self) -> None:
        await super()._on_close()
        if self._acquired:
            self._acquired = False
            await self.session.release()

    async def _connect(self) -> Any:
        await self.session.authenticate()
        cookie = json.dumps({"session": self.session.session_id})
        tls: ssl.SSLContext | None = None
        if self.ws_url.startswith("wss:") and not self.session.config.verify_tls:
            tls = ssl.create_default_context()
            tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # self-signed gateway
        conn = await connect(self.ws_url, additional_headers={"Cookie": f"api={cookie}"},
                             ssl=tls, compression=None, open_timeout=10, ping_interval=None,
                             max_size=2**22)  # fmt: skip
        try:
            await self._confirmed(conn)
        except BaseException:
            await self._close_conn(conn)
            raise
        return conn

    async def _confirmed(self, conn: Any) -> None:
        """Nothing is subscribed before the session is confirmed: by the socket's ``sts``, or
        (a socket that says nothing for ``STS_WAIT_S``, as ibind's health check does) by the
        REST status."""
        try:
            async with asyncio.timeout(STS_WAIT_S):
                while True:
                    try:
                        doc = _json(await conn.recv())
                    except MalformedFrameError:
                        self.stats.malformed += 1  # counted, never fatal
                        continue
                    if isinstance(doc, dict) and doc.get("topic") == "sts":
                        if (doc.get("args") or {}).get("authenticated"):
                            return
                        raise BrokerError("IBKR socket: session not authenticated (sts)")
        except TimeoutError:
            auth = await self.session.call("POST", "/iserver/auth/status")
            if not (isinstance(auth, dict) and auth.get("authenticated")):
                why = "no sts and the session is not authenticated"
                raise BrokerError(f"IBKR socket: {why}") from None

    # --- subscriptions ---

    async def _resolve(self, key: SubKey) -> int | None:
        if (conid := self.conids.get(key)) is not None:
            return conid
        try:
            if isinstance(key, Contract):
                conid = await self.session.conid(key)
            else:
                conid = await self.session.underlying(key, options=False)
        except OrderRejectedError as exc:  # no such contract at IBKR: refused, not retried
            self._reject(str(exc), key)
            return None
        self.conids[key], self.keys[conid] = conid, key
        return conid

    async def _send_subscribe(self, conn: Any, keys: Sequence[SubKey], add: bool) -> None:
        for key in keys:
            if (conid := await self._resolve(key)) is None:
                continue
            if add:
                fields = OPTION_FIELDS if isinstance(key, Contract) else UNDERLYING_FIELDS
                await conn.send(f"smd+{conid}+" + json.dumps({"fields": list(fields)}))
            else:
                await conn.send(f"umd+{conid}+{{}}")

    # --- frames ---

    async def _frames(self, conn: Any) -> AsyncIterator[Any]:
        keepalive = asyncio.create_task(self._keepalive(conn), name=f"{self.name}:tic")
        try:
            async for message in conn:
                yield message
        finally:
            await cancel(keepalive)

    async def _keepalive(self, conn: Any) -> None:
        """``tic`` on the socket and ``/tickle`` on REST (shared with the broker); every
        ``renew_s`` the subscriptions are sent again before IBKR's 10-minute cut-off."""
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while True:
            await asyncio.sleep(min(self.tic_s, self.renew_s))
            try:
                await conn.send("tic")
                self.tics += 1
                if loop.time() - renewed >= self.renew_s:
                    renewed = loop.time()
                    self.renewals += 1
                    await self._send_subscribe(conn, list(self._subs), True)
                await self.session.keepalive()
            except BrokerError as exc:
                log.warning("%s: tickle failed: %s", self.name, exc)

    def _parse(self, frame: Any) -> Iterable[Any]:
        doc = _json(frame)
        if not isinstance(doc, dict):
            raise MalformedFrameError(f"not a JSON object: {str(frame)[:200]!r}")
        topic = str(doc.get("topic") or "")
        if topic.startswith("smd+"):
            if "error" in doc:
                self._reject(str(doc["error"]), topic)
                return ()
            return self._market_data(doc)
        if topic == "sts":
            args = doc.get("args") or {}
            if args.get("authenticated") is False or args.get("competing") is True:
                self._session_lost(args)
        return ()  # system, hb, tic replies and other topics carry no market data

    def _market_data(self, doc: dict[str, Any]) -> list[Any]:
        try:
            conid = int(doc.get("conid") or str(doc["topic"]).split("+")[1])
        except (KeyError, IndexError, ValueError):
            raise MalformedFrameError(f"smd without a conid: {str(doc)[:200]!r}") from None
        key = self.keys.get(conid)
        if key is None:
            return []  # unsubscribed meanwhile
        state = self.values.setdefault(conid, ConidValues())
        was = state.availability
        update = merge(state, doc, self.clock.now_ns())
        if update.bad:
            self.bad_fields += len(update.bad)
            if self.bad_fields <= 20 or self.bad_fields % 1000 == 0:
                log.warning("%s: conid %s: unreadable field(s) %s kept their previous value",
                            self.name, conid, ", ".join(update.bad))  # fmt: skip
        if state.availability != was:
            self._availability(key, state.availability, was)
        out: list[Any] = []
        if not isinstance(key, Contract):
            if "31" in update.changed and (tick := tick_of(key, state)) is not None:
                out.append(tick)
            return out
        if update.changed & QUOTE_FIELDS and (q := quote_of(key, state)) is not None:
            out.append(q)
        if update.changed & GREEK_FIELDS and (g := greeks_of(key, state)) is not None:
            self.greeks[key] = g
            out.append(g)
        return out

    def _availability(self, key: SubKey, text: str, was: str) -> None:
        self.availability[key] = text
        if text == "real-time":
            if was:  # back from delayed or frozen (a first real-time update says nothing)
                self._key_status(key, FeedState.LIVE, "market data real-time")
            return
        log.warning("%s: %s market data is %s", self.name, key, text)
        self._key_status(key, FeedState.STALE, f"market data {text} (IBKR field 6509)")

    def _session_lost(self, args: dict[str, Any]) -> None:
        """The gateway's session ended: close the socket; the reconnect re-authenticates."""
        self.auth_lost += 1
        why = "competing session" if args.get("competing") else "session not authenticated"
        log.warning("%s: %s (sts %s): re-authenticating", self.name, why, args.get("message"))
        self._note_gap()
        if self._conn is not None:
            asyncio.get_running_loop().create_task(self._close_conn(self._conn))

    # --- gaps ---

    async def _fetch_history(self, key: SubKey, start_ns: int) -> list[Any]:
        """The current values from ``iserver/marketdata/snapshot``: what the gap missed."""
        conid = self.conids.get(key)
        if conid is None:
            return []
        fields = OPTION_FIELDS if isinstance(key, Contract) else UNDERLYING_FIELDS
        rows = await self.session.call("GET", "/iserver/marketdata/snapshot",
                                       params={"conids": str(conid),
                                               "fields": ",".join(fields)})  # fmt: skip
        out: list[Any] = []
        for row in rows if isinstance(rows, list) else []:
            if not isinstance(row, dict):
                continue
            state = ConidValues()
            merge(state, row, self.clock.now_ns())
            event = (quote_of(key, state) if isinstance(key, Contract)
                     else tick_of(key, state))  # fmt: skip
            if event is not None and event.ts_ns >= start_ns:
                out.append(event)
        return out


def _json(frame: Any) -> Any:
    try:
        return json.loads(frame)
    except (ValueError, TypeError):
        raise MalformedFrameError(f"not JSON: {str(frame)[:200]!r}") from None

"""tastytrade market data: DXLink ``Quote``, ``Greeks``, ``Summary`` and ``Trade`` as desk events.

Why not the SDK's ``DXLinkStreamer`` itself: it has no reconnect and no liveness check (a silent
socket waits forever), its reader task dies on the first frame it cannot map, rows it cannot
validate vanish uncounted, and one ``subscribe`` sends every symbol in one message (a large chain
is closed with 1009). This feed speaks the same wire protocol (:mod:`.dxlink`; the same
messages, the SDK's channel numbers) on the project's streaming base
(:class:`~kit.adapters.base.StreamingFeed`), and uses the SDK for what it does well: the OAuth
session and the ``/api-quote-tokens`` call (:class:`~.api.TastyApi`). What it adds:

* liveness: no inbound message (data or the server's KEEPALIVE) for ``liveness_s`` (60 s,
  ``TT_LIVENESS_S``) -> STALE, the socket is closed and reopened with backoff, with a fresh
  quote token, and every subscription is replayed (DXLink then sends the current value of each,
  so the book's marks and Greeks are whole again: DXLink keeps no tick history to backfill);
* a token refused mid-stream (``AUTH_STATE UNAUTHORIZED`` after AUTHORIZED) reconnects the same
  way, the REST session refreshing its own token on a 401;
* ``FEED_SUBSCRIPTION`` messages chunked to ``chunk_bytes`` (16 kB) whatever the chain's size;
* rows with NaN prices or Greeks, unknown types and undecodable frames are counted
  (``stats.malformed``) and logged (rate-limited), never fatal.

Events: option Quote and Trade, an index's or stock's :class:`UnderlyingTick` (its Trade price
or Quote mid), the vendor's :class:`~kit.core.model.Greeks` with ``source="tastytrade"`` (also kept
in :attr:`TastytradeFeed.greeks`; tastytrade publishes no vanna or charm: NaN) and open interest
from Summary in :attr:`TastytradeFeed.open_interest`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from kit.adapters.base import FeedConfig, MalformedFrameError, StreamingFeed, SubKey
from kit.adapters.tastytrade import dxlink
from kit.adapters.tastytrade.api import TastyApi
from kit.core.clock import Clock
from kit.core.model import Contract, Event, Greeks, ModelError
from kit.core.tasks import cancel

log = logging.getLogger(__name__)

KEEPALIVE_EVERY_S = 30.0  # the SDK's interval; the server's timeout is 60 s


class DXLinkConnection:
    """One authorised DXLink socket with its four channels open and set up, and the task that
    sends our KEEPALIVEs."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.fields: dict[str, tuple[str, ...]] = dict(dxlink.FEED_FIELDS)
        self._beat: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, token: str, timeout_s: float = 10.0,
                   kinds: Sequence[str] = dxlink.STREAM_TYPES) -> DXLinkConnection:  # fmt: skip
        """SETUP, AUTH, CHANNEL_REQUEST per type, FEED_SETUP; ConnectionError if the token is
        refused or the server does not answer within ``timeout_s``."""
        ws = await connect(url, open_timeout=timeout_s, ping_interval=None, max_size=2**24,
                           compression=None)  # fmt: skip
        conn = cls(ws)
        try:
            async with asyncio.timeout(timeout_s):
                await conn._handshake(token, kinds)
        except BaseException:
            await ws.close()
            raise
        conn._beat = asyncio.get_running_loop().create_task(conn._keepalive())
        return conn

    async def _handshake(self, token: str, kinds: Sequence[str]) -> None:
        ws = self.ws
        await ws.send(json.dumps(dxlink.setup()))
        await ws.send(json.dumps(dxlink.auth(token)))
        for kind in kinds:
            await ws.send(json.dumps(dxlink.channel_request(kind)))
        opened: set[int] = set()
        authed = False
        while not (authed and len(opened) == len(kinds)):
            doc = dxlink.decode(await ws.recv())
            if doc["type"] == "AUTH_STATE" and doc.get("state") == "AUTHORIZED":
                authed = True
            elif doc["type"] == "ERROR":
                raise ConnectionError(f"DXLink refused: {doc.get('error')}: {doc.get('message')}")
            elif doc["type"] == "CHANNEL_OPENED":
                opened.add(int(doc["channel"]))
        for kind in kinds:
            await ws.send(json.dumps(dxlink.feed_setup(kind, self.fields[kind])))

    async def _keepalive(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(KEEPALIVE_EVERY_S)
                await self.ws.send(json.dumps(dxlink.keepalive()))

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def close(self) -> None:
        await cancel(self._beat)
        await self.ws.close()


class TastytradeFeed(StreamingFeed):
    """Option quotes, underlying prices, vendor Greeks and open interest from DXLink."""

    def __init__(
        self,
        api: TastyApi,
        *,
        clock: Clock | None = None,
        feed_config: FeedConfig | None = None,
        owns_api: bool = False,
        name: str = "tastytrade",
    ) -> None:
        cfg = api.config
        feed_config = feed_config or FeedConfig(liveness_timeout_s=cfg.liveness_s)
        super().__init__(name, clock=clock, config=feed_config)
        self.api, self._owns_api = api, owns_api
        self.chunk_bytes = cfg.chunk_bytes
        self.greeks: dict[Contract, Greeks] = {}
        self.open_interest: dict[Contract, float] = {}
        self.errors: list[str] = []  # the server's ERROR messages
        self.sent_messages = 0  # FEED_SUBSCRIPTION messages sent (chunks)
        self._bad_logged = 0
        self._closing: asyncio.Task[None] | None = None  # a socket whose token was refused

    async def _on_close(self) -> None:
        await super()._on_close()
        if self._owns_api:
            await self.api.aclose()

    async def _connect(self) -> DXLinkConnection:
        url, token = await self.api.quote_token()
        cfg = self.api.config  # a handshake silent for the liveness window is as dead as a socket
        return await DXLinkConnection.open(url, token, min(cfg.timeout_s, max(cfg.liveness_s, 1)))

    async def _send_subscribe(self, conn: Any, keys: Sequence[SubKey], add: bool) -> None:
        for kind, symbols in dxlink.symbols_for(keys).items():
            for text in dxlink.subscriptions(kind, symbols, add=add, max_bytes=self.chunk_bytes):
                await conn.send(text)
                self.sent_messages += 1

    async def _frames(self, conn: Any) -> AsyncIterator[Any]:
        async for message in conn.ws:
            yield message

    def _parse(self, frame: Any) -> Iterable[Event]:
        try:
            doc = dxlink.decode(frame)
            kind = doc["type"]
            if kind == "FEED_DATA":
                conn = self._conn
                fields = conn.fields if conn is not None else dxlink.FEED_FIELDS
                return self._rows(dxlink.compact_rows(doc.get("data"), fields))
            if kind == "FEED_CONFIG" and self._conn is not None:
                self._conn.fields.update(dxlink.config_fields(doc))
            elif kind == "AUTH_STATE" and doc.get("state") == "UNAUTHORIZED":
                log.warning("%s: DXLink token no longer authorised; reconnecting", self.name)
                if self._conn is not None:  # ends the frame loop: a new token, resubscribed
                    self._closing = asyncio.get_running_loop().create_task(self._conn.ws.close())
            elif kind == "ERROR":
                self.errors.append(f"{doc.get('error')}: {doc.get('message')}")
                self._reject(str(doc.get("error")), doc.get("message"))
        except dxlink.DXLinkError as exc:
            raise MalformedFrameError(str(exc)) from None
        return ()

    def _rows(self, rows: list[tuple[str, dict[str, Any]]]) -> list[Event]:
        now = self.clock.now_ns()
        out: list[Any] = []
        for kind, row in rows:
            try:
                ev = dxlink.event_of(kind, row, now)
            except (ModelError, TypeError, ValueError) as exc:
                self.stats.malformed += 1
                if self._bad_logged < 20 or self.stats.malformed % 1000 == 0:
                    self._bad_logged += 1
                    log.warning("%s: bad %s row for %s: %s", self.name, kind,
                                row.get("eventSymbol"), exc)  # fmt: skip
                continue
            if ev is None:
                continue
            if isinstance(ev, tuple):
                self.open_interest[ev[0]] = ev[1]
                continue
            if isinstance(ev, Greeks):
                self.greeks[ev.contract] = ev
            out.append(ev)
        return out

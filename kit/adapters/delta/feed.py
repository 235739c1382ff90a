"""Delta Exchange market data: the public socket's ``ticker`` channel as the desk's events.

Connects to ``DELTA_WS_URL`` (the India testnet by default), sends ``enable_heartbeat`` and
subscribes ``ticker`` (and ``mark_price`` when asked) for the option symbols of the subscribed
contracts (``C-BTC-90000-310125``). Each ticker frame becomes a :class:`~kit.core.model.Quote`
(top of book) and an :class:`~kit.core.model.UnderlyingTick` of its coin (``spot_price``); the
exchange's Greeks and mark IV are kept in :attr:`DeltaFeed.greeks`, the mark in
:attr:`DeltaFeed.marks`. Contract sizes come from the products (``contract_value``), never from a
constant: :meth:`DeltaFeed.load_products` reads them once before subscribing.

Liveness: Delta sends a ``heartbeat`` every 30 s once enabled, so 35 s without any frame is a dead
connection (the shared watchdog of :class:`~kit.adapters.base.StreamingFeed` closes it and the
base class reconnects with backoff and replays the subscriptions). After a reconnect the gap is
filled from REST tickers (Delta keeps no quote history: the current book is what was missed).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from websockets.asyncio.client import connect

from kit.adapters.base import FeedConfig, MalformedFrameError, StreamingFeed, SubKey
from kit.adapters.delta.client import DeltaClient
from kit.adapters.delta.config import DeltaConfig
from kit.adapters.delta.parsing import (
    DeltaError,
    contract_of,
    greeks_of,
    num,
    quote_of,
    ticker_ts_ns,
)
from kit.core.clock import Clock
from kit.core.model import Contract, Event, Greeks, ModelError, UnderlyingTick
from kit.core.symbology import from_delta, to_delta

log = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT_S = 35.0  # Delta beats every 30 s


class DeltaFeed(StreamingFeed):
    """Option quotes, coin prices and exchange Greeks from Delta's public socket."""

    def __init__(
        self,
        config: DeltaConfig | None = None,
        *,
        clock: Clock | None = None,
        feed_config: FeedConfig | None = None,
        client: DeltaClient | None = None,
        owns_client: bool | None = None,
        channels: tuple[str, ...] = ("ticker",),
        name: str = "delta",
    ) -> None:
        feed_config = feed_config or FeedConfig(liveness_timeout_s=HEARTBEAT_TIMEOUT_S)
        super().__init__(name, clock=clock, config=feed_config)
        self.delta = config or DeltaConfig.from_env()
        self.rest = client or DeltaClient(self.delta)
        self._own_client = client is None if owns_client is None else owns_client
        self.channels = channels
        self.contracts: dict[str, Contract] = {}  # symbol -> contract sized by its product
        self.greeks: dict[Contract, Greeks] = {}
        self.marks: dict[Contract, float] = {}
        self.mark_ts: dict[Contract, int] = {}  # when each mark arrived (the feed's clock)
        self.spots: dict[str, float] = {}
        self.errors: list[str] = []  # the socket's error messages (refused channels)
        self._unconfirmed = 0  # subscribe messages on this connection not yet answered

    async def load_products(self) -> dict[str, Contract]:
        """Every live BTC/ETH option, by symbol, sized by its ``contract_value``."""
        for p in await self.rest.products():
            try:
                self.contracts[p["symbol"]] = contract_of(p)
            except ModelError as exc:
                log.warning("%s: skipping product %s: %s", self.name, p.get("symbol"), exc)
        return self.contracts

    def contract(self, symbol: str) -> Contract:
        c = self.contracts.get(symbol)
        if c is None:
            c = self.contracts[symbol] = from_delta(symbol)
        return c

    async def _on_close(self) -> None:
        await super()._on_close()
        if self._own_client:
            await self.rest.aclose()

    async def _connect(self) -> Any:
        self._unconfirmed = 0  # a dead connection's unanswered requests are not waited for
        conn = await connect(self.delta.ws_url, compression=None, open_timeout=10,
                             ping_interval=None, max_size=2**22)  # fmt: skip
        await conn.send(json.dumps({"type": "enable_heartbeat"}))
        return conn

    async def _send_subscribe(self, conn: Any, keys: Sequence[SubKey], add: bool) -> None:
        symbols = [to_delta(k) for k in keys if isinstance(k, Contract)]
        if not symbols:
            return  # coins arrive with every ticker (spot_price)
        for k in keys:
            if isinstance(k, Contract):
                self.contracts.setdefault(to_delta(k), k)
        channels = [{"name": ch, "symbols": [f"MARK:{s}" for s in symbols] if ch == "mark_price"
                     else symbols} for ch in self.channels]  # fmt: skip
        kind = "subscribe" if add else "unsubscribe"
        self._unconfirmed += 1
        await conn.send(json.dumps({"type": kind, "payload": {"channels": channels}}))

    def _stream_ready(self) -> bool:
        # each (un)subscribe is answered by one "subscriptions" message; the gap's REST tickers
        # are read once the socket streams every symbol (base.StreamingFeed._stream_ready)
        return self._unconfirmed <= 0

    async def _frames(self, conn: Any) -> AsyncIterator[Any]:
        async for message in conn:
            yield message

    def _parse(self, frame: Any) -> Iterable[Event]:
        try:
            doc = json.loads(frame)
            kind = doc.get("type")
        except (ValueError, AttributeError):
            raise MalformedFrameError(f"not JSON: {str(frame)[:200]!r}") from None
        try:
            if kind == "ticker":
                return self._ticker(doc)
            if kind == "mark_price":
                c = self.contract(str(doc.get("symbol", "")).removeprefix("MARK:"))
                self.marks[c] = num(doc.get("price"))
                self.mark_ts[c] = self.clock.now_ns()
                return ()
            if kind == "subscriptions":
                self._unconfirmed -= 1
                return ()
            if kind in ("heartbeat", "pong"):
                return ()
            if kind == "error":
                self.errors.append(str(doc.get("message")))
                self._reject(str(doc.get("message")), doc.get("channel"))
                return ()
        except (ModelError, TypeError, ValueError) as exc:
            raise MalformedFrameError(f"{exc}: {str(frame)[:200]!r}") from None
        return ()  # other channels are not market data

    def _ticker(self, doc: dict[str, Any]) -> list[Event]:
        c = self.contract(str(doc.get("symbol")))
        out: list[Event] = []
        spot = num(doc.get("spot_price"))
        if spot > 0 and self.spots.get(c.root) != spot:
            self.spots[c.root] = spot
            out.append(UnderlyingTick(c.root, spot, ticker_ts_ns(doc)))
        q = quote_of(c, doc)
        if q is not None:
            out.append(q)
        g = greeks_of(c, doc)
        if g is not None:
            self.greeks[c] = g
        mark = num(doc.get("mark_price"))
        if mark == mark:
            self.marks[c] = mark
            self.mark_ts[c] = self.clock.now_ns()
        return out

    async def _fetch_history(self, key: SubKey, start_ns: int) -> list[Event]:
        """Delta keeps no quote history: the gap is filled with the current REST ticker."""
        if not isinstance(key, Contract):
            return []
        try:
            doc = await self.rest.ticker(to_delta(key))
        except DeltaError as exc:
            log.warning("%s: ticker %s after a gap: %s", self.name, to_delta(key), exc)
            return []
        return [e for e in self._ticker(doc) if e.ts_ns >= start_ns]

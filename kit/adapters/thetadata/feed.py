"""ThetaData Terminal adapter: REST v3 (port 25503) and the streaming socket (port 25520).

The Terminal is a local process that holds the vendor connection; this adapter talks to it on
loopback. Formats follow the vendor docs (docs.thetadata.us):

- Stream: one WebSocket to ``ws://HOST:25520/v1/events`` (the Terminal allows one). Requests are
  ``{"msg_type": "STREAM", "sec_type": "OPTION", "req_type": "QUOTE", "add": true, "id": N,
  "contract": {"root", "expiration": YYYYMMDD, "strike": 1/10 cent, "right": "C"|"P"}}`` with a
  strictly increasing ``id`` (the Terminal needs it to resubscribe after its own reconnects);
  each is acknowledged by a ``REQ_RESPONSE`` (SUBSCRIBED / ERROR / MAX_STREAMS_REACHED /
  INVALID_PERMS). ``STATUS`` frames arrive every second and are our liveness signal; QUOTE and
  TRADE frames carry ``ms_of_day`` (ms since midnight New York) and ``date``.
- REST v3: ``symbol``, ``expiration`` YYYYMMDD, ``strike`` in dollars, ``right`` call/put;
  ``format=csv`` (default) or ``ndjson``; timestamps are New York wall time without an offset.
  Errors are HTTP codes with a plain-text body: 472 NO_DATA means "empty", 429/474/571 are
  retried with backoff, the rest raise :class:`ThetaDataError` with the code's name.

ThetaData streams no Greeks: the desk computes them (``kit.core.pricing``). Index prices are polled
from ``/v3/index/snapshot/price`` (subscribe with the symbol, e.g. ``"SPX"``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace
from typing import Any

import msgspec
from websockets.asyncio.client import connect

from kit.adapters.base import FeedConfig, MalformedFrameError, StreamingFeed, SubKey
from kit.adapters.thetadata.config import ThetaDataConfig
from kit.adapters.thetadata.parsing import (
    FrameContract,
    Header,
    decode_frame,
    midnight_ns,
    ms_of_day_to_ns,
)
from kit.adapters.thetadata.rest import ThetaDataREST
from kit.adapters.wsbatch import BatchingConnection
from kit.core.clock import Clock
from kit.core.model import Contract, Event, ModelError, Quote, Trade
from kit.core.symbology import from_thetadata, to_thetadata
from kit.core.tasks import cancel

log = logging.getLogger(__name__)

HEARTBEAT_GAP_S = 1.5  # STATUS frames come every second: a longer hole is a silence to backfill


class ThetaDataFeed(StreamingFeed):
    """Streams option quotes (and optionally trades) from the Terminal; polls index prices."""

    def __init__(
        self,
        config: ThetaDataConfig | None = None,
        *,
        clock: Clock | None = None,
        feed_config: FeedConfig | None = None,
        name: str = "thetadata",
    ) -> None:
        feed_config = feed_config or FeedConfig(liveness_timeout_s=3.0)
        if feed_config.silence_gap_s is None:  # the Terminal's STATUS heartbeat is 1 Hz
            feed_config = replace(feed_config, silence_gap_s=HEARTBEAT_GAP_S)
        super().__init__(name, clock=clock, config=feed_config)
        self.td = config or ThetaDataConfig.from_env()
        self.rest = ThetaDataREST(self.td, clock=self.clock)
        self._next_id = 0
        self._pending: dict[int, tuple[SubKey, bool]] = {}
        self._contracts: dict[tuple[str, int, int, str], Contract] = {}
        self._poller: asyncio.Task[None] | None = None

    async def _on_start(self) -> None:
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_indices(), name=f"{self.name}:index")

    async def _on_close(self) -> None:
        poller, self._poller = self._poller, None
        await cancel(poller)
        await super()._on_close()
        await self.rest.aclose()

    async def _connect(self) -> Any:
        self._pending.clear()  # a dead connection's unanswered requests are not waited for
        return await connect(self.td.ws_url, compression=None, open_timeout=self.td.timeout_s,
                             max_size=2**20, ping_interval=None,
                             create_connection=BatchingConnection)  # fmt: skip

    async def _send_subscribe(self, conn: Any, keys: Sequence[SubKey], add: bool) -> None:
        for key in keys:
            if not isinstance(key, Contract):
                continue  # index symbols are polled over REST
            for req_type in ("QUOTE", "TRADE") if self.td.stream_trades else ("QUOTE",):
                req_id, self._next_id = self._next_id, self._next_id + 1
                self._pending[req_id] = (key, add)
                await conn.send(json.dumps({
                    "msg_type": "STREAM", "sec_type": "OPTION", "req_type": req_type, "add": add,
                    "id": req_id, "contract": to_thetadata(key),
                }))  # fmt: skip

    def _stream_ready(self) -> bool:
        # the Terminal streams a contract from its REQ_RESPONSE on: a quote change before it
        # is on neither the stream nor (if fetched earlier) the backfill, so wait for them all
        return not self._pending

    def _frames(self, conn: Any) -> AsyncIterator[Any]:
        return conn.batches()  # what each socket read brought, at once (kit.adapters.wsbatch)

    def _contract(self, c: FrameContract) -> Contract:
        key = (c.root, c.expiration, c.strike, c.right)
        contract = self._contracts.get(key)
        if contract is None:
            contract = self._contracts[key] = from_thetadata(
                c.root, c.expiration, c.strike, c.right
            )
        return contract

    def _parse(self, frame: Any) -> Iterable[Event]:
        try:
            f = decode_frame(frame)
            kind = f.header.type
            if kind == "QUOTE" and (q := f.quote) is not None and (c := f.contract) is not None:
                # the per-quote path, paid 100k+ times a second: the contract cache and the
                # day's midnight (lru-cached) read inline
                contract = self._contracts.get((c.root, c.expiration, c.strike, c.right))
                ts = midnight_ns(q.date) + q.ms_of_day * 1_000_000
                return (
                    Quote(contract or self._contract(c), q.bid, q.ask, q.bid_size, q.ask_size, ts),
                )
            if kind == "TRADE" and f.trade is not None and f.contract is not None:
                t = f.trade
                ts = ms_of_day_to_ns(t.date, t.ms_of_day)
                return (Trade(self._contract(f.contract), t.price, t.size, ts),)
            if kind == "STATUS":
                if f.header.status == "CONNECTED":
                    self.vendor_up()
                else:
                    self.vendor_down(f"Terminal status {f.header.status}")
                return ()
            if kind == "REQ_RESPONSE":
                self._ack(f.header)
                return ()
            if kind == "OHLC":
                return ()
        except (msgspec.DecodeError, msgspec.ValidationError, ModelError) as exc:
            raise MalformedFrameError(f"{exc}: {str(frame)[:200]!r}") from None
        raise MalformedFrameError(f"unexpected frame: {str(frame)[:200]!r}")

    def _ack(self, header: Header) -> None:
        key, add = (
            self._pending.pop(header.req_id, (None, True))
            if header.req_id is not None
            else (None, True)
        )
        if header.response in (None, "SUBSCRIBED"):
            return
        self._reject(str(header.response), f"{'subscribe' if add else 'unsubscribe'} {key}")

    async def _fetch_history(self, key: SubKey, start_ns: int) -> list[Event]:
        if not isinstance(key, Contract):
            return []
        return list(await self.rest.history_quotes(key, start_ns))

    async def _poll_indices(self) -> None:
        while True:
            for sym in [k for k in self._subs if isinstance(k, str)]:
                try:
                    tick = await self.rest.index_price(sym)
                except Exception as exc:  # one bad answer must not stop the polling
                    log.warning("%s: index %s: %s", self.name, sym, exc)
                    continue
                if tick is not None and self.in_window(tick):
                    self._sink.emit(tick)
            await self.clock.sleep(self.td.index_poll_s)

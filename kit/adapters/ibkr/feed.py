"""Interactive Brokers market data through TWS / IB Gateway (``ib_async``): ``--feed ibkr``.

Options are qualified once (``qualifyContracts``, conIds cached) and streamed with
``reqMktData(contract, "101")`` (101: open interest); the index underlyings (SPX, NDX, VIX, RUT)
as ``Index(symbol, "CBOE")``. Each changed ticker becomes a :class:`~kit.core.model.Quote`
(bid/ask and sizes), an :class:`~kit.core.model.UnderlyingTick` (an index's last) and the
vendor's model Greeks as :class:`~kit.core.model.Greeks` with ``source="ibkr"`` (the desk
computes its own and keeps these beside them); open interest is kept in
:attr:`IbkrFeed.open_interest`.
Events are stamped on the feed's clock: TWS's ticks carry the wall time of arrival, and the desk
runs on the vendor's market time (:func:`kit.adapters.ibkr.wiring.ibkr_feed`).

Market data lines: IBKR allows ``market_data_lines`` (100 by default) simultaneous lines per
client; a subscription beyond that is refused by the feed with a message saying how many the
book asked for, never silently dropped by TWS (error 101). Delayed data (error 10167, market
data type 3) is flagged in :attr:`IbkrFeed.notices` and the feed's status detail; no permission
(354) makes the contract's status STALE with IBKR's text.

Connection life is :class:`~kit.adapters.ibkr.connection.IbConnection` (shared with the
broker): the feed waits for it in ``_connect``, hears its drops (the base class then goes
DISCONNECTED, reconnects and replays every subscription), its probes (heartbeats for the
liveness watchdog: a silent TWS goes STALE and is dropped) and TWS's 1100/2110 (vendor down,
automation frozen), 1102 (back, data maintained) and 1101 (back, data lost: resubscribed).
After any gap the current ticker of each contract is the backfill (TWS keeps no quote history
for this).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ib_async import Contract as IbContract
from ib_async import Index, Ticker

from kit.adapters.base import FeedConfig, StreamingFeed, SubKey
from kit.adapters.ibkr.config import IbkrConfig
from kit.adapters.ibkr.connection import IbConnection
from kit.core.clock import Clock
from kit.core.model import Contract, Event, FeedState, Greeks, ModelError, Quote, UnderlyingTick
from kit.core.symbology import from_ibkr, to_ibkr

log = logging.getLogger(__name__)

INDICES = ("SPX", "NDX", "VIX", "RUT")
DOWN_CODES = {1100: "TWS lost its connection to IBKR (1100)",
              2110: "TWS lost its connection to IBKR's servers (2110)"}  # fmt: skip


def index_contract(symbol: str) -> Index:
    return Index(symbol, "CBOE", "USD")


@dataclass
class _Link:
    """One connection generation as the base class sees it: a queue of frames."""

    generation: int
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)


class IbkrFeed(StreamingFeed):
    """Quotes, index prices and IBKR's model Greeks from TWS / IB Gateway."""

    def __init__(self, config: IbkrConfig | None = None, *, clock: Clock | None = None,
                 feed_config: FeedConfig | None = None, connection: IbConnection | None = None,
                 name: str = "ibkr") -> None:  # fmt: skip
        self.ibkr = config or IbkrConfig.from_env()
        feed_config = feed_config or FeedConfig(liveness_timeout_s=3 * self.ibkr.probe_s + 1)
        super().__init__(name, clock=clock, config=feed_config)
        self.conn = connection or IbConnection.shared(self.ibkr)
        self.greeks: dict[Contract, Greeks] = {}
        self.open_interest: dict[Contract, float] = {}
        self.notices: dict[int, str] = {}  # TWS codes heard (10167 delayed, 354, 101 ...)
        self.qualified: dict[SubKey, IbContract] = {}
        self._tickers: dict[SubKey, Ticker] = {}
        self._keys: dict[int, SubKey] = {}  # conId -> key
        self._req_keys: dict[int, SubKey] = {}  # this feed's reqMktData ids -> key
        self._link: _Link | None = None
        self._closing = False
        self._acquired = False

    @property
    def ib(self):
        return self.conn.ib

    # --- lifecycle ---

    async def _on_start(self) -> None:
        self._closing = False
        if not self._acquired:
            self._acquired = True
            await self.conn.acquire(wait=False)
        self.conn.listeners.append(self._on_conn)
        self.ib.pendingTickersEvent += self._on_tickers
        self.ib.errorEvent += self._on_error

    async def close(self) -> None:
        self._closing = True  # the connection is shared: closing the feed must not drop it
        await super().close()

    async def _on_close(self) -> None:
        await super()._on_close()
        self.ib.pendingTickersEvent -= self._on_tickers
        self.ib.errorEvent -= self._on_error
        if self._on_conn in self.conn.listeners:
            self.conn.listeners.remove(self._on_conn)
        if self._acquired:
            self._acquired = False
            await self.conn.release()

    async def _connect(self) -> _Link:
        await self.conn.wait_up(self.ibkr.timeout_s)
        self._tickers.clear()
        self._link = _Link(self.conn.generation)
        return self._link

    async def _close_conn(self, conn: Any) -> None:
        if self._link is conn:
            self._link = None
        current = isinstance(conn, _Link) and conn.generation == self.conn.generation
        if current and not self._closing:
            self.conn.drop("no market data within the feed's liveness timeout")

    async def _frames(self, conn: Any) -> AsyncIterator[Any]:
        while True:
            item = await conn.queue.get()
            if item is None:
                return
            yield item

    # --- subscriptions ---

    async def _send_subscribe(self, conn: Any, keys: Sequence[SubKey], add: bool) -> None:
        if not add:
            for k in keys:
                if (t := self._tickers.pop(k, None)) is not None:
                    self.ib.cancelMktData(t.contract)
            return
        want = [k for k in keys if k not in self._tickers]
        room = self.ibkr.market_data_lines - len(self._tickers)
        if len(want) > room:
            total = len(self._tickers) + len(want)
            msg = (f"the book needs {total} market data lines, the account has "
                   f"{self.ibkr.market_data_lines} (IBKR_MARKET_DATA_LINES): "
                   f"{len(want) - max(room, 0)} not streamed")  # fmt: skip
            log.warning("%s: %s", self.name, msg)
            for k in want[max(room, 0) :]:
                self._reject("market data line limit", k)
                self._key_status(k, FeedState.STALE, msg)
            want = want[: max(room, 0)]
        for k in want:
            ib_contract = await self.qualify(k)
            if ib_contract is None:
                continue
            self._keys[ib_contract.conId] = k
            generic = "101" if isinstance(k, Contract) else ""
            ticker = self._tickers[k] = self.ib.reqMktData(ib_contract, generic)
            self._req_keys[self.ib.wrapper.ticker2ReqId["mktData"].get(ticker, -1)] = k

    async def qualify(self, key: SubKey) -> IbContract | None:
        if isinstance(key, str):
            if key not in INDICES:
                self._reject("not an index IBKR streams here", key)
                return None
            if (cached := self.qualified.get(key)) is not None:
                return cached
            wanted: IbContract = index_contract(key)
        else:
            if (cached := self.qualified.get(key)) is not None:
                return cached
            try:
                wanted = IbContract(**to_ibkr(key))
            except ValueError as exc:
                self._reject(str(exc), key)
                return None
        [done] = await self.ib.qualifyContractsAsync(wanted)
        if done is None or not done.conId:
            self._reject("IBKR has no such contract (contract details)", key)
            return None
        self.qualified[key] = done
        return done

    # --- events ---

    def _push(self, item: Any) -> None:
        if self._link is not None:
            self._link.queue.put_nowait(item)

    def _on_tickers(self, tickers: set[Ticker]) -> None:
        self._push(list(tickers))

    def _on_conn(self, kind: str, code: int, text: str) -> None:
        if kind == "down":
            self._push(None)
        elif kind == "beat":
            self._push(())
        elif kind == "error":
            self._push(("error", code, text))

    def _on_error(self, req_id: int, code: int, text: str, contract: object) -> None:
        if req_id == -1 or code in (2104, 2106, 2158, 2107, 2108):
            return
        key = self._req_keys.get(req_id)  # snapshots (the chain source's) are not the feed's
        if code in (10167, 10090, 354, 101, 200):
            self.notices[code] = text
        if key is None:
            return
        if code in (354, 200, 101):
            self._reject(f"{text} ({code})", key)
            self._key_status(key, FeedState.STALE, f"{text} ({code})")
        elif code in (10167, 10090):  # shown on the contract's status, the data still flows
            log.warning("%s: %s: delayed market data (%d): %s", self.name, key, code, text)
            self._key_status(key, FeedState.LIVE, f"DELAYED market data ({code}): {text}")

    def _parse(self, frame: Any) -> Iterable[Event]:
        if isinstance(frame, tuple):
            if frame and frame[0] == "error":
                self._tws_status(frame[1], frame[2])
            return ()
        now = self.clock.now_ns()
        out: list[Event] = []
        for t in frame:
            key = self._keys.get(t.contract.conId)
            if key is not None:
                out.extend(self._events(key, t, now))
        return out

    def _tws_status(self, code: int, text: str) -> None:
        if code in DOWN_CODES:
            self.vendor_down(DOWN_CODES[code])
        elif code == 1101:  # restored, subscriptions lost: ask again
            tickers, self._tickers = dict(self._tickers), {}
            for t in tickers.values():
                self.ib.cancelMktData(t.contract)
            asyncio.get_running_loop().create_task(self._resubscribe())
        elif code in (1102, 2106):
            self.vendor_up()

    async def _resubscribe(self) -> None:
        if self._link is not None:
            await self._send_subscribe(self._link, list(self._subs), True)
        self.vendor_up()

    def _events(self, key: SubKey, t: Ticker, now: int) -> list[Event]:
        if isinstance(key, str):
            price = t.last if _ok(t.last) else t.close
            return [UnderlyingTick(key, float(price), now)] if _ok(price) else []
        out: list[Event] = []
        bid, ask = _num(t.bid), _num(t.ask)
        bs, as_ = _num(t.bidSize), _num(t.askSize)
        try:
            if (bid > 0 or ask > 0) and (bs > 0 or as_ > 0):
                out.append(Quote(key, bid, ask, bs, as_, now))
            g = t.modelGreeks
            if g is not None and g.impliedVol and g.delta is not None:
                greeks = Greeks(key, now, float(g.impliedVol), float(g.delta),
                                float(g.gamma or 0.0), float(g.theta or 0.0),
                                float(g.vega or 0.0), 0.0, 0.0, 0.0, source="ibkr")  # fmt: skip
                self.greeks[key] = greeks
                out.append(greeks)
        except ModelError as exc:
            log.debug("%s: %s ticker skipped: %s", self.name, key, exc)
        oi = t.callOpenInterest if key.is_call else t.putOpenInterest
        if _ok(oi):
            self.open_interest[key] = float(oi)
        return out

    async def _fetch_history(self, key: SubKey, start_ns: int) -> list[Event]:
        """No quote history over the API: the current ticker is what the gap is filled with."""
        t = self._tickers.get(key)
        return self._events(key, t, self.clock.now_ns()) if t is not None else []


def _ok(x: float | None) -> bool:
    return x is not None and not math.isnan(x) and x > 0


def _num(x: float | None) -> float:
    return float(x) if x is not None and not math.isnan(x) and x > 0 else 0.0


def contract_of(ib_contract: IbContract) -> Contract:
    """An ``ib_async`` option contract as the kit's (multiplier from TWS)."""
    return from_ibkr(ib_contract)

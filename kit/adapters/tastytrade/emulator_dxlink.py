"""The emulator's DXLink socket (``ws://127.0.0.1:P/dxlink``): the protocol of
:mod:`kit.adapters.tastytrade.dxlink`, served from the simulator.

Per connection: ``SETUP`` is answered with ``SETUP`` and ``AUTH_STATE UNAUTHORIZED``; ``AUTH``
with a quote token the REST side issued gives ``AUTHORIZED`` (anything else stays UNAUTHORIZED
with an ``ERROR``); ``CHANNEL_REQUEST`` opens a channel, ``FEED_SETUP`` fixes its event type's
fields (the client's ``acceptEventFields``, in the client's order: that order is the COMPACT
layout) and is answered ``FEED_CONFIG``; ``FEED_SUBSCRIPTION`` add/remove/reset. Each market step
the socket sends, per channel, one ``FEED_DATA`` with every subscribed event that changed: option
``Quote`` (bid/ask/sizes), ``Greeks`` (the simulator's BSM price, IV and Greeks: theta per day,
vega per vol point), ``Trade`` and ``Quote`` of an underlying (SPX, SPY, VIX), and ``Summary``
(open interest) once on subscription. A new subscription gets the current value at once.
``KEEPALIVE`` goes out every ``keepalive_s``; a message over the size limit closes the socket
with 1009, as DXLink does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import tornado.websocket

from kit.adapters.sim.chains import YEAR_NS
from kit.adapters.tastytrade import dxlink
from kit.core.clock import NEW_YORK, sessions_before
from kit.core.model import Contract
from kit.core.pricing import greeks

if TYPE_CHECKING:
    from kit.adapters.tastytrade.emulator import TastytradeEmulator

log = logging.getLogger(__name__)
NS_PER_MS = 1_000_000


class DXLinkHandler(tornado.websocket.WebSocketHandler):
    def initialize(self, emu: TastytradeEmulator) -> None:
        self.emu = emu
        self.authed = False
        self.fields: dict[str, tuple[str, ...]] = {}  # event type -> COMPACT layout
        self.channels: dict[int, str] = {}  # open channel -> its event type (once set up)
        self.subs: dict[str, set[str]] = {}  # event type -> symbols
        self.sent: dict[tuple[str, str], Any] = {}  # (type, symbol) -> last value sent
        self.received = 0  # messages from the client

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: str, **kwargs: str) -> None:
        self.emu.sockets.add(self)
        self.emu.connections += 1

    def on_close(self) -> None:
        self.emu.sockets.discard(self)

    def send(self, doc: dict[str, Any] | str) -> None:
        if self.emu.silent():
            return
        text = doc if isinstance(doc, str) else json.dumps(doc)
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            self.write_message(text)

    def on_message(self, message: str | bytes) -> None:
        self.received += 1
        self.emu.messages.append(str(message)[:2000])
        try:
            doc = dxlink.decode(message)
        except dxlink.DXLinkError as exc:
            self.send({"type": "ERROR", "channel": 0, "error": "BAD_ACTION", "message": str(exc)})
            return
        kind, ch = doc["type"], int(doc.get("channel", 0) or 0)
        if kind == "SETUP":
            self.send({"type": "SETUP", "channel": 0, "keepaliveTimeout": dxlink.KEEPALIVE_S,
                       "acceptKeepaliveTimeout": dxlink.KEEPALIVE_S,
                       "version": "1.0-emulator"})  # fmt: skip
            self.send({"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"})
        elif kind == "AUTH":
            if str(doc.get("token")) in self.emu.quote_tokens:
                self.authed = True
                self.send({"type": "AUTH_STATE", "channel": 0, "state": "AUTHORIZED",
                           "userId": "emulator"})  # fmt: skip
            else:
                self.send({"type": "ERROR", "channel": 0, "error": "UNAUTHORIZED",
                           "message": "invalid or expired token"})  # fmt: skip
                self.send({"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"})
        elif kind == "KEEPALIVE":
            pass
        elif not self.authed:
            self.send({"type": "ERROR", "channel": ch, "error": "UNAUTHORIZED",
                       "message": f"{kind} before AUTH"})  # fmt: skip
        elif kind == "CHANNEL_REQUEST":
            self.channels[ch] = ""
            self.send({"type": "CHANNEL_OPENED", "channel": ch, "service": "FEED",
                       "parameters": doc.get("parameters") or {}})  # fmt: skip
        elif kind == "CHANNEL_CANCEL":
            if closed := self.channels.pop(ch, ""):
                self.subs.pop(closed, None)
            self.send({"type": "CHANNEL_CLOSED", "channel": ch})
        elif kind == "FEED_SETUP":
            self._setup(ch, doc)
        elif kind == "FEED_SUBSCRIPTION":
            self._subscribe(ch, doc)
        else:
            self.send({"type": "ERROR", "channel": ch, "error": "UNSUPPORTED",
                       "message": f"unknown message type {kind}"})  # fmt: skip

    def _setup(self, ch: int, doc: dict[str, Any]) -> None:
        if ch not in self.channels:
            self.send({"type": "ERROR", "channel": ch, "error": "BAD_ACTION",
                       "message": "FEED_SETUP on a channel that is not open"})  # fmt: skip
            return
        accept = doc.get("acceptEventFields") or {}
        for kind, names in accept.items():
            if kind in dxlink.SDK_FIELDS and isinstance(names, list):
                self.fields[kind] = tuple(map(str, names))
                self.channels[ch] = kind
        self.send({"type": "FEED_CONFIG", "channel": ch, "dataFormat": "COMPACT",
                   "aggregationPeriod": doc.get("acceptAggregationPeriod", 0.1),
                   "eventFields": {k: list(v) for k, v in self.fields.items()
                                   if self.channels[ch] == k}})  # fmt: skip

    def _subscribe(self, ch: int, doc: dict[str, Any]) -> None:
        if doc.get("reset"):
            self.subs.clear()
            self.sent.clear()
        fresh: dict[str, list[str]] = {}
        for item in doc.get("add") or []:
            kind, sym = str(item.get("type")), str(item.get("symbol"))
            if kind == "Candle":
                self._candles(sym, int(dxlink.num(item.get("fromTime")) or 0))
                continue
            if kind not in dxlink.SDK_FIELDS:
                continue
            self.fields.setdefault(kind, dxlink.SDK_FIELDS[kind])
            if sym not in self.subs.setdefault(kind, set()):
                self.subs[kind].add(sym)
                fresh.setdefault(kind, []).append(sym)
        for item in doc.get("remove") or []:
            kind, sym = str(item.get("type")), str(item.get("symbol"))
            self.subs.get(kind, set()).discard(sym)
            self.sent.pop((kind, sym), None)
        if fresh:
            self.emu.snapshot_to(self, fresh)

    def _candles(self, symbol: str, from_ms: int) -> None:
        """Daily candles of VIX (the simulator's daily 30-day ATM vol, one per session before
        today), all in one FEED_DATA; other symbols have none."""
        if symbol.split("{")[0] != "VIX":
            return
        m = self.emu.market
        closes = m.iv_history("SPX")
        today = self.emu.clock.now().astimezone(NEW_YORK).date()
        names = self.fields.get("Candle", dxlink.SDK_FIELDS["Candle"])
        flat: list[Any] = []
        for day, v in zip(sessions_before(today, len(closes)), closes, strict=True):
            ms = int(datetime(day.year, day.month, day.day, 16, tzinfo=NEW_YORK).timestamp() * 1e3)
            if ms < from_ms:
                continue
            px = round(float(v), 2)
            row = {"eventSymbol": symbol, "eventTime": 0, "eventFlags": 0, "index": ms,
                   "time": ms, "sequence": 0, "count": 1, "volume": 0, "vwap": px,
                   "bidVolume": 0, "askVolume": 0, "impVolatility": "NaN", "openInterest": 0,
                   "open": px, "high": px, "low": px, "close": px}  # fmt: skip
            flat.extend(row.get(n, 0) for n in names)
        self.send({"type": "FEED_DATA", "channel": self.channel_of("Candle"),
                   "data": ["Candle", flat]})  # fmt: skip

    def channel_of(self, kind: str) -> int:
        for ch, k in self.channels.items():
            if k == kind:
                return ch
        return dxlink.CHANNELS[kind]

    def feed(self, kind: str, rows: list[dict[str, Any]]) -> None:
        """One FEED_DATA of ``rows`` laid out in this client's field order; rows equal to what
        was last sent for their symbol are skipped."""
        names = self.fields.get(kind, dxlink.SDK_FIELDS[kind])
        flat: list[Any] = []
        sent: list[dict[str, Any]] = []
        for row in rows:
            sym = row["eventSymbol"]
            key = tuple(row.get(n) for n in names if n not in ("eventTime", "time", "sequence"))
            if self.sent.get((kind, sym)) == key:
                continue
            self.sent[(kind, sym)] = key
            flat.extend(row.get(n, 0) for n in names)
            sent.append(row)
        if flat:
            log_ = self.emu.send_log
            if log_ is not None and kind == "Greeks" and not self.emu.silent():
                t = time.perf_counter()  # when this frame left (benchmarks/vendor_greeks.py)
                for row in sent:
                    log_[(row["eventSymbol"], row["time"])] = t
            self.emu.frames_sent[kind] = self.emu.frames_sent.get(kind, 0) + 1
            self.send({"type": "FEED_DATA", "channel": self.channel_of(kind), "data": [kind, flat]})


def _clean(x: float, nd: int = 6) -> float | str:
    return round(float(x), nd) if math.isfinite(x) else "NaN"


def option_rows(emu: TastytradeEmulator, contracts: list[Contract], step: int):
    """Quote, Greeks and Summary rows of listed, unexpired ``contracts`` at ``step``."""
    m = emu.market
    live = [c for c in contracts if m.is_listed(c)]
    if not live:
        return [], [], []
    bid, ask, bs, as_, _, iv, alive = m.quote_arrays(live, step)
    L = m.listing
    idx = np.fromiter((L.index[c] for c in live), dtype=np.int64)
    now = m.step_time(step)
    spot = np.array([m.spot(m.symbols[k], step) for k in L.und[idx]]) * L.ratio[idx]
    T = np.maximum((L.expiry_ns[idx] - now) / YEAR_NS, 1e-9)
    g = greeks(spot, L.strike[idx], T, L.rate[idx], L.div_yield[idx], iv, L.is_call[idx])
    oi = L.open_interest[idx]
    ms = now // NS_PER_MS
    quotes, gks, summ = [], [], []
    for j, c in enumerate(live):
        if not alive[j]:
            continue
        sym = emu.symbol(c)
        quotes.append({"eventSymbol": sym, "eventTime": 0, "sequence": 0, "timeNanoPart": 0,
                       "bidTime": ms, "bidExchangeCode": "C", "askTime": ms,
                       "askExchangeCode": "C", "bidPrice": _clean(bid[j], 2),
                       "askPrice": _clean(ask[j], 2), "bidSize": float(bs[j]),
                       "askSize": float(as_[j])})  # fmt: skip
        gks.append({"eventSymbol": sym, "eventTime": 0, "eventFlags": 0, "index": 0,
                    "time": ms, "sequence": 0, "price": _clean(g.price[j], 4),
                    "volatility": _clean(iv[j]), "delta": _clean(g.delta[j]),
                    "gamma": _clean(g.gamma[j], 8), "theta": _clean(g.theta[j] / 365.0),
                    "rho": _clean(g.rho[j] / 100.0),
                    "vega": _clean(g.vega[j] / 100.0)})  # fmt: skip
        summ.append({"eventSymbol": sym, "eventTime": 0, "dayId": 0, "dayClosePriceType": "REGULAR",
                     "prevDayId": 0, "prevDayClosePriceType": "FINAL",
                     "openInterest": int(oi[j])})  # fmt: skip
    return quotes, gks, summ


def underlying_rows(emu: TastytradeEmulator, symbols: set[str], step: int):
    m = emu.market
    ms = m.step_time(step) // NS_PER_MS
    quotes, trades = [], []
    for s in sorted(symbols):
        try:
            px = round(m.spot(s, step), 2)
        except (ValueError, IndexError):
            continue  # not an underlying the simulator knows
        quotes.append({"eventSymbol": s, "eventTime": 0, "sequence": 0, "timeNanoPart": 0,
                       "bidTime": ms, "bidExchangeCode": "", "askTime": ms, "askExchangeCode": "",
                       "bidPrice": px, "askPrice": px, "bidSize": 0, "askSize": 0})  # fmt: skip
        trades.append({"eventSymbol": s, "eventTime": 0, "time": ms, "timeNanoPart": 0,
                       "sequence": 0, "exchangeCode": "", "dayId": 0, "tickDirection": "UNDEFINED",
                       "extendedTradingHours": False, "price": px, "change": 0, "size": 0,
                       "dayVolume": 0, "dayTurnover": 0})  # fmt: skip
    return quotes, trades


def push(emu: TastytradeEmulator, socks: list[DXLinkHandler], step: int,
         only: dict[str, list[str]] | None = None) -> None:  # fmt: skip
    """Send every subscribed event of ``step`` (or only the ``only`` symbols) to ``socks``."""
    wanted: dict[str, set[str]] = {}
    for ws in socks:
        if not ws.authed:
            continue
        for kind, syms in (only or ws.subs).items():
            wanted.setdefault(kind, set()).update(syms)
    options = {s for k in ("Quote", "Greeks", "Summary") for s in wanted.get(k, ()) if s[:1] == "."}
    unds = {s for k in ("Quote", "Trade") for s in wanted.get(k, ()) if s[:1] != "."}
    contracts = [c for s in options if (c := emu.contract(s)) is not None]
    q, g, summ = option_rows(emu, contracts, step)
    uq, ut = underlying_rows(emu, unds, step)
    by_kind = {"Quote": q + uq, "Greeks": g, "Trade": ut, "Summary": summ}
    emu.mangle(by_kind)
    for ws in socks:
        if not ws.authed:
            continue
        for kind, rows in by_kind.items():
            if kind == "Summary" and only is None:
                continue  # open interest: once per subscription
            have = (only or ws.subs).get(kind)
            if have:
                ws.feed(kind, [r for r in rows if r["eventSymbol"] in have])


async def stream_loop(emu: TastytradeEmulator) -> None:
    """Step the market with the clock; send each step's changes, keepalives and injections."""
    last_beat = time.monotonic()
    while True:
        try:
            await emu.clock.sleep(emu.market.config.step_s)
            before = emu.market.steps
            emu.market.advance_to(emu.clock.now_ns())
            socks = list(emu.sockets)
            if emu.injected and not emu.silent():
                frames, emu.injected = emu.injected, []
                for ws in socks:
                    for f in frames:
                        ws.send(f)
            if emu.market.steps > before:
                push(emu, socks, emu.market.steps)
                emu.on_step()
            if time.monotonic() - last_beat >= emu.keepalive_s:
                last_beat = time.monotonic()
                for ws in socks:
                    ws.send(dxlink.keepalive())
        except asyncio.CancelledError:
            raise
        except Exception:  # the loop must outlive a bad step
            log.exception("tastytrade emulator: stream step failed")

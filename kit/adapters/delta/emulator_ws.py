"""The emulator's socket: Delta's public channels and the key-authenticated private ones.

One connection carries both, as on Delta. Client messages: ``subscribe``/``unsubscribe``
(``{"payload": {"channels": [{"name", "symbols"}]}}``), ``enable_heartbeat`` /
``disable_heartbeat``, ``ping``, and ``key-auth`` (``{"api-key", "signature", "timestamp"}`` with
the signature over ``GET + timestamp + /live``). Replies and streams:

* public: ``ticker`` (the REST ticker with ``type``), ``mark_price`` (symbols ``MARK:<symbol>``,
  ``price`` and Greeks), ``ob_l1`` (``best_bid``/``best_ask``/``bid_qty``/``ask_qty``), sent when
  they change, once per market step; the deprecated ``v2/ticker`` / ``l1_orderbook`` names are
  refused with an error naming the replacement;
* private (after a successful ``key-auth``): ``orders``, ``positions``, ``margins`` and
  ``v2/user_trades``: a ``snapshot`` (``meta.seq_no``) on subscribe, then updates each carrying
  the channel's next ``seq_no``;
* ``heartbeat`` every ``heartbeat_s`` once enabled; a connection with no subscription is closed
  after ``idle_close_s`` (Delta: 60 s).

``key-auth`` failures answer ``{"type": "key-auth", "success": false, "status_code": 401,
"message": code}`` with the REST error codes (InvalidApiKey, SignatureExpired, Signature
Mismatch, ip_not_whitelisted_for_api_key).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import tornado.websocket

from kit.adapters.delta.parsing import DeltaError
from kit.adapters.delta.signing import WS_AUTH_PATH, signature

if TYPE_CHECKING:
    from kit.adapters.delta.emulator import DeltaEmulator

log = logging.getLogger(__name__)

PUBLIC_CHANNELS = ("ticker", "mark_price", "ob_l1")
PRIVATE_CHANNELS = ("orders", "positions", "margins", "v2/user_trades")
DEPRECATED = {"v2/ticker": "ticker", "l1_orderbook": "ob_l1"}


class SocketHandler(tornado.websocket.WebSocketHandler):
    def initialize(self, emu: DeltaEmulator) -> None:
        self.emu = emu
        self.subs: dict[str, set[str]] = {}
        self.authed = False
        self.heartbeat = False
        self.last_beat = time.monotonic()
        self.idle_since = time.monotonic()
        self.sent: dict[tuple[str, str], Any] = {}  # (channel, symbol) -> last payload

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: str, **kwargs: str) -> None:
        self.emu.sockets.add(self)
        self.emu.exchange.listeners.append(self._private)

    def on_close(self) -> None:
        self.emu.sockets.discard(self)
        if self._private in self.emu.exchange.listeners:
            self.emu.exchange.listeners.remove(self._private)

    def send(self, doc: dict[str, Any]) -> None:
        if time.time() < self.emu.faults.silent_until:
            return
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            self.write_message(json.dumps(doc))

    def on_message(self, message: str | bytes) -> None:
        try:
            doc = json.loads(message)
            kind = doc.get("type")
        except (ValueError, AttributeError):
            self.send({"type": "error", "message": "expected a JSON object"})
            return
        if kind == "ping":
            self.send({"type": "pong"})
        elif kind == "enable_heartbeat":
            self.heartbeat, self.last_beat = True, time.monotonic()
        elif kind == "disable_heartbeat":
            self.heartbeat = False
        elif kind == "key-auth":
            self._auth(doc.get("payload") or {})
        elif kind in ("subscribe", "unsubscribe"):
            self._subscribe(doc.get("payload") or {}, kind == "subscribe")
        else:
            self.send({"type": "error", "message": f"unknown message type {kind!r}"})

    def _auth(self, payload: dict[str, Any]) -> None:
        emu = self.emu
        try:
            secret = emu.keys.get(str(payload.get("api-key")))
            if secret is None:
                raise DeltaError("InvalidApiKey", 401)
            if emu.faults.refuse_ip:
                raise DeltaError("ip_not_whitelisted_for_api_key", 401)
            ts = str(payload.get("timestamp") or "")
            if not ts.isdigit() or emu.server_time() - int(ts) > emu.window_s:
                raise DeltaError("SignatureExpired", 401)
            if payload.get("signature") != signature(secret, "GET" + ts + WS_AUTH_PATH):
                raise DeltaError("Signature Mismatch", 401)
        except DeltaError as exc:
            self.send({"type": "key-auth", "success": False, "status_code": exc.status,
                       "message": exc.code})  # fmt: skip
            return
        self.authed = True
        self.send({"type": "key-auth", "success": True, "status_code": 200})

    def _subscribe(self, payload: dict[str, Any], add: bool) -> None:
        done = []
        for ch in payload.get("channels") or []:
            name = str(ch.get("name"))
            symbols = [str(s) for s in ch.get("symbols") or []]
            if name in DEPRECATED:
                self.send({"type": "error", "channel": name,
                           "message": f"{name} is deprecated: use {DEPRECATED[name]}"})  # fmt: skip
                continue
            if name not in PUBLIC_CHANNELS + PRIVATE_CHANNELS:
                self.send({"type": "error", "channel": name, "message": "unknown channel"})
                continue
            if name in PRIVATE_CHANNELS and not self.authed:
                self.send({"type": "error", "channel": name,
                           "message": "Unauthorized: key-auth first"})  # fmt: skip
                continue
            if name == "mark_price":
                symbols = [s.removeprefix("MARK:") for s in symbols]
            have = self.subs.setdefault(name, set())
            if add:
                have.update(symbols or ["all"])
            else:
                have.difference_update(symbols or list(have))
                for s in symbols:
                    self.sent.pop((name, s), None)
            done.append({"name": name, "symbols": sorted(have)})
            if add and name in PRIVATE_CHANNELS:
                self._snapshot(name)
        self.subs = {k: v for k, v in self.subs.items() if v}
        self.send({"type": "subscriptions", "channels": done})

    def _snapshot(self, channel: str) -> None:
        ex = self.emu.exchange
        rows = {"orders": ex.open_orders, "positions": ex.positions, "margins": ex.wallet,
                "v2/user_trades": list}[channel]()  # fmt: skip
        seq = ex.seq.get(channel, 0)
        self.send({"type": channel, "action": "snapshot", "meta": {"seq_no": seq},
                   "result": rows})  # fmt: skip

    def _private(self, channel: str, payload: dict[str, Any]) -> None:
        """An account change from the exchange (every connection hears every change; only an
        authenticated one subscribed to the channel sends it)."""
        if not (self.authed and channel in self.subs):
            return
        self.send({"type": channel, "action": payload.get("action", "update"), **payload})


def _stream_one(ws: SocketHandler, tickers: dict[str, dict[str, Any]]) -> None:
    for channel, symbols in ws.subs.items():
        if channel not in PUBLIC_CHANNELS:
            continue
        for sym in symbols:
            t = tickers.get(sym)
            if t is None:
                continue
            q = t["quotes"]
            if channel == "ticker":
                doc = {"type": "ticker", **t}
                key = (q["best_bid"], q["best_ask"], t["mark_price"])
            elif channel == "mark_price":
                doc = {"type": "mark_price", "symbol": f"MARK:{sym}", "price": t["mark_price"],
                       "timestamp": t["timestamp"], **t["greeks"]}  # fmt: skip
                key = t["mark_price"]
            else:
                doc = {"type": "ob_l1", "symbol": sym, "best_bid": q["best_bid"],
                       "best_ask": q["best_ask"], "bid_qty": q["bid_size"],
                       "ask_qty": q["ask_size"], "timestamp": t["timestamp"]}  # fmt: skip
                key = (q["best_bid"], q["best_ask"], q["bid_size"], q["ask_size"])
            if ws.sent.get((channel, sym)) != key:
                ws.sent[(channel, sym)] = key
                ws.send(doc)


async def stream_loop(emu: DeltaEmulator) -> None:
    """Step the market, stream the public channels, beat the hearts, close idle sockets."""
    while True:
        try:
            emu.exchange.step()
            now = time.monotonic()
            wanted = {s for ws in emu.sockets for ch, syms in ws.subs.items()
                      if ch in PUBLIC_CHANNELS for s in syms}  # fmt: skip
            ex = emu.exchange
            pids = [ex.by_symbol[s] for s in wanted if s in ex.by_symbol]
            tickers = {t["symbol"]: t for t in ex.tickers(pids)} if pids else {}
            for ws in list(emu.sockets):
                _stream_one(ws, tickers)
                if ws.heartbeat and now - ws.last_beat >= emu.heartbeat_s:
                    ws.last_beat = now
                    ws.send({"type": "heartbeat"})
                if ws.subs:
                    ws.idle_since = now
                elif now - ws.idle_since > emu.idle_close_s:
                    ws.close(1000, "idle: no subscription")
        except Exception:  # the loop must outlive a bad step
            log.exception("delta emulator: stream step failed")
        await asyncio.sleep(emu.tick_s)

"""The emulated gateway's WebSocket (``/v1/api/ws``): IBKR's streaming market data and session
messages, so the feed (and an unmodified ``ibind`` client) can be tested end to end.

Wire behaviour, as IBKR's CP Web API v1 WebSocket documentation describes it:

* on open: ``{"topic": "system", "success": USER, ...}`` then ``{"topic": "sts", "args":
  {"authenticated": true, "competing": false, ...}}``; a ``{"topic": "system", "hb": ms}``
  heartbeat every ``heartbeat_s`` (about 10 s);
* ``smd+CONID+{"fields": [...]}`` subscribes; every update is ``{"topic": "smd+CONID",
  "conid", "conidEx", "server_id", "_updated": ms, FIELD: "text", ...}`` carrying **only the
  fields that changed** since the last update to that socket (the first one carries them all);
  ``umd+CONID+{}`` stops it. An unknown conid answers ``{"topic": "smd+CONID", "error": ...}``;
* ``tic`` answers ``{"topic": "tic", "alive": true, "id", "lastAccessed": ms}``; ``ech+hb``
  echoes;
* the socket's cookie ``api={"session": TOKEN}`` (the ``/tickle`` token) must name the current
  session: a stale token gets ``sts`` authenticated false and is closed.

Fields served (strings, as IBKR formats them): 31 last (or mark), 84 bid, 86 ask, 88 bid size,
85 ask size, 7308 delta, 7309 gamma, 7310 theta (per day), 7311 vega (per vol point), 7633 implied
vol ("18.2%"), 7638 option open interest, 6509 availability (``RpB`` real time, ``DpB`` delayed,
``ZpB`` frozen). Greeks are the emulator's own (its market's IV and Greeks columns, refreshed on
each publish): a vendor model beside the desk's, with :attr:`Faults.delta_bias` to make it wrong.

Fault switches (:class:`Faults`, flipped by tests or a REPL): ``drop()`` aborts every socket;
``silence(s)`` sends nothing (no heartbeat either) for ``s`` seconds; ``expire_session()`` (a
daily expiry or a competing login: sts authenticated false, a new session token, sockets closed,
REST 401 until ``ssodh/init``); ``inject(text)`` sends a raw frame; ``nan_fields`` sends
``"NaN"`` for the next N updates' bid; ``availability`` switches 6509.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tornado.websocket

from kit.core.model import Contract

if TYPE_CHECKING:
    from kit.adapters.cpapi.emulator import CpApiEmulator

log = logging.getLogger(__name__)

OPTION_FIELDS = ("31", "84", "86", "88", "85", "7308", "7309", "7310", "7311", "7633", "7638")


@dataclass
class Faults:
    silent_until: float = 0.0  # wall time until which nothing is sent
    nan_fields: int = 0  # the next N updates send bid "NaN"
    availability: str = "RpB"  # field 6509: R real time, D delayed, Z frozen
    delta_bias: float = 0.0  # added to the served delta: a stale or wrong vendor model
    refuse_login: bool = False  # ssodh/init keeps the session unauthenticated


def _num(x: float, digits: int = 4) -> str | None:
    if not math.isfinite(x):
        return None
    return f"{x:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{x:.0f}"


def _size(x: float) -> str | None:
    return f"{x:,.0f}" if math.isfinite(x) else None  # IBKR groups thousands: "1,300"


class StreamHub:
    """The sockets of one emulator, what each subscribed, and the publishing of updates."""

    def __init__(self, emu: CpApiEmulator, heartbeat_s: float = 10.0) -> None:
        self.emu = emu
        self.heartbeat_s = heartbeat_s
        self.faults = Faults()
        self.sockets: set[StreamHandler] = set()
        self.connections = 0  # accepted sockets, ever
        self.messages: list[str] = []  # every client message, for tests
        # the driver quotes a newly streamed option at once, so its first update is whole
        self.on_subscribe: Callable[[Contract], None] | None = None
        self._last_beat = time.monotonic()

    @property
    def silent(self) -> bool:
        return time.time() < self.faults.silent_until

    def subscribed(self) -> set[Contract]:
        """Options some socket streams now (the driver quotes these)."""
        out: set[Contract] = set()
        for ws in self.sockets:
            for conid in ws.subs:
                if (c := self.emu.contract_of(conid)) is not None:
                    out.add(c)
        return out

    # --- fault switches ---

    def drop(self) -> None:
        """Abort every socket (no close handshake)."""
        for ws in list(self.sockets):
            stream = ws.ws_connection.stream if ws.ws_connection else None
            if stream is not None:
                stream.close()

    def silence(self, seconds: float) -> None:
        self.faults.silent_until = time.time() + seconds

    def inject(self, text: str) -> None:
        for ws in list(self.sockets):
            ws.send_text(text)

    def expire_session(self, competing: bool = False) -> None:
        """The session ends (daily expiry, or another login competes): every socket is told
        and closed; REST answers 401 until ``iserver/auth/ssodh/init``."""
        self.emu.unauthenticated = True
        self.emu.new_session()
        args = {"authenticated": False, "competing": competing, "message": "session expired"}
        for ws in list(self.sockets):
            ws.send({"topic": "sts", "args": args})
            ws.close(1000, "session expired")

    def switch(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/api/kit/faults`` (for ``kit emulate cpapi`` by hand): ``drop``,
        ``silence_s``, ``expire`` (with ``competing``), ``inject``, and the :class:`Faults`
        fields by name; answers the switches now in force."""
        f = self.faults
        for name in ("nan_fields", "availability", "delta_bias", "refuse_login"):
            if name in doc:
                setattr(f, name, type(getattr(f, name))(doc[name]))
        if doc.get("silence_s"):
            self.silence(float(doc["silence_s"]))
        if doc.get("inject"):
            self.inject(str(doc["inject"]))
        if doc.get("expire"):
            self.expire_session(bool(doc.get("competing")))
        if doc.get("drop"):
            self.drop()
        return {"silent_s": max(f.silent_until - time.time(), 0.0), "nan_fields": f.nan_fields,
                "availability": f.availability, "delta_bias": f.delta_bias,
                "refuse_login": f.refuse_login, "sockets": len(self.sockets)}  # fmt: skip

    # --- publishing ---

    def tick(self) -> None:
        """Heartbeats when due, then every socket's changed fields (call after each step)."""
        now = time.monotonic()
        if now - self._last_beat >= self.heartbeat_s:
            self._last_beat = now
            for ws in list(self.sockets):
                ws.send({"topic": "system", "hb": int(time.time() * 1000)})
        self.publish()

    def publish(self) -> None:
        if not self.sockets:
            return
        now = self.emu.broker.clock.now_ns()
        self.refresh(self.subscribed())
        nan = self.faults.nan_fields > 0
        for ws in list(self.sockets):
            ws.push(now, nan)
        if nan:
            self.faults.nan_fields -= 1

    def refresh(self, contracts: Iterable[Contract]) -> None:
        """Reprice the vendor Greeks of ``contracts`` (the emulator's own market columns)."""
        market = self.emu.broker.market
        known = [c for c in contracts if c in market.index]
        if known:
            market.refresh(market.rows(known), self.emu.broker.clock.now_ns())

    def fields(self, conid: int, wanted: frozenset[str]) -> dict[str, str]:
        """The current value of each wanted field for ``conid`` (absent when unknown)."""
        emu, out = self.emu, {"6509": self.faults.availability}
        symbol = emu.underlying_symbol(conid)
        market = emu.broker.market
        if symbol is not None:
            spot = _num(market.spot_of(symbol), 2)
            if spot is not None:
                out["31"] = spot
            return out
        c = emu.contract_of(conid)
        i = market.index.get(c) if c is not None else None
        if i is None:
            return out
        values = {
            "84": _num(market.bid[i], 2), "86": _num(market.ask[i], 2),
            "88": _size(market.bid_size[i]), "85": _size(market.ask_size[i]),
            "31": _num(market.mark[i], 2),
            "7308": _num(market.delta[i] + self.faults.delta_bias, 4),
            "7309": _num(market.gamma[i], 5), "7310": _num(market.theta_per_day[i], 4),
            "7311": _num(market.vega_per_point[i], 4),
            "7633": None if not math.isfinite(market.iv[i]) else f"{market.iv[i] * 100:.1f}%",
            "7638": _size(market.open_interest[i]),
        }  # fmt: skip
        out.update({k: v for k, v in values.items() if v is not None and k in wanted})
        return out


class StreamHandler(tornado.websocket.WebSocketHandler):
    def initialize(self, emu: CpApiEmulator) -> None:
        self.emu, self.hub = emu, emu.stream
        self.subs: dict[int, tuple[frozenset[str], dict[str, str]]] = {}

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: str, **kwargs: str) -> None:
        cookie = self.get_cookie("api")
        token = None
        if cookie:
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                token = json.loads(cookie).get("session")
            token = token or cookie
        if self.emu.unauthenticated or (token is not None and token != self.emu.session):
            self.send({"topic": "sts", "args": {"authenticated": False, "competing": False,
                                                "message": "no valid session"}})  # fmt: skip
            self.close(1008, "no valid session")
            return
        self.hub.sockets.add(self)
        self.hub.connections += 1
        self.send({"topic": "system", "success": "emulated", "isFT": False, "isPaper": True})
        self.send({"topic": "sts", "args": {"authenticated": True, "competing": False,
                                            "message": "", "fail": "",
                                            "serverName": "kit-emulator",
                                            "serverVersion": "emulated"}})  # fmt: skip
        self.send({"topic": "system", "hb": int(time.time() * 1000)})

    def on_close(self) -> None:
        self.hub.sockets.discard(self)

    def send_text(self, text: str) -> None:
        if self.hub.silent:
            return
        with contextlib.suppress(tornado.websocket.WebSocketClosedError):
            self.write_message(text)

    def send(self, doc: dict[str, Any]) -> None:
        self.send_text(json.dumps(doc))

    def on_message(self, message: str | bytes) -> None:
        text = message.decode() if isinstance(message, bytes) else message
        self.hub.messages.append(text)
        if text == "tic":
            self.send({"topic": "tic", "alive": True, "id": uuid.uuid4().hex[:8],
                       "lastAccessed": int(time.time() * 1000)})  # fmt: skip
        elif text.startswith("ech+"):
            self.send_text(text)
        elif text.startswith(("smd+", "umd+")):
            self._market_data(text)
        else:
            self.send({"topic": "error", "error": f"unknown message {text[:60]!r}"})

    def _market_data(self, text: str) -> None:
        kind, _, rest = text.partition("+")
        conid_text, _, args = rest.partition("+")
        topic = f"smd+{conid_text}"
        try:
            conid = int(conid_text)
        except ValueError:
            self.send({"topic": topic, "error": f"invalid conid {conid_text!r}"})
            return
        if kind == "umd":
            self.subs.pop(conid, None)
            return
        try:
            wanted = frozenset(str(f) for f in (json.loads(args or "{}").get("fields") or []))
        except (ValueError, AttributeError, TypeError):
            self.send({"topic": topic, "error": 'bad arguments: expected {"fields": [...]}'})
            return
        contract = self.emu.contract_of(conid)
        if contract is None and self.emu.underlying_symbol(conid) is None:
            self.send({"topic": topic, "error": f"unknown conid {conid}"})
            return
        if contract is not None and self.hub.on_subscribe is not None:
            self.hub.on_subscribe(contract)
            self.hub.refresh([contract])
        old = self.subs.get(conid)
        self.subs[conid] = (wanted or frozenset(OPTION_FIELDS), old[1] if old else {})
        self.push(self.emu.broker.clock.now_ns(), False, only=conid)

    def push(self, now_ns: int, nan: bool, only: int | None = None) -> None:
        """Send each subscription's changed fields (all of them the first time)."""
        for conid, (wanted, sent) in list(self.subs.items()):
            if only is not None and conid != only:
                continue
            current = self.hub.fields(conid, wanted)
            if nan and "84" in current:
                current["84"] = "NaN"
            changed = {k: v for k, v in current.items() if sent.get(k) != v}
            if not changed:
                continue
            sent.update(changed)
            self.send({"server_id": f"q{conid % 1000}", "conidEx": str(conid), "conid": conid,
                       "_updated": now_ns // 1_000_000, "6119": f"q{conid % 1000}",
                       **changed, "topic": f"smd+{conid}"})  # fmt: skip

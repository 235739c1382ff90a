"""A loopback ThetaData Terminal: REST v3 and the /v1/events socket, driven by the simulator.

It lets the real adapter be tested end to end (and lets users try it without a subscription:
``python -m kit emulate thetadata``). It speaks the formats documented in
:mod:`kit.adapters.thetadata.parsing`, enforces the Terminal's rules (one streaming connection,
strictly increasing request ids, a stream limit, permissions) and has fault switches: drop the
socket, go
silent, report the upstream DISCONNECTED, send malformed/NaN frames, fail REST calls with 47x/57x.

History is exact: the simulator recomputes any past quote, and the emulator streams with the same
change rule (:meth:`MarketSim.quote_updates`), so REST history returns precisely what was streamed
(or would have been, during an outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import numpy as np
import tornado.httpserver
import tornado.netutil
import tornado.web
from websockets.asyncio.server import Server, ServerConnection, serve

from kit.adapters.sim.market import MarketSim, SimConfig
from kit.adapters.thetadata.faults import FaultsHandler
from kit.adapters.thetadata.frames import quote_frame, text_frame, trade_frame
from kit.adapters.thetadata.history_routes import history_routes
from kit.adapters.thetadata.parsing import (
    ERROR_CODES,
    format_timestamp,
    parse_date,
    parse_timestamp,
)
from kit.core.clock import (
    NEW_YORK,
    Clock,
    SimClock,
    expiry_time,
    previous_session,
    sessions_before,
    to_ns,
)
from kit.core.model import Contract, Quote
from kit.core.symbology import from_thetadata

log = logging.getLogger(__name__)
_encode = msgspec.json.encode


def default_start(now: datetime) -> datetime:
    """10:00 New York on the latest session at or before ``now``: emulated markets are open."""
    day = now.astimezone(NEW_YORK).date()
    s = previous_session(day)
    return datetime(s.day.year, s.day.month, s.day.day, 10, tzinfo=NEW_YORK)


@dataclass
class Faults:
    """Fault switches, flipped by tests (or by hand in a REPL)."""

    silent_until_ns: int = 0  # send nothing at all (no STATUS either)
    upstream_down_until_ns: int = 0  # STATUS DISCONNECTED, no data
    rest_failures: list[int] = field(default_factory=list)  # codes for the next REST calls
    rest_garbage: int = 0  # answer the next N REST calls 200 with an unparseable body
    malformed: list[str] = field(default_factory=list)  # frames to inject before the next step


class ThetaDataEmulator:
    """Serve REST on ``rest_port`` and the stream on ``ws_port`` (0 = pick free ports)."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        config: SimConfig | None = None,
        host: str = "127.0.0.1",
        rest_port: int = 0,
        ws_port: int = 0,
        max_streams: int = 10_000,
        permissions: frozenset[str] = frozenset({"OPTION"}),
    ) -> None:
        self.clock = clock or SimClock(default_start(datetime.now(NEW_YORK)), speed=1.0)
        self.market = MarketSim(self.clock.now(), config)
        self.host, self._rest_port, self._ws_port = host, rest_port, ws_port
        self.max_streams, self.permissions = max_streams, permissions
        self.faults = Faults()
        self.connections = 0  # accepted streaming connections, ever
        self.refused_connections = 0
        self._conn: ServerConnection | None = None
        self._streams: dict[tuple[Contract, str], None] = {}  # (contract, QUOTE | TRADE)
        self._trade_seq = 0
        self._tracked: list[Contract] = []  # grow-only: keeps the change rule exact
        self._last: np.ndarray | None = None
        self._last_id = -1
        self._ws: Server | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ---

    async def start(self) -> ThetaDataEmulator:
        app = tornado.web.Application(
            [
                (r"/v3/(.*)", _RestHandler, {"emu": self}),
                (r"/faults", FaultsHandler, {"emu": self}),
            ],
            log_function=lambda _handler: None,
        )
        self._http = tornado.httpserver.HTTPServer(app)
        socks = tornado.netutil.bind_sockets(self._rest_port, self.host)
        self._http.add_sockets(socks)
        self._rest_port = socks[0].getsockname()[1]
        self._ws = await serve(self._serve_ws, self.host, self._ws_port, compression=None,
                               ping_interval=None)  # fmt: skip
        self._ws_port = self._ws.sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(self._run()), asyncio.create_task(self._status())]
        return self

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._ws is not None:
            self._ws.close()
            await self._ws.wait_closed()
        if self._http is not None:
            self._http.stop()
            await self._http.close_all_connections()

    async def __aenter__(self) -> ThetaDataEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def rest_port(self) -> int:
        return self._rest_port

    @property
    def ws_port(self) -> int:
        return self._ws_port

    # --- fault switches ---

    async def drop(self) -> None:
        """Kill the streaming socket abruptly (no close handshake)."""
        if self._conn is not None:
            self._conn.transport.abort()

    def go_silent(self, seconds: float) -> None:
        self.faults.silent_until_ns = self.clock.now_ns() + int(seconds * 1e9)

    def upstream_down(self, seconds: float) -> None:
        self.faults.upstream_down_until_ns = self.clock.now_ns() + int(seconds * 1e9)

    def fail_rest(self, code: int, times: int = 1) -> None:
        self.faults.rest_failures.extend([code] * times)

    def inject(self, *frames: str) -> None:
        """Raw frames to send before the next market step (malformed, NaN, negative...)."""
        self.faults.malformed.extend(frames)

    async def blast(self, frames: Sequence[bytes], rate: float | None = None) -> list[int]:
        """Benchmark aid: send pre-encoded text frames on the stream; returns each frame's
        ``time.monotonic_ns()`` at sending.

        Paced (``rate`` per second) frames go through the WebSocket library one by one. Flat
        out, frames are framed here and written to the socket 256 at a time (valid WebSocket
        frames on the wire, honouring the write buffer), so the sender outruns any client and
        the measurement is of the client.
        """
        if self._conn is None:
            raise RuntimeError("no client is connected")
        sent: list[int] = []
        if rate is not None:
            start = time.monotonic_ns()
            for i, frame in enumerate(frames):
                if (wait := start + int(i * 1e9 / rate) - time.monotonic_ns()) > 0:
                    await asyncio.sleep(wait / 1e9)
                sent.append(time.monotonic_ns())
                await self._conn.send(frame.decode())
            return sent
        transport = self._conn.transport
        wire = [text_frame(f) for f in frames]
        for i in range(0, len(wire), 256):
            while transport.get_write_buffer_size() > 4 << 20:
                await asyncio.sleep(0.0005)
            now = time.monotonic_ns()
            sent.extend([now] * len(wire[i : i + 256]))
            transport.write(b"".join(wire[i : i + 256]))
        return sent

    # --- streaming ---

    async def _serve_ws(self, ws: ServerConnection) -> None:
        if ws.request is None or ws.request.path != "/v1/events":
            await ws.close(1008, "unknown endpoint; use /v1/events")
            return
        if self._conn is not None:
            self.refused_connections += 1
            await ws.close(1008, "only one connection to /v1/events is allowed")
            return
        self._conn = ws
        self.connections += 1
        self._streams.clear()
        self._last_id = -1  # ids must increase within a client's session
        try:
            async for message in ws:
                await self._on_request(ws, message)
        except Exception as exc:  # the peer vanished mid-read
            log.debug("emulator: connection ended: %s", exc)
        finally:
            if self._conn is ws:
                self._conn = None

    async def _reply(self, ws: ServerConnection, req_id: int | None, response: str) -> None:
        # a silent Terminal sends no frame at all, its replies included: they come (with the
        # requests behind them) once the silence ends, as from a process that stalled
        while (wait := self.faults.silent_until_ns - self.clock.now_ns()) > 0:
            await self.clock.sleep(wait / 1e9)
        await ws.send(_encode({"header": {"type": "REQ_RESPONSE", "status": "CONNECTED",
                                          "response": response, "req_id": req_id}}))  # fmt: skip

    async def _on_request(self, ws: ServerConnection, message: str | bytes) -> None:
        try:
            req = json.loads(message)
            req_id = req.get("id")
            if req.get("msg_type") == "STOP":
                self._streams.clear()
                return
            if req.get("msg_type") != "STREAM" or not isinstance(req_id, int):
                raise ValueError("not a STREAM request with an integer id")
            if req_id <= self._last_id:
                await self._reply(ws, req_id, "ERROR")  # ids must strictly increase
                return
            self._last_id = req_id
            if req.get("sec_type") not in self.permissions:
                await self._reply(ws, req_id, "INVALID_PERMS")
                return
            c = req["contract"]
            contract = from_thetadata(c["root"], c["expiration"], c["strike"], c["right"])
        except (ValueError, KeyError, TypeError) as exc:
            log.info("emulator: bad request %r: %s", message, exc)
            await self._reply(ws, None, "ERROR")
            return
        stream = (contract, str(req.get("req_type", "QUOTE")))
        if stream[1] not in ("QUOTE", "TRADE"):
            await self._reply(ws, req_id, "ERROR")
            return
        if not req.get("add", True):
            self._streams.pop(stream, None)
        elif stream not in self._streams:
            if len(self._streams) >= self.max_streams:
                await self._reply(ws, req_id, "MAX_STREAMS_REACHED")
                return
            self._streams[stream] = None
            if self.market.is_listed(contract) and contract not in self._tracked:
                self._tracked.append(contract)
                # baseline at the current step so the next diff is exactly the next change
                _, self._last = self.market.quote_updates(self._tracked, self.market.steps, None)
        await self._reply(ws, req_id, "SUBSCRIBED")

    def _sending(self) -> bool:
        return self._conn is not None and self.clock.now_ns() >= self.faults.silent_until_ns

    async def _status(self) -> None:
        while True:
            await self.clock.sleep(1.0)
            if self._sending():
                down = self.clock.now_ns() < self.faults.upstream_down_until_ns
                frame = {
                    "header": {"type": "STATUS", "status": "DISCONNECTED" if down else "CONNECTED"}
                }
                with contextlib.suppress(Exception):
                    await self._conn.send(_encode(frame))

    async def _run(self) -> None:
        while True:
            await self.clock.sleep(self.market.config.step_s)
            before = self.market.steps
            self.market.advance_to(self.clock.now_ns())
            for step in range(before + 1, self.market.steps + 1):
                frames: list[bytes] = []
                if self._tracked:
                    quotes, self._last = self.market.quote_updates(self._tracked, step, self._last)
                    frames = [
                        quote_frame(q) for q in quotes if (q.contract, "QUOTE") in self._streams
                    ]
                    traded = [c for c in self._tracked if (c, "TRADE") in self._streams]
                    for t in self.market.trades(traded, step) if traded else ():
                        self._trade_seq += 1
                        frames.append(trade_frame(t, self._trade_seq))
                up = self.clock.now_ns() >= self.faults.upstream_down_until_ns
                if self._sending() and up:
                    injected, self.faults.malformed = self.faults.malformed, []
                    try:
                        for f in [*injected, *frames]:
                            await self._conn.send(f)
                    except Exception as exc:
                        log.debug("emulator: send failed: %s", exc)

    # --- REST ---

    def rest(self, endpoint: str, args: dict[str, str]) -> tuple[int, list[dict[str, Any]] | str]:
        """Answer one REST call: (200, rows) or (error code, message)."""
        if self.faults.rest_failures:
            code = self.faults.rest_failures.pop(0)
            return code, ERROR_CODES.get(code, "ERROR")
        if self.faults.rest_garbage:
            self.faults.rest_garbage -= 1
            return 200, "{not json"
        try:
            handler = {
                "option/list/expirations": self._expirations,
                "option/list/strikes": self._strikes,
                "option/snapshot/quote": self._snapshot,
                "option/history/quote": self._history,
                "index/snapshot/price": self._index,
                "option/snapshot/open_interest": self._open_interest,
                "index/history/eod": self._index_eod,
                **history_routes(self.market, self._contracts, self._history),
            }[endpoint]
        except KeyError:
            return 404, f"no such endpoint /v3/{endpoint}"
        try:
            rows = handler(args)
        except (KeyError, ValueError) as exc:
            return 473, f"INVALID_PARAMS: {exc}"
        return (200, rows) if rows else (472, "NO_DATA")

    def _contracts(self, args: dict[str, str]) -> list[Contract]:
        symbol = args["symbol"]
        out = self.market.chain(symbol, alive=False)
        if "expiration" in args and args["expiration"] != "*":
            exp = parse_date(args["expiration"])
            out = [c for c in out if c.expiry == exp]
        if "strike" in args:
            strike = float(args["strike"])
            if not strike > 0:
                raise ValueError(f"bad strike {args['strike']!r}")
            out = [c for c in out if c.strike == strike]
        right = args.get("right", "both").lower()
        if right not in ("call", "put", "both", "c", "p"):
            raise ValueError(f"bad right {args['right']!r}")
        if right != "both":
            out = [c for c in out if c.is_call == (right in ("call", "c"))]
        return out

    def _expirations(self, args: dict[str, str]) -> list[dict[str, Any]]:
        exps = sorted({c.expiry for c in self.market.chain(args["symbol"], alive=False)})
        return [{"symbol": args["symbol"], "expiration": f"{e:%Y-%m-%d}"} for e in exps]

    def _strikes(self, args: dict[str, str]) -> list[dict[str, Any]]:
        if args.get("expiration", "*") == "*":
            raise ValueError("expiration is required for strikes")
        strikes = sorted({c.strike for c in self._contracts(args)})
        return [{"symbol": args["symbol"], "strike": f"{k:.3f}"} for k in strikes]

    def _row(self, q: Quote) -> dict[str, Any]:
        c = q.contract
        return {"symbol": c.root, "expiration": f"{c.expiry:%Y-%m-%d}", "strike": f"{c.strike:.3f}",
                "right": "CALL" if c.is_call else "PUT", "timestamp": format_timestamp(q.ts_ns),
                "bid_size": int(q.bid_size), "bid_exchange": 5, "bid": q.bid, "bid_condition": 50,
                "ask_size": int(q.ask_size), "ask_exchange": 5, "ask": q.ask,
                "ask_condition": 50}  # fmt: skip

    def _snapshot(self, args: dict[str, str]) -> list[dict[str, Any]]:
        contracts = [c for c in self._contracts(args) if to_ns(expiry_time(c)) > self.market.now_ns]
        return [
            {"timestamp": r.pop("timestamp"), **r}
            for r in map(self._row, self.market.quotes(contracts))
        ]

    def _history(self, args: dict[str, str]) -> list[dict[str, Any]]:
        contracts = self._contracts(args)
        start_day = parse_date(args.get("start_date") or args["date"])
        end_day = parse_date(args.get("end_date") or args.get("date") or args["start_date"])
        start = parse_timestamp(f"{start_day:%Y-%m-%d}T{args.get('start_time', '09:30:00')}")
        end = parse_timestamp(f"{end_day:%Y-%m-%d}T{args.get('end_time', '16:00:00')}")
        if end < start:
            raise ValueError("end is before start")
        rows = []
        for c in contracts:
            rows.extend(self._row(q) for q in self.market.quote_history(c, start, end))
        return rows

    def _open_interest(self, args: dict[str, str]) -> list[dict[str, Any]]:
        contracts = self._contracts(args)
        stamp = format_timestamp(self.market.now_ns)
        oi = self.market.open_interest(contracts)
        return [{"symbol": c.root, "expiration": f"{c.expiry:%Y-%m-%d}",
                 "strike": f"{c.strike:.3f}", "right": "CALL" if c.is_call else "PUT",
                 "timestamp": stamp, "open_interest": int(n)}
                for c, n in zip(contracts, oi, strict=True)]  # fmt: skip

    def _index_eod(self, args: dict[str, str]) -> list[dict[str, Any]]:
        """VIX (and SPX's 30-day ATM vol) closes: the simulator's daily IV path, one row per
        session before today's, dated on the sessions themselves."""
        sym = args["symbol"]
        if sym != "VIX":
            return []
        start, end = parse_date(args["start_date"]), parse_date(args["end_date"])
        today = self.clock.now().astimezone(NEW_YORK).date()
        closes = self.market.iv_history("SPX")
        days = sessions_before(today, len(closes))
        return [{"date": f"{d:%Y-%m-%d}", "open": round(float(v), 2), "high": round(float(v), 2),
                 "low": round(float(v), 2), "close": round(float(v), 2)}
                for d, v in zip(days, closes, strict=True) if start <= d <= end]  # fmt: skip

    def _index(self, args: dict[str, str]) -> list[dict[str, Any]]:
        sym = args["symbol"]
        if sym not in (*self.market.symbols, "SPY", "VIX"):
            return []
        return [{"timestamp": format_timestamp(self.market.now_ns), "symbol": sym,
                 "price": round(self.market.spot(sym), 2)}]  # fmt: skip


class _RestHandler(tornado.web.RequestHandler):
    def initialize(self, emu: ThetaDataEmulator) -> None:
        self.emu = emu

    def get(self, endpoint: str) -> None:
        args = {k: self.get_argument(k) for k in self.request.arguments}
        fmt = args.pop("format", "csv")
        code, body = self.emu.rest(endpoint.strip("/"), args)
        if code != 200 or isinstance(body, str):
            self.set_status(code, ERROR_CODES.get(code))
            self.set_header("Content-Type", "text/plain")
            self.finish(str(body))
            return
        if fmt == "ndjson":
            self.set_header("Content-Type", "application/x-ndjson")
            self.finish("".join(json.dumps(r) + "\n" for r in body))
        elif fmt == "csv":
            self.set_header("Content-Type", "text/csv")
            cols = list(body[0])
            lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in body]
            self.finish("\n".join(lines) + "\n")
        else:
            self.set_status(473, "INVALID_PARAMS")
            self.finish(f"unknown format {fmt!r} (csv or ndjson)")


async def serve_forever(rest_port: int, ws_port: int, seed: int, speed: float) -> None:
    """``python -m kit emulate thetadata``: run until interrupted."""
    clock = SimClock(default_start(datetime.now(NEW_YORK)), speed=speed)
    emu = ThetaDataEmulator(
        clock=clock, config=SimConfig(seed=seed), rest_port=rest_port, ws_port=ws_port
    )
    async with emu:
        print(
            f"ThetaData emulator: REST http://127.0.0.1:{emu.rest_port}/v3  "
            f"stream ws://127.0.0.1:{emu.ws_port}/v1/events\n"
            f"market time {clock.now().astimezone(NEW_YORK):%Y-%m-%d %H:%M %Z} at {speed:g}x; "
            "Ctrl-C to stop",
            flush=True,
        )
        while True:
            await asyncio.sleep(3600)

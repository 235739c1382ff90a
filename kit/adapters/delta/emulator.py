"""A loopback Delta Exchange (India) API: signed REST v2 and the socket, on the simulator.

``kit emulate delta --port P --api-key K --api-secret S`` serves ``http://127.0.0.1:P/v2/...``
and the socket at ``ws://127.0.0.1:P/`` (see :mod:`kit.adapters.delta.emulator_ws`). The venue
behind it is :class:`~kit.adapters.delta.exchange.DeltaExchange`. What it checks, as Delta does:

* every request carries a ``User-Agent`` (else 403 ``MissingUserAgent``);
* signed endpoints (orders, positions, wallet, fills) need ``api-key``, ``timestamp`` and
  ``signature`` = HMAC-SHA256(secret, METHOD + timestamp + path + ?query + body): an unknown key is
  401 ``InvalidApiKey``, a wrong signature 401 ``Signature Mismatch``, a timestamp more than
  ``window_s`` (5 s) behind the server's clock 401 ``SignatureExpired`` (with ``server_time``
  in the context so a client can measure its skew), a non-whitelisted IP 401
  ``ip_not_whitelisted_for_api_key``;
* a rate-limit quota of weights per 5-minute window: 429 with ``X-RATE-LIMIT-RESET`` (ms).

Answers use the envelope ``{"success", "result", "error", "meta"}``; lists paginate with
``page_size`` and the opaque ``after``/``before`` cursors in ``meta``. Fault switches
(:class:`Faults`): server clock skew, IP refusal, forced 429s, margin rejection, dropped or
silent sockets; skipped ``seq_no`` and margin refusals are switches of the exchange.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import tornado.httpserver
import tornado.httputil
import tornado.netutil
import tornado.web

from kit.adapters.delta.exchange import COINS, AccountRules, DeltaExchange
from kit.adapters.delta.parsing import DeltaError, is_option, settlement_day_ist
from kit.adapters.delta.signing import SIGNATURE_WINDOW_S, sign_request
from kit.adapters.sim.chains import DEFAULT_CHAINS
from kit.adapters.sim.market import DEFAULT_UNDERLYINGS, MarketSim, SimConfig
from kit.core.clock import Clock, SimClock

log = logging.getLogger(__name__)

PUBLIC = ("products", "tickers", "l2orderbook", "assets", "indices")
WEIGHTS = {"GET": 3, "POST": 5, "PUT": 5, "DELETE": 5}  # quota units per request
QUOTA, QUOTA_WINDOW_S = 10_000, 300.0  # Delta: 10,000 units per 5-minute window


@dataclass
class Faults:
    """Fault switches, flipped by tests (or by hand)."""

    skew_s: float = 0.0  # the server's clock runs this far ahead of the wall
    refuse_ip: bool = False  # answer ip_not_whitelisted_for_api_key
    throttle: int = 0  # answer the next N requests 429
    throttle_reset_ms: int = 200
    silent_until: float = 0.0  # wall time until which the socket sends nothing


def crypto_config(seed: int = 0) -> SimConfig:
    """The simulator with only what Delta lists (BTC and ETH and their daily options): the same
    models, a tenth of the work per step."""
    return SimConfig(seed=seed, underlyings=tuple(u for u in DEFAULT_UNDERLYINGS if u.crypto),
                     chains=tuple(c for c in DEFAULT_CHAINS if c.underlying in COINS))  # fmt: skip


class DeltaEmulator:
    """REST + socket on ``port`` (0: a free one) for one account, ``api_key``/``api_secret``."""

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        clock: Clock | None = None,
        config: SimConfig | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        rules: AccountRules | None = None,
        window_s: float = SIGNATURE_WINDOW_S,
        quota: int = QUOTA,
        heartbeat_s: float = 30.0,
        idle_close_s: float = 60.0,
        tick_s: float = 1.0,
    ) -> None:
        self.clock = clock or SimClock(datetime.now(UTC), speed=1.0)
        self.market = MarketSim(self.clock.now(), config or crypto_config())
        self.exchange = DeltaExchange(self.market, self.clock, rules)
        self.keys = {api_key: api_secret}
        self.host, self._port = host, port
        self.window_s, self.quota = window_s, quota
        self.heartbeat_s, self.idle_close_s, self.tick_s = heartbeat_s, idle_close_s, tick_s
        self.faults = Faults()
        self.requests = 0
        self.used: list[tuple[float, int]] = []  # (wall time, weight) in the quota window
        self.sockets: set[Any] = set()
        self._http: tornado.httpserver.HTTPServer | None = None
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ---

    async def start(self) -> DeltaEmulator:
        from kit.adapters.delta.emulator_ws import SocketHandler, stream_loop

        app = tornado.web.Application(
            [(r"/v2/(.*)", _RestHandler, {"emu": self}), (r"/", SocketHandler, {"emu": self})],
            log_function=lambda _handler: None,
        )
        self._http = tornado.httpserver.HTTPServer(app)
        socks = tornado.netutil.bind_sockets(self._port, self.host)
        self._http.add_sockets(socks)
        self._port = socks[0].getsockname()[1]
        self._task = asyncio.create_task(stream_loop(self))
        return self

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for ws in list(self.sockets):
            ws.close()
        await self.exchange.paper.close()
        if self._http is not None:
            self._http.stop()
            await self._http.close_all_connections()

    async def __aenter__(self) -> DeltaEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    def server_time(self) -> float:
        return time.time() + self.faults.skew_s

    # --- fault switches ---

    def drop(self) -> None:
        """Abort every socket (no close handshake)."""
        for ws in list(self.sockets):
            stream = ws.ws_connection.stream if ws.ws_connection else None
            if stream is not None:
                stream.close()

    def go_silent(self, seconds: float) -> None:
        self.faults.silent_until = time.time() + seconds

    # --- checks ---

    def check_auth(self, method: str, path: str, query: str, body: str, headers: Any) -> None:
        """Delta's signed-request rules; raises the DeltaError it would answer."""
        key = headers.get("api-key")
        secret = self.keys.get(key or "")
        if secret is None:
            raise DeltaError("InvalidApiKey", 401)
        if self.faults.refuse_ip:
            raise DeltaError("ip_not_whitelisted_for_api_key", 401, {"client_ip": "127.0.0.1"})
        ts = headers.get("timestamp") or ""
        now = self.server_time()
        if not ts.isdigit() or now - int(ts) > self.window_s:
            raise DeltaError("SignatureExpired", 401,
                             {"request_time": ts, "server_time": int(now)})  # fmt: skip
        q = f"?{query}" if query else ""
        if headers.get("signature") != sign_request(secret, method, ts, path, q, body):
            raise DeltaError("Signature Mismatch", 401,
                             {"signature_data": method + ts + path + q + body})  # fmt: skip

    def charge(self, method: str) -> tuple[bool, int, int]:
        """(allowed, remaining, reset_ms) after charging one request to the quota."""
        now = time.time()
        self.used = [(t, w) for t, w in self.used if now - t < QUOTA_WINDOW_S]
        if self.faults.throttle > 0:
            self.faults.throttle -= 1
            return False, 0, self.faults.throttle_reset_ms
        spent = sum(w for _, w in self.used)
        weight = WEIGHTS.get(method, 3)
        if spent + weight > self.quota:
            reset = int((QUOTA_WINDOW_S - (now - self.used[0][0])) * 1000) if self.used else 0
            return False, 0, reset
        self.used.append((now, weight))
        return True, self.quota - spent - weight, 0

    # --- routes ---

    async def route(self, method: str, path: str, args: dict[str, str], body: Any) -> Any:
        """The ``result`` (and optional ``meta``) of one request: (result, meta)."""
        ex = self.exchange
        parts = path.strip("/").split("/")
        head = parts[0]
        if method == "GET" and head == "products":
            if len(parts) > 1:
                return ex.product(ex.resolve(parts[1])), None
            rows = [ex.product(p) for p in self._filter(args)]
            return _page(rows, args)
        if method == "GET" and head == "tickers":
            if len(parts) > 1:
                return ex.tickers([ex.resolve(parts[1])])[0], None
            return ex.tickers(self._filter(args)), None
        if method == "GET" and head == "l2orderbook" and len(parts) > 1:
            t = ex.tickers([ex.resolve(parts[1])])[0]
            q = t["quotes"]
            buy = [{"price": q["best_bid"], "size": int(q["bid_size"])}] if q["best_bid"] else []
            sell = [{"price": q["best_ask"], "size": int(q["ask_size"])}]
            return {"symbol": t["symbol"], "buy": buy, "sell": sell}, None
        if head == "orders":
            return await self._orders(method, parts[1:], args, body)
        if method == "GET" and head == "positions":
            rows = ex.positions()
            if len(parts) > 1 and parts[1] == "margined":
                return rows, None
            pid = int(args.get("product_id") or 0)
            row = next((r for r in rows if r["product_id"] == pid), None)
            return row or {"size": 0, "entry_price": None}, None
        if method == "GET" and path.strip("/") == "wallet/balances":
            return ex.wallet(), None
        if method == "GET" and head == "fills":
            return _page(list(reversed(ex.fills)), args)
        raise DeltaError("not_found", 404, {"path": f"/v2/{path}"})

    def _filter(self, args: dict[str, str]) -> list[int]:
        ex = self.exchange
        types = set(filter(None, args.get("contract_types", "").split(",")))
        coins = set(filter(None, args.get("underlying_asset_symbols", "").split(",")))
        expiry = args.get("expiry_date")  # DD-MM-YYYY, as Delta's option chain takes it
        day = datetime.strptime(expiry, "%d-%m-%Y").date().isoformat() if expiry else None
        out = []
        for pid in ex.alive() if args.get("states", "live") == "live" else list(ex.products):
            p = ex.product(pid)
            if types and p["contract_type"] not in types:
                continue
            if coins and p["underlying_asset"]["symbol"] not in coins:
                continue
            if day and (not is_option(p) or settlement_day_ist(p) != day):
                continue
            out.append(pid)
        return out

    async def _orders(self, method: str, rest: list[str], args: dict[str, str], body: Any):
        ex = self.exchange
        if rest[:1] == ["batch"]:
            pid = body.get("product_id")
            batch = [dict(o, product_id=o.get("product_id", pid)) for o in body.get("orders", [])]
            act = {"POST": ex.place, "PUT": ex.edit, "DELETE": ex.cancel}[method]
            return [await act(o) for o in batch], None
        if method == "POST" and not rest:
            return await ex.place(body), None
        if method == "PUT" and not rest:
            return await ex.edit(body), None
        if method == "DELETE" and rest == ["all"]:
            for o in ex.open_orders():
                await ex.cancel({"id": o["id"]})
            return {}, None
        if method == "DELETE" and not rest:
            return await ex.cancel(body), None
        if method == "GET" and rest[:1] == ["client_order_id"] and len(rest) == 2:
            oid = ex.by_client.get(rest[1])
            if oid is None:
                raise DeltaError("order_not_found", 404, {"client_order_id": rest[1]})
            return ex.order_json(oid), None
        if method == "GET" and rest == ["history"]:
            done = [ex.order_json(o) for o in reversed(ex.orders)]
            return _page([o for o in done if o["state"] in ("closed", "cancelled")], args)
        if method == "GET" and len(rest) == 1 and rest[0].isdigit():
            if int(rest[0]) not in ex.orders:
                raise DeltaError("order_not_found", 404, {"id": rest[0]})
            return ex.order_json(int(rest[0])), None
        if method == "GET" and not rest:
            return _page(ex.open_orders(), args)
        raise DeltaError("not_found", 404, {"path": "/v2/orders/" + "/".join(rest)})


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def _page(rows: list[Any], args: dict[str, str]) -> tuple[list[Any], dict[str, Any]]:
    """One page of ``rows`` after the ``after`` cursor (all of them without ``page_size``)."""
    try:
        start = (
            int(base64.urlsafe_b64decode(args["after"]).decode()[2:]) if args.get("after") else 0
        )
        size = int(args.get("page_size") or 0) or len(rows) or 1
    except (ValueError, UnicodeDecodeError):
        raise DeltaError("bad_schema", 400, {"after": args.get("after")}) from None
    page = rows[start : start + size]
    after = _cursor(start + size) if start + size < len(rows) else None
    before = _cursor(max(start - size, 0)) if start > 0 else None
    return page, {"after": after, "before": before, "limit": size, "total_count": len(rows)}


class _RestHandler(tornado.web.RequestHandler):
    def initialize(self, emu: DeltaEmulator) -> None:
        self.emu = emu

    def _send(self, status: int, doc: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(doc))

    async def _handle(self, path: str) -> None:
        emu, req = self.emu, self.request
        emu.requests += 1
        self.set_header("Date", tornado.httputil.format_timestamp(emu.server_time()))
        method = req.method or "GET"
        ok, remaining, reset_ms = emu.charge(method)
        self.set_header("X-RATE-LIMIT-REMAINING", str(remaining))
        if not ok:
            self.set_header("X-RATE-LIMIT-RESET", str(reset_ms))
            return self._send(429, {"success": False, "error": {"code": "RateLimitExceeded",
                                                                 "context": {}}})  # fmt: skip
        body_text = req.body.decode() if req.body else ""
        try:
            if not req.headers.get("User-Agent"):
                raise DeltaError("MissingUserAgent", 403)
            if path.split("/")[0] not in PUBLIC or req.headers.get("api-key"):
                emu.check_auth(method, req.path, req.query, body_text, req.headers)
            body = json.loads(body_text) if body_text else {}
            if not isinstance(body, dict):
                raise DeltaError("bad_schema", 400, {"body": "expected a JSON object"})
            args = {k: self.get_argument(k) for k in req.arguments}
            result, meta = await emu.route(method, path, args, body)
        except json.JSONDecodeError:
            return self._send(400, {"success": False, "error": {"code": "bad_schema"}})
        except DeltaError as exc:
            error = {"code": exc.code, "context": exc.context}
            return self._send(exc.status, {"success": False, "error": error})
        doc: dict[str, Any] = {"success": True, "result": result}
        if meta is not None:
            doc["meta"] = meta
        return self._send(200, doc)

    async def get(self, path: str) -> None:
        await self._handle(path)

    async def post(self, path: str) -> None:
        await self._handle(path)

    async def put(self, path: str) -> None:
        await self._handle(path)

    async def delete(self, path: str) -> None:
        await self._handle(path)


async def serve_forever(port: int, api_key: str, api_secret: str, seed: int, speed: float) -> None:
    """``kit emulate delta``: run until interrupted (the secret is never printed)."""
    clock = SimClock(datetime.now(UTC), speed=speed)
    emu = DeltaEmulator(api_key=api_key, api_secret=api_secret, clock=clock,
                        config=crypto_config(seed), port=port)  # fmt: skip
    async with emu:
        print(f"Delta Exchange emulator: REST {emu.base_url}/v2  socket ws://127.0.0.1:"
              f"{emu.port}/  key {api_key}; market at {speed:g}x; Ctrl-C to stop",
              flush=True)  # fmt: skip
        while True:
            await asyncio.sleep(3600)

"""A loopback tastytrade API: the REST routes the SDK calls and DXLink, on the simulator.

``kit emulate tastytrade --port P`` serves ``http://127.0.0.1:P`` (point the SDK at it with
``tastytrade.session.API_URL`` or ``TT_API_URL``) and DXLink at ``ws://127.0.0.1:P/dxlink``
(:mod:`kit.adapters.tastytrade.emulator_dxlink`). Any client secret and refresh token are
accepted. Routes (tastytrade's shapes, ``{"data": ...}`` envelopes, dasherized keys):

* ``POST /oauth/token`` (refresh-token grant) -> ``access_token``, ``expires_in``;
* ``GET /api-quote-tokens`` -> ``token`` and ``dxlink-url`` pointing back here;
* ``GET /option-chains/{symbol}/nested`` -> one item per root (SPX: SPX and SPXW) with every
  expiry's strikes and streamer symbols; ``GET /market-data/by-type`` (quotes, open interest);
* ``GET /customers/me/accounts``, ``/accounts/{n}/positions``, ``/accounts/{n}/balances/USD``;
* ``POST /accounts/{n}/orders[/dry-run]``, ``GET .../orders/live``, ``GET|DELETE
  .../orders/{id}``: orders are matched by a paper broker on the simulator's quotes (dry runs
  are validated and priced, never placed; ``external-identifier`` is the idempotency key).

Errors are ``{"error": {"code", "message"}}`` (401 for a missing or expired token). Fault
switches (methods, or ``POST /faults`` JSON for a running ``kit emulate``): ``drop()`` closes
every socket, ``silence(s)``, ``bad_auth`` (OAuth refuses), ``expire_auth()`` (every token dies:
REST answers 401, sockets get UNAUTHORIZED), ``inject(*frames)`` and ``nan_rows`` (the next N
streamed rows carry ``"NaN"`` prices and Greeks).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from kit.adapters.paper.broker import PaperBroker, PaperConfig
from kit.adapters.sim.market import MarketSim, SimConfig
from kit.adapters.tastytrade import emulator_rest
from kit.adapters.tastytrade import orders as wire
from kit.adapters.tastytrade.emulator_dxlink import DXLinkHandler, push, stream_loop
from kit.adapters.tastytrade.emulator_rest import EmulatorError
from kit.adapters.thetadata.emulator import default_start
from kit.core.clock import NEW_YORK, Clock, SimClock, from_ns
from kit.core.model import Contract
from kit.core.symbology import to_dxlink, to_occ
from kit.core.tasks import cancel
from kit.execution.broker import BrokerError, OrderRejectedError
from kit.portfolio.market import MarketState

log = logging.getLogger(__name__)
ACCOUNT = "5WT00001"


class TastytradeEmulator:
    """REST + DXLink on ``port`` (0: a free one) for one account, driven by ``clock``."""

    def __init__(self, *, clock: Clock | None = None, config: SimConfig | None = None,
                 port: int = 0, host: str = "127.0.0.1", account: str = ACCOUNT,
                 token_lifetime_s: int = 900, keepalive_s: float = 30.0,
                 max_message_bytes: int = 65_536,
                 paper: PaperConfig | None = None) -> None:  # fmt: skip
        self.clock = clock or SimClock(default_start(datetime.now(NEW_YORK)), speed=1.0)
        self.market = MarketSim(self.clock.now(), config)
        self.state = MarketState()
        self.broker = PaperBroker(self.clock, self.state, paper)
        self.host, self._port, self.account = host, port, account
        self.token_lifetime_s, self.keepalive_s = token_lifetime_s, keepalive_s
        self.max_message_bytes = max_message_bytes
        self.tokens: set[str] = set()  # valid OAuth access tokens
        self.quote_tokens: set[str] = set()
        self.sockets: set[DXLinkHandler] = set()
        self.connections = 0
        self.messages: list[str] = []  # every client DXLink message (for tests)
        self.frames_sent: dict[str, int] = {}
        self.requests: list[str] = []
        self.bad_auth = False
        self.nan_rows = 0
        self.injected: list[str] = []
        # (streamer symbol, time ms) -> perf_counter when its Greeks frame was sent; None: off
        self.send_log: dict[tuple[str, int], float] | None = None
        self._silent_until = 0.0
        self._ids: dict[str, int] = {}  # client id -> order id
        self._by_id: dict[int, str] = {}
        self._next_id = 1001
        self._orders_tracked: set[Contract] = set()
        self._by_symbol: dict[str, Contract] = {}
        self._http: tornado.httpserver.HTTPServer | None = None
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ---

    async def start(self) -> TastytradeEmulator:
        app = tornado.web.Application(
            [(r"/dxlink", DXLinkHandler, {"emu": self}), (r"/faults", _Faults, {"emu": self}),
             (r"/(.*)", _Rest, {"emu": self})],
            log_function=lambda _handler: None, websocket_max_message_size=self.max_message_bytes,
        )  # fmt: skip
        self._http = tornado.httpserver.HTTPServer(app)
        socks = tornado.netutil.bind_sockets(self._port, self.host)
        self._http.add_sockets(socks)
        self._port = socks[0].getsockname()[1]
        self._task = asyncio.create_task(stream_loop(self), name="tastytrade-emulator")
        return self

    async def close(self) -> None:
        await cancel(self._task)
        self._task = None
        await self.drop()
        await self.broker.close()
        if self._http is not None:
            self._http.stop()
            await self._http.close_all_connections()
            self._http = None

    async def __aenter__(self) -> TastytradeEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    # --- fault switches ---

    async def drop(self) -> None:
        for ws in list(self.sockets):
            ws.close(1011, "dropped by the emulator")
        self.sockets.clear()

    def silence(self, seconds: float) -> None:
        self._silent_until = time.monotonic() + seconds

    def silent(self) -> bool:
        return time.monotonic() < self._silent_until

    def expire_auth(self) -> None:
        """Every access and quote token stops working now (the SDK's clock still trusts its)."""
        self.tokens.clear()
        self.quote_tokens.clear()
        for ws in list(self.sockets):
            ws.authed = False
            ws.send({"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"})

    def inject(self, *frames: str) -> None:
        self.injected.extend(frames)

    def mangle(self, by_kind: dict[str, list[dict[str, Any]]]) -> None:
        """Apply ``nan_rows``: the next N option rows get NaN prices and Greeks."""
        for kind in ("Quote", "Greeks"):
            for row in by_kind.get(kind, []):
                if self.nan_rows <= 0:
                    return
                if row["eventSymbol"].startswith("."):
                    self.nan_rows -= 1
                    for k in ("bidPrice", "askPrice", "delta", "volatility", "gamma"):
                        if k in row:
                            row[k] = "NaN"

    # --- market ---

    def symbol(self, c: Contract) -> str:
        s = to_dxlink(c)
        self._by_symbol.setdefault(s, c)
        return s

    def contract(self, symbol: str) -> Contract | None:
        c = self._by_symbol.get(symbol)
        if c is None:
            from kit.adapters.tastytrade.dxlink import contract_of

            c = contract_of(symbol)
            if c is not None:
                self._by_symbol[symbol] = c
        return c

    def snapshot_to(self, ws: DXLinkHandler, fresh: dict[str, list[str]]) -> None:
        push(self, [ws], self.market.steps, only=fresh)

    def on_step(self) -> None:
        """Quotes of the contracts orders trade reach the paper broker, which matches."""
        if self._orders_tracked:
            for q in self.market.quotes(list(self._orders_tracked)):
                self.state.on_quote(q)
            self.broker.on_market()

    def roots(self, symbol: str) -> list[str]:
        have = {c.root for c in self.market.chain()}
        n = len(symbol)
        return sorted(r for r in have if r == symbol or (r.startswith(symbol) and len(r) == n + 1))

    def now_iso(self) -> str:
        return from_ns(self.clock.now_ns()).astimezone(UTC).isoformat()

    # --- REST ---

    def issue_token(self) -> dict[str, Any]:
        if self.bad_auth:
            raise EmulatorError(401, "invalid_grant", "Grant revoked or invalid refresh token")
        token = secrets.token_hex(16)
        self.tokens.add(token)
        return {"access_token": token, "token_type": "Bearer",
                "expires_in": self.token_lifetime_s}  # fmt: skip

    def check_token(self, header: str | None) -> None:
        token = (header or "").removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise EmulatorError(401, "token_invalid", "This token is invalid or has expired")

    async def route(self, method: str, path: str, args: dict[str, list[str]], body: Any):
        return await emulator_rest.route(self, method, path, args, body)

    async def place(self, body: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        cid = str(body.get("external-identifier") or f"tt-{self._next_id}")
        try:
            order = wire.order_of(body, cid, self.clock.now_ns())
        except ValueError as exc:
            raise EmulatorError(400, "invalid_order", str(exc)) from None
        for leg in order.legs:
            if not self.market.is_listed(leg.contract):
                raise EmulatorError(400, "invalid_symbol", f"{to_occ(leg.contract)} is not listed")
        if dry_run:
            from kit.execution.broker import OrderState, OrderStatus

            return await self._response(OrderState(order, OrderStatus.PENDING), 0, dry=True)
        if cid in self._ids:
            st = self.broker.order(cid)
            assert st is not None
            return await self._response(st, self._ids[cid])
        self._orders_tracked.update(leg.contract for leg in order.legs)
        for q in self.market.quotes([leg.contract for leg in order.legs]):
            self.state.on_quote(q)
        try:
            state = await self.broker.place(order)
        except OrderRejectedError as exc:
            raise EmulatorError(422, "preflight_check_failure", str(exc)) from None
        oid = self._next_id
        self._next_id += 1
        self._ids[cid], self._by_id[oid] = oid, cid
        return await self._response(state, oid)

    async def replace(self, cid: str, body: dict[str, Any]) -> dict[str, Any]:
        """The order replaced by ``body``: a new limit price, and a new size when its legs are
        given (the SDK's ``replace_order`` sends no legs: the same legs and size)."""
        quantity = None
        try:
            price = float(body["price"])
            if body.get("legs"):
                quantity = wire.order_of(body, cid, self.clock.now_ns()).quantity
        except (KeyError, TypeError, ValueError) as exc:
            raise EmulatorError(400, "invalid_order", f"a replacement needs a price: {exc}") \
                from None  # fmt: skip
        signed = price if body.get("price-effect") == "Debit" else -price
        try:
            await self.broker.replace(cid, limit_price=signed, quantity=quantity)
        except (OrderRejectedError, BrokerError) as exc:
            raise EmulatorError(422, "replace_failed", str(exc)) from None
        return await self.order_doc(cid)

    async def order_doc(self, cid: str) -> dict[str, Any]:
        st = self.broker.order(cid)
        if st is None:
            raise EmulatorError(404, "record_not_found", f"order {cid} not found")
        fills = [{"fill-id": f.fill_id, "quantity": f.quantity, "fill-price": f"{f.price:.2f}",
                  "filled-at": from_ns(f.ts_ns).isoformat(), "symbol": to_occ(f.contract)}
                 for f in await self.broker.fills() if f.client_id == cid]  # fmt: skip
        return wire.order_json(st, order_id=self._ids[cid], account=self.account,
                               iso_now=self.now_iso(), fills=fills)  # fmt: skip

    def order_by_id(self, oid: int) -> str:
        cid = self._by_id.get(oid)
        if cid is None:
            raise EmulatorError(404, "record_not_found", f"order {oid} not found")
        return cid

    async def _response(self, state: Any, oid: int, dry: bool = False) -> dict[str, Any]:
        o = state.order
        prices = [q.mid for q in self.market.quotes([leg.contract for leg in o.legs])]
        from kit.risk.margin import reg_t_margin

        spot = self.market.spot("SPY" if o.legs[0].contract.root == "SPY" else "SPX")
        margin = reg_t_margin(o.legs, prices, spot, o.quantity) if len(prices) == len(o.legs) else 0
        doc = (wire.order_json(state, order_id=oid, account=self.account, iso_now=self.now_iso())
               if dry else await self.order_doc(o.client_id))  # fmt: skip
        if dry:
            doc.pop("id")
        account = await self.broker.account()
        bp = account.net_liquidation - account.buying_power_used
        fees = 1.0 * sum(abs(leg.ratio) for leg in o.legs) * o.quantity
        return {"order": doc, "buying-power-effect": {
            "change-in-margin-requirement": f"{margin:.2f}",
            "change-in-margin-requirement-effect": "Debit",
            "change-in-buying-power": f"{margin:.2f}", "change-in-buying-power-effect": "Debit",
            "current-buying-power": f"{bp:.2f}", "current-buying-power-effect": "Credit",
            "new-buying-power": f"{bp - margin:.2f}", "new-buying-power-effect": "Credit",
            "isolated-order-margin-requirement": f"{margin:.2f}",
            "isolated-order-margin-requirement-effect": "Debit",
            "is-spread": len(o.legs) > 1, "impact": f"{margin:.2f}", "effect": "Debit"},
            "fee-calculation": {"regulatory-fees": "0.00", "clearing-fees": "0.00",
                                "commission": f"{fees:.2f}",
                                "proprietary-index-option-fees": "0.00",
                                "total-fees": f"{fees:.2f}", "total-fees-effect": "Debit"},
            "warnings": []}  # fmt: skip


class _Rest(tornado.web.RequestHandler):
    def initialize(self, emu: TastytradeEmulator) -> None:
        self.emu = emu

    async def _any(self, path: str) -> None:
        emu, method = self.emu, self.request.method or "GET"
        emu.requests.append(f"{method} /{path}")
        try:
            body = json.loads(self.request.body) if self.request.body else {}
        except ValueError:
            body = None
        try:
            if body is None:
                raise EmulatorError(400, "bad_request", "the body is not JSON")
            if path == "oauth/token" and method == "POST":
                status, doc = 200, emu.issue_token()
            else:
                emu.check_token(self.request.headers.get("Authorization"))
                args = {k: [v.decode() for v in vs] for k, vs in self.request.arguments.items()}
                status, doc = await emu.route(method, path, args, body)
        except EmulatorError as exc:
            status, doc = exc.status, {"error": {"code": exc.code, "message": exc.message}}
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(doc))

    async def get(self, path: str) -> None:
        await self._any(path)

    async def post(self, path: str) -> None:
        await self._any(path)

    async def put(self, path: str) -> None:
        await self._any(path)

    async def delete(self, path: str) -> None:
        await self._any(path)


class _Faults(tornado.web.RequestHandler):
    """``POST /faults`` {"drop": true, "silence_s": 5, "bad_auth": true, "expire_auth": true,
    "nan_rows": 10, "inject": ["..."]} for a running ``kit emulate tastytrade``."""

    def initialize(self, emu: TastytradeEmulator) -> None:
        self.emu = emu

    async def post(self) -> None:
        try:
            doc = json.loads(self.request.body or b"{}")
            if not isinstance(doc, dict):
                raise ValueError("expected an object")
        except ValueError as exc:
            self.set_status(400)
            self.finish({"error": {"code": "bad_request", "message": str(exc)}})
            return
        emu = self.emu
        if "bad_auth" in doc:
            emu.bad_auth = bool(doc["bad_auth"])
        if doc.get("expire_auth"):
            emu.expire_auth()
        if doc.get("silence_s"):
            emu.silence(float(doc["silence_s"]))
        emu.nan_rows += int(doc.get("nan_rows", 0))
        emu.inject(*map(str, doc.get("inject", [])))
        if doc.get("drop"):
            await emu.drop()
        self.finish({"ok": True})


async def serve_forever(port: int, seed: int, speed: float) -> None:
    """``kit emulate tastytrade``: run until interrupted."""
    clock = SimClock(default_start(datetime.now(NEW_YORK)), speed=speed)
    async with TastytradeEmulator(clock=clock, config=SimConfig(seed=seed), port=port) as emu:
        print(f"tastytrade emulator: REST {emu.url}  DXLink ws://127.0.0.1:{emu.port}/dxlink\n"
              f"market time {clock.now().astimezone(NEW_YORK):%Y-%m-%d %H:%M %Z} at {speed:g}x; "
              f"TT_API_URL={emu.url} TT_SECRET=any TT_REFRESH=any; Ctrl-C to stop",
              flush=True)  # fmt: skip
        while True:
            await asyncio.sleep(3600)

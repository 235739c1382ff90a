"""A loopback IBKR Client Portal gateway (CP Web API v1) in front of a paper matching engine.

It lets :class:`kit.adapters.cpapi.broker.CpApiBroker` be tested end to end over real HTTP: every
order it accepts becomes a :class:`kit.core.model.Order` on the engine (a
:class:`~kit.adapters.paper.broker.PaperBroker`, which fills against the quotes of its
``MarketState``), and the engine's states and fills are served back in the gateway's JSON. The
caller owns the engine: it feeds quotes and calls ``on_market()``.

Served under ``/v1/api`` (shapes from IBKR's CP Web API v1 reference and the IB REST API 2.x
OpenAPI models; the adapter's docstring lists the fields): the WebSocket ``ws`` (market data,
:mod:`kit.adapters.cpapi.emulator_ws`), ``iserver/auth/ssodh/init``, ``iserver/reauthenticate``,
``logout``, ``iserver/secdef/strikes``, ``iserver/marketdata/snapshot``,
``iserver/auth/status``, ``tickle``,
``iserver/accounts``, ``portfolio/accounts``, ``iserver/secdef/search`` (GET or POST),
``iserver/secdef/info``, ``iserver/contract/{conid}/info``, ``iserver/account/{acct}/orders``,
``iserver/reply/{replyId}``, ``iserver/account/{acct}/order/{orderId}`` (POST modify, DELETE
cancel), ``iserver/account/orders``, ``iserver/account/trades``,
``portfolio/{acct}/positions/{page}``, ``portfolio/{acct}/summary`` and ``.../ledger``.

Conids are stable for the emulator's life: SPX and SPY carry IBKR's real underlying conids
(416904, 756733), other underlyings and every option tracked by the engine's market get numbers
in order of first sight. Choices where IBKR's docs are silent: errors are ``{"error": text}``
with HTTP 400 (bad or refused order, duplicate ``cOID``, unknown order), 401 when the session is
not authenticated and 404 for an unknown endpoint; a declined reply discards the ticket and
answers ``{"msg": "order ticket discarded"}``; expiry settlements are not listed as trades.

Fault switches: ``unauthenticated`` (auth status false, 401 elsewhere), ``require_confirmation``
(a message id, e.g. ``"p12"``: the next order is answered with that question) and
:meth:`CpApiEmulator.fail_next` (the next N requests answer an HTTP error). The JSON answers
are rendered by :mod:`kit.adapters.cpapi.replies`; this module routes, keeps the ids and drives
the engine.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from kit.adapters.cpapi import replies
from kit.adapters.cpapi.emulator_ws import StreamHandler, StreamHub
from kit.adapters.cpapi.replies import COMBO_CONID, IB_STATUS, RequestLimit, month
from kit.adapters.paper.broker import PaperBroker
from kit.core.model import Contract, Leg, Order, OrderType, Side
from kit.execution.broker import BrokerError, OrderRejectedError

log = logging.getLogger(__name__)

__all__ = ["COMBO_CONID", "REPLY_MESSAGES", "UNDERLYING_CONIDS", "CpApiEmulator"]
UNDERLYING_CONIDS = {"SPX": 416904, "SPY": 756733, "VIX": 13455763}
# Paraphrases of IBKR's order-reply questions, by message id.
REPLY_MESSAGES = {
    "p12": "If your order is not immediately executable, it may be rejected when its limit price "
    "is too far from the reference price. Submit this order?",
    "o163": "The following order exceeds the price percentage limit. Submit this order?",
    "o354": "You are submitting an order without market data. Submit this order?",
    "o383": "The following order exceeds the size limit. Submit this order?",
}
Answer = tuple[int, Any]
_OPEN_PATHS = ("iserver/auth/status", "tickle", "iserver/auth/ssodh/init",
               "iserver/reauthenticate", "logout", "kit/faults")  # fmt: skip
Route = Callable[[re.Match[str], dict[str, str], Any], Awaitable[Answer]]


class CpApiEmulator:
    """Serve the Client Portal API on ``host:port`` (0 = a free port) over ``broker``."""

    def __init__(self, broker: PaperBroker, *, account: str = "DU1234567", port: int = 0,
                 host: str = "127.0.0.1", heartbeat_s: float = 10.0,
                 listing: Callable[[str], Sequence[Contract]] | None = None) -> None:  # fmt: skip
        self.broker, self.account, self.host, self._port = broker, account, host, port
        self.listing = listing  # options of an underlying (default: those the market tracks)
        self.stream = StreamHub(self, heartbeat_s)  # the /v1/api/ws socket (emulator_ws)
        self.history: Callable[[str, int], Sequence[float]] | None = None  # daily closes
        self.strike_required = False  # secdef/info without a strike: 400 (IBKR's documented rule)
        self.unauthenticated = False
        self.require_confirmation: str | None = None  # message id asked on the next order
        self.requests: list[str] = []  # "METHOD /path" of every request, for tests
        self.tickets: list[dict[str, Any]] = []  # order and modify bodies as received
        self._failures: list[int] = []
        self.limit = RequestLimit()  # the gateway's requests-a-second limit (off: set .rps)
        self._conids: dict[Contract, int] = {}
        self._contracts: dict[int, Contract] = {}
        self._underlyings: dict[str, int] = dict(UNDERLYING_CONIDS)
        self._next_conid, self._next_und, self._next_order = 700_000_001, 90_000_001, 1_800_000_001
        self._client_ids: dict[int, str] = {}  # IBKR order id -> engine client id
        self._order_ids: dict[str, int] = {}  # engine client id -> IBKR order id
        self._coids: dict[int, str] = {}  # order id -> the cOID it was sent with
        self._conidex: dict[int, str] = {}
        self._cancelling: set[int] = set()
        self._questions: dict[str, dict[str, Any]] = {}  # reply id -> the order waiting on it
        self._session = uuid.uuid4().hex
        self._http: tornado.httpserver.HTTPServer | None = None
        a = r"([^/]+)"
        table: list[tuple[str, str, Route]] = [
            ("GET|POST", r"iserver/auth/status", self._auth_status),
            ("GET|POST", r"tickle", self._tickle),
            ("POST", r"iserver/auth/ssodh/init|iserver/reauthenticate", self._login),
            ("POST", r"logout", self._logout),
            ("GET", r"iserver/secdef/strikes", self._strikes),
            ("GET", r"iserver/marketdata/snapshot", self._snapshot),
            ("GET", r"iserver/marketdata/history", self._history),
            ("POST", r"kit/faults", self._faults),
            ("GET", r"iserver/accounts", self._accounts),
            ("GET", r"portfolio/accounts", self._portfolio_accounts),
            ("GET|POST", r"iserver/secdef/search", self._search),
            ("GET", r"iserver/secdef/info", self._secdef_info),
            ("GET", r"iserver/contract/(\d+)/info", self._contract_info),
            ("POST", rf"iserver/account/{a}/orders", self._place),
            ("POST", rf"iserver/reply/{a}", self._reply),
            ("POST", rf"iserver/account/{a}/order/(\d+)", self._modify),
            ("DELETE", rf"iserver/account/{a}/order/(\d+)", self._cancel),
            ("GET", r"iserver/account/orders", self._live_orders),
            ("GET", r"iserver/account/trades", self._trades),
            ("GET", rf"portfolio/{a}/positions/(\d+)", self._positions),
            ("GET", rf"portfolio/{a}/summary", self._summary),
            ("GET", rf"portfolio/{a}/ledger", self._ledger),
        ]
        self._routes = [(frozenset(m.split("|")), re.compile(p), f) for m, p, f in table]

    # --- lifecycle ---

    async def start(self) -> CpApiEmulator:
        app = tornado.web.Application(
            [(r"/v1/api/ws", StreamHandler, {"emu": self}),
             (r"/v1/api/(.*)", _Handler, {"emu": self})], log_function=lambda _handler: None,
        )  # fmt: skip
        self._http = tornado.httpserver.HTTPServer(app)
        socks = tornado.netutil.bind_sockets(self._port, self.host)
        self._http.add_sockets(socks)
        self._port = socks[0].getsockname()[1]
        return self

    async def close(self) -> None:
        for ws in list(self.stream.sockets):
            ws.close()
        if self._http is not None:
            self._http.stop()
            await self._http.close_all_connections()
            self._http = None

    async def __aenter__(self) -> CpApiEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}/v1/api"

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests (any endpoint) with HTTP ``status``."""
        self._failures.extend([status] * n)

    # --- dispatch ---

    async def handle(self, method: str, path: str, args: dict[str, str], body: Any) -> Answer:
        """One request: (HTTP status, JSON body)."""
        self.requests.append(f"{method} /{path}")
        if self.limit.refuse():
            return 429, {"error": "Too Many Requests"}
        if self._failures:
            code = self._failures.pop(0)
            return code, {"error": f"emulated failure (HTTP {code})"}
        for methods, pattern, route in self._routes:
            if method in methods and (m := pattern.fullmatch(path)):
                if self.unauthenticated and path not in _OPEN_PATHS:
                    return 401, {"error": "not authenticated"}
                try:
                    return await route(m, args, body)
                except (KeyError, ValueError, TypeError, AttributeError) as exc:
                    return 400, {"error": f"bad request: {type(exc).__name__}: {exc}"}
        return 404, {"error": f"no such endpoint: {method} /v1/api/{path}"}

    def _check_account(self, acct: str) -> None:
        if acct != self.account:
            raise ValueError(f"account {acct} is not in this session")

    # --- contracts ---

    def conid(self, c: Contract) -> int:
        """The conid of a contract: stable, assigned on first sight."""
        conid = self._conids.get(c)
        if conid is None:
            conid = self._conids[c] = self._next_conid
            self._contracts[conid] = c
            self._next_conid += 1
        return conid

    def _underlying(self, symbol: str) -> int:
        if symbol not in self._underlyings:
            self._underlyings[symbol] = self._next_und
            self._next_und += 1
        return self._underlyings[symbol]

    @property
    def session(self) -> str:
        """The session token (``/tickle``): the socket's cookie must carry it."""
        return self._session

    def new_session(self) -> None:
        self._session = uuid.uuid4().hex

    def contract_of(self, conid: int) -> Contract | None:
        return self._contracts.get(conid)

    def underlying_symbol(self, conid: int) -> str | None:
        return next((s for s, c in self._underlyings.items() if c == conid), None)

    def _chain(self, symbol: str) -> list[Contract]:
        """The options on ``symbol``: the listing's, else those the engine's market tracks
        (conids assigned on the way)."""
        if self.listing is not None:
            out = list(self.listing(symbol))
        else:
            out = [c for c in self.broker.market.contracts if c.underlying == symbol]
        for c in out:
            self.conid(c)
        return out

    def _contract(self, conid: int) -> Contract:
        if conid not in self._contracts:
            raise ValueError(f"unknown conid {conid}")
        return self._contracts[conid]

    async def _search(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        symbol = str((body or {}).get("symbol") or args["symbol"]).upper()
        chain = self._chain(symbol)
        known = symbol in self._underlyings or symbol in self.broker.market.underlyings
        if not chain and not known:
            return 200, []
        return 200, [replies.search_row(symbol, self._underlying(symbol), chain)]

    async def _secdef_info(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        conid, wanted = int(args["conid"]), args["month"].upper()
        symbol = next((s for s, c in self._underlyings.items() if c == conid), None)
        if symbol is None or args.get("sectype", "OPT").upper() != "OPT":
            return 200, []
        strike, right = args.get("strike"), args.get("right", "").upper()[:1]
        if self.strike_required and not strike:  # as IBKR's docs state it for OPT
            return 400, {"error": "strike is required for sectype OPT"}
        rows = []
        for c in self._chain(symbol):
            if month(c) != wanted or (strike and abs(c.strike - float(strike)) > 1e-6):
                continue
            if right and c.right.value != right:
                continue
            rows.append(replies.secdef_row(c, self.conid(c), symbol))
        return 200, rows

    async def _strikes(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        symbol = self.underlying_symbol(int(args["conid"]))
        wanted = args["month"].upper()
        chain = [c for c in self._chain(symbol) if month(c) == wanted] if symbol else []
        return 200, {"call": sorted({c.strike for c in chain if c.is_call}),
                     "put": sorted({c.strike for c in chain if not c.is_call})}  # fmt: skip

    async def _snapshot(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        """``iserver/marketdata/snapshot?conids=&fields=``: the fields now, every one."""
        wanted = frozenset(args.get("fields", "31,84,86").split(","))
        conids = [int(c) for c in args["conids"].split(",") if c]
        self.stream.refresh(c for k in conids if (c := self.contract_of(k)) is not None)
        ms = self.broker.clock.now_ns() // 1_000_000
        return 200, [{"conid": k, "conidEx": str(k), "_updated": ms,
                      **self.stream.fields(k, wanted)} for k in conids]  # fmt: skip

    async def _faults(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        return 200, self.stream.switch(body if isinstance(body, dict) else {})

    async def _history(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        """``iserver/marketdata/history?conid=&period=1y&bar=1d``: daily closes, if known."""
        symbol = self.underlying_symbol(int(args["conid"]))
        period = args.get("period", "1y")
        days = int(period[:-1]) * {"d": 1, "w": 5, "m": 21, "y": 252}[period[-1]]
        closes = list(self.history(symbol, days)) if self.history and symbol else []
        ms = self.broker.clock.now_ns() // 1_000_000
        return 200, replies.history(symbol or args["conid"], closes, ms)

    async def _contract_info(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        c = self._contract(int(m.group(1)))
        return 200, replies.contract_info(c, self.conid(c), self._underlying(c.underlying))

    # --- session ---

    async def _auth_status(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        return 200, replies.auth_status(not self.unauthenticated)

    async def _login(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        """``ssodh/init`` / ``reauthenticate``: the session is authenticated again."""
        self.unauthenticated = self.stream.faults.refuse_login
        return 200, {"authenticated": not self.unauthenticated, "connected": True,
                     "competing": False, "message": ""}  # fmt: skip

    async def _logout(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        self.stream.expire_session()
        return 200, {"status": True}

    async def _tickle(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        _, auth = await self._auth_status(m, args, body)
        return 200, replies.tickle(self._session, auth)

    async def _accounts(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        return 200, replies.accounts(self.account, self._session)

    async def _portfolio_accounts(
        self, m: re.Match[str], args: dict[str, str], body: Any
    ) -> Answer:
        return 200, replies.portfolio_accounts(self.account)

    # --- orders ---

    async def _place(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        self._check_account(m.group(1))
        orders = body["orders"] if isinstance(body, dict) else body
        if not isinstance(orders, list) or len(orders) != 1:
            return 400, {"error": "the emulator takes one order per request"}
        if (mid := self.require_confirmation) is not None:
            self.require_confirmation = None
            reply_id = str(uuid.uuid4())
            self._questions[reply_id] = orders[0]
            text = REPLY_MESSAGES.get(mid, "Are you sure you want to submit this order?")
            return 200, [{"id": reply_id, "message": [text], "isSuppressed": False,
                          "messageIds": [mid]}]  # fmt: skip
        return await self._submit(orders[0])

    async def _reply(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        ticket = self._questions.pop(m.group(1), None)
        if ticket is None:
            return 400, {"error": f"reply id {m.group(1)} is unknown or already answered"}
        if not (isinstance(body, dict) and body.get("confirmed") is True):
            return 200, {"msg": "order ticket discarded"}
        return await self._submit(ticket)

    async def _submit(self, o: dict[str, Any]) -> Answer:
        self.tickets.append(o)
        coid = o.get("cOID")
        if coid is not None and str(coid) in self._order_ids:
            return 400, {"error": f"Order with cOID {coid} is already registered"}
        self._check_account(str(o.get("acctId", self.account)))
        oid = self._next_order
        client_id = str(coid) if coid is not None else f"ib-{oid}"
        order = self._to_order(o, client_id)
        try:
            state = await self.broker.place(order)
        except (OrderRejectedError, BrokerError) as exc:
            return 400, {"error": str(exc)}
        self._next_order += 1
        self._client_ids[oid], self._order_ids[client_id] = client_id, oid
        if coid is not None:
            self._coids[oid] = str(coid)
        self._conidex[oid] = str(o.get("conidex") or o.get("conid"))
        return 200, [{"order_id": str(oid), "order_status": IB_STATUS[state.status],
                      "encrypt_message": "1", "local_order_id": coid}]  # fmt: skip

    def _to_order(self, o: dict[str, Any], client_id: str) -> Order:
        qty = float(o["quantity"])
        if not qty.is_integer():
            raise ValueError(f"quantity {qty} is not whole")
        side = {"BUY": Side.BUY, "SELL": Side.SELL}[str(o["side"]).upper()]
        kind = str(o.get("orderType", "LMT")).upper()
        if kind not in ("LMT", "MKT") or str(o.get("tif", "DAY")).upper() not in ("DAY", "GTC"):
            raise ValueError(f"the emulator takes LMT/MKT DAY/GTC orders, not {kind}")
        conidex = str(o.get("conidex") or "")
        if ";;;" in conidex:
            head, legs_text = conidex.split(";;;", 1)
            if int(head) != COMBO_CONID:
                raise ValueError(f"combo conid {head} is not {COMBO_CONID} (USD)")
            legs = []
            for part in legs_text.split(","):
                conid, ratio = part.split("/")
                legs.append(Leg(self._contract(int(conid)), int(ratio)))
        else:
            legs = [Leg(self._contract(int(o.get("conid") or conidex.split("@")[0])), 1)]
        price = float(o["price"]) if kind == "LMT" else None
        otype = OrderType.LIMIT if kind == "LMT" else OrderType.MARKET
        now = self.broker.clock.now_ns()
        return Order(client_id, tuple(legs), side, int(qty), otype, now, limit_price=price)

    def _known(self, acct: str, order_id: str) -> tuple[int, str]:
        self._check_account(acct)
        oid = int(order_id)
        if oid not in self._client_ids:
            raise ValueError(f"OrderID {oid} doesn't exist")
        return oid, self._client_ids[oid]

    async def _modify(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        oid, client_id = self._known(m.group(1), m.group(2))
        self.tickets.append(body)
        qty = body.get("quantity")
        try:
            state = await self.broker.replace(
                client_id, limit_price=float(body["price"]),
                quantity=None if qty is None else int(float(qty)),
            )  # fmt: skip
        except (OrderRejectedError, BrokerError) as exc:
            return 400, {"error": str(exc)}
        return 200, [{"order_id": str(oid), "order_status": IB_STATUS[state.status],
                      "encrypt_message": "1"}]  # fmt: skip

    async def _cancel(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        oid, client_id = self._known(m.group(1), m.group(2))
        try:
            state = await self.broker.cancel(client_id)
        except BrokerError as exc:
            return 400, {"error": str(exc)}
        if not state.status.done:
            self._cancelling.add(oid)
        legs = state.order.legs
        conid = self.conid(legs[0].contract) if len(legs) == 1 else COMBO_CONID
        return 200, {"msg": "Request was submitted", "order_id": oid, "conid": conid,
                     "account": self.account}  # fmt: skip

    # --- reports ---

    async def _live_orders(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        rows = []
        for oid, client_id in self._client_ids.items():
            if (st := self.broker.order(client_id)) is not None:
                legs = st.order.legs
                conid = COMBO_CONID if len(legs) > 1 else self.conid(legs[0].contract)
                rows.append(replies.order_row(
                    oid, st, self.account, self._conidex[oid], conid,
                    cancelling=oid in self._cancelling, coid=self._coids.get(oid),
                ))  # fmt: skip
        return 200, {"orders": rows, "snapshot": True}

    async def _trades(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        rows = []
        for f in await self.broker.fills():
            oid = self._order_ids.get(f.client_id)
            if oid is None:  # expiry settlements and orders from elsewhere
                continue
            conid = self.conid(f.contract)
            rows.append(replies.trade_row(f, self.account, conid, self._coids.get(oid)))
        return 200, rows

    async def _positions(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        self._check_account(m.group(1))
        page = int(m.group(2))
        held = sorted((await self.broker.positions()).items(), key=lambda kv: self.conid(kv[0]))
        rows = []
        for c, qty in held[page * 100 : page * 100 + 100]:
            row = self.broker.market.index.get(c)
            mark = float(self.broker.market.mark[row]) if row is not None else 0.0
            mark = mark if mark == mark else 0.0  # NaN: never marked
            und = self._underlying(c.underlying)
            rows.append(replies.position_row(c, qty, mark, self.account, self.conid(c), und))
        return 200, rows

    async def _summary(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        self._check_account(m.group(1))
        acc = await self.broker.account()
        ms = self.broker.clock.now_ns() // 1_000_000
        return 200, replies.summary(acc, self.account, ms)

    async def _ledger(self, m: re.Match[str], args: dict[str, str], body: Any) -> Answer:
        self._check_account(m.group(1))
        acc = await self.broker.account()
        secs = self.broker.clock.now_ns() // 1_000_000_000
        return 200, replies.ledger(acc, self.account, secs)


class _Handler(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "POST", "DELETE")

    def initialize(self, emu: CpApiEmulator) -> None:
        self.emu = emu

    async def _serve(self, path: str) -> None:
        try:
            body = json.loads(self.request.body) if self.request.body else None
        except ValueError:
            code, answer = 400, {"error": "request body is not JSON"}
        else:
            args = {k: self.get_argument(k) for k in self.request.arguments}
            code, answer = await self.emu.handle(self.request.method or "GET", path, args, body)
        self.set_status(code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(answer))

    get = post = delete = _serve

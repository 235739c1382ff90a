"""IBKR Client Portal Web API (CP API v1) broker: the desk's orders through the local gateway.

The gateway (``https://localhost:5000/v1/api``) holds the brokerage session, so requests carry no
credentials (messages still write the account as ``{accountId}``). Shapes follow IBKR's CP Web
API v1 reference and the models of its OpenAPI document (IB REST API 2.x); numbers may arrive as
strings and are parsed either way:

* Session: ``GET /iserver/auth/status`` (``authenticated``, ``message``), ``GET /iserver/accounts``
  (``accounts``; required before order calls), ``GET /portfolio/accounts`` (required before
  ``/portfolio`` calls), ``POST /tickle`` every ``tickle_s`` to keep the session.
* Contracts: ``GET /iserver/secdef/search?symbol=SPX`` (``conid``, ``sections`` with ``OPT``), then
  ``GET /iserver/secdef/info?conid=&sectype=OPT&month=JAN24&strike=&right=`` whose rows carry
  ``maturityDate`` and ``tradingClass`` (SPX vs SPXW); unknown conids are read back from ``GET
  /iserver/contract/{conid}/info`` (``trading_class``, ``expiry_full``, ``strike``, ``right``).
* Orders: ``POST /iserver/account/{accountId}/orders`` ``{"orders": [{acctId, conid | conidex,
  cOID, orderType, price, side, quantity, tif}]}``; combos use ``conidex "28812380;;;c1/r1,c2/r2"``
  (the USD spread conid, signed ratios): the Broker protocol's BAG convention, so side, units and
  net price pass unchanged. Answers are ``[{"order_id", "order_status"}]`` or a question
  ``[{"id", "message", "messageIds"}]`` for ``POST /iserver/reply/{id} {"confirmed": bool}``.
  Modify ``POST`` / cancel ``DELETE`` ``/iserver/account/{accountId}/order/{orderId}``.
* Reports: ``GET /iserver/account/orders`` (``orderId``, ``status``, ``filledQuantity``,
  ``avgPrice``, ``order_ref`` = cOID), ``GET /iserver/account/trades`` (``execution_id``, ``side``
  B/S, ``size``, ``price``, ``commission``, ``conid``, ``order_ref``, ``trade_time_r`` ms),
  ``GET /portfolio/{accountId}/positions/{page}`` (100 a page), ``.../summary``
  (``{"netliquidation": {"amount"}, ...}``) and ``.../ledger`` (``BASE.realizedpnl``).

Choices where the docs leave room: a question is confirmed only when all its message ids are in
``auto_confirm`` (informational ones); otherwise it is declined and raised as OrderRejectedError
with IBKR's text. ``client_id`` is the cOID: :meth:`CpApiBroker.place` checks its own map, then the
gateway's orders (and refuses when only executions remain), so a restart never sends twice. A poll
task emits fills (once per ``execution_id``), then changed order states; executions that predate
``connect`` are not re-emitted but :meth:`~CpApiBroker.fills` returns them. A failed poll logs a
warning and the next poll is the reconnect. Reading and writing the wire JSON is
:mod:`kit.adapters.cpapi.parsing`; this module is the session, the requests and the poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from msgspec.structs import replace

from kit.adapters.cpapi.parsing import (
    contract_from_info,
    fill_from_trade,
    map_status,
    num,
    order_body,
    state_from_row,
    summary_amount,
    trade_side,
)
from kit.adapters.cpapi.session import CpApiSession
from kit.core import config
from kit.core.clock import Clock, LiveClock
from kit.core.config import ConfigError
from kit.core.model import Contract, Fill, ModelError, Order
from kit.core.tasks import cancel
from kit.execution.broker import (
    AccountSummary,
    BrokerError,
    BrokerEvent,
    Listener,
    OrderRejectedError,
    OrderState,
    OrderStatus,
    check_replace,
    notify,
)

log = logging.getLogger(__name__)

# Order-reply messages that inform rather than warn: p12 (orders far from the reference price may
# be rejected by IBKR's price management), o354 (no market data subscription in the gateway: the
# desk prices from its own feed) and o10331 (stop order types: the desk sends LMT/MKT only).
# Price-percentage (o163), size (o383) and value (o451) limits are real warnings: never confirmed.
DEFAULT_AUTO_CONFIRM = frozenset({"p12", "o354", "o10331"})
POSITIONS_PAGE = 100  # rows per /portfolio/{accountId}/positions/{page}
_MAX_REPLIES = 5


@dataclass(frozen=True)
class CpApiConfig:
    """Where the gateway is and which account trades; ``verify_tls=False`` accepts the gateway's
    self-signed localhost certificate."""

    base_url: str
    account_id: str
    poll_s: float = 0.5
    verify_tls: bool = True
    timeout_s: float = 10.0
    tickle_s: float = 60.0
    auto_confirm: frozenset[str] = DEFAULT_AUTO_CONFIRM
    # IBKR's gateway takes 10 requests a second (OAuth: 50); beyond, HTTP 429, and repeated
    # violations put the IP in a penalty box for minutes: every call is paced below it (8, room
    # for jitter), and a 429 is waited out (``retry_s``, doubling) and retried three times
    max_rps: float = 8.0
    retry_s: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CpApiConfig:
        """``IBKR_CPAPI_URL`` and ``IBKR_ACCOUNT_ID`` (required), ``IBKR_CPAPI_VERIFY_TLS``
        (default 1: set 0 for the gateway's self-signed certificate). Reads ``.env`` too."""
        url = config.env("IBKR_CPAPI_URL", environ=env)
        account = config.env("IBKR_ACCOUNT_ID", environ=env)
        missing = [k for k, v in (("IBKR_CPAPI_URL", url), ("IBKR_ACCOUNT_ID", account)) if not v]
        if missing or url is None or account is None:
            raise ConfigError(
                f"{', '.join(missing)} not set: the IBKR Client Portal broker needs the gateway "
                "URL (e.g. https://localhost:5000/v1/api) and the account id"
            )
        verify = config.env_bool("IBKR_CPAPI_VERIFY_TLS", True, environ=env)
        rps = config.env_float("IBKR_CPAPI_MAX_RPS", 8.0, environ=env,
                               what="requests a second, above 0")  # fmt: skip
        if not rps > 0:
            raise ConfigError(f"IBKR_CPAPI_MAX_RPS={rps:g}: give requests a second, above 0")
        return cls(url, account, verify_tls=verify, max_rps=rps)


class CpApiBroker:
    """The :class:`~kit.execution.broker.Broker` protocol over the Client Portal Web API."""

    name = "ibkr-cpapi"
    supports_combo = True
    live = True

    def __init__(self, config: CpApiConfig | None = None, clock: Clock | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 session: CpApiSession | None = None) -> None:  # fmt: skip
        self.config = session.config if session is not None else config or CpApiConfig.from_env()
        self.clock = clock or LiveClock()
        # one gateway session with the streaming feed when the builder hands it one
        self.session = session or CpApiSession(self.config, transport=transport)
        self._acquired = False
        self._iserver = f"/iserver/account/{self.config.account_id}"
        self._portfolio = f"/portfolio/{self.config.account_id}"
        self._listeners: list[Listener] = []
        self._states: dict[str, OrderState] = {}
        self._cids: dict[str, str] = {}  # IBKR order id -> client id
        self._conids: dict[Contract, int] = {}
        self._contracts: dict[int, Contract | None] = {}  # None: not an option we can map
        self._fills: dict[str, Fill] = {}  # by execution id
        self._seen: set[str] = set()  # execution ids already emitted (or predating connect)
        self._place_lock, self._poll_lock = asyncio.Lock(), asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._failing, self._last_tickle_ns = False, 0

    # --- lifecycle ---

    async def connect(self) -> None:
        """Check the session and the account, take a baseline of executions, start polling."""
        if self._task is not None:
            return
        await self.session.acquire()
        self._acquired = True
        try:
            auth = await self._call("GET", "/iserver/auth/status")
            if not (isinstance(auth, dict) and auth.get("authenticated")):
                host = httpx.URL(self.config.base_url).host
                msg = auth.get("message") if isinstance(auth, dict) else None
                why = f" ({msg})" if msg else ""
                raise BrokerError(f"IBKR gateway at {host} is not authenticated{why}: log in on "
                                  "its web page, then connect")  # fmt: skip
            accounts = await self._call("GET", "/iserver/accounts")
            if self.config.account_id not in (accounts or {}).get("accounts", []):
                raise BrokerError("IBKR_ACCOUNT_ID is not among the accounts of this session")
            await self._call("GET", "/portfolio/accounts")
            await self._call("GET", "/iserver/account/orders")  # starts the gateway's order feed
            self._seen.update(str(t.get("execution_id")) for t in await self._trades())
        except BaseException:
            await self.close()
            raise
        self._last_tickle_ns = self.clock.now_ns()
        self._task = asyncio.create_task(self._poll_loop())

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
        if self._acquired:
            self._acquired = False
            await self.session.release()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # --- requests ---

    async def place(self, order: Order) -> OrderState:
        # One place at a time (two of one client id must not both send), and no poll meanwhile
        # (rows read before the acknowledgement must not overwrite it).
        async with self._place_lock, self._poll_lock:
            if (known := self._states.get(order.client_id)) is not None:
                return known
            if (adopted := await self._adopt(order)) is not None:
                return adopted
            if crypto := [leg.contract.root for leg in order.legs if leg.contract.is_crypto]:
                raise OrderRejectedError(f"{crypto[0]} options do not trade at IBKR")
            if len({leg.contract for leg in order.legs}) != len(order.legs):
                raise OrderRejectedError("the same contract appears in two legs")
            ack = await self._submit(f"{self._iserver}/orders", await self._body(order), new=True)
            status = map_status(str(ack.get("order_status") or "PendingSubmit"), 0)
            if status in (OrderStatus.FILLED, OrderStatus.CANCELLED):  # details come by polling
                status = OrderStatus.WORKING
            reason = str(ack.get("order_status")) if status is OrderStatus.REJECTED else ""
            state = OrderState(order, status, broker_id=str(ack["order_id"]), reason=reason,
                               ts_ns=self._now())  # fmt: skip
            self._remember(state)
            return state

    async def cancel(self, client_id: str) -> OrderState:
        state = self._known(client_id)
        if not state.status.done:
            await self._call("DELETE", f"{self._iserver}/order/{state.broker_id}")
        return self._states[client_id]

    async def replace(
        self, client_id: str, *, limit_price: float, quantity: int | None = None
    ) -> OrderState:
        state = self._known(client_id)
        check_replace(state, limit_price, quantity)
        order = replace(state.order, limit_price=float(limit_price),
                        quantity=quantity or state.order.quantity)  # fmt: skip
        body = await self._body(order)
        del body["cOID"]  # a modify restates the order; the cOID is not changed
        await self._submit(f"{self._iserver}/order/{state.broker_id}", body, new=False)
        new = self._states[client_id] = replace(self._states[client_id], order=order,
                                                ts_ns=self._now())  # fmt: skip
        self._emit(new)
        return new

    # --- queries ---

    def order(self, client_id: str) -> OrderState | None:
        return self._states.get(client_id)

    async def orders(self) -> list[OrderState]:
        """Orders this session placed or adopted, refreshed from the gateway first."""
        await self.poll()
        return list(self._states.values())

    async def fills(self) -> list[Fill]:
        """Every execution the gateway reports (its trades window), whoever placed it."""
        return [f for t in await self._trades() if (f := await self._fill(t)) is not None]

    async def positions(self) -> dict[Contract, int]:
        out: dict[Contract, int] = {}
        for page in range(50):
            rows = await self._call("GET", f"{self._portfolio}/positions/{page}")
            rows = rows if isinstance(rows, list) else []
            for r in rows:
                if (qty := round(num(r.get("position")))) == 0 or r.get("assetClass") != "OPT":
                    continue
                if (contract := await self._contract_of(r.get("conid"))) is None:
                    log.warning("IBKR position in conid %s: not a mappable option", r.get("conid"))
                    continue
                out[contract] = out.get(contract, 0) + qty
            if len(rows) < POSITIONS_PAGE:
                break
        return {c: q for c, q in out.items() if q != 0}

    async def account(self) -> AccountSummary:
        """Summary amounts; realized P&L from the BASE ledger; commissions summed over the
        executions the gateway reports."""
        summary = await self._call("GET", f"{self._portfolio}/summary") or {}
        base = (await self._call("GET", f"{self._portfolio}/ledger") or {}).get("BASE") or {}
        return AccountSummary(
            cash=summary_amount(summary, "totalcashvalue"),
            net_liquidation=summary_amount(summary, "netliquidation"),
            realized_pnl=num(base.get("realizedpnl")),
            commissions=sum(f.commission for f in await self.fills()),
            buying_power_used=num((summary.get("initmarginreq") or {}).get("amount")),
        )  # fmt: skip

    # --- polling ---

    async def poll(self) -> None:
        """One pass: read orders, then executions; emit new fills, then changed order states
        (reading orders first means every fill behind a reported fill count is seen too)."""
        async with self._poll_lock:
            rows = (await self._call("GET", "/iserver/account/orders") or {}).get("orders") or []
            events: list[BrokerEvent] = []
            for t in await self._trades():
                eid = str(t.get("execution_id") or "")
                if eid in self._seen or (fill := await self._fill(t)) is None:
                    continue
                if fill.client_id in self._states:  # others wait until adopted (or never)
                    self._seen.add(eid)
                    events.append(fill)
            for row in rows:
                cid = str(row.get("order_ref") or self._cids.get(str(row.get("orderId"))) or "")
                if (old := self._states.get(cid)) is None:
                    continue
                new = self._from_row(old.order, row, old.broker_id)
                if (new.status, new.filled_qty) != (old.status, old.filled_qty) or not math.isclose(
                    new.avg_price, old.avg_price, abs_tol=1e-9
                ):
                    self._states[cid] = new
                    events.append(new)
            for event in events:
                self._emit(event)

    async def _poll_loop(self) -> None:
        while True:
            await self.clock.sleep(self.config.poll_s)
            try:
                if self.clock.now_ns() - self._last_tickle_ns >= self.config.tickle_s * 1e9:
                    self._last_tickle_ns = self.clock.now_ns()
                    await self.session.keepalive()  # shared: one tickle per period
                await self.poll()
            except BrokerError as exc:  # the gateway is away: the next poll is the reconnect
                if not self._failing:
                    log.warning("IBKR CP API poll failed (retrying every %g s): %s",
                                self.config.poll_s, exc)  # fmt: skip
                self._failing = True
                continue
            except Exception:  # a bug, or an answer we cannot read: loud, and keep polling
                log.exception("IBKR CP API poll crashed")
                continue
            if self._failing:
                log.warning("IBKR CP API polling recovered")
                self._failing = False

    # --- helpers ---

    async def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                    body: Any = None, order: bool = False) -> Any:  # fmt: skip
        """One request through the shared session (errors: see :meth:`CpApiSession.call`)."""
        if not self._acquired:
            raise BrokerError("IBKR CP API: not connected (call connect() first)")
        return await self.session.call(method, path, params=params, body=body, order=order)

    async def _submit(self, path: str, body: dict[str, Any], *, new: bool) -> dict[str, Any]:
        """Send a new order (``{"orders": [body]}``) or a modify (the bare body) and answer its
        questions: confirm the whitelisted ones, decline the rest and raise with IBKR's words."""
        answer = await self._call("POST", path, body={"orders": [body]} if new else body,
                                  order=True)  # fmt: skip
        for replies in range(_MAX_REPLIES + 1):
            first = answer[0] if isinstance(answer, list) and answer else answer
            if isinstance(first, dict) and "order_id" in first:
                return first
            if not (isinstance(first, dict) and "id" in first) or replies == _MAX_REPLIES:
                break
            ids = [str(m) for m in first.get("messageIds") or []]
            text = " / ".join(str(m) for m in first.get("message") or []) or "no text"
            reply = f"/iserver/reply/{first['id']}"
            if not ids or not set(ids) <= self.config.auto_confirm:
                with contextlib.suppress(BrokerError, OrderRejectedError):
                    await self._call("POST", reply, body={"confirmed": False})
                raise OrderRejectedError(f"IBKR asks for confirmation ({', '.join(ids)}): {text}")
            log.info("IBKR: confirming informational message(s) %s: %s", ", ".join(ids), text)
            answer = await self._call("POST", reply, body={"confirmed": True}, order=True)
        where = path.replace(self.config.account_id, "{accountId}")
        raise BrokerError(f"IBKR POST {where}: unexpected answer {answer!r:.200}")

    async def _body(self, order: Order) -> dict[str, Any]:
        conids = [await self._conid(leg.contract) for leg in order.legs]
        return order_body(order, self.config.account_id, conids)

    async def _adopt(self, order: Order) -> OrderState | None:
        """The gateway's state of an order this process never placed (a restart): no resend."""
        rows = (await self._call("GET", "/iserver/account/orders") or {}).get("orders") or []
        row = next((r for r in rows if str(r.get("order_ref") or "") == order.client_id), None)
        if row is None:
            if any(str(t.get("order_ref") or "") == order.client_id for t in await self._trades()):
                raise BrokerError(f"{order.client_id}: IBKR has executions for this client id but "
                                  "no live order; not sending it again")  # fmt: skip
            return None
        state = self._from_row(order, row, str(row.get("orderId") or row.get("order_id")))
        log.info("IBKR: %s already at the broker as order %s (%s): adopted",
                 order.client_id, state.broker_id, row.get("status"))  # fmt: skip
        self._remember(state)
        return state

    def _from_row(self, order: Order, row: dict[str, Any], broker_id: str) -> OrderState:
        return state_from_row(order, row, broker_id, self._now())

    def _remember(self, state: OrderState) -> None:
        self._states[state.client_id] = state
        self._cids[state.broker_id] = state.client_id
        self._emit(state)

    async def _trades(self) -> list[dict[str, Any]]:
        data = await self._call("GET", "/iserver/account/trades")
        return [t for t in data if isinstance(t, dict)] if isinstance(data, list) else []

    async def _fill(self, t: dict[str, Any]) -> Fill | None:
        eid = str(t.get("execution_id") or "")
        if eid in self._fills:
            return self._fills[eid]
        if (side := trade_side(t)) is None:
            return None  # expiries (side "X"), combo summary rows (BAG), other asset classes
        if (contract := await self._contract_of(t.get("conid"))) is None:
            return None
        cid = str(t.get("order_ref") or self._cids.get(str(t.get("order_id"))) or "")
        try:
            fill = fill_from_trade(t, side, contract, cid, self._now())
        except ModelError as exc:
            log.warning("IBKR execution %s ignored: %s", eid, exc)
            return None
        self._fills[eid] = fill
        return fill

    async def _conid(self, c: Contract) -> int:
        """The option's conid, resolved by the shared session (secdef search, then info)."""
        if (conid := self._conids.get(c)) is not None:
            return conid
        conid = await self.session.conid(c)
        self._conids[c], self._contracts[conid] = conid, c
        return conid

    async def _contract_of(self, conid: Any) -> Contract | None:
        """The option behind a conid we did not resolve ourselves (orders from before a restart)."""
        try:
            key = int(conid)
        except (TypeError, ValueError):
            return None
        if key in self._contracts:
            return self._contracts[key]
        info = await self._call("GET", f"/iserver/contract/{key}/info")
        contract = self._contracts[key] = contract_from_info(key, info)
        if contract is not None:
            self._conids.setdefault(contract, key)
        return contract

    def _known(self, client_id: str) -> OrderState:
        if (state := self._states.get(client_id)) is None:
            raise BrokerError(f"unknown order {client_id!r}")
        return state

    def _emit(self, event: BrokerEvent) -> None:
        notify(self._listeners, event, self.name)

    def _now(self) -> int:
        return self.clock.now_ns()

"""The Delta Exchange broker: the desk's orders on Delta, its fills and states back.

* ``place`` is idempotent on ``client_id`` (sent as ``client_order_id``, see
  :mod:`kit.adapters.delta.orders`): a known id returns its state; an unknown one is first looked
  up on the exchange (``GET /v2/orders/client_order_id/{id}``), so a restart mid-entry adopts the
  order instead of sending it again. A POST that fails in transit is looked up the same way.
* An order that only shrinks a held position goes ``reduce_only`` (a close can never flip).
* ``cancel`` / ``replace`` are ``DELETE`` / ``PUT /v2/orders``; :meth:`DeltaBroker.place_batch`
  sends several orders of one product in one ``/v2/orders/batch``.
* The private socket (``key-auth``, then ``orders``, ``positions``, ``margins``,
  ``v2/user_trades``) pushes changes; each channel's ``seq_no`` must grow by one. A gap, a
  reconnect or a failed auth answer triggers a REST reconciliation (open orders, order history,
  fills), so no fill is lost and none is reported twice (fills are keyed by their id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import msgspec.structs
from websockets.asyncio.client import connect

from kit.adapters.delta.client import DeltaClient
from kit.adapters.delta.config import DeltaConfig
from kit.adapters.delta.orders import client_order_id, fill_of, leg_of, order_body, state_of
from kit.adapters.delta.parsing import DeltaAuthError, DeltaError, contract_of, num
from kit.adapters.delta.signing import ws_auth_message
from kit.core.clock import Clock, LiveClock
from kit.core.model import Contract, Fill, Leg, Order, OrderType, Side
from kit.core.symbology import from_delta
from kit.core.tasks import cancel
from kit.execution.broker import (
    AccountSummary,
    BrokerError,
    Listener,
    OrderRejectedError,
    OrderState,
    notify,
)

log = logging.getLogger(__name__)

PRIVATE = ("orders", "positions", "margins", "v2/user_trades")


class DeltaBroker:
    """The :class:`~kit.execution.broker.Broker` protocol on Delta Exchange (single legs)."""

    name = "delta"
    supports_combo = False
    live = True

    def __init__(self, config: DeltaConfig | None = None, clock: Clock | None = None, *,
                 client: DeltaClient | None = None, stream: bool = True) -> None:  # fmt: skip
        self.config = config or DeltaConfig.from_env()
        self.clock = clock or LiveClock()
        self.client = client or DeltaClient(self.config)
        self._stream_on = stream
        self._listeners: list[Listener] = []
        self._states: dict[str, OrderState] = {}  # by desk client id
        self._by_coid: dict[str, str] = {}  # client_order_id -> desk client id
        self._by_oid: dict[str, str] = {}  # Delta order id -> desk client id
        self._fills: dict[str, Fill] = {}
        self.product_ids: dict[Contract, int] = {}
        self.contracts: dict[int, Contract] = {}
        self.held: dict[Contract, int] = {}
        self.seq: dict[str, int] = {}
        self.gaps = 0
        self.reconciliations = 0
        self.auth_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._authed = asyncio.Event()

    # --- lifecycle ---

    async def connect(self) -> None:
        """Products, a key check (wallet), reconciliation, then the private socket."""
        for p in await self.client.products():
            c = contract_of(p)
            self.product_ids[c], self.contracts[int(p["id"])] = int(p["id"]), c
        await self.client.balances()  # bad keys, skew or IP refusal fail here, clearly
        await self.reconcile()
        if self._stream_on and self._task is None:
            self._task = asyncio.create_task(self._stream(), name="delta:private")

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
        await self.client.aclose()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def wait_stream(self, timeout: float = 10.0) -> None:
        """Until the private socket is authenticated and subscribed (tests, the trader)."""
        async with asyncio.timeout(timeout):
            await self._authed.wait()

    # --- requests ---

    def _product(self, c: Contract) -> int:
        pid = self.product_ids.get(c)
        if pid is None:
            raise OrderRejectedError(f"{c.root} {c.expiry} {c.strike:g}{c.right.value}: not "
                                     "listed on Delta Exchange")  # fmt: skip
        return pid

    async def place(self, order: Order) -> OrderState:
        known = self._states.get(order.client_id)
        if known is not None:
            return known
        contract, side, size, _ = leg_of(order)
        pid = self._product(contract)
        coid = self._name(order.client_id)
        existing = await self.client.order_by_client_id(coid)
        if existing is None:
            held = self.held.get(contract, 0)
            reduce = held * side.sign < 0 and size <= abs(held)
            try:
                body = order_body(order, pid, reduce_only=reduce)
                existing = await self.client.place_order(body)
            except DeltaAuthError as exc:
                raise BrokerError(str(exc)) from None
            except DeltaError as exc:
                if exc.code != "unreachable":
                    raise OrderRejectedError(str(exc)) from None
                existing = await self.client.order_by_client_id(coid)  # did it arrive?
                if existing is None:
                    raise BrokerError(str(exc)) from None
        return self._update(order, existing)

    def _name(self, client_id: str) -> str:
        """Delta's ``client_order_id`` for ``client_id``, remembered both ways. A long id
        travels hashed, and after a restart the reconciled orders and fills carry only the hash:
        what was filled while the process was down is renamed here, when the resumed order
        names its id again, and its fills are handed on under the id the desk knows (they
        would otherwise stay "unknown" and the adopted order would look unfilled)."""
        coid = client_order_id(client_id)
        self._by_coid[coid] = client_id
        if coid != client_id:
            self._states.pop(coid, None)
            for fid, f in list(self._fills.items()):
                if f.client_id == coid:
                    self._fills[fid] = f = msgspec.structs.replace(f, client_id=client_id)
                    notify(self._listeners, f, self.name)
        return coid

    async def place_batch(self, orders: Sequence[Order]) -> list[OrderState]:
        """Several new orders of one product in one request (``/v2/orders/batch``)."""
        fresh = [o for o in orders if o.client_id not in self._states]
        pids = {self._product(leg_of(o)[0]) for o in fresh}
        if len(pids) > 1:
            raise OrderRejectedError("a Delta batch holds orders of one product")
        if fresh:
            for o in fresh:
                self._name(o.client_id)
            body = [order_body(o, next(iter(pids)), reduce_only=False) for o in fresh]
            try:
                rows = await self.client.batch_orders(next(iter(pids)), body)
            except DeltaError as exc:
                raise OrderRejectedError(str(exc)) from None
            for o, row in zip(fresh, rows, strict=True):
                self._update(o, row)
        return [self._states[o.client_id] for o in orders]

    async def cancel(self, client_id: str) -> OrderState:
        state = self._known(client_id)
        if state.status.done:
            return state
        try:
            pid = self._product(state.order.legs[0].contract)
            row = await self.client.cancel_order(int(state.broker_id), pid)
        except DeltaError as exc:
            if exc.code == "open_order_not_found":
                await self.reconcile()  # it filled or was cancelled meanwhile
                return self._known(client_id)
            raise BrokerError(str(exc)) from None
        return self._update(state.order, row)

    async def replace(self, client_id: str, *, limit_price: float,
                      quantity: int | None = None) -> OrderState:  # fmt: skip
        state = self._known(client_id)
        if state.status.done:
            raise OrderRejectedError(f"cannot replace {client_id}: it is {state.status.value}")
        leg = state.order.legs[0]
        price = limit_price * leg.ratio
        if not price > 0:
            raise OrderRejectedError(f"replace {client_id}: limit {limit_price} is not a price")
        if quantity is not None and quantity < max(1, state.filled_qty):
            raise OrderRejectedError(f"replace {client_id}: quantity {quantity} is below 1 or "
                                     f"the {state.filled_qty} filled")  # fmt: skip
        pid = self._product(leg.contract)
        body: dict[str, Any] = {"id": int(state.broker_id), "product_id": pid,
                                "limit_price": f"{price:.10g}"}  # fmt: skip
        if quantity is not None:
            body["size"] = quantity
        try:
            row = await self.client.edit_order(body)
        except DeltaError as exc:
            raise OrderRejectedError(str(exc)) from None
        order = msgspec.structs.replace(
            state.order, limit_price=limit_price, quantity=quantity or state.order.quantity
        )
        return self._update(order, row)

    def _known(self, client_id: str) -> OrderState:
        state = self._states.get(client_id)
        if state is None:
            raise BrokerError(f"unknown order {client_id!r}")
        return state

    # --- queries ---

    def order(self, client_id: str) -> OrderState | None:
        return self._states.get(client_id)

    async def orders(self) -> list[OrderState]:
        return list(self._states.values())

    async def fills(self) -> list[Fill]:
        return list(self._fills.values())

    async def positions(self) -> dict[Contract, int]:
        rows = await self.client.positions()
        self.held = {self._contract_of_row(r): int(num(r.get("size"), 0)) for r in rows
                     if int(num(r.get("size"), 0))}  # fmt: skip
        return dict(self.held)

    async def open_orders(self) -> list[dict[str, Any]]:
        """The exchange's own open orders (ours or not): duplicate-trade prevention reads it."""
        return await self.client.open_orders()

    async def account(self) -> AccountSummary:
        usd = next((b for b in await self.client.balances() if b.get("asset_symbol") == "USD"), {})
        bal = num(usd.get("balance"), 0.0)
        used = num(usd.get("position_margin"), 0.0) + num(usd.get("order_margin"), 0.0)
        upnl = sum(num(r.get("unrealized_pnl"), 0.0) for r in await self.client.positions())
        return AccountSummary(cash=bal, net_liquidation=bal + upnl, realized_pnl=0.0,
                              commissions=num(usd.get("commission"), 0.0),
                              buying_power_used=used)  # fmt: skip

    # --- state, events, reconciliation ---

    def _contract_of_row(self, row: dict[str, Any]) -> Contract:
        pid = int(num(row.get("product_id"), 0))
        c = self.contracts.get(pid)
        return c if c is not None else from_delta(str(row.get("product_symbol")))

    def _client_id(self, row: dict[str, Any]) -> str:
        coid = str(row.get("client_order_id") or "")
        return self._by_coid.get(coid) or self._by_oid.get(str(row.get("id"))) or coid or \
            f"delta-{row.get('id')}"  # fmt: skip

    def _update(self, order: Order, row: dict[str, Any]) -> OrderState:
        state = state_of(order, row, self.clock.now_ns())
        self._by_oid[state.broker_id] = order.client_id
        old = self._states.get(order.client_id)
        self._states[order.client_id] = state
        if old is None or (old.status, old.filled_qty) != (state.status, state.filled_qty):
            notify(self._listeners, state, self.name)
        return state

    def _on_order_row(self, row: dict[str, Any]) -> None:
        cid = self._client_id(row)
        known = self._states.get(cid)
        if known is not None:
            self._update(known.order, row)
            return
        c = self._contract_of_row(row)

        side = Side(str(row.get("side")))
        kind = OrderType.LIMIT if row.get("order_type") == "limit_order" else OrderType.MARKET
        price = num(row.get("limit_price")) if kind is OrderType.LIMIT else None
        order = Order(cid, (Leg(c, 1),), side, int(num(row.get("size"), 1)), kind,
                      self.clock.now_ns(), price)  # fmt: skip
        self._update(order, row)

    def _on_fill_row(self, row: dict[str, Any]) -> None:
        fid = str(row.get("id"))
        if fid in self._fills:
            return
        fill = fill_of(row, self._contract_of_row(row), self._client_id(row))
        self._fills[fid] = fill
        c = fill.contract
        self.held[c] = self.held.get(c, 0) + int(fill.side.sign * fill.quantity)
        notify(self._listeners, fill, self.name)

    async def reconcile(self) -> None:
        """Bring orders, fills and positions in line with the exchange's REST view."""
        self.reconciliations += 1
        for row in await self.client.fills():
            self._on_fill_row(row)
        for row in [*await self.client.order_history(), *await self.client.open_orders()]:
            self._on_order_row(row)
        await self.positions()

    # --- the private socket ---

    async def _stream(self) -> None:
        attempt = 0
        while True:
            try:
                async with connect(self.config.ws_url, ping_interval=None,
                                   compression=None) as ws:  # fmt: skip
                    await ws.send(json.dumps({"type": "enable_heartbeat"}))
                    ts = str(int(time.time() + self.client.skew_s))
                    auth = ws_auth_message(self.config.api_key, self.config.api_secret, ts)
                    await ws.send(json.dumps(auth))
                    attempt = 0
                    async for message in ws:
                        await self._on_message(ws, json.loads(message))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # dropped socket, bad frame: reconnect and reconcile
                log.warning("delta: private socket: %s: %s", type(exc).__name__, exc)
            self._authed.clear()
            if self.auth_error:
                log.error("delta: private socket refused: %s", self.auth_error)
            await asyncio.sleep(min(10.0, 0.2 * 2**attempt))
            attempt += 1
            with contextlib.suppress(DeltaError):
                await self.reconcile()

    async def _on_message(self, ws: Any, doc: dict[str, Any]) -> None:
        kind = doc.get("type")
        if kind == "key-auth":
            if not doc.get("success"):
                self.auth_error = f"{doc.get('status_code')} {doc.get('message')}"
                await ws.close()
                return
            self.auth_error = None
            channels = [{"name": ch} for ch in PRIVATE]
            await ws.send(json.dumps({"type": "subscribe", "payload": {"channels": channels}}))
            return
        if kind == "subscriptions":
            self._authed.set()
            return
        if kind not in PRIVATE:
            return
        if doc.get("action") == "snapshot":
            self.seq[kind] = int((doc.get("meta") or {}).get("seq_no") or 0)
            if kind == "orders":
                for row in doc.get("result") or []:
                    self._on_order_row(row)
            return
        seq = int(doc.get("seq_no") or 0)
        last = self.seq.get(kind)
        self.seq[kind] = seq
        if last is not None and seq != last + 1:
            self.gaps += 1
            log.warning("delta: %s seq_no jumped %s -> %s: reconciling over REST", kind, last, seq)
            await self.reconcile()
            return
        if kind == "orders":
            self._on_order_row(doc)
        elif kind == "v2/user_trades":
            self._on_fill_row(doc)
        elif kind == "positions":
            c = self._contract_of_row(doc)
            size = int(num(doc.get("size"), 0))
            if size:
                self.held[c] = size
            else:
                self.held.pop(c, None)

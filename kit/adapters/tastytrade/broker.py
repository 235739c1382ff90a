"""tastytrade as the desk's broker, through the SDK's order API (``--broker tastytrade``, live).

Every order is sent as a **dry run first** (``POST .../orders/dry-run``: the venue's own checks,
buying-power effect and fees; an error or a refusal there rejects the order before anything is
placed), then placed. Single and multi-leg orders are one tastytrade order (legs with Buy/Sell to
Open/Close actions; Close when it reduces what the account holds), limit or market, Day. The
desk's ``client_id`` travels as ``external-identifier`` and is the idempotency key here (a second
``place`` of a known client id returns its state and sends nothing).

Order states and fills are polled (``GET .../orders/{id}`` every ``poll_s`` while an order works):
the emulator and the sandbox serve no account streamer, and a poll cannot miss a fill that
happened while a socket was down. Statuses map Received/Routed -> PENDING, Live -> WORKING (or
PARTIAL once a leg filled), Filled, Cancelled/Expired/Removed -> CANCELLED, Rejected. Positions
and balances come from ``/positions`` and ``/balances``.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

from kit.adapters.tastytrade import orders as wire
from kit.adapters.tastytrade.api import TastyApi, TastyError
from kit.adapters.tastytrade.config import TastyConfig
from kit.core.clock import Clock
from kit.core.model import Contract, Fill, Order, OrderType, Side
from kit.core.symbology import from_occ
from kit.core.tasks import cancel
from kit.execution.broker import (
    AccountSummary,
    BrokerError,
    Listener,
    OrderRejectedError,
    OrderState,
    OrderStatus,
    check_replace,
    notify,
)

log = logging.getLogger(__name__)


class TastytradeBroker:
    """Orders, positions and balances of one tastytrade account (live: behind the gate)."""

    name = "tastytrade"
    supports_combo = True
    live = True

    def __init__(self, config: TastyConfig | None = None, clock: Clock | None = None, *,
                 api: TastyApi | None = None, poll_s: float = 0.5) -> None:  # fmt: skip
        from kit.core.clock import LiveClock

        self.config = config or TastyConfig.from_env()
        self.clock = clock or LiveClock()
        self.api = api
        self._own_api = api is None
        self.poll_s = poll_s
        self._listeners: list[Listener] = []
        self._states: dict[str, OrderState] = {}
        self._ids: dict[str, int] = {}  # client id -> tastytrade order id
        self._fills: list[Fill] = []
        self._fill_ids: set[str] = set()
        self._poller: asyncio.Task[None] | None = None
        self.dry_runs: list[Any] = []  # the last dry-run answers (buying power, fees)

    # --- lifecycle ---

    async def connect(self) -> None:
        if self.api is None:
            self.api = TastyApi(self.config)
        if self.api.account is None:
            await self.api.open()
        await self._recover()
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name="tastytrade-broker-poll")

    async def close(self) -> None:
        await cancel(self._poller)
        self._poller = None
        if self.api is not None and self._own_api:
            await self.api.aclose()

    async def _recover(self) -> None:
        """Today's orders the account already has, by their ``external-identifier``: a
        restarted desk knows them, so placing one of its client ids again sends nothing."""
        api = self._ready()
        try:
            rows = await api.call(lambda: api.account.get_live_orders(api.session))
        except TastyError as exc:
            log.warning("tastytrade: today's orders not read: %s", exc)
            return
        for placed in rows:
            cid = placed.external_identifier
            if not cid or cid in self._states:
                continue
            body = placed.model_dump(mode="json", by_alias=True)
            body["price-effect"] = "Debit" if (placed.price or 0) < 0 else "Credit"
            body["price"] = abs(placed.price or 0)
            try:
                order = wire.order_of(body, cid, self.clock.now_ns())
            except ValueError as exc:
                log.warning("tastytrade: order %s not recovered: %s", placed.id, exc)
                continue
            self._ids[cid] = placed.id
            self._update(order, placed, quiet=True)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _ready(self) -> TastyApi:
        if self.api is None or self.api.account is None:
            raise BrokerError("tastytrade broker is not connected: call connect() first")
        return self.api

    # --- orders ---

    async def _sdk_order(self, order: Order) -> Any:
        from tastytrade.order import InstrumentType, Leg, LimitOrder, MarketOrder, OrderAction

        held = await self.positions()
        legs = [Leg(instrument_type=InstrumentType.EQUITY_OPTION, symbol=leg["symbol"],
                    action=OrderAction(leg["action"]), quantity=leg["quantity"])
                for leg in wire.wire_legs(order, held)]  # fmt: skip
        if order.order_type is OrderType.MARKET:
            return MarketOrder(legs=legs, external_identifier=order.client_id)
        price, effect = wire.wire_price(order)
        signed = Decimal(f"{price:.2f}") * (1 if effect == "Credit" else -1)
        return LimitOrder(legs=legs, price=signed, external_identifier=order.client_id)

    async def place(self, order: Order) -> OrderState:
        known = self._states.get(order.client_id)
        if known is not None:
            return known
        api = self._ready()
        sdk = await self._sdk_order(order)
        acct, session = api.account, api.session
        try:
            dry = await api.call(lambda: acct.place_order(session, sdk, dry_run=True))
        except TastyError as exc:
            raise OrderRejectedError(f"tastytrade dry run refused the order: {exc}") from None
        self.dry_runs = [*self.dry_runs[-9:], dry]
        if dry.errors:
            raise OrderRejectedError("tastytrade dry run: " + "; ".join(map(str, dry.errors)))
        try:
            placed = await api.call(lambda: acct.place_order(session, sdk, dry_run=False))
        except TastyError as exc:
            raise OrderRejectedError(f"tastytrade refused the order: {exc}") from None
        self._ids[order.client_id] = placed.order.id
        return self._update(order, placed.order)

    async def cancel(self, client_id: str) -> OrderState:
        api, oid = self._ready(), self._id(client_id)
        if self._states[client_id].status.done:
            return self._states[client_id]  # nothing to cancel: nothing sent
        acct = api.account
        try:
            await api.call(lambda: acct.delete_order(api.session, oid))
        except TastyError as exc:
            raise BrokerError(f"tastytrade cancel of {client_id}: {exc}") from None
        return await self._refresh(client_id)

    async def replace(self, client_id: str, *, limit_price: float,
                      quantity: int | None = None) -> OrderState:  # fmt: skip
        from tastytrade.order import PlacedOrder

        api, oid = self._ready(), self._id(client_id)
        state = self._states[client_id]
        old = state.order
        check_replace(state, limit_price, quantity)
        qty = old.quantity if quantity is None else quantity
        new = Order(old.client_id, old.legs, old.side, qty, OrderType.LIMIT, self.clock.now_ns(),
                    limit_price=float(limit_price), position_id=old.position_id)  # fmt: skip
        sdk = await self._sdk_order(new)
        # the whole order, legs included (the SDK's replace_order drops the legs, so it could
        # never change a quantity): tastytrade replaces the order with this one
        body = sdk.model_dump_json(exclude_none=True, by_alias=True)
        url = f"/accounts/{api.account.account_number}/orders/{oid}"
        try:
            data = await api.call(lambda: api.session._put(url, data=body))
        except TastyError as exc:
            raise OrderRejectedError(f"tastytrade refused to replace {client_id}: {exc}") from None
        placed = PlacedOrder(**data)
        self._ids[client_id] = placed.id
        return self._update(new, placed)

    def order(self, client_id: str) -> OrderState | None:
        return self._states.get(client_id)

    async def orders(self) -> list[OrderState]:
        return list(self._states.values())

    async def fills(self) -> list[Fill]:
        return list(self._fills)

    async def positions(self) -> dict[Contract, int]:
        api = self._ready()
        rows = await api.call(lambda: api.account.get_positions(api.session))
        out: dict[Contract, int] = {}
        for p in rows:
            try:
                c = from_occ(p.symbol)
            except ValueError:
                continue  # stock, futures: not the desk's
            qty = int(p.quantity) * (1 if p.quantity_direction == "Long" else -1)
            if qty:
                out[c] = out.get(c, 0) + qty
        return out

    async def account(self) -> AccountSummary:
        api = self._ready()
        b = await api.call(lambda: api.account.get_balances(api.session))
        return AccountSummary(
            cash=float(b.cash_balance),
            net_liquidation=float(b.net_liquidating_value),
            realized_pnl=0.0,
            commissions=0.0,
            buying_power_used=float(b.maintenance_requirement),
        )

    # --- state ---

    def _id(self, client_id: str) -> int:
        oid = self._ids.get(client_id)
        if oid is None:
            raise BrokerError(f"unknown order {client_id!r}")
        return oid

    async def _refresh(self, client_id: str) -> OrderState:
        api, oid = self._ready(), self._id(client_id)
        placed = await api.call(lambda: api.account.get_order(api.session, oid))
        return self._update(self._states[client_id].order, placed)

    def _update(self, order: Order, placed: Any, *, quiet: bool = False) -> OrderState:
        """The desk's view of a tastytrade order; new fills and a changed state are told to
        the listeners (the first state before any fill; ``quiet``: nothing told)."""
        status = wire.FROM_STATUS.get(placed.status.value, OrderStatus.PENDING)
        filled_legs, paid = [], 0.0
        for leg in placed.legs:
            for f in leg.fills or []:
                c = from_occ(leg.symbol)
                side = Side.BUY if leg.action.value.startswith("Buy") else Side.SELL
                fid = str(f.fill_id)
                paid += side.sign * float(f.fill_price) * float(f.quantity)
                if fid not in self._fill_ids:
                    self._fill_ids.add(fid)
                    ts = int(f.filled_at.timestamp() * 1e9)
                    fill = Fill(fid, order.client_id, c, side, float(f.quantity),
                                float(f.fill_price), ts)  # fmt: skip
                    self._fills.append(fill)
                    filled_legs.append(fill)
        # whole units filled: the least-filled leg, in units of the order
        units = []
        for leg in placed.legs:
            done = sum(float(f.quantity) for f in leg.fills or [])
            units.append(int(done) * order.quantity // max(int(leg.quantity or 1), 1))
        filled = order.quantity if status is OrderStatus.FILLED else min(units, default=0)
        if status is OrderStatus.WORKING and filled:
            status = OrderStatus.PARTIAL
        avg = order.side.sign * paid / filled if filled else 0.0
        reason = placed.reject_reason or ""
        state = OrderState(order, status, filled, avg, broker_id=str(placed.id), reason=reason,
                           ts_ns=self.clock.now_ns())  # fmt: skip
        before = self._states.get(order.client_id)
        self._states[order.client_id] = state
        if quiet:
            return state
        changed = before is None or (before.status, before.filled_qty, before.order) != (
            state.status, filled, state.order)  # fmt: skip
        if before is None:
            notify(self._listeners, state, self.name)  # the acknowledgement comes first
        for fill in filled_legs:
            notify(self._listeners, fill, self.name)
        if changed and before is not None:
            notify(self._listeners, state, self.name)
        return state

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            for cid, st in list(self._states.items()):
                if st.status.done:
                    continue
                try:
                    await self._refresh(cid)
                except Exception as exc:  # a failed poll is retried next round
                    log.warning("tastytrade: polling %s failed: %s", cid, exc)

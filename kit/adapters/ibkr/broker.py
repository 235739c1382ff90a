"""Orders through TWS / IB Gateway (``ib_async``): ``--broker ibkr``.

Single legs go as the qualified option; multi-leg orders as one ``BAG`` (``ComboLeg`` per leg,
``action`` BUY for a positive ratio, SELL for a negative one, the order's own side and net limit
unchanged: IBKR's combo sign convention is the Broker protocol's, a negative limit is a credit).
``orderRef`` carries the desk's client id: after a restart :meth:`IbkrBroker.place` finds an
order it already sent among TWS's open orders (``reqAllOpenOrders``) or its executions
(``reqExecutions``) and adopts it instead of sending it again. Broker ids are
``"{clientId}:{orderId}"``, the same from any client.

Events: order states from ``orderStatusEvent`` (PendingSubmit -> PENDING, PreSubmitted/Submitted
-> WORKING or PARTIAL, Filled, Cancelled, Inactive -> REJECTED; an error 201 before any
acknowledgement is REJECTED with TWS's reason); fills from ``commissionReportEvent`` (each
execution once, by execId, with its commission; a combo's per-leg executions, never the BAG
summary row). After a reconnect the connection's start-up sync (open orders, executions) is
reconciled: executions missed while away are emitted, states refreshed. Positions, account
values (``reqAccountSummary``) and executions are read fresh on each call. What-if orders
(:meth:`IbkrBroker.what_if`) return the initial-margin change: the buying power an order uses.
Pacing: ``ib_async``'s client throttle is set to IBKR's 50 messages per second.
"""

from __future__ import annotations

import asyncio
import logging

from ib_async import ComboLeg, LimitOrder, MarketOrder, Trade
from ib_async import Contract as IbContract
from ib_async import Fill as IbFill
from ib_async import Order as IbOrder
from msgspec.structs import replace

from kit.adapters.ibkr.config import IbkrConfig
from kit.adapters.ibkr.connection import IbConnection
from kit.core.clock import Clock, LiveClock
from kit.core.model import Contract, Fill, ModelError, Order, OrderType, Side
from kit.core.symbology import SymbolError, from_ibkr, to_ibkr
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

WORKING = {"PreSubmitted", "Submitted"}
DONE = {"Filled": OrderStatus.FILLED, "Cancelled": OrderStatus.CANCELLED,
        "ApiCancelled": OrderStatus.CANCELLED, "Inactive": OrderStatus.REJECTED}  # fmt: skip


def broker_id(o: IbOrder) -> str:
    return f"{o.clientId}:{o.orderId}"


class IbkrBroker:
    """The :class:`~kit.execution.broker.Broker` protocol over the TWS API."""

    name = "ibkr"
    supports_combo = True
    live = True

    def __init__(self, config: IbkrConfig | None = None, clock: Clock | None = None, *,
                 connection: IbConnection | None = None) -> None:  # fmt: skip
        self.config = config or IbkrConfig.from_env()
        self.clock = clock or LiveClock()
        self.conn = connection or IbConnection.shared(self.config)
        self._listeners: list[Listener] = []
        self._states: dict[str, OrderState] = {}
        self._trades: dict[str, Trade] = {}
        self._fills: dict[str, Fill] = {}  # by execId
        self._seen: set[str] = set()  # execIds emitted (or predating connect)
        self._qualified: dict[Contract, IbContract] = {}
        self._lock = asyncio.Lock()
        self._acquired = False

    @property
    def ib(self):
        return self.conn.ib

    # --- lifecycle ---

    async def connect(self) -> None:
        if self._acquired:
            return
        self._acquired = True
        try:
            await self.conn.acquire()
        except ConnectionError as exc:
            await self.close()
            raise BrokerError(str(exc)) from None
        ib = self.ib
        ib.orderStatusEvent += self._on_status
        ib.commissionReportEvent += self._on_commission
        self.conn.listeners.append(self._on_conn)
        self._seen.update(f.execution.execId for f in ib.fills())

    async def close(self) -> None:
        if not self._acquired:
            return
        self._acquired = False
        ib = self.ib
        ib.orderStatusEvent -= self._on_status
        ib.commissionReportEvent -= self._on_commission
        if self._on_conn in self.conn.listeners:
            self.conn.listeners.remove(self._on_conn)
        await self.conn.release()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # --- requests ---

    async def place(self, order: Order) -> OrderState:
        async with self._lock:
            if (known := self._states.get(order.client_id)) is not None:
                return known
            self._check_up()
            if (adopted := await self._adopt(order)) is not None:
                return adopted
            if crypto := [leg.contract.root for leg in order.legs if leg.contract.is_crypto]:
                raise OrderRejectedError(f"{crypto[0]} options do not trade at IBKR")
            if len({leg.contract for leg in order.legs}) != len(order.legs):
                raise OrderRejectedError("the same contract appears in two legs")
            contract = await self._contract(order)
            trade = self.ib.placeOrder(contract, self._ib_order(order))
            state = OrderState(order, OrderStatus.PENDING, broker_id=broker_id(trade.order),
                               ts_ns=self._now())  # fmt: skip
            self._trades[order.client_id] = trade
            self._remember(state)
            return state

    async def cancel(self, client_id: str) -> OrderState:
        state = self._known(client_id)
        if not state.status.done:
            self._check_up()
            trade = self._trades.get(client_id)
            if trade is None or trade.order.clientId != self.config.client_id:
                raise BrokerError(f"{client_id} was placed by client {state.broker_id}: cancel "
                                  "it from that client id (or TWS)")  # fmt: skip
            self.ib.cancelOrder(trade.order)
        return self._states[client_id]

    async def replace(
        self, client_id: str, *, limit_price: float, quantity: int | None = None
    ) -> OrderState:
        state = self._known(client_id)
        check_replace(state, limit_price, quantity)
        trade = self._trades.get(client_id)
        if trade is None:
            raise BrokerError(f"{client_id}: no order of this client to modify")
        self._check_up()
        order = replace(state.order, limit_price=float(limit_price),
                        quantity=quantity or state.order.quantity)  # fmt: skip
        trade.order.lmtPrice = float(limit_price)
        trade.order.totalQuantity = float(order.quantity)
        self.ib.placeOrder(trade.contract, trade.order)
        new = self._states[client_id] = replace(self._states[client_id], order=order,
                                                ts_ns=self._now())  # fmt: skip
        self._emit(new)
        return new

    async def what_if(self, order: Order) -> float:
        """The initial margin ``order`` would add (dollars of buying power), from TWS."""
        self._check_up()
        contract = await self._contract(order)
        ib_order = self._ib_order(order)
        state = await asyncio.wait_for(self.ib.whatIfOrderAsync(contract, ib_order),
                                       self.config.timeout_s)  # fmt: skip
        try:
            return float(state.initMarginChange)
        except (TypeError, ValueError):
            raise BrokerError(f"what-if for {order.client_id}: no margin in TWS's answer") from None

    # --- queries ---

    def order(self, client_id: str) -> OrderState | None:
        return self._states.get(client_id)

    async def orders(self) -> list[OrderState]:
        return list(self._states.values())

    async def fills(self) -> list[Fill]:
        """Every execution of the account TWS reports (this session's and earlier ones)."""
        self._check_up()
        got = await asyncio.wait_for(self.ib.reqExecutionsAsync(), self.config.timeout_s)
        known = self.ib.wrapper.fills
        out = []
        for f in got:
            fill = self._fill(known.get(f.execution.execId, f))
            if fill is not None:
                out.append(fill)
        return out

    async def positions(self) -> dict[Contract, int]:
        self._check_up()
        out: dict[Contract, int] = {}
        for p in await asyncio.wait_for(self.ib.reqPositionsAsync(), self.config.timeout_s):
            if p.contract.secType != "OPT" or not p.position:
                continue
            try:
                c = from_ibkr(p.contract)
            except (SymbolError, ModelError) as exc:
                log.warning("ibkr: position in %s not mapped: %s", p.contract.localSymbol, exc)
                continue
            out[c] = out.get(c, 0) + round(p.position)
        return {c: q for c, q in out.items() if q}

    async def account(self) -> AccountSummary:
        self._check_up()
        await asyncio.wait_for(self.ib.reqAccountSummaryAsync(), self.config.timeout_s)
        values = {v.tag: v.value for v in self.ib.wrapper.acctSummary.values()
                  if not self.config.account_id or v.account == self.config.account_id}  # fmt: skip

        def num(tag: str) -> float:
            try:
                return float(values.get(tag) or 0.0)
            except ValueError:
                return 0.0

        return AccountSummary(cash=num("TotalCashValue"), net_liquidation=num("NetLiquidation"),
                              realized_pnl=num("RealizedPnL"),
                              commissions=sum(f.commission for f in await self.fills()),
                              buying_power_used=num("InitMarginReq"))  # fmt: skip

    # --- events ---

    def _on_status(self, trade: Trade) -> None:
        cid = trade.order.orderRef
        old = self._states.get(cid)
        if old is None:
            return
        self._trades.setdefault(cid, trade)
        new = self._state_of(old, trade)
        if (new.status, new.filled_qty, new.avg_price, new.reason) != (
            old.status, old.filled_qty, old.avg_price, old.reason):  # fmt: skip
            self._states[cid] = new
            self._emit(new)

    def _state_of(self, old: OrderState, trade: Trade) -> OrderState:
        st = trade.orderStatus
        filled = max(round(st.filled), old.filled_qty)
        status = DONE.get(st.status)
        reason = ""
        if status is OrderStatus.CANCELLED and filled == 0:
            errors = [e for e in trade.log if e.errorCode and e.errorCode != 202]
            if errors and old.status is OrderStatus.PENDING:
                status, reason = OrderStatus.REJECTED, errors[-1].message
        if status is None:
            if st.status not in WORKING:
                return old
            status = OrderStatus.PARTIAL if filled else OrderStatus.WORKING
        if old.status.done:
            return old
        avg = float(st.avgFillPrice) if filled else 0.0
        return replace(old, status=status, filled_qty=filled, avg_price=avg, reason=reason,
                       broker_id=broker_id(trade.order), ts_ns=self._now())  # fmt: skip

    def _on_commission(self, trade: Trade, fill: IbFill, report: object) -> None:
        eid = fill.execution.execId
        if eid in self._seen or fill.execution.orderRef not in self._states:
            return
        kit_fill = self._fill(fill)
        if kit_fill is not None:
            self._seen.add(eid)
            self._emit(kit_fill)

    def _on_conn(self, kind: str, code: int, text: str) -> None:
        if kind == "up":
            self._reconcile()

    def _reconcile(self) -> None:
        """After a reconnect: executions missed while away, then each order's state."""
        for f in self.ib.fills():
            self._on_commission(None, f, None)  # type: ignore[arg-type]
        for trade in self.ib.trades():
            if trade.order.orderRef in self._states:
                self._trades[trade.order.orderRef] = trade
                self._on_status(trade)

    def _fill(self, f: IbFill) -> Fill | None:
        eid = f.execution.execId
        if (done := self._fills.get(eid)) is not None:
            return done
        if f.contract.secType != "OPT" or f.execution.side not in ("BOT", "SLD"):
            return None  # a combo's summary row, or not an option
        try:
            c = from_ibkr(f.contract)
            fill = Fill(eid, f.execution.orderRef, c,
                        Side.BUY if f.execution.side == "BOT" else Side.SELL,
                        float(f.execution.shares), float(f.execution.price), self._now(),
                        commission=abs(float(f.commissionReport.commission or 0.0)))  # fmt: skip
        except (SymbolError, ModelError) as exc:
            log.warning("ibkr: execution %s not mapped: %s", eid, exc)
            return None
        if f.commissionReport.execId:  # final once the commission is in
            self._fills[eid] = fill
        return fill

    # --- helpers ---

    async def _adopt(self, order: Order) -> OrderState | None:
        """TWS's state of an order this process never placed (a restart): no resend."""
        cid, timeout = order.client_id, self.config.timeout_s
        for trade in await asyncio.wait_for(self.ib.reqAllOpenOrdersAsync(), timeout):
            if trade.order.orderRef == cid:
                base = OrderState(order, OrderStatus.PENDING, broker_id=broker_id(trade.order))
                state = self._state_of(base, trade)
                if trade.order.clientId == self.config.client_id:
                    self._trades[cid] = trade
                log.info("ibkr: %s already at TWS as order %s: adopted", cid, state.broker_id)
                self._remember(state)
                return state
        execs = [f for f in await asyncio.wait_for(self.ib.reqExecutionsAsync(), timeout)
                 if f.execution.orderRef == cid and f.contract.secType == "OPT"]  # fmt: skip
        if not execs:
            return await self._adopt_completed(order)
        first = execs[0].execution
        units = sum(f.execution.shares for f in execs) / sum(abs(leg.ratio) for leg in order.legs)
        net = 0.0  # the order's net price per unit: sum of ratio x each leg's average price
        for leg in order.legs:
            con_id = (await self._option(leg.contract)).conId
            mine = [f.execution for f in execs if f.contract.conId == con_id]
            shares = sum(e.shares for e in mine)
            net += leg.ratio * (sum(e.shares * e.price for e in mine) / shares if shares else 0.0)
        filled = round(units)
        status = OrderStatus.FILLED if filled >= order.quantity else OrderStatus.CANCELLED
        state = OrderState(order, status, filled, round(net, 9),
                           f"{first.clientId}:{first.orderId}", ts_ns=self._now())  # fmt: skip
        self._seen.update(f.execution.execId for f in execs)
        log.info("ibkr: %s already executed at TWS (order %s): adopted, not resent", cid,
                 state.broker_id)  # fmt: skip
        self._remember(state)
        return state

    async def _adopt_completed(self, order: Order) -> OrderState | None:
        """An order done at TWS without executions (cancelled, rejected): adopted as it ended,
        never sent again. TWS reports completed orders by permId only."""
        done = await asyncio.wait_for(self.ib.reqCompletedOrdersAsync(False), self.config.timeout_s)
        trade = next((t for t in done if t.order.orderRef == order.client_id), None)
        if trade is None:
            return None
        status = DONE.get(trade.orderStatus.status, OrderStatus.CANCELLED)
        state = OrderState(order, status, 0, 0.0, f"perm:{trade.order.permId}",
                           reason=f"completed at TWS ({trade.orderStatus.status})",
                           ts_ns=self._now())  # fmt: skip
        log.info("ibkr: %s already completed at TWS (%s): adopted, not resent", order.client_id,
                 trade.orderStatus.status)  # fmt: skip
        self._remember(state)
        return state

    async def _contract(self, order: Order) -> IbContract:
        legs = [await self._option(leg.contract) for leg in order.legs]
        if len(legs) == 1:
            return legs[0]
        return IbContract(secType="BAG", symbol=order.legs[0].contract.underlying,
                          currency="USD", exchange="SMART",
                          comboLegs=[ComboLeg(conId=c.conId, ratio=abs(leg.ratio),
                                              action="BUY" if leg.ratio > 0 else "SELL",
                                              exchange="SMART")
                                     for c, leg in zip(legs, order.legs, strict=True)])  # fmt: skip

    async def _option(self, c: Contract) -> IbContract:
        if (known := self._qualified.get(c)) is not None:
            return known
        try:
            wanted = IbContract(**to_ibkr(c))
        except SymbolError as exc:
            raise OrderRejectedError(str(exc)) from None
        [done] = await self.ib.qualifyContractsAsync(wanted)
        if done is None or not done.conId:
            raise OrderRejectedError(f"IBKR has no {c.root} {c.expiry} {c.strike:g}"
                                     f"{c.right.value} option (contract details)")  # fmt: skip
        self._qualified[c] = done
        return done

    def _ib_order(self, order: Order) -> IbOrder:
        action = "BUY" if order.side is Side.BUY else "SELL"
        kw = {"orderRef": order.client_id, "tif": "DAY", "account": self.config.account_id}
        if order.order_type is OrderType.LIMIT:
            assert order.limit_price is not None
            return LimitOrder(action, order.quantity, order.limit_price, **kw)
        return MarketOrder(action, order.quantity, **kw)

    def _check_up(self) -> None:
        if not self._acquired:
            raise BrokerError("IBKR: not connected (call connect() first)")
        if not self.conn.is_up:
            raise BrokerError(f"IBKR: {self.config.where} is not connected "
                              f"({self.conn.last_error or 'reconnecting'})")  # fmt: skip

    def _known(self, client_id: str) -> OrderState:
        if (state := self._states.get(client_id)) is None:
            raise BrokerError(f"unknown order {client_id!r}")
        return state

    def _remember(self, state: OrderState) -> None:
        self._states[state.client_id] = state
        self._emit(state)

    def _emit(self, event: OrderState | Fill) -> None:
        notify(self._listeners, event, self.name)

    def _now(self) -> int:
        return self.clock.now_ns()

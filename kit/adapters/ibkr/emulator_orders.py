"""placeOrder in the emulator: new orders, modifications and what-if orders.

A new order becomes an order of the paper engine (client id ``"{clientId}.{orderId}"``); TWS's
answers (openOrder, orderStatus, execDetails, commissionReport) then follow the engine's events
(:meth:`kit.adapters.ibkr.emulator.TwsEmulator._on_engine`). A placeOrder for an order id this
client already used modifies it (price and quantity). A what-if order is priced, never placed:
its openOrder carries the initial margin before, the change and after (Reg-T style, the same
function the paper engine and the ticket use).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from kit.adapters.ibkr import emulator_protocol as wire
from kit.adapters.ibkr.emulator_records import OrderRec
from kit.core.model import Leg, Order, OrderType, Side
from kit.execution.broker import BrokerError, OrderRejectedError
from kit.risk.margin import reg_t_margin

if TYPE_CHECKING:
    from kit.adapters.ibkr.emulator import TwsEmulator
    from kit.adapters.ibkr.emulator_session import Session

NO_DEFINITION = "No security definition has been found for the request"


async def place(s: Session, p: wire.PlacedOrder) -> None:
    emu = s.emu
    known = emu.orders.get((s.client_id, p.order_id))
    if known is not None and not p.what_if:
        await _modify(s, known, p)
        return
    if p.order_id < emu.next_order_id and not p.what_if:
        s.send(wire.error(p.order_id, 103, f"Duplicate order id {p.order_id}"))
        return
    emu.next_order_id = max(emu.next_order_id, p.order_id + 1)
    engine_id = f"{s.client_id}.{p.order_id}"
    try:
        order = engine_order(emu, p, engine_id)
        if p.what_if:
            await _what_if(s, p, order)
            return
        if emu.faults.reject_orders:
            raise OrderRejectedError(emu.faults.reject_orders)
        emu.orders_received += 1
        contract = _ib_contract(s, p)
        rec = OrderRec(p.order_id, s.client_id, emu.new_perm_id(), engine_id, contract,
                       p.action, p.order_type, p.tif, p.order_ref, tuple(p.legs))  # fmt: skip
        emu.orders[(s.client_id, p.order_id)] = rec
        emu.by_engine[engine_id] = rec
        for leg in order.legs:
            emu.track(leg.contract)
        await emu.paper.place(order)
    except (OrderRejectedError, BrokerError) as exc:
        s.send(wire.error(p.order_id, 201, f"Order rejected - reason:{exc}"))


def _ib_contract(s: Session, p: wire.PlacedOrder) -> wire.IbContract:
    emu = s.emu
    if p.contract["secType"] == "BAG":
        return wire.IbContract(28812380, p.contract["symbol"], "BAG", exchange="SMART",
                               local_symbol="", trading_class="COMB")  # fmt: skip
    c = emu.contract_by_id(p.contract["conId"]) if p.contract["conId"] else None
    if c is None:
        found = emu.find_options(p.contract)
        if len(found) != 1:
            raise OrderRejectedError(NO_DEFINITION)
        c = found[0]
    return emu.ib_option(c, p.contract["exchange"])


async def _modify(s: Session, rec: OrderRec, p: wire.PlacedOrder) -> None:
    emu = s.emu
    st = emu.paper.order(rec.engine_id)
    if st is None or st.status.done:
        s.send(wire.error(p.order_id, 104, "Can't modify a filled order"))
        return
    try:
        await emu.paper.replace(rec.engine_id, limit_price=float(p.lmt_price or 0.0),
                                quantity=int(p.quantity))  # fmt: skip
    except (OrderRejectedError, BrokerError) as exc:
        s.send(wire.error(p.order_id, 105, f"Order being modified does not match: {exc}"))
        return
    s.send(wire.open_order(emu.order_view(rec), rec.contract))
    s.send(emu.status_message(rec))


async def _what_if(s: Session, p: wire.PlacedOrder, order: Order) -> None:
    """Initial margin before / change / after, from the Reg-T function, at current mids."""
    emu = s.emu
    held = await emu.paper.positions()
    before = _margin(emu, held)
    after_pos = dict(held)
    for leg in order.legs:
        delta = order.side.sign * leg.ratio * order.quantity
        after_pos[leg.contract] = after_pos.get(leg.contract, 0) + delta
        emu.track(leg.contract)
    after = _margin(emu, {c: q for c, q in after_pos.items() if q})
    fee = sum(emu.paper.config.commission(leg.contract.root, abs(leg.ratio) * order.quantity,
                                          0.0) for leg in order.legs)  # fmt: skip
    view = wire.OrderView(p.order_id, s.client_id, 0, p.action, p.quantity, p.order_type,
                          p.lmt_price, p.tif, emu.account, p.order_ref, "PreSubmitted",
                          tuple(p.legs), True, (before, after - before, after), fee)  # fmt: skip
    s.send(wire.open_order(view, _ib_contract(s, p)))


def _margin(emu: TwsEmulator, held: dict) -> float:
    """Reg-T margin of ``held`` per underlying, at the market's mids."""
    from kit.core.model import Leg

    total = 0.0
    by_und: dict[str, list] = {}
    for c, q in held.items():
        by_und.setdefault(c.underlying, []).append((c, q))
    for und, rows in by_und.items():
        legs = [Leg(c, int(q)) for c, q in rows]
        prices = []
        for c, _ in rows:
            emu.track(c)
            row = emu.market.index.get(c)
            mark = float(emu.market.mark[row]) if row is not None else 0.0
            prices.append(mark if mark == mark else 0.0)
        total += float(reg_t_margin(legs, prices, emu.spot(und)))
    return total


def engine_order(emu: TwsEmulator, p: wire.PlacedOrder, engine_id: str) -> Order:
    """The paper engine's order for a placeOrder: BAG legs signed by their action, the order's
    side and net limit price kept (IBKR's combo convention is the Broker protocol's)."""
    if p.order_type not in ("LMT", "MKT"):
        raise OrderRejectedError(f"the emulator takes LMT and MKT orders, not {p.order_type}")
    if p.action not in ("BUY", "SELL"):
        raise OrderRejectedError(f"action {p.action!r} is not BUY or SELL")
    if not p.quantity > 0 or not float(p.quantity).is_integer():
        raise OrderRejectedError(f"quantity {p.quantity:g} is not a whole positive number")
    legs: list[Leg] = []
    if p.contract["secType"] == "BAG":
        for con_id, ratio, action in p.legs:
            c = emu.contract_by_id(con_id)
            if c is None:
                raise OrderRejectedError(f"combo leg conId {con_id}: {NO_DEFINITION}")
            legs.append(Leg(c, ratio if action == "BUY" else -ratio))
    else:
        con_id = p.contract["conId"]
        found = [emu.contract_by_id(con_id)] if con_id else list(emu.find_options(p.contract))
        if len(found) != 1 or found[0] is None:
            raise OrderRejectedError(NO_DEFINITION)
        legs.append(Leg(found[0], 1))
    kind = OrderType.LIMIT if p.order_type == "LMT" else OrderType.MARKET
    if kind is OrderType.LIMIT and (p.lmt_price is None or not math.isfinite(p.lmt_price)):
        raise OrderRejectedError("a limit order needs a limit price")
    side = Side.BUY if p.action == "BUY" else Side.SELL
    return Order(engine_id, tuple(legs), side, int(p.quantity), kind, emu.clock.now_ns(),
                 limit_price=p.lmt_price if kind is OrderType.LIMIT else None)  # fmt: skip

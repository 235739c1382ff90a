"""tastytrade orders <-> desk orders, pure: both the broker (desk -> SDK order) and the emulator
(wire JSON -> desk order -> wire JSON) use these, so the two sides cannot drift apart.

tastytrade's convention: each leg has an ``action`` (Buy/Sell to Open/Close) and an unsigned
``quantity``; ``price`` is unsigned per unit of the order (``size`` = the greatest common divisor
of the leg quantities) with ``price-effect`` Debit (we pay) or Credit (we receive). The desk's
(:mod:`kit.execution.broker`): signed leg ratios, BUY/SELL and a signed ``limit_price`` per unit
(positive a debit). So a short strangle credit 4.20 is legs (-1 put, -1 call) BUY at -4.20 here
and two ``Sell to Open`` legs at ``price`` 4.20 ``Credit`` there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kit.core.model import Contract, Leg, Order, OrderType, Side
from kit.core.symbology import from_occ, to_occ
from kit.execution.broker import OrderState, OrderStatus

STATUS = {  # desk status -> tastytrade status
    OrderStatus.PENDING: "Received",
    OrderStatus.WORKING: "Live",
    OrderStatus.PARTIAL: "Live",
    OrderStatus.FILLED: "Filled",
    OrderStatus.CANCELLED: "Cancelled",
    OrderStatus.REJECTED: "Rejected",
}
FROM_STATUS = {
    "Received": OrderStatus.PENDING, "Routed": OrderStatus.PENDING,
    "In Flight": OrderStatus.PENDING, "Contingent": OrderStatus.PENDING,
    "Live": OrderStatus.WORKING, "Cancel Requested": OrderStatus.WORKING,
    "Replace Requested": OrderStatus.WORKING, "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELLED, "Expired": OrderStatus.CANCELLED,
    "Removed": OrderStatus.CANCELLED, "Partially Removed": OrderStatus.CANCELLED,
    "Rejected": OrderStatus.REJECTED,
}  # fmt: skip


class OrderFormatError(ValueError):
    """An order body that does not describe an order (one line, fit for the client)."""


def wire_legs(order: Order, held: Mapping[Contract, int]) -> list[dict[str, Any]]:
    """The order's legs as tastytrade legs: Open or Close by what is ``held`` (selling what is
    long closes it; anything else opens)."""
    legs = []
    for leg in order.legs:
        qty = order.side.sign * leg.ratio * order.quantity
        have = held.get(leg.contract, 0)
        closing = have != 0 and (have > 0) != (qty > 0) and abs(qty) <= abs(have)
        verb = "Buy" if qty > 0 else "Sell"
        legs.append({"instrument-type": "Equity Option", "symbol": to_occ(leg.contract),
                     "action": f"{verb} to {'Close' if closing else 'Open'}",
                     "quantity": abs(qty)})  # fmt: skip
    return legs


def wire_price(order: Order) -> tuple[float, str]:
    """(unsigned price per tastytrade unit, "Debit" | "Credit")."""
    ratios = [abs(leg.ratio) for leg in order.legs]
    per_unit = math.gcd(*ratios)  # tastytrade's unit: gcd of the leg quantities / quantity
    debit = order.side.sign * float(order.limit_price or 0.0) / per_unit
    return abs(debit), "Debit" if debit > 0 else "Credit"


def order_of(body: Mapping[str, Any], client_id: str, ts_ns: int) -> Order:
    """A tastytrade order body (``legs``, ``order-type``, ``price``, ``price-effect``) as a desk
    order (side BUY, signed ratios, quantity = the gcd of the leg quantities)."""
    try:
        raw = list(body.get("legs") or [])
        if not raw:
            raise OrderFormatError("an order needs at least one leg")
        signed: list[tuple[Contract, int]] = []
        for leg in raw:
            qty = int(float(leg["quantity"]))
            action = str(leg["action"])
            if qty <= 0 or not action.startswith(("Buy", "Sell")):
                raise OrderFormatError(f"leg {leg.get('symbol')!r}: bad action or quantity")
            signed.append((from_occ(str(leg["symbol"])), qty if action.startswith("Buy") else -qty))
        size = math.gcd(*(abs(q) for _, q in signed))
        kind = str(body.get("order-type", "Limit"))
        if kind not in ("Limit", "Market"):
            raise OrderFormatError(f"order-type {kind!r}: the emulator takes Limit or Market")
        price = None
        if kind == "Limit":
            price = float(body["price"])
            if not math.isfinite(price) or price < 0:
                raise OrderFormatError(f"price {body['price']!r}: give a non-negative number")
            price = price if body.get("price-effect") == "Debit" else -price
        return Order(client_id, tuple(Leg(c, q // size) for c, q in signed), Side.BUY, size,
                     OrderType.LIMIT if kind == "Limit" else OrderType.MARKET, ts_ns,
                     limit_price=price)  # fmt: skip
    except OrderFormatError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise OrderFormatError(f"malformed order: {exc}") from None


def order_json(state: OrderState, *, order_id: int, account: str, iso_now: str,
               fills: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """A desk order state as tastytrade's order JSON (what ``PlacedOrder`` parses)."""
    o = state.order
    legs = []
    for leg in o.legs:
        qty = o.side.sign * leg.ratio * o.quantity
        done = abs(qty) * state.filled_qty // max(o.quantity, 1)
        occ = to_occ(leg.contract)
        legs.append({"instrument-type": "Equity Option", "symbol": occ,
                     "action": f"{'Buy' if qty > 0 else 'Sell'} to Open", "quantity": abs(qty),
                     "remaining-quantity": abs(qty) - done,
                     "fills": [f for f in fills or [] if f["symbol"] == occ]})  # fmt: skip
    doc: dict[str, Any] = {
        "id": order_id, "account-number": account, "time-in-force": "Day",
        "order-type": "Limit" if o.order_type is OrderType.LIMIT else "Market",
        "size": o.quantity, "underlying-symbol": o.legs[0].contract.root,
        "underlying-instrument-type": "Index", "status": STATUS[state.status],
        "cancellable": not state.status.done, "editable": not state.status.done,
        "edited": False, "updated-at": iso_now, "received-at": iso_now, "legs": legs,
    }  # fmt: skip
    if o.limit_price is not None:
        doc["price"] = f"{abs(o.side.sign * o.limit_price):.2f}"
        doc["price-effect"] = "Debit" if o.side.sign * o.limit_price > 0 else "Credit"
    if state.reason:
        doc["reject-reason"] = state.reason
    if o.client_id and not o.client_id.startswith("tt-"):
        doc["external-identifier"] = o.client_id
    return doc


def money(value: float) -> dict[str, str]:
    """A tastytrade amount: unsigned value and its effect."""
    return {"value": f"{abs(value):.2f}", "effect": "Debit" if value < 0 else "Credit"}

"""Translating between the desk's orders/fills and Delta's order and trade JSON.

The desk's :class:`~kit.core.model.Order` follows the BAG convention (``side.sign x ratio`` per
leg, net limit per unit); Delta takes single-product orders (``size``, ``side``, a positive
``limit_price`` per coin), so a one-leg order of ratio +-1 maps exactly: the leg trades
``side.sign x ratio`` and its price is ``limit x ratio``. ``client_order_id`` is the desk's
``client_id`` when it fits Delta's 32 characters of letters, digits, ``-`` and ``_``; otherwise its
first characters made safe (:func:`coid_prefix`, so whose order it is stays readable on the
exchange) and a stable hash of the whole id, so a restart derives the same id and finds the order
instead of sending it twice.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from kit.adapters.delta.parsing import num, ticker_ts_ns
from kit.core.model import Contract, Fill, Order, OrderType, Side
from kit.execution.broker import OrderRejectedError, OrderState, OrderStatus

_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_CLIENT_ID = 32
DIGEST = 12  # hex digits of the hash: 48 bits, no collision among one account's orders
HEAD = MAX_CLIENT_ID - DIGEST - 1


def coid_prefix(client_id: str) -> str:
    """The readable head of a hashed ``client_order_id``: what the exchange's copy of every
    desk client id that starts with ``client_id`` starts with (how a trader recognises its own
    orders among the account's open orders after a restart)."""
    return _UNSAFE.sub("-", client_id)[:HEAD]


def client_order_id(client_id: str) -> str:
    """Delta's ``client_order_id`` for a desk client id: itself if it fits, else its
    :func:`coid_prefix`, ``-`` and a stable hash of the whole id."""
    if _SAFE.match(client_id):
        return client_id
    digest = hashlib.sha256(client_id.encode()).hexdigest()[:DIGEST]
    return f"{coid_prefix(client_id)}-{digest}"


def leg_of(order: Order) -> tuple[Contract, Side, int, float | None]:
    """(contract, Delta side, size, Delta limit price) of a single-leg order."""
    if len(order.legs) != 1 or abs(order.legs[0].ratio) != 1:
        raise OrderRejectedError("Delta Exchange takes single-leg orders of ratio 1 (send each "
                                 "leg of a strangle as its own order)")  # fmt: skip
    leg = order.legs[0]
    sign = order.side.sign * leg.ratio
    side = Side.BUY if sign > 0 else Side.SELL
    price = None
    if order.order_type is OrderType.LIMIT:
        if order.limit_price is None:
            raise OrderRejectedError("a limit order needs a limit price")
        price = order.limit_price * leg.ratio
        if not price > 0:
            raise OrderRejectedError(f"limit {order.limit_price} is not a positive option price")
    return leg.contract, side, order.quantity, price


def order_body(order: Order, product_id: int, *, reduce_only: bool) -> dict[str, Any]:
    _, side, size, price = leg_of(order)
    body: dict[str, Any] = {
        "product_id": product_id, "size": size, "side": side.value,
        "order_type": "limit_order" if price is not None else "market_order",
        "client_order_id": client_order_id(order.client_id),
        "reduce_only": "true" if reduce_only else "false", "time_in_force": "gtc",
    }  # fmt: skip
    if price is not None:
        body["limit_price"] = f"{price:.10g}"
    return body


def status_of(row: dict[str, Any]) -> tuple[OrderStatus, int]:
    """(status, filled quantity) of a Delta order row."""
    size = int(num(row.get("size"), 0))
    filled = size - int(num(row.get("unfilled_size"), size))
    state = str(row.get("state") or "")
    if state == "closed":
        return (OrderStatus.FILLED if filled >= size else OrderStatus.CANCELLED), filled
    if state == "cancelled":
        return OrderStatus.CANCELLED, filled
    if state == "pending":
        return OrderStatus.PENDING, filled
    return (OrderStatus.PARTIAL if filled else OrderStatus.WORKING), filled


def state_of(order: Order, row: dict[str, Any], ts_ns: int) -> OrderState:
    """The desk's view of a Delta order row (average price as the BAG net per unit)."""
    status, filled = status_of(row)
    ratio = order.legs[0].ratio if order.legs else 1
    avg = num(row.get("average_fill_price"), 0.0) * ratio if filled else 0.0
    return OrderState(order, status, filled, avg, str(row.get("id")), "", ts_ns)


def fill_of(row: dict[str, Any], contract: Contract, client_id: str) -> Fill:
    """A Delta fill / ``v2/user_trades`` row as the desk's Fill (per-contract quantities)."""
    ts = ticker_ts_ns({"timestamp": row.get("created_at") or row.get("timestamp") or 0})
    return Fill(str(row.get("id")), client_id, contract, Side(str(row.get("side"))),
                float(num(row.get("size"), 0)), num(row.get("price"), 0.0), ts,
                commission=num(row.get("commission"), 0.0))  # fmt: skip

"""The Client Portal API's wire JSON ↔ the desk's records: pure functions, no HTTP.

Field names and shapes are those listed in :mod:`kit.adapters.cpapi.broker`'s docstring. The
gateway sends numbers as numbers or as strings, and leaves fields out: every reader here takes
either and falls back instead of raising, except where a missing field means the answer cannot
be trusted (then the caller's error names the endpoint).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from kit.core.model import Contract, Fill, Order, OrderType, Side
from kit.core.symbology import right_code
from kit.execution.broker import BrokerError, OrderRejectedError, OrderState, OrderStatus

log = logging.getLogger(__name__)

COMBO_CONID_USD = 28812380  # IBKR's spread contract for USD combos: the conidex prefix
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_LIVE = None  # marker in _STATUS: working, or partly filled
_STATUS: dict[str, OrderStatus | None] = {
    "PendingSubmit": OrderStatus.PENDING, "ApiPending": OrderStatus.PENDING,
    "PreSubmitted": _LIVE, "Submitted": _LIVE, "PendingCancel": _LIVE, "WarnState": _LIVE,
    "Filled": OrderStatus.FILLED, "Cancelled": OrderStatus.CANCELLED,
    "ApiCancelled": OrderStatus.CANCELLED, "Inactive": OrderStatus.REJECTED,
}  # fmt: skip


def map_status(ib_status: str, filled: int) -> OrderStatus:
    """IBKR's order status to ours; ``filled`` (order units) tells working from partly filled.
    ``Inactive`` after a partial fill is a cancel of the rest, not a rejection."""
    live = OrderStatus.PARTIAL if filled > 0 else OrderStatus.WORKING
    if ib_status not in _STATUS:
        log.warning("IBKR: unknown order status %r, treated as working", ib_status)
        return live
    status = _STATUS[ib_status]
    if status is None or (status is OrderStatus.PENDING and filled > 0):
        return live
    return OrderStatus.CANCELLED if status is OrderStatus.REJECTED and filled > 0 else status


def num(value: Any, default: float = 0.0) -> float:
    """A number the gateway sent as a number or a string; ``default`` when absent or bad."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return default
    return x if math.isfinite(x) else default


def order_shape(order: Order) -> tuple[int, int]:
    """(contracts per order unit, price sign) of what is sent: a single leg goes out as its
    contract (``quantity x |ratio|`` at ``limit / ratio``); a combo as its units."""
    if len(order.legs) == 1:
        ratio = order.legs[0].ratio
        return abs(ratio), ratio
    return 1, 1


def order_body(order: Order, account_id: str, conids: Sequence[int]) -> dict[str, Any]:
    """The order ticket (``conids``: each leg's, in order): a single leg by its conid, a combo
    as ``conidex`` on the USD spread conid with signed ratios (the BAG convention)."""
    scale, sign = order_shape(order)
    body: dict[str, Any] = {"acctId": account_id, "cOID": order.client_id,
                            "tif": "DAY", "quantity": order.quantity * scale}  # fmt: skip
    if len(order.legs) == 1:
        body["conid"] = conids[0]
    else:
        legs = [f"{conid}/{leg.ratio}" for conid, leg in zip(conids, order.legs, strict=True)]
        body["conidex"] = f"{COMBO_CONID_USD};;;{','.join(legs)}"
    body["side"] = "BUY" if order.side.sign * sign > 0 else "SELL"
    body["orderType"] = "LMT" if order.order_type is OrderType.LIMIT else "MKT"
    if order.limit_price is not None:
        body["price"] = round(order.limit_price / sign, 8)
    return body


def state_from_row(order: Order, row: dict[str, Any], broker_id: str, now_ns: int) -> OrderState:
    """An ``/iserver/account/orders`` row as the state of ``order`` (back in order units)."""
    scale, sign = order_shape(order)
    filled = round(num(row.get("filledQuantity")) / scale)
    status = map_status(ib_status := str(row.get("status") or ""), filled)
    avg = num(row.get("avgPrice")) * sign if filled else 0.0
    reason = ib_status if status is OrderStatus.REJECTED else ""
    return OrderState(order, status, filled, avg, broker_id, reason, now_ns)


def trade_side(t: dict[str, Any]) -> Side | None:
    """The side of an option execution row; None for what is not one (expiries have side
    ``X``, combo summary rows are ``BAG``, other asset classes) or has no execution id."""
    side = {"B": Side.BUY, "S": Side.SELL}.get(str(t.get("side") or "").upper())
    if not t.get("execution_id") or side is None or t.get("sec_type", "OPT") != "OPT":
        return None
    return side


def fill_from_trade(
    t: dict[str, Any], side: Side, contract: Contract, client_id: str, now_ns: int
) -> Fill:
    """An ``/iserver/account/trades`` row as a fill (raises ModelError when it is not one)."""
    ts = int(num(t.get("trade_time_r"))) * 1_000_000 or now_ns
    return Fill(str(t["execution_id"]), client_id, contract, side, num(t.get("size")),
                num(t.get("price")), ts, commission=abs(num(t.get("commission"))))  # fmt: skip


def contract_from_info(conid: int, info: Any) -> Contract | None:
    """The option described by ``/iserver/contract/{conid}/info``; None when it is not an
    option or cannot be read (logged)."""
    if not (isinstance(info, dict) and info.get("instrument_type") == "OPT"):
        return None
    try:
        ymd = str(info.get("expiry_full") or info["maturity_date"])[:8]
        return Contract(str(info["trading_class"]), datetime.strptime(ymd, "%Y%m%d").date(),
                        num(info["strike"], math.nan), right_code(info["right"]),
                        num(info.get("multiplier"), 100.0))  # fmt: skip
    except (KeyError, ValueError) as exc:  # ModelError is a ValueError
        log.warning("IBKR conid %s: cannot read the option (%s)", conid, exc)
        return None


def underlying_conid(rows: Any, symbol: str) -> int | None:
    """The conid of ``symbol`` with listed options in a ``/iserver/secdef/search`` answer."""
    return next((int(r["conid"]) for r in rows or [] if r.get("symbol") == symbol
                 and any(s.get("secType") == "OPT" for s in r.get("sections") or [])),
                None)  # fmt: skip


def secdef_params(c: Contract, underlying: int) -> dict[str, Any]:
    """The ``/iserver/secdef/info`` query for option ``c`` of ``underlying``'s conid."""
    return {"conid": underlying, "sectype": "OPT", "month": f"{MONTHS[c.expiry.month - 1]}"
            f"{c.expiry:%y}", "strike": f"{c.strike:g}", "right": c.right.value}  # fmt: skip


def option_conid(rows: Any, c: Contract) -> int | None:
    """The conid of ``c`` in a ``/iserver/secdef/info`` answer: the row with its expiry and
    trading class (SPX vs SPXW). A different multiplier refuses the order."""
    for r in rows or []:
        if str(r.get("maturityDate")) == f"{c.expiry:%Y%m%d}" and r.get("tradingClass") == c.root:
            if num(r.get("multiplier"), c.multiplier) != c.multiplier:
                raise OrderRejectedError(f"{c.root} multiplier at IBKR is {r['multiplier']}")
            return int(r["conid"])
    return None


def summary_amount(summary: dict[str, Any], key: str) -> float:
    """An amount of ``/portfolio/{accountId}/summary``; a missing or null one is an error."""
    item = summary.get(key)
    if not isinstance(item, dict) or item.get("isNull"):
        raise BrokerError(f"IBKR GET /portfolio/{{accountId}}/summary: no {key!r}")
    return num(item.get("amount"), math.nan)

"""The TWS API wire format the emulator speaks: legacy framing and every message's field order.

Framing (server versions below 201): each message is a 4-byte big-endian length and then the
fields, each terminated by NUL. The handshake is ``API\\0`` followed by one such frame holding
``v{min}..{max}``; the server answers ``[version, connection time]`` and the client sends
startApi. The field orders below are the ones ``ib_async`` 2.1's ``decoder.py`` reads at
:data:`SERVER_VERSION` (176: error messages carry advancedOrderRejectJson, open orders carry
faProfile, executions have no pendingPriceRevision, contract details have no version field) and
the ones its ``client.py`` writes. Kept apart from the server so each field order is written once.
"""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

SERVER_VERSION = 176  # 157 <= v < 177: the version ib_async's decoder is read against here
MIN_CLIENT_VERSION = 157
UNSET_DOUBLE = 1.7976931348623157e308
UNSET_INTEGER = 2**31 - 1
MAX_FRAME = 1 << 24  # a length beyond this is not the TWS API: the socket is dropped


class ProtocolError(ValueError):
    """The peer does not speak the TWS API (bad handshake, oversize or garbled frame)."""


@dataclass(frozen=True)
class IbContract:
    """A contract as TWS describes it (the fields of ``ib_async.Contract`` it sends back)."""

    con_id: int
    symbol: str
    sec_type: str  # OPT | IND | STK
    expiry: str = ""  # YYYYMMDD for options
    strike: float = 0.0
    right: str = ""  # C | P
    multiplier: str = ""
    exchange: str = "SMART"
    currency: str = "USD"
    local_symbol: str = ""
    trading_class: str = ""
    primary_exchange: str = ""

    def fields(self, *, primary: bool = False) -> list[Any]:
        """conId .. tradingClass (with primaryExchange after exchange when ``primary``)."""
        head = [self.con_id, self.symbol, self.sec_type, self.expiry, _strike(self.strike),
                self.right, self.multiplier, self.exchange]  # fmt: skip
        tail = [self.currency, self.local_symbol, self.trading_class]
        return [*head, self.primary_exchange, *tail] if primary else [*head, *tail]


def _strike(x: float) -> Any:
    return f"{x:g}" if x else "0"


def fmt(value: Any) -> str:
    """One field as TWS writes it: bools 1/0, None and unset numbers empty, floats plain."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if value == UNSET_DOUBLE or math.isnan(value):
            return ""
        return str(round(value, 8))
    if isinstance(value, int) and value == UNSET_INTEGER:
        return ""
    return str(value)


def frame(fields: Iterable[Any]) -> bytes:
    """A length-prefixed message of NUL-terminated fields."""
    body = b"".join(fmt(f).encode() + b"\0" for f in fields)
    return struct.pack(">I", len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> list[str]:
    """The next message's fields (IncompleteReadError at end of stream)."""
    size = struct.unpack(">I", await reader.readexactly(4))[0]
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes")
    body = await reader.readexactly(size)
    fields = body.decode(errors="replace").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


async def read_handshake(reader: asyncio.StreamReader) -> tuple[int, int]:
    """``API\\0`` + ``v{min}..{max}`` -> (min, max) client versions."""
    if await reader.readexactly(4) != b"API\0":
        raise ProtocolError("no API prefix")
    size = struct.unpack(">I", await reader.readexactly(4))[0]
    if size > 1024:
        raise ProtocolError("oversize version frame")
    text = (await reader.readexactly(size)).decode(errors="replace").split(" ")[0]
    try:
        lo, hi = text.removeprefix("v").split("..")
        return int(lo), int(hi)
    except ValueError:
        raise ProtocolError(f"bad version range {text!r}") from None


# --- server -> client messages (ids and field orders of ib_async's decoder) ---


def tick_price(req_id: int, tick_type: int, price: float, size: float) -> list[Any]:
    return [1, 6, req_id, tick_type, price, size, 0]


def tick_size(req_id: int, tick_type: int, size: float) -> list[Any]:
    return [2, 6, req_id, tick_type, size]


def tick_option(req_id: int, tick_type: int, iv: float, delta: float, price: float,
                gamma: float, vega: float, theta: float, und: float) -> list[Any]:  # fmt: skip
    """tickOptionComputation: iv, delta, optPrice, pvDividend, gamma, vega, theta, undPrice."""
    return [21, req_id, tick_type, 0, iv, delta, price, 0.0, gamma, vega, theta, und]


def order_status(order_id: int, status: str, filled: float, remaining: float, avg: float,
                 perm_id: int, last: float, client_id: int,
                 why: str = "") -> list[Any]:  # fmt: skip
    return [3, order_id, status, filled, remaining, avg, perm_id, 0, last, client_id, why, 0.0]


def error(req_id: int, code: int, text: str) -> list[Any]:
    return [4, 2, req_id, code, text, ""]


def account_value(key: str, value: str, currency: str, account: str) -> list[Any]:
    return [6, 2, key, value, currency, account]


def portfolio(c: IbContract, position: float, price: float, avg_cost: float,
              account: str) -> list[Any]:  # fmt: skip
    value = position * price * float(c.multiplier or 1)
    pnl = value - position * avg_cost
    head = [c.con_id, c.symbol, c.sec_type, c.expiry, _strike(c.strike), c.right, c.multiplier,
            c.primary_exchange, c.currency, c.local_symbol, c.trading_class]  # fmt: skip
    return [7, 8, *head, position, price, value, avg_cost, pnl, 0.0, account]


def account_time(hhmm: str) -> list[Any]:
    return [8, 1, hhmm]


def next_valid_id(order_id: int) -> list[Any]:
    return [9, 1, order_id]


def contract_details(req_id: int, c: IbContract, *, under_con_id: int, long_name: str,
                     under_symbol: str, under_sec_type: str,
                     min_tick: float) -> list[Any]:  # fmt: skip
    """contractDetails at v >= 164 (no version field, minSize/sizeIncrement at the end)."""
    last_times = c.expiry
    return [
        10, req_id, c.symbol, c.sec_type, last_times, _strike(c.strike), c.right, c.exchange,
        c.currency, c.local_symbol, c.trading_class or c.symbol, c.trading_class, c.con_id,
        min_tick, c.multiplier, "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,COND,DAY,GTC,LMT,MKT",
        "SMART,CBOE" if c.sec_type == "OPT" else c.exchange, 1, under_con_id, long_name,
        c.primary_exchange, c.expiry[:6], "", "", "", "US/Central", "", "", "", "", 0,
        "", under_symbol, under_sec_type, "110" if c.sec_type == "OPT" else "", c.expiry, "",
        1, 1, 1,
    ]  # fmt: skip


def execution(req_id: int, order_id: int, c: IbContract, exec_id: str, time_text: str,
              account: str, side: str, shares: float, price: float, perm_id: int,
              client_id: int, cum_qty: float, avg_price: float,
              order_ref: str) -> list[Any]:  # fmt: skip
    """execDetails (side BOT/SLD) at v < 178."""
    return [11, req_id, order_id, *c.fields(), exec_id, time_text, account, c.exchange, side,
            shares, price, perm_id, client_id, 0, cum_qty, avg_price, order_ref, "", "", "",
            1]  # fmt: skip


def managed_accounts(accounts: Sequence[str]) -> list[Any]:
    return [15, 1, ",".join(accounts)]


def current_time(secs: int) -> list[Any]:
    return [49, 1, secs]


def contract_details_end(req_id: int) -> list[Any]:
    return [52, 1, req_id]


def open_order_end() -> list[Any]:
    return [53, 1]


def account_download_end(account: str) -> list[Any]:
    return [54, 1, account]


def exec_details_end(req_id: int) -> list[Any]:
    return [55, 1, req_id]


def market_data_type(req_id: int, kind: int) -> list[Any]:
    return [58, 1, req_id, kind]


def commission_report(exec_id: str, commission: float, realized: float | None) -> list[Any]:
    return [59, 1, exec_id, commission, "USD", UNSET_DOUBLE if realized is None else realized,
            UNSET_DOUBLE, 0]  # fmt: skip


def position(account: str, c: IbContract, qty: float, avg_cost: float) -> list[Any]:
    return [61, 3, account, *c.fields(), qty, avg_cost]


def position_end() -> list[Any]:
    return [62, 1]


def account_update_multi(req_id: int, account: str, key: str, value: str) -> list[Any]:
    return [73, 1, req_id, account, "", key, value, "USD"]


def account_update_multi_end(req_id: int) -> list[Any]:
    return [74, 1, req_id]


def sec_def_opt_params(req_id: int, exchange: str, under_con_id: int, trading_class: str,
                       expirations: Sequence[str],
                       strikes: Sequence[float]) -> list[Any]:  # fmt: skip
    return [75, req_id, exchange, under_con_id, trading_class, "100", len(expirations),
            *expirations, len(strikes), *(_strike(k) for k in strikes)]  # fmt: skip


def sec_def_opt_params_end(req_id: int) -> list[Any]:
    return [76, req_id]


def completed_orders_end() -> list[Any]:
    return [102]


@dataclass(frozen=True)
class OrderView:
    """What an openOrder message says about one order."""

    order_id: int
    client_id: int
    perm_id: int
    action: str
    quantity: float
    order_type: str
    lmt_price: float | None
    tif: str
    account: str
    order_ref: str
    status: str
    legs: tuple[tuple[int, int, str], ...] = ()  # BAG: (conId, ratio, action)
    what_if: bool = False
    margin: tuple[float, float, float] | None = None  # what-if: init before, change, after
    commission: float | None = None


def open_order(o: OrderView, c: IbContract) -> list[Any]:
    """openOrder at 170 <= v < 177, field for field as ib_async's ``Decoder.openOrder``."""
    lmt = UNSET_DOUBLE if o.lmt_price is None else o.lmt_price
    f: list[Any] = [5, o.order_id, *c.fields(), o.action, o.quantity, o.order_type, lmt,
                    UNSET_DOUBLE, o.tif, "", o.account, "O", 0, o.order_ref, o.client_id,
                    o.perm_id, False, False, 0.0, "", "", "", "", "", ""]  # fmt: skip
    f += ["", "", "", "", "", 0, "", -1, 0, "", "", "", "", "", 0, False, False, False, "",
          0, False, False, "", 0, 0, "", 0, "", ""]  # fmt: skip
    descr = ",".join(f"{cid}|{ratio}" for cid, ratio, _ in o.legs)
    f += [False, 0, "", "", "", 0, descr, len(o.legs)]
    for con_id, ratio, action in o.legs:
        f += [con_id, ratio, action, "SMART", 0, 0, "", -1]
    f += [0, 0, "", "", "", "", False, "", "", False, 0, "", False]
    if o.margin is not None:
        before, change, after = (f"{x:.2f}" for x in o.margin)
        margin = [before, before, "", change, change, "", after, after, ""]
    else:
        margin = [""] * 9
    comm = UNSET_DOUBLE if o.commission is None else o.commission
    f += [o.what_if, o.status, *margin, comm, UNSET_DOUBLE, UNSET_DOUBLE, "USD", "", False,
          False, 0]  # fmt: skip
    f += ["", "", "", "", "", "", "", 0, "", "", "", "", False, False, "", False]
    f += [UNSET_INTEGER, False, False, "", "", "", "", ""]
    return f


def completed_order(o: OrderView, c: IbContract, filled: float, when: str) -> list[Any]:
    """completedOrder at 170 <= v < 177, field for field as ib_async's ``completedOrder`` (no
    order id or client id: TWS keys completed orders by permId)."""
    lmt = UNSET_DOUBLE if o.lmt_price is None else o.lmt_price
    f: list[Any] = [101, *c.fields(), o.action, o.quantity, o.order_type, lmt, UNSET_DOUBLE,
                    o.tif, "", o.account, "O", 0, o.order_ref, o.perm_id, False, False, 0.0, "",
                    "", "", "", ""]  # fmt: skip
    f += ["", "", "", "", "", 0, "", -1, "", "", "", "", "", 0, False, False, "", 0, 0, "", 0,
          "", ""]  # fmt: skip
    descr = ",".join(f"{cid}|{ratio}" for cid, ratio, _ in o.legs)
    f += [False, 0, "", "", descr, len(o.legs)]
    for con_id, ratio, action in o.legs:
        f += [con_id, ratio, action, "SMART", 0, 0, "", -1]
    f += [0, 0, "", "", "", "", "", "", False, 0, "", False, o.status, False, False, 0]
    f += ["", "", "", False, False, "", filled, 0, False, "", False, False, 0, when, o.status]
    f += ["", "", "", "", ""]
    return f


# --- client -> server: the request fields the emulator reads ---


class Cursor:
    """Reads a request's fields in order (missing fields read as empty)."""

    def __init__(self, fields: Sequence[str], start: int = 0) -> None:
        self.fields, self.i = fields, start

    def str(self) -> str:
        v = self.fields[self.i] if self.i < len(self.fields) else ""
        self.i += 1
        return v

    def int(self, default: int = 0) -> int:
        v = self.str()
        return int(v) if v not in ("", "-") else default

    def float(self, default: float = 0.0) -> float:
        v = self.str()
        return float(v) if v not in ("", "Infinite") else default

    def skip(self, n: int) -> None:
        self.i += n

    def contract(self, *, primary: bool = True) -> dict[str, Any]:
        """conId, symbol, secType, lastTrade, strike, right, multiplier, exchange,
        [primaryExchange,] currency, localSymbol, tradingClass."""
        keys = ["conId", "symbol", "secType", "expiry", "strike", "right", "multiplier",
                "exchange", "primaryExchange", "currency", "localSymbol",
                "tradingClass"]  # fmt: skip
        if not primary:
            keys.remove("primaryExchange")
        out: dict[str, Any] = {k: self.str() for k in keys}
        out["conId"] = int(out["conId"] or 0)
        out["strike"] = float(out["strike"] or 0)
        return out


@dataclass
class PlacedOrder:
    """The fields of a placeOrder request the emulator acts on."""

    order_id: int
    contract: dict[str, Any]
    action: str
    quantity: float
    order_type: str
    lmt_price: float | None
    tif: str
    account: str
    order_ref: str
    legs: list[tuple[int, int, str]]
    what_if: bool


def parse_place_order(fields: Sequence[str], version: int = SERVER_VERSION) -> PlacedOrder:
    """placeOrder as ib_async's ``Client.placeOrder`` writes it, walked up to ``whatIf``."""
    r = Cursor(fields, 1)
    order_id = r.int()
    contract = r.contract()
    r.skip(2)  # secIdType, secId
    action, qty, otype = r.str(), r.float(), r.str()
    lmt_text = r.str()
    r.skip(1)  # auxPrice
    tif, _oca, account, _oc, _origin, ref = r.str(), r.str(), r.str(), r.str(), r.str(), r.str()
    r.skip(8)  # transmit, parentId, blockOrder, sweep, displaySize, trigger, outsideRth, hidden
    legs: list[tuple[int, int, str]] = []
    if contract["secType"] == "BAG":
        for _ in range(r.int()):
            legs.append((r.int(), r.int(), r.str()))
            r.skip(5)  # exchange, openClose, shortSaleSlot, designatedLocation, exemptCode
        r.skip(r.int())  # order combo leg prices
        r.skip(2 * r.int())  # smart combo routing params
    r.skip(7 + (1 if version < 177 else 0))  # "", discretionaryAmt .. faPercentage, faProfile
    r.skip(22)  # modelCode .. volatilityType
    dn_type = r.str()
    r.skip(1)  # deltaNeutralAuxPrice
    if dn_type:
        r.skip(8)
    r.skip(6)  # continuousUpdate .. scaleSubsLevelSize
    increment = r.float(UNSET_DOUBLE)
    if 0 < increment < UNSET_DOUBLE:
        r.skip(7)
    r.skip(3)  # scaleTable, activeStartTime, activeStopTime
    if r.str():  # hedgeType
        r.skip(1)
    r.skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
    if r.str() == "1":  # delta-neutral contract
        r.skip(3)
    if r.str():  # algoStrategy
        r.skip(2 * r.int())
    r.skip(1)  # algoId
    what_if = r.str() == "1"
    lmt = float(lmt_text) if lmt_text not in ("", "Infinite") else None
    return PlacedOrder(order_id, contract, action, qty, otype, lmt, tif or "DAY", account, ref,
                       legs, what_if)  # fmt: skip

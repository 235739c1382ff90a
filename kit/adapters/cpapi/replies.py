"""The emulated gateway's answers: the paper engine's records in the Client Portal's JSON.

Pure renderers for :mod:`kit.adapters.cpapi.emulator` (which owns the conids, order ids and the
HTTP server). Shapes follow IBKR's CP Web API v1 reference and the IB REST API 2.x OpenAPI
models, with the fields the real gateway sends even where the adapter ignores them, so the
adapter is tested against answers as cluttered as the real ones. Deliberately independent of the
adapter's own parsing (:mod:`kit.adapters.cpapi.parsing`): a shared mistake would pass unseen.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from datetime import date
from typing import Any

from kit.core.clock import from_ns
from kit.core.model import Contract, Fill, OrderType, Side
from kit.core.symbology import to_occ
from kit.execution.broker import AccountSummary, OrderState, OrderStatus

COMBO_CONID = 28812380  # IBKR's USD spread conid: the conidex prefix of combo orders
INDICES = frozenset({"SPX", "NDX", "RUT", "VIX", "XSP"})
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
IB_STATUS = {
    OrderStatus.PENDING: "PendingSubmit", OrderStatus.WORKING: "Submitted",
    OrderStatus.PARTIAL: "Submitted", OrderStatus.FILLED: "Filled",
    OrderStatus.CANCELLED: "Cancelled", OrderStatus.REJECTED: "Inactive",
}  # fmt: skip


def month(c: Contract) -> str:
    return f"{MONTHS[c.expiry.month - 1]}{c.expiry:%y}"


def desc(c: Contract) -> str:
    return (
        f"{c.root} {c.expiry:%b%d'%y}".upper() + f" {c.strike:g} {'Call' if c.is_call else 'Put'}"
    )


# --- contracts ---


def search_row(symbol: str, conid: int, chain: Sequence[Contract]) -> dict[str, Any]:
    """``/iserver/secdef/search``: the underlying, with an OPT section when it has options."""
    exps: list[date] = sorted({c.expiry for c in chain})
    months = list(dict.fromkeys(month(c) for c in sorted(chain, key=lambda c: c.expiry)))
    kind = "IND" if symbol in INDICES else "STK"
    sections = [{"secType": kind, "exchange": "CBOE;" if kind == "IND" else "SMART;"}]
    if chain:
        sections.append({"secType": "OPT", "months": ";".join(months), "exchange": "SMART;CBOE"})
    return {"conid": str(conid), "companyHeader": f"{symbol} - CBOE",
            "companyName": symbol, "symbol": symbol, "description": "CBOE",
            "restricted": None, "fop": None, "war": None,
            "opt": ";".join(f"{e:%Y%m%d}" for e in exps) or None,
            "sections": sections}  # fmt: skip


def secdef_row(c: Contract, conid: int, symbol: str) -> dict[str, Any]:
    """One ``/iserver/secdef/info`` row."""
    return {"conid": conid, "symbol": symbol, "secType": "OPT",
            "exchange": "SMART", "listingExchange": None, "right": c.right.value,
            "strike": c.strike, "currency": "USD", "cusip": None,
            "coupon": "No Coupon", "desc1": symbol, "desc2": desc(c),
            "maturityDate": f"{c.expiry:%Y%m%d}", "multiplier": f"{c.multiplier:g}",
            "tradingClass": c.root, "validExchanges": "SMART,CBOE"}  # fmt: skip


def contract_info(c: Contract, conid: int, underlying_conid: int) -> dict[str, Any]:
    """``/iserver/contract/{conid}/info``."""
    ymd = f"{c.expiry:%Y%m%d}"
    return {"cfi_code": "", "symbol": c.underlying, "cusip": None, "expiry_full": ymd,
            "con_id": conid, "maturity_date": ymd, "instrument_type": "OPT",
            "trading_class": c.root, "valid_exchanges": "SMART,CBOE",
            "local_symbol": to_occ(c), "currency": "USD", "company_name": c.underlying,
            "underlying_con_id": underlying_conid, "r_t_h": True,
            "multiplier": f"{c.multiplier:g}", "strike": f"{c.strike:g}",
            "right": c.right.value, "contract_month": f"{c.expiry:%Y%m}",
            "exchange": "SMART", "text": desc(c)}  # fmt: skip


def history(symbol: str, closes: Sequence[float], now_ms: int) -> dict[str, Any]:
    """``/iserver/marketdata/history`` with daily bars ending now (a bar per calendar day)."""
    day, n = 86_400_000, len(closes)
    bars = [{"o": c, "c": c, "h": c, "l": c, "v": 0, "t": now_ms - (n - 1 - i) * day}
            for i, c in enumerate(closes)]  # fmt: skip
    return {"symbol": symbol, "text": symbol, "priceFactor": 1, "points": n, "data": bars,
            "mdAvailability": "S", "barLength": 86400}  # fmt: skip


# --- session ---


def auth_status(ok: bool) -> dict[str, Any]:
    return {"authenticated": ok, "competing": False, "connected": True,
            "message": "" if ok else "session not authenticated", "MAC": "00:00:00:00",
            "serverInfo": {"serverName": "kit-emulator", "serverVersion": "emulated"},
            "fail": ""}  # fmt: skip


def tickle(session: str, auth: dict[str, Any]) -> dict[str, Any]:
    return {"session": session, "ssoExpires": 0, "collission": False,
            "userId": 1, "iserver": {"authStatus": auth}}  # fmt: skip


def accounts(a: str, session: str) -> dict[str, Any]:
    return {"accounts": [a], "acctProps": {a: {"hasChildAccounts": False}},
            "aliases": {a: a}, "allowFeatures": {}, "chartPeriods": {}, "groups": [],
            "profiles": [], "selectedAccount": a, "sessionId": session,
            "isFT": False, "isPaper": True}  # fmt: skip


def portfolio_accounts(a: str) -> list[dict[str, Any]]:
    return [{"id": a, "accountId": a, "accountVan": a, "accountTitle": "Paper (emulated)",
             "displayName": a, "currency": "USD", "type": "DEMO",
             "tradingType": "PMRGN", "covestor": False, "desc": a}]  # fmt: skip


# --- reports ---


def order_row(
    oid: int, st: OrderState, account: str, conidex: str, conid: int, *, cancelling: bool,
    coid: str | None,
) -> dict[str, Any]:  # fmt: skip
    """One ``/iserver/account/orders`` row (``conid``: the leg's, or COMBO_CONID)."""
    o, first = st.order, st.order.legs[0].contract
    combo, limit = len(o.legs) > 1, o.limit_price
    status = IB_STATUS[st.status]
    if cancelling and not st.status.done:
        status = "PendingCancel"
    ms = st.ts_ns // 1_000_000
    kind = "Limit" if o.order_type is OrderType.LIMIT else "Market"
    row = {"acct": account, "exchange": "SMART", "conidex": conidex,
           "conid": conid, "account": account,
           "orderId": oid, "cashCcy": "USD", "sizeAndFills": f"{st.filled_qty}/{o.quantity}",
           "orderDesc": f"{o.side.value.title()} {o.quantity} {kind}",
           "description1": first.underlying if combo else desc(first),
           "ticker": first.underlying, "secType": "BAG" if combo else "OPT",
           "listingExchange": "SMART", "remainingQuantity": float(st.remaining),
           "filledQuantity": float(st.filled_qty), "totalSize": float(o.quantity),
           "companyName": first.underlying, "status": status, "order_ccp_status": status,
           "origOrderType": kind.upper(), "supportsTaxOpt": "1",
           "lastExecutionTime": f"{from_ns(st.ts_ns):%y%m%d%H%M%S}", "orderType": kind,
           "bgColor": "#000000", "fgColor": "#FFFFFF", "isEventTrading": "0",
           "timeInForce": "DAY", "lastExecutionTime_r": ms,
           "side": o.side.value.upper()}  # fmt: skip
    if limit is not None:
        row["price"] = str(limit)
    if st.filled_qty:
        row["avgPrice"] = str(st.avg_price)
    if coid is not None:
        row["order_ref"] = coid
    return row


def trade_row(f: Fill, account: str, conid: int, coid: str | None) -> dict[str, Any]:
    """One ``/iserver/account/trades`` row."""
    c, buy = f.contract, f.side is Side.BUY
    row = {"execution_id": f.fill_id, "symbol": c.underlying, "supports_tax_opt": "1",
           "side": "B" if buy else "S",
           "order_description": f"{'Bot' if buy else 'Sold'} {f.quantity:g} @ {f.price}",
           "trade_time": f"{from_ns(f.ts_ns):%Y%m%d-%H:%M:%S}",
           "trade_time_r": f.ts_ns // 1_000_000, "size": f.quantity, "price": str(f.price),
           "submitter": "emulator", "exchange": "SMART", "commission": str(f.commission),
           "net_amount": f.quantity * f.price * c.multiplier, "account": account,
           "accountCode": account, "company_name": c.underlying,
           "contract_description_1": desc(c), "sec_type": "OPT",
           "listing_exchange": "SMART", "conid": conid,
           "conidEx": str(conid), "clearing_id": "IB", "clearing_name": "IB",
           "liquidation_trade": "0", "is_event_trading": "0"}  # fmt: skip
    if coid is not None:
        row["order_ref"] = coid
    return row


def position_row(
    c: Contract, qty: int, mark: float, account: str, conid: int, underlying_conid: int
) -> dict[str, Any]:
    """One ``/portfolio/{accountId}/positions/{page}`` row."""
    return {"acctId": account, "conid": conid,
            "contractDesc": f"{desc(c)} [{to_occ(c)} {c.multiplier:g}]",
            "position": float(qty), "mktPrice": mark,
            "mktValue": qty * mark * c.multiplier, "currency": "USD",
            "avgCost": None, "avgPrice": None, "realizedPnl": 0.0,
            "unrealizedPnl": 0.0, "exchs": None, "expiry": f"{c.expiry:%Y%m%d}",
            "putOrCall": c.right.value, "multiplier": c.multiplier,
            "strike": f"{c.strike:g}", "exerciseStyle": None, "conExchMap": [],
            "assetClass": "OPT", "undConid": underlying_conid,
            "ticker": c.underlying}  # fmt: skip


def summary(acc: AccountSummary, account: str, ms: int) -> dict[str, Any]:
    """``/portfolio/{accountId}/summary`` at ``ms`` (epoch milliseconds)."""

    def item(amount: float | None = None, value: str | None = None) -> dict[str, Any]:
        return {"amount": amount or 0.0, "currency": None if value else "USD",
                "isNull": False, "timestamp": ms, "value": value, "severity": 0}  # fmt: skip

    nl, cash, used = acc.net_liquidation, acc.cash, acc.buying_power_used
    return {"accountcode": item(value=account), "accountready": item(value="true"),
            "accounttype": item(value="INDIVIDUAL"), "netliquidation": item(nl),
            "totalcashvalue": item(cash), "settledcash": item(cash),
            "equitywithloanvalue": item(nl), "grosspositionvalue": item(abs(nl - cash)),
            "initmarginreq": item(used), "maintmarginreq": item(used),
            "availablefunds": item(nl - used), "excessliquidity": item(nl - used),
            "buyingpower": item(max(nl - used, 0.0))}  # fmt: skip


def ledger(acc: AccountSummary, account: str, secs: int) -> dict[str, Any]:
    """``/portfolio/{accountId}/ledger`` at ``secs`` (epoch seconds): USD and BASE alike."""

    def one(ccy: str) -> dict[str, Any]:
        return {"commoditymarketvalue": 0.0, "futuremarketvalue": 0.0,
                "settledcash": acc.cash, "exchangerate": 1, "sessionid": 1,
                "cashbalance": acc.cash, "netliquidationvalue": acc.net_liquidation,
                "interest": 0.0, "unrealizedpnl": 0.0, "stockmarketvalue": 0.0,
                "stockoptionmarketvalue": acc.net_liquidation - acc.cash,
                "currency": ccy, "realizedpnl": acc.realized_pnl, "acctcode": account,
                "key": "LedgerList", "timestamp": secs, "severity": 0}  # fmt: skip

    return {"USD": one("USD"), "BASE": one("BASE")}


class RequestLimit:
    """The gateway's request limit as the emulator enforces it: with ``rps`` set, a request
    beyond ``rps`` in the last second is refused (HTTP 429, counted in ``refused``). Off by
    default: tests of other things, and unpaced clients such as ibind, burst."""

    def __init__(self, rps: float | None = None) -> None:
        self.rps = rps
        self.refused = 0
        self._recent: deque[float] = deque()  # monotonic times of the last second's requests

    def refuse(self) -> bool:
        if self.rps is None:
            return False
        now, recent = time.monotonic(), self._recent
        while recent and recent[0] <= now - 1.0:
            recent.popleft()
        if len(recent) >= self.rps:
            self.refused += 1
            return True
        recent.append(now)
        return False

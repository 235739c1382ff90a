"""The emulator's REST answers (after the token check of :mod:`kit.adapters.tastytrade.emulator`):
quote tokens, nested option chains, market data, accounts, positions, balances and orders, in
tastytrade's JSON (``{"data": ...}``, dasherized keys, amounts as strings with ``-effect``)."""

from __future__ import annotations

import math
import secrets
from collections import defaultdict
from datetime import date
from typing import TYPE_CHECKING, Any

from kit.core.clock import expiry_time, from_ns, to_ns
from kit.core.symbology import from_occ, to_dxlink, to_occ

if TYPE_CHECKING:
    from kit.adapters.tastytrade.emulator import TastytradeEmulator

# AccountBalance's required amounts (tastytrade.account.AccountBalance): zero unless set
BALANCE_FIELDS = (
    "cash-balance", "long-equity-value", "short-equity-value", "long-derivative-value",
    "short-derivative-value", "long-futures-value", "short-futures-value",
    "long-futures-derivative-value", "short-futures-derivative-value", "long-margineable-value",
    "short-margineable-value", "margin-equity", "equity-buying-power", "derivative-buying-power",
    "day-trading-buying-power", "futures-margin-requirement", "available-trading-funds",
    "maintenance-requirement", "maintenance-call-value", "reg-t-call-value",
    "day-trading-call-value", "day-equity-call-value", "net-liquidating-value",
    "cash-available-to-withdraw", "day-trade-excess", "pending-cash", "long-cryptocurrency-value",
    "short-cryptocurrency-value", "cryptocurrency-margin-requirement",
    "unsettled-cryptocurrency-fiat-amount", "closed-loop-available-balance",
    "equity-offering-margin-requirement", "long-bond-value", "bond-margin-requirement",
    "used-derivative-buying-power", "reg-t-margin-requirement",
    "futures-overnight-margin-requirement", "futures-intraday-margin-requirement",
    "maintenance-excess", "pending-margin-interest", "effective-cryptocurrency-buying-power",
)  # fmt: skip


class EmulatorError(Exception):
    """An answer ``{"error": {"code", "message"}}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_err = EmulatorError


async def route(emu: TastytradeEmulator, method: str, path: str, args: dict[str, list[str]],
                body: Any) -> tuple[int, dict[str, Any]]:  # fmt: skip
    parts = path.strip("/").split("/")
    acct = f"accounts/{emu.account}/"
    if method == "GET" and path == "api-quote-tokens":
        token = secrets.token_hex(12)
        emu.quote_tokens.add(token)
        return 200, {"data": {"token": token, "dxlink-url": f"ws://{emu.host}:{emu.port}/dxlink",
                              "level": "api"}}  # fmt: skip
    if method == "GET" and len(parts) == 3 and parts[0] == "option-chains" and parts[2] == "nested":
        return 200, {"data": {"items": chain_items(emu, parts[1])}}
    if method == "GET" and path == "market-data/by-type":
        return 200, {"data": {"items": market_data(emu, args)}}
    if method == "GET" and path == "customers/me/accounts":
        return 200, {"data": {"items": [{"account": account(emu), "authority-level": "owner"}]}}
    if method == "GET" and path == f"customers/me/accounts/{emu.account}":
        return 200, {"data": account(emu)}
    if path.startswith("accounts/") and not path.startswith(acct):
        raise _err(403, "forbidden", f"not your account: {parts[1]}")
    rest = path.removeprefix(acct)
    if method == "GET" and rest == "positions":
        return 200, {"data": {"items": await positions(emu)}}
    if method == "GET" and rest.startswith("balances"):
        return 200, {"data": await balances(emu)}
    if method == "POST" and rest in ("orders", "orders/dry-run"):
        if not isinstance(body, dict):
            raise _err(400, "bad_request", "an order body is a JSON object")
        return 201, {"data": await emu.place(body, dry_run=rest.endswith("dry-run"))}
    if method == "GET" and rest == "orders/live":
        live = [await emu.order_doc(cid) for cid in emu._ids]
        return 200, {"data": {"items": live}}
    if rest.startswith("orders/") and rest.removeprefix("orders/").isdigit():
        cid = emu.order_by_id(int(rest.removeprefix("orders/")))
        if method == "DELETE":
            await emu.broker.cancel(cid)
            return 200, {"data": await emu.order_doc(cid)}
        if method == "GET":
            return 200, {"data": await emu.order_doc(cid)}
        if method == "PUT" and isinstance(body, dict):
            return 200, {"data": await emu.replace(cid, body)}
    raise _err(404, "not_found", f"{method} /{path} is not served by the emulator")


def chain_items(emu: TastytradeEmulator, symbol: str) -> list[dict[str, Any]]:
    """tastytrade's nested chain: one item per root, expiries with their strikes."""
    now = emu.clock.now_ns()
    items = []
    for root in emu.roots(symbol.upper()):
        by_exp: dict[date, dict[float, dict[str, str]]] = defaultdict(dict)
        for c in emu.market.chain(root, core=True):
            row = by_exp[c.expiry].setdefault(c.strike, {})
            row[c.right.value] = to_occ(c)
            row[c.right.value + "s"] = emu.symbol(c)
        exps = []
        for exp in sorted(by_exp):
            strikes = [{"strike-price": f"{k:g}", "call": v.get("C", ""), "put": v.get("P", ""),
                        "call-streamer-symbol": v.get("Cs", ""),
                        "put-streamer-symbol": v.get("Ps", "")}
                       for k, v in sorted(by_exp[exp].items())
                       if "C" in v and "P" in v]  # fmt: skip
            days = (exp - from_ns(now).date()).days
            exps.append({"expiration-type": "Weekly" if root.endswith(("W", "P")) else "Regular",
                         "expiration-date": exp.isoformat(), "days-to-expiration": days,
                         "settlement-type": "PM" if root.endswith(("W", "P")) else "AM",
                         "strikes": strikes})  # fmt: skip
        items.append({"underlying-symbol": symbol.upper(), "root-symbol": root,
                      "option-chain-type": "Standard", "shares-per-contract": 100,
                      "tick-sizes": [{"value": "0.05", "threshold": "3"}, {"value": "0.1"}],
                      "expirations": exps})  # fmt: skip
    return items


def market_data(emu: TastytradeEmulator, args: dict[str, list[str]]) -> list[dict[str, Any]]:
    m = emu.market
    stamp = from_ns(m.step_time(m.steps)).isoformat()
    day = from_ns(m.step_time(m.steps)).date().isoformat()
    base = {"updated-at": stamp, "close-price-type": "Regular", "summary-date": day,
            "prev-close-date": day, "prev-close-price-type": "Final", "halt-start-time": -1,
            "halt-end-time": -1}  # fmt: skip
    out = []
    for sym in args.get("index", []) + args.get("equity", []):
        try:
            px = round(m.spot(sym), 2)
        except (ValueError, IndexError):
            continue
        out.append({**base, "symbol": sym, "instrument-type": "Index", "bid": px, "ask": px,
                    "mid": px, "mark": px, "last": px, "bid-size": 0, "ask-size": 0})  # fmt: skip
    opts = []
    for sym in args.get("equity-option", []):
        try:
            c = from_occ(sym)
        except ValueError:
            continue
        if m.is_listed(c) and to_ns(expiry_time(c)) > m.now_ns:
            opts.append(c)
    if opts:
        oi = m.open_interest(opts)
        for j, q in enumerate(m.quotes(opts)):
            out.append({**base, "symbol": to_occ(q.contract), "instrument-type": "Equity Option",
                        "bid": q.bid, "ask": q.ask, "mid": round((q.bid + q.ask) / 2, 4),
                        "mark": round((q.bid + q.ask) / 2, 4), "bid-size": q.bid_size,
                        "ask-size": q.ask_size, "open-interest": int(oi[j]),
                        "updated-at": from_ns(q.ts_ns).isoformat()})  # fmt: skip
    return out


def account(emu: TastytradeEmulator) -> dict[str, Any]:
    opened = "2024-01-02T14:30:00+00:00"
    return {"account-number": emu.account, "opened-at": opened, "nickname": "Emulated",
            "account-type-name": "Individual", "is-closed": False, "day-trader-status": False,
            "is-firm-error": False, "is-firm-proprietary": False, "is-futures-approved": False,
            "is-test-drive": False, "margin-or-cash": "Margin", "is-foreign": False,
            "created-at": opened, "suitable-options-level": "No Restrictions"}  # fmt: skip


async def positions(emu: TastytradeEmulator) -> list[dict[str, Any]]:
    held = await emu.broker.positions()
    now = emu.now_iso()
    quotes = {q.contract: q for q in emu.market.quotes(list(held))}
    out = []
    for c, qty in sorted(held.items(), key=lambda kv: to_occ(kv[0])):
        q = quotes.get(c)
        mark = (q.bid + q.ask) / 2 if q is not None else 0.0
        out.append({"account-number": emu.account, "symbol": to_occ(c),
                    "instrument-type": "Equity Option", "underlying-symbol": c.root,
                    "quantity": abs(qty), "quantity-direction": "Long" if qty > 0 else "Short",
                    "close-price": f"{mark:.2f}", "average-open-price": f"{mark:.2f}",
                    "multiplier": 100, "cost-effect": "Debit" if qty > 0 else "Credit",
                    "is-suppressed": False, "is-frozen": False, "realized-day-gain": "0",
                    "realized-today": "0", "created-at": now, "updated-at": now,
                    "mark": f"{mark:.2f}", "streamer-symbol": to_dxlink(c)})  # fmt: skip
    return out


async def balances(emu: TastytradeEmulator) -> dict[str, Any]:
    a = await emu.broker.account()
    doc: dict[str, Any] = dict.fromkeys(BALANCE_FIELDS, "0.0")
    bp = a.net_liquidation - a.buying_power_used
    set_ = {"cash-balance": a.cash, "net-liquidating-value": a.net_liquidation,
            "margin-equity": a.net_liquidation, "derivative-buying-power": bp,
            "equity-buying-power": bp, "maintenance-requirement": a.buying_power_used,
            "reg-t-margin-requirement": a.buying_power_used,
            "used-derivative-buying-power": a.buying_power_used}  # fmt: skip
    for k, v in set_.items():
        doc[k] = f"{abs(v):.2f}" if math.isfinite(v) else "0.0"
        if v < 0:
            doc[f"{k}-effect"] = "Debit"
    doc.update({"account-number": emu.account, "snapshot-date": emu.now_iso()[:10],
                "updated-at": emu.now_iso(), "currency": "USD"})  # fmt: skip
    return doc

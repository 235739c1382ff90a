"""Reading and writing Delta Exchange's wire JSON: the envelope, products, tickers, orders.

Shapes follow the Delta Exchange API v2 reference. Every answer is an envelope
``{"success": bool, "result": ..., "error": {"code", "context"}, "meta": {"after", "before"}}``;
numbers usually arrive as strings and are parsed either way. Option products carry their contract
size in ``contract_value`` (0.001 BTC, 0.01 ETH): it becomes the contract's multiplier, so sizes
are never hard-coded. Ticker prices are USD per one coin; ``greeks`` are per coin too (theta per
day, vega per vol point), ``quotes.mark_iv`` a fraction.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from kit.core.clock import KOLKATA
from kit.core.model import Contract, Greeks, ModelError, Quote, Side
from kit.core.symbology import from_delta

OPTION_TYPES = {"call_options": "C", "put_options": "P"}

# error codes -> what the user should do (the codes are Delta's)
ERROR_HINTS: dict[str, str] = {
    "InvalidApiKey": "the API key is unknown on this host (testnet and production keys differ)",
    "UnauthorizedApiAccess": "the API key lacks the permission for this call (enable trading)",
    "Signature Mismatch": "the API secret does not match the key",
    "SignatureExpired": "the request reached Delta more than 5 s after its timestamp: "
    "check the computer's clock",
    "ip_not_whitelisted_for_api_key": "this machine's IP address is not whitelisted for the key "
    "(Delta: API keys -> edit -> whitelisted IPs)",
    "insufficient_margin": "not enough available balance for the order's margin",
    "out_of_bankruptcy": "the order would take the position beyond its bankruptcy price",
    "reduce_only_violation": "a reduce-only order would open or increase a position",
    "order_size_exceed_available": "the order is larger than the available size",
    "duplicate_client_order_id": "an order with this client_order_id already exists",
    "open_order_not_found": "no such open order (already filled or cancelled)",
    "bad_schema": "the request does not match the API's schema",
    "insufficient_liquidity": "nothing on the other side of the book to fill against",
    "invalid_product": "no such product (or it has expired)",
    "RateLimitExceeded": "too many requests: wait for X-RATE-LIMIT-RESET",
    "MissingUserAgent": "requests need a User-Agent header",
}


class DeltaError(RuntimeError):
    """Delta refused a request; ``code`` is Delta's error code, ``status`` the HTTP status."""

    def __init__(self, code: str, status: int = 400, context: Any = None, what: str = "") -> None:
        self.code, self.status, self.context = code, status, context
        hint = ERROR_HINTS.get(code, "")
        where = f" ({what})" if what else ""
        super().__init__(f"Delta Exchange {status} {code}{': ' + hint if hint else ''}{where}")


class DeltaAuthError(DeltaError):
    """Keys, signature, clock or IP whitelist: nothing will work until the user fixes it."""


class DeltaRateLimitError(DeltaError):
    """HTTP 429; ``reset_ms`` is how long Delta asked to wait (X-RATE-LIMIT-RESET)."""

    def __init__(self, reset_ms: int, what: str = "") -> None:
        self.reset_ms = reset_ms
        super().__init__("RateLimitExceeded", 429, {"reset_ms": reset_ms}, what)


def error_from(status: int, doc: Any, what: str = "") -> DeltaError:
    """The error an envelope (or a non-JSON answer) describes."""
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        code, context = str(err.get("code") or "unknown"), err.get("context")
    elif isinstance(err, str) and err:
        code, context = err, None
    else:
        code, context = f"http_{status}", doc if not isinstance(doc, dict) else None
    cls = DeltaAuthError if status in (401, 403) else DeltaError
    return cls(code, status, context, what)


def num(value: Any, default: float = math.nan) -> float:
    """A number that may arrive as a string, None or ''."""
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def iso_utc(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def contract_of(product: dict[str, Any]) -> Contract:
    """The desk's contract for an option product, sized by its ``contract_value``."""
    symbol = product.get("symbol") or product.get("product_symbol")
    base = from_delta(str(symbol))
    size = num(product.get("contract_value"))
    if not (size > 0):
        raise ModelError(f"{symbol}: product without a positive contract_value")
    return Contract(base.root, base.expiry, base.strike, base.right, multiplier=size)


def is_option(product: dict[str, Any]) -> bool:
    return product.get("contract_type") in OPTION_TYPES


def settlement_ns(product: dict[str, Any]) -> int:
    text = str(product.get("settlement_time") or "")
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(when.timestamp() * 1e9)


def settlement_day_ist(product: dict[str, Any]) -> str:
    return datetime.fromtimestamp(settlement_ns(product) / 1e9, tz=KOLKATA).date().isoformat()


def ticker_ts_ns(ticker: dict[str, Any]) -> int:
    """Tickers stamp microseconds since the epoch."""
    return int(num(ticker.get("timestamp"), 0)) * 1000


def quote_of(contract: Contract, ticker: dict[str, Any]) -> Quote | None:
    """Top of book from a ticker (REST or the socket's ``ticker``); None when both sides are
    empty (a quote-less option is not an event)."""
    q = ticker.get("quotes") or {}
    bid, ask = num(q.get("best_bid"), 0.0), num(q.get("best_ask"), 0.0)
    bs, az = num(q.get("bid_size"), 0.0), num(q.get("ask_size"), 0.0)
    if bs <= 0 and az <= 0:
        return None
    return Quote(contract, bid, ask, bs, az, ticker_ts_ns(ticker))


def greeks_of(contract: Contract, ticker: dict[str, Any]) -> Greeks | None:
    """The exchange's Greeks (per coin) and mark IV; None when the ticker has none."""
    g = ticker.get("greeks") or {}
    iv = num((ticker.get("quotes") or {}).get("mark_iv"))
    delta = num(g.get("delta"))
    if not (math.isfinite(delta) and math.isfinite(iv)):
        return None
    return Greeks(contract, ticker_ts_ns(ticker), iv, delta, num(g.get("gamma"), 0.0),
                  num(g.get("theta"), 0.0), num(g.get("vega"), 0.0), num(g.get("rho"), 0.0),
                  0.0, 0.0, source="delta")  # fmt: skip


def side_of(value: Any) -> Side:
    return Side(str(value).lower())


def order_state_name(order: dict[str, Any]) -> str:
    """Delta's order ``state``: open | pending | closed | cancelled."""
    return str(order.get("state") or "")

"""DXLink, the websocket protocol of tastytrade's market data: messages and COMPACT frames, pure.

No I/O here, so every rule is tested on recorded frames. The exchange (what the tastytrade SDK's
``DXLinkStreamer`` sends, and what :mod:`kit.adapters.tastytrade.feed` sends too):

1. client ``SETUP`` (channel 0, keepalive timeouts, version) -> server ``SETUP`` and
   ``AUTH_STATE UNAUTHORIZED``; client ``AUTH`` with the quote token from ``/api-quote-tokens``
   -> ``AUTH_STATE AUTHORIZED`` (a refused or expired token stays UNAUTHORIZED);
2. per event type a ``CHANNEL_REQUEST`` (service FEED, contract AUTO) -> ``CHANNEL_OPENED``;
   ``FEED_SETUP`` with ``acceptEventFields`` {type: [fields]} and ``acceptDataFormat`` COMPACT
   -> ``FEED_CONFIG`` naming the fields the server will send, in that order;
3. ``FEED_SUBSCRIPTION`` ``add``/``remove`` [{symbol, type}] -> ``FEED_DATA`` frames whose
   ``data`` is COMPACT: ``[TYPE, [v1, v2, ..., v1, v2, ...]]``, the values of each event laid
   flat in the configured field order (several events per frame);
4. both sides send ``KEEPALIVE`` (channel 0) within the other's keepalive timeout (60 s).

Numbers may arrive as ``"NaN"``/``"Infinity"`` strings (a field the source does not have yet):
a row with a NaN price or Greek is dropped and counted, never fatal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kit.core.model import Contract, Greeks, ModelError, Quote, Trade, UnderlyingTick
from kit.core.symbology import SymbolError, from_dxlink, to_dxlink

VERSION = "0.1-DXF-JS/0.3.0"  # the version string the SDK sends in SETUP
KEEPALIVE_S = 60  # both sides' keepalive timeout
NS_PER_MS = 1_000_000

# The SDK's own field lists (tastytrade.dxfeed models, in model order): an unmodified
# DXLinkStreamer asks for exactly these, and a test keeps the two in step.
SDK_FIELDS: dict[str, tuple[str, ...]] = {
    "Quote": ("eventSymbol", "eventTime", "sequence", "timeNanoPart", "bidTime",
              "bidExchangeCode", "askTime", "askExchangeCode", "bidPrice", "askPrice",
              "bidSize", "askSize"),
    "Trade": ("eventSymbol", "eventTime", "time", "timeNanoPart", "sequence", "exchangeCode",
              "dayId", "tickDirection", "extendedTradingHours", "price", "change", "size",
              "dayVolume", "dayTurnover"),
    "Greeks": ("eventSymbol", "eventTime", "eventFlags", "index", "time", "sequence", "price",
               "volatility", "delta", "gamma", "theta", "rho", "vega"),
    "Summary": ("eventSymbol", "eventTime", "dayId", "dayClosePriceType", "prevDayId",
                "prevDayClosePriceType", "openInterest", "dayOpenPrice", "dayHighPrice",
                "dayLowPrice", "dayClosePrice", "prevDayClosePrice", "prevDayVolume"),
    "Candle": ("eventSymbol", "eventTime", "eventFlags", "index", "time", "sequence", "count",
               "volume", "vwap", "bidVolume", "askVolume", "impVolatility", "openInterest",
               "open", "high", "low", "close"),
}  # fmt: skip

# What the desk's feed asks for: only what it reads (smaller frames, less to parse).
FEED_FIELDS: dict[str, tuple[str, ...]] = {
    "Quote": ("eventSymbol", "bidTime", "askTime", "bidPrice", "askPrice", "bidSize", "askSize"),
    "Trade": ("eventSymbol", "time", "price", "size"),
    "Greeks": ("eventSymbol", "time", "price", "volatility", "delta", "gamma", "theta", "rho",
               "vega"),
    "Summary": ("eventSymbol", "openInterest"),
    "Candle": ("eventSymbol", "time", "close"),
}  # fmt: skip

# One channel per event type (the SDK's numbering: odd channels in its event order).
CHANNELS: dict[str, int] = {"Quote": 7, "Trade": 15, "Greeks": 3, "Summary": 11, "Candle": 1}
STREAM_TYPES = ("Quote", "Trade", "Greeks", "Summary")  # what the feed streams
TYPES_BY_CHANNEL = {v: k for k, v in CHANNELS.items()}
OPTION_TYPES = ("Quote", "Greeks", "Summary")  # what an option contract is subscribed to
UNDERLYING_TYPES = ("Quote", "Trade")  # an index or stock: its last price


class DXLinkError(ValueError):
    """A frame that cannot be decoded (not JSON, a COMPACT array of the wrong length)."""


# --- client messages ---


def setup() -> dict[str, Any]:
    return {"type": "SETUP", "channel": 0, "keepaliveTimeout": KEEPALIVE_S,
            "acceptKeepaliveTimeout": KEEPALIVE_S, "version": VERSION}  # fmt: skip


def auth(token: str) -> dict[str, Any]:
    return {"type": "AUTH", "channel": 0, "token": token}


def keepalive() -> dict[str, Any]:
    return {"type": "KEEPALIVE", "channel": 0}


def channel_request(kind: str) -> dict[str, Any]:
    return {"type": "CHANNEL_REQUEST", "channel": CHANNELS[kind], "service": "FEED",
            "parameters": {"contract": "AUTO"}}  # fmt: skip


def feed_setup(kind: str, fields: Sequence[str] | None = None, period_s: float = 0.1):
    return {"type": "FEED_SETUP", "channel": CHANNELS[kind], "acceptAggregationPeriod": period_s,
            "acceptDataFormat": "COMPACT",
            "acceptEventFields": {kind: list(fields or FEED_FIELDS[kind])}}  # fmt: skip


def subscriptions(kind: str, symbols: Sequence[str], *, add: bool = True,
                  max_bytes: int = 16_000) -> list[str]:  # fmt: skip
    """``FEED_SUBSCRIPTION`` messages (JSON text) for ``symbols``, each at most ``max_bytes``:
    DXLink closes the socket (1009) on a message over its size limit, so a whole chain is sent in
    as many messages as it takes, never one that is too big."""
    head = {"type": "FEED_SUBSCRIPTION", "channel": CHANNELS[kind]}
    verb = "add" if add else "remove"
    base = len(json.dumps({**head, verb: []}))
    out: list[str] = []
    chunk: list[dict[str, str]] = []
    size = base
    for s in symbols:
        item = {"symbol": s, "type": kind}
        n = len(json.dumps(item)) + 2  # ", " between items
        if chunk and size + n > max_bytes:
            out.append(json.dumps({**head, verb: chunk}))
            chunk, size = [], base
        if base + n > max_bytes:
            raise DXLinkError(f"symbol {s!r} alone exceeds {max_bytes} bytes")
        chunk.append(item)
        size += n
    if chunk:
        out.append(json.dumps({**head, verb: chunk}))
    return out


def candle_subscription(symbol: str, period: str, from_ms: int) -> str:
    """Daily (``period`` "1d") candles of ``symbol`` since ``from_ms``: the history DXLink has
    (the SDK's ``subscribe_candle`` sends the same)."""
    add = [{"symbol": f"{symbol}{{={period}}}", "type": "Candle", "fromTime": from_ms}]
    return json.dumps({"type": "FEED_SUBSCRIPTION", "channel": CHANNELS["Candle"], "add": add})


# --- server frames ---


def decode(frame: str | bytes) -> dict[str, Any]:
    try:
        doc = json.loads(frame)
    except ValueError:
        raise DXLinkError(f"not JSON: {str(frame)[:120]!r}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        raise DXLinkError(f"not a DXLink message: {str(frame)[:120]!r}")
    return doc


def config_fields(doc: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """The field order a ``FEED_CONFIG`` announces ({} when it names none)."""
    fields = doc.get("eventFields") or {}
    if not isinstance(fields, dict):
        raise DXLinkError(f"FEED_CONFIG eventFields is not an object: {fields!r:.120}")
    return {str(k): tuple(map(str, v)) for k, v in fields.items() if isinstance(v, list)}


def compact_rows(data: Any, fields: Mapping[str, Sequence[str]]) -> list[tuple[str, dict]]:
    """``FEED_DATA`` COMPACT ``data`` -> (event type, {field: value}) per event.

    ``[TYPE, [values...]]`` pairs (one or more); the values are split into events of
    ``len(fields[TYPE])``. A type without a configured field list or a flat array whose length
    is not a multiple of it is a :class:`DXLinkError` (nothing can be trusted in it)."""
    if not isinstance(data, list) or len(data) % 2:
        raise DXLinkError(f"COMPACT data is not [type, values] pairs: {data!r:.120}")
    rows: list[tuple[str, dict]] = []
    for kind, values in zip(data[0::2], data[1::2], strict=True):
        names = fields.get(kind)
        if not names:
            raise DXLinkError(f"no field list configured for {kind!r}")
        if not isinstance(values, list) or len(values) % len(names):
            raise DXLinkError(f"{kind}: {len(values) if isinstance(values, list) else values!r}"
                              f" values, not a multiple of {len(names)} fields")  # fmt: skip
        w = len(names)
        rows.extend((kind, dict(zip(names, values[i : i + w], strict=True)))
                    for i in range(0, len(values), w))  # fmt: skip
    return rows


def num(value: Any) -> float:
    """A DXLink number: floats, ints, numeric strings; ``"NaN"``/missing -> nan."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(**values: float) -> None:
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise ModelError(f"{', '.join(bad)}: not a number")


def _ts(row: Mapping[str, Any], *names: str, default_ns: int) -> int:
    ms = max((num(row.get(n)) for n in names), default=math.nan)
    return int(ms) * NS_PER_MS if math.isfinite(ms) and ms > 0 else default_ns


def contract_of(symbol: str) -> Contract | None:
    """The option an option streamer symbol names (``.SPXW240119C4700``); None for others."""
    if not symbol.startswith("."):
        return None
    try:
        return from_dxlink(symbol)
    except SymbolError:
        return None


Parsed = Quote | Trade | UnderlyingTick | Greeks | tuple[Contract, float]


def event_of(kind: str, row: Mapping[str, Any], now_ns: int, source: str = "tastytrade"):
    """One COMPACT row as a desk record: a Quote or Trade of an option, an UnderlyingTick of an
    index or stock (its Trade price or Quote mid), vendor :class:`Greeks` (``source``), or
    (contract, open interest) from a Summary; None for rows that carry nothing usable (an
    unknown type). A NaN price or Greek raises :class:`ModelError` (the row is counted)."""
    symbol = str(row.get("eventSymbol", ""))
    c = contract_of(symbol)
    if kind == "Quote":
        bid, ask = num(row.get("bidPrice")), num(row.get("askPrice"))
        ts = _ts(row, "bidTime", "askTime", default_ns=now_ns)
        if c is None:
            _finite(bidPrice=bid, askPrice=ask)
            return UnderlyingTick(symbol, (bid + ask) / 2, ts) if bid > 0 and ask > 0 else None
        return Quote(c, bid, ask, num(row.get("bidSize", 0)), num(row.get("askSize", 0)), ts)
    if kind == "Trade":
        price, ts = num(row.get("price")), _ts(row, "time", default_ns=now_ns)
        _finite(price=price)
        if c is None:
            return UnderlyingTick(symbol, price, ts)
        return Trade(c, price, num(row.get("size", 0)), ts)
    if kind == "Greeks" and c is not None:
        g = {k: num(row.get(k)) for k in ("volatility", "delta", "gamma", "theta", "vega", "rho")}
        _finite(**g)
        return Greeks(c, _ts(row, "time", default_ns=now_ns), iv=g["volatility"],
                      delta=g["delta"], gamma=g["gamma"], theta_per_day=g["theta"],
                      vega_per_point=g["vega"], rho=g["rho"], vanna_per_point=math.nan,
                      charm_per_day=math.nan, source=source)  # fmt: skip
    if kind == "Summary" and c is not None:
        oi = num(row.get("openInterest"))
        _finite(openInterest=oi)
        return (c, oi)
    return None


def symbols_for(keys: Iterable[Contract | str]) -> dict[str, list[str]]:
    """Streamer symbols per event type for the desk's subscription keys: an option gets its
    Quote, Greeks and Summary (open interest); an index or stock its Quote and Trade."""
    out: dict[str, list[str]] = {}
    for k in keys:
        if isinstance(k, Contract):
            sym, kinds = to_dxlink(k), OPTION_TYPES
        else:
            sym, kinds = str(k), UNDERLYING_TYPES
        for kind in kinds:
            out.setdefault(kind, []).append(sym)
    return out

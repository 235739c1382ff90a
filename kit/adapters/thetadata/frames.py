"""The ThetaData Terminal's stream frames built from records: the emulator's side of
:mod:`kit.adapters.thetadata.parsing` (the same documented shapes, the other direction)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from kit.core.clock import NEW_YORK
from kit.core.model import Contract, Quote, Trade

_encode = msgspec.json.encode


def stamp(ts_ns: int) -> tuple[int, int]:
    """(YYYYMMDD, ms_of_day) in New York time, as ThetaData stamps stream events."""
    local = datetime.fromtimestamp(ts_ns / 1e9, NEW_YORK)
    ms = ((local.hour * 60 + local.minute) * 60 + local.second) * 1000 + ts_ns // 1_000_000 % 1000
    return int(f"{local:%Y%m%d}"), ms


def contract_fields(c: Contract) -> dict[str, Any]:
    return {"security_type": "OPTION", "root": c.root, "expiration": int(f"{c.expiry:%Y%m%d}"),
            "strike": c.strike_milli, "right": c.right.value}  # fmt: skip


def quote_frame(q: Quote) -> bytes:
    day, ms = stamp(q.ts_ns)
    return _encode({
        "header": {"type": "QUOTE", "status": "CONNECTED"},
        "contract": contract_fields(q.contract),
        "quote": {"ms_of_day": ms, "bid_size": int(q.bid_size), "bid_exchange": 5, "bid": q.bid,
                  "bid_condition": 50, "ask_size": int(q.ask_size), "ask_exchange": 5,
                  "ask": q.ask, "ask_condition": 50, "date": day},
    })  # fmt: skip


def trade_frame(t: Trade, sequence: int) -> bytes:
    day, ms = stamp(t.ts_ns)
    return _encode({
        "header": {"type": "TRADE", "status": "CONNECTED"},
        "contract": contract_fields(t.contract),
        "trade": {"ms_of_day": ms, "sequence": sequence, "size": int(t.size), "condition": 0,
                  "price": t.price, "exchange": 5, "date": day},
    })  # fmt: skip


def text_frame(payload: bytes) -> bytes:
    """One unmasked server-to-client WebSocket text frame (RFC 6455 5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload

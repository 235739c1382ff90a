"""ThetaData wire formats as pure functions: REST rows and stream frames to domain records,
New York wall-clock times to UTC nanoseconds, and the vendor's error codes. No I/O here, so
every function is tested on recorded frames without a socket (the emulator uses the same
constants and formats, never a copy)."""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import msgspec

from kit.core.clock import NEW_YORK, from_ns, to_ns
from kit.core.model import Contract, Quote
from kit.core.symbology import right_code

log = logging.getLogger(__name__)

ERROR_CODES: dict[int, str] = {
    404: "NO_IMPL", 429: "OS_LIMIT", 470: "GENERAL", 471: "PERMISSION", 472: "NO_DATA",
    473: "INVALID_PARAMS", 474: "DISCONNECTED", 475: "TERMINAL_PARSE", 476: "WRONG_IP",
    477: "NO_PAGE_FOUND", 478: "INVALID_SESSION_ID", 570: "LARGE_REQUEST", 571: "SERVER_STARTING",
    572: "UNCAUGHT_ERROR",
}  # fmt: skip
RETRYABLE = frozenset({429, 474, 571})


# --- time ---


@lru_cache(maxsize=64)
def midnight_ns(yyyymmdd: int) -> int:
    """UTC ns of midnight New York wall time on that date (offset taken at noon: no DST jump
    happens during market hours)."""
    d = date(yyyymmdd // 10000, yyyymmdd // 100 % 100, yyyymmdd % 100)
    noon = datetime(d.year, d.month, d.day, 12, tzinfo=NEW_YORK)
    return to_ns(noon) - 12 * 3600 * 1_000_000_000


def ms_of_day_to_ns(yyyymmdd: int, ms_of_day: int) -> int:
    return midnight_ns(yyyymmdd) + ms_of_day * 1_000_000


def parse_timestamp(text: str) -> int:
    """REST v3 ``2024-01-19T10:00:01.5`` (New York, no offset) -> UTC ns."""
    dt = datetime.fromisoformat(text)
    day = dt.year * 10000 + dt.month * 100 + dt.day
    ms = ((dt.hour * 60 + dt.minute) * 60 + dt.second) * 1000 + dt.microsecond // 1000
    return ms_of_day_to_ns(day, ms)


def format_timestamp(ts_ns: int) -> str:
    """UTC ns -> the REST v3 form (New York wall time, milliseconds)."""
    return from_ns(ts_ns).astimezone(NEW_YORK).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


# --- REST rows ---


def parse_rows(text: str, fmt: str) -> list[dict[str, str]]:
    if not text.strip():
        return []
    if fmt == "ndjson":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return list(csv.DictReader(io.StringIO(text)))


def parse_date(text: object) -> date:
    """``YYYYMMDD`` or ``YYYY-MM-DD`` (both appear in ThetaData's APIs)."""
    t = str(text).replace("-", "")
    if len(t) != 8 or not t.isdigit():
        raise ValueError(f"bad date {text!r} (YYYYMMDD)")
    return date(int(t[:4]), int(t[4:6]), int(t[6:8]))


def quote_row(r: dict[str, Any], contract: Contract | None = None) -> Quote | None:
    """One REST quote row -> Quote; a bad row is logged and skipped, never raised."""
    try:
        if contract is None:
            contract = Contract(
                str(r["symbol"]), parse_date(r["expiration"]), float(r["strike"]),
                right_code(r["right"]),
            )  # fmt: skip
        return Quote(
            contract, float(r["bid"]), float(r["ask"]), float(r["bid_size"]), float(r["ask_size"]),
            parse_timestamp(str(r["timestamp"])),
        )  # fmt: skip
    except (KeyError, ValueError, TypeError) as exc:  # ModelError is a ValueError
        log.warning("ThetaData: skipping bad quote row %r: %s", r, exc)
        return None


# --- stream frames ---


class Header(msgspec.Struct, kw_only=True):
    type: str
    status: str | None = None
    response: str | None = None
    req_id: int | None = None


class FrameContract(msgspec.Struct, kw_only=True):
    security_type: str | None = None
    root: str
    expiration: int
    strike: int
    right: str


class QuoteBody(msgspec.Struct, kw_only=True):
    ms_of_day: int
    bid_size: float
    bid: float
    ask_size: float
    ask: float
    date: int


class TradeBody(msgspec.Struct, kw_only=True):
    ms_of_day: int
    size: float
    price: float
    date: int


class Frame(msgspec.Struct, kw_only=True):
    header: Header
    contract: FrameContract | None = None
    quote: QuoteBody | None = None
    trade: TradeBody | None = None


decode_frame = msgspec.json.Decoder(Frame).decode

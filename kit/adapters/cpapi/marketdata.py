"""The Client Portal WebSocket's market data (``smd``) ↔ the desk's events: pure, no I/O.

IBKR sends every field as text and **only the fields that changed** since its last update for
that conid, so the reader keeps each conid's merged values (:class:`ConidValues`) and builds
records from the merged view: a bid change alone still makes a whole :class:`Quote`. Texts carry
decorations: a ``C`` (previous close) or ``H`` (halted) prefix on the last price, thousands
separators on sizes (``"1,300"``), ``%`` on implied vol (``"18.2%"``), ``K``/``M`` on large
counts. A field that cannot be read (``"NaN"``, garbage) is counted and ignored, keeping the
previous value: one bad field never costs the rest of the update.

Fields: 31 last, 84 bid, 86 ask, 88 bid size, 85 ask size, 7308 delta, 7309 gamma, 7310 theta
(per day), 7311 vega (per vol point), 7633 implied vol %, 7638 option open interest, 6509
availability (first letter R real time, D delayed, Z frozen, Y frozen delayed, N none).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kit.core.model import Contract, Greeks, Quote, UnderlyingTick

OPTION_FIELDS = ("31", "84", "86", "88", "85", "7308", "7309", "7310", "7311", "7633", "7638",
                 "6509")  # fmt: skip
UNDERLYING_FIELDS = ("31", "6509")
QUOTE_FIELDS = frozenset({"84", "86", "88", "85"})
GREEK_FIELDS = frozenset({"7308", "7309", "7310", "7311", "7633"})
AVAILABILITY = {"R": "real-time", "D": "delayed", "Z": "frozen", "Y": "frozen delayed",
                "N": "not subscribed"}  # fmt: skip
_SCALE = {"K": 1e3, "M": 1e6, "B": 1e9}


def field_number(text: Any) -> float | None:
    """A numeric field's value; None when it cannot be read or is not finite."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        x = float(text)
        return x if math.isfinite(x) else None
    if not isinstance(text, str):
        return None
    s = text.strip().replace(",", "").lstrip("CH")
    scale = 1.0
    if s.endswith("%"):
        s, scale = s[:-1], 0.01
    elif s[-1:] in _SCALE:
        s, scale = s[:-1], _SCALE[s[-1]]
    try:
        x = float(s) * scale
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def availability(text: Any) -> str:
    """Field 6509 in words (``"RpB"`` -> ``"real-time"``)."""
    return AVAILABILITY.get(str(text or "")[:1], f"unknown ({text})")


@dataclass
class ConidValues:
    """One conid's merged field values, and when they were last updated (IBKR ``_updated``)."""

    values: dict[str, float] = field(default_factory=dict)
    availability: str = ""
    ts_ns: int = 0


@dataclass
class Update:
    """What one ``smd`` message changed: the field ids that were read, and those that were not."""

    changed: set[str]
    bad: list[str]


def merge(state: ConidValues, msg: dict[str, Any], now_ns: int) -> Update:
    """Merge the fields of one ``smd`` message into ``state``."""
    changed: set[str] = set()
    bad: list[str] = []
    updated = field_number(msg.get("_updated"))
    state.ts_ns = int(updated * 1_000_000) if updated else now_ns
    for key, text in msg.items():
        if not key.isdigit():
            continue
        if key == "6509":
            state.availability = availability(text)
            continue
        if key == "6119":  # the market data marker (server id): not a value
            continue
        x = field_number(text)
        if x is None:
            bad.append(f"{key}={str(text)[:20]!r}")
            continue
        if state.values.get(key) != x:
            state.values[key] = x
            changed.add(key)
    return Update(changed, bad)


def quote_of(c: Contract, s: ConidValues) -> Quote | None:
    """The merged top of book once both sides are known (sizes default to 0)."""
    v = s.values
    bid, ask = v.get("84"), v.get("86")
    if bid is None or ask is None or bid < 0 or ask < 0:
        return None
    return Quote(c, bid, ask, v.get("88", 0.0), v.get("85", 0.0), s.ts_ns)


def greeks_of(c: Contract, s: ConidValues, source: str = "ibkr") -> Greeks | None:
    """The vendor's Greeks once delta is known (what IBKR leaves out is NaN)."""
    v = s.values
    if "7308" not in v:
        return None
    nan = math.nan
    return Greeks(c, s.ts_ns, v.get("7633", nan), v["7308"], v.get("7309", nan),
                  v.get("7310", nan), v.get("7311", nan), nan, nan, nan, source=source)  # fmt: skip


def tick_of(symbol: str, s: ConidValues) -> UnderlyingTick | None:
    last = s.values.get("31")
    return UnderlyingTick(symbol, last, s.ts_ns) if last is not None and last > 0 else None

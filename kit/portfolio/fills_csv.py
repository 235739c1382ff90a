"""Parse a broker's fills and a marks file (CSV text) into checked records, naming bad lines.

``kit book`` reads the user's own executions, so every value is checked here, at the edge, and a
bad row stops the run with ``FILE:LINE: why`` instead of a traceback or a silently wrong P&L.
The functions take the text's lines and a name for messages (no file I/O: the CLI reads files).

Fills columns (header row, any order, extra columns ignored): ``ts`` (ISO 8601; without a UTC
offset it is New York time), ``position`` (any label grouping the fills of one trade),
``contract`` (an OCC symbol, padded ``SPXW  240315P05000000`` or not), ``side`` (``buy`` or
``sell``), ``qty`` (whole contracts, > 0), ``price`` (per share, >= 0), ``commission`` (dollars
for the whole fill, >= 0; empty = 0).

Marks columns: ``contract``, ``bid``, ``ask``. An option row is a quote; a row whose contract is
an underlying symbol (``SPX``) gives its spot as the mid of bid and ask (write bid = ask = spot).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from kit.core.clock import NEW_YORK, to_ns
from kit.core.model import Contract, ModelError, Side
from kit.core.symbology import from_occ

FILL_COLUMNS = ("ts", "position", "contract", "side", "qty", "price", "commission")
MARK_COLUMNS = ("contract", "bid", "ask")


class FillsError(ValueError):
    """A row or header that cannot be read; the message starts with ``FILE:LINE:``."""


@dataclass(frozen=True)
class FillRow:
    """One execution as the file gives it, checked. ``line`` is the 1-based file line."""

    line: int
    ts_ns: int
    position: str
    contract: Contract
    side: Side
    qty: int
    price: float
    commission: float


@dataclass(frozen=True)
class Marks:
    """Quotes by contract, ``(bid, ask)`` per share, and spots by underlying symbol."""

    quotes: dict[Contract, tuple[float, float]]
    spots: dict[str, float]


def _rows(lines: Iterable[str], name: str, columns: tuple[str, ...]) -> Iterable[tuple[int, dict]]:
    """Dict rows with their file line; the header must hold ``columns`` (case-insensitive)."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise FillsError(f"{name}:1: empty file, expected a header {','.join(columns)}")
    keys = [h.strip().lower() for h in header]
    missing = [c for c in columns if c not in keys and c != "commission"]
    if missing:
        raise FillsError(f"{name}:1: header lacks {', '.join(missing)} (has {', '.join(keys)})")
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue  # a blank line
        if len(cells) != len(keys):
            raise FillsError(f"{name}:{line}: {len(cells)} cells, the header has {len(keys)}")
        yield line, {k: c.strip() for k, c in zip(keys, cells, strict=True)}


def _number(text: str, what: str, where: str, *, positive: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FillsError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "> 0" if positive else ">= 0"
        raise FillsError(f"{where}: {what} {text!r} must be finite and {need}")
    return value


def _ts(text: str, where: str) -> int:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise FillsError(f"{where}: ts {text!r} is not an ISO 8601 time") from None
    return to_ns(when if when.tzinfo is not None else when.replace(tzinfo=NEW_YORK))


def _contract(text: str, where: str) -> Contract:
    try:
        return from_occ(text.upper())
    except ModelError as exc:
        raise FillsError(f"{where}: {exc}") from None


def parse_fills(lines: Iterable[str], name: str) -> list[FillRow]:
    """The fills of ``lines`` (CSV text of file ``name``), in file order; at least one."""
    out = []
    for line, row in _rows(lines, name, FILL_COLUMNS):
        where = f"{name}:{line}"
        side = row["side"].lower()
        if side not in ("buy", "sell"):
            raise FillsError(f"{where}: side {row['side']!r} must be buy or sell")
        qty = _number(row["qty"], "qty", where, positive=True)
        if qty != int(qty):
            raise FillsError(f"{where}: qty {row['qty']!r} must be whole contracts")
        if not row["position"]:
            raise FillsError(f"{where}: position is empty")
        out.append(FillRow(
            line=line, ts_ns=_ts(row["ts"], where), position=row["position"],
            contract=_contract(row["contract"], where), side=Side(side), qty=int(qty),
            price=_number(row["price"], "price", where),
            commission=_number(row.get("commission") or "0", "commission", where),
        ))  # fmt: skip
    if not out:
        raise FillsError(f"{name}: no fills")
    return out


def parse_marks(lines: Iterable[str], name: str) -> Marks:
    """Quotes and spots of ``lines`` (CSV text of file ``name``); a repeated row is an error."""
    quotes: dict[Contract, tuple[float, float]] = {}
    spots: dict[str, float] = {}
    for line, row in _rows(lines, name, MARK_COLUMNS):
        where = f"{name}:{line}"
        bid = _number(row["bid"], "bid", where)
        ask = _number(row["ask"], "ask", where)
        if ask < bid:
            raise FillsError(f"{where}: ask {ask:g} is below bid {bid:g}")
        symbol = row["contract"].upper()
        if symbol.isalpha() and len(symbol) <= 6:  # an underlying: its spot
            if bid <= 0 or symbol in spots:
                why = "a spot must be > 0" if bid <= 0 else "a second spot"
                raise FillsError(f"{where}: {why} for {symbol}")
            spots[symbol] = 0.5 * (bid + ask)
            continue
        contract = _contract(symbol, where)
        if contract in quotes:
            raise FillsError(f"{where}: a second quote for {row['contract']}")
        quotes[contract] = (bid, ask)
    return Marks(quotes, spots)

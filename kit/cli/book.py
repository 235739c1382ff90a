"""``kit book FILLS.csv [--marks MARKS.csv] [--json]``: position analysis on a broker's fills.

Reads the files here (the edge), parses them with :mod:`kit.portfolio.fills_csv` and prints
:func:`kit.portfolio.statement.statement`: per position its original and net credit, realised
and open P&L, P&L % of credit, breakevens at expiry, worst loss within ±10% and per-unit Greeks.
A bad row is one line ``kit book: error: FILE:LINE: why`` and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kit.core.clock import NEW_YORK, to_ns
from kit.portfolio.fills_csv import FillsError, parse_fills, parse_marks
from kit.portfolio.statement import StatementError, build, statement

FIELDS = ("units", "original_credit", "net_credit", "credit_held", "realized_pnl", "open_pnl",
          "total_pnl", "pnl_pct_credit", "breakevens", "worst_loss_10pct", "delta_per_unit",
          "gamma_per_unit")  # fmt: skip


def _when(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=NEW_YORK)


def add_book_parser(sub: Any) -> None:
    """Register ``book`` on the ``kit`` command's subparsers."""
    s = sub.add_parser(
        "book", help="position analysis of your own broker fills (credits, P&L, breakevens)",
        description="Replays FILLS.csv (ts,position,contract,side,qty,price,commission; OCC "
        "symbols) through the desk's book and prints each position's accounting.",
    )  # fmt: skip
    s.add_argument("fills", help="CSV of fills: ts,position,contract,side,qty,price,commission")
    s.add_argument("--marks", help="CSV of marks: contract,bid,ask (+ a row per underlying, "
                   "contract = its symbol, bid = ask = spot)")  # fmt: skip
    s.add_argument("--at", type=_when, help="valuation time for Greeks, ISO 8601 (no offset: "
                   "New York; default: now)")  # fmt: skip
    s.add_argument("--json", action="store_true", help="one JSON object per line per position")
    s.set_defaults(func=cmd_book)


def _read(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FillsError(f"{path}: cannot read: {exc}") from None


def _text(name: str, value: Any) -> str:
    """Dollars and levels to the cent, Greeks to 4 decimals, "-" for what needs marks."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(f"{x:,.2f}" for x in value) or "none"
    return f"{value:+.4f}" if name.endswith("_per_unit") else f"{value:,.2f}"


def cmd_book(args: argparse.Namespace) -> int:
    at = to_ns(args.at or datetime.now(UTC))
    try:
        rows = parse_fills(_read(args.fills), args.fills)
        marks = parse_marks(_read(args.marks), args.marks) if args.marks else None
        report = statement(build(rows, args.fills, marks, at), at, marks is not None)
    except (FillsError, StatementError) as exc:
        print(f"kit book: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for pos in report:
            print(json.dumps(pos))
        return 0
    for pos in report:
        print(f"{pos['position']} ({pos['underlying']}, {pos['status']})")
        for name in FIELDS:
            print(f"  {name:<17} {_text(name, pos[name])}")
    return 0

"""``kit positions ...``: log trades made elsewhere so the desk watches them (alert-only).

The commands only edit the journal (:mod:`kit.positions.manual`); the desk service picks changes up
on its next heartbeat. "Now" is read here, at the edge (``--at`` backdates a trade), so
:class:`~kit.positions.manual.ManualBook` stays a function of its inputs.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import msgspec

from kit.cli.args import day, positive
from kit.positions.legs import STRATEGIES, Strikes
from kit.positions.manual import LOCK_TIMEOUT_S, ManualBook, Row, manual_path

STRIKE_FLAGS = tuple(f.name for f in fields(Strikes))  # --put, --long-put, ... as attributes


def _when(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset: write e.g. 2024-03-12T10:30-04:00 or ...Z"
        )
    return when


def _book(args: argparse.Namespace) -> ManualBook:
    return ManualBook(manual_path(args.file), lock_timeout_s=args.wait)


def _now(args: argparse.Namespace) -> datetime:
    return args.at or datetime.now(UTC)


def _money(value: float | None) -> str:
    return "undefined" if value is None else f"${value:,.0f}"


def _line(r: Row) -> str:
    """One position on one line, as a trader reads it."""
    text = (
        f"{r.id:<6} {r.status:<6} {r.underlying:<4} {r.strategy:<11} {r.expiry} "
        f"{r.legs:<28} x{r.contracts:<3} credit {r.credit:.2f} ({_money(r.credit_usd)}) "
        f"risk {_money(r.max_risk_usd)} realised {_money(r.realized_usd)}"
    )
    if r.pnl_usd is not None and r.pnl_at is not None:
        text += f" P&L {r.pnl_usd:+,.2f} (stated {r.pnl_at:%Y-%m-%d %H:%M} UTC)"
    return f"{text}  # {r.note}" if r.note else text


def _row_of(book: ManualBook, position_id: str) -> Row:
    return next(r for r in book.rows(include_closed=True) if r.id == position_id)


def cmd_add(args: argparse.Namespace) -> int:
    book = _book(args)
    strikes = Strikes(**{name: getattr(args, name) for name in STRIKE_FLAGS})
    p = book.add(
        args.strategy, underlying=args.underlying, expiry=args.expiry, strikes=strikes,
        contracts=args.contracts, credit=args.credit, at=_now(args), root=args.root,
        note=args.note, risk_usd=args.risk, position_id=args.id,
    )  # fmt: skip
    print(f"added   {_line(_row_of(book, p.id))}")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    book = _book(args)
    p = book.update(args.id, at=_now(args), contracts=args.contracts, credit=args.credit,
                    note=args.note, risk_usd=args.risk, pnl_usd=args.pnl)  # fmt: skip
    print(f"updated {_line(_row_of(book, p.id))}")
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    book = _book(args)
    p = book.close(args.id, price=args.price, at=_now(args), contracts=args.contracts)
    print(f"closed  {_line(_row_of(book, p.id))}")
    return 0


def _print_json(value: Any) -> None:
    print(json.dumps(msgspec.to_builtins(value), indent=2))


def cmd_list(args: argparse.Namespace) -> int:
    rows = _book(args).rows(include_closed=args.all)
    if args.json:
        _print_json(rows)
    elif not rows:
        print("no open manual positions" + ("" if args.all else " (--all shows closed ones)"))
    else:
        for r in rows:
            print(_line(r))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    s = _book(args).summary()
    if args.json:
        _print_json(s)
        return 0
    undefined = f" + {s.undefined_risk} undefined" if s.undefined_risk else ""
    print(f"open     {s.open_positions} positions, credit {_money(s.credit_usd)}, "
          f"max risk {_money(s.max_risk_usd)}{undefined}")  # fmt: skip
    for und, t in s.by_underlying.items():
        undefined = f" + {t.undefined_risk} undefined" if t.undefined_risk else ""
        print(f"  {und:<6} {t.open_positions} positions, credit {_money(t.credit_usd)}, "
              f"max risk {_money(t.max_risk_usd)}{undefined}")  # fmt: skip
    print(f"realised {_money(s.realized_closed_usd)} on {s.closed_positions} closed positions, "
          f"{_money(s.realized_open_usd)} on partial closes of open ones")  # fmt: skip
    return 0


def add_positions_parser(sub: Any) -> None:
    """Add ``positions`` and its actions to the ``kit`` subcommands (``sub``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--file", help="the journal (default: KIT_MANUAL_POSITIONS, else "
                        "data/manual_positions.json)")  # fmt: skip
    common.add_argument("--wait", type=positive, default=LOCK_TIMEOUT_S, metavar="SECONDS",
                        help="how long a change waits for another command's lock on the "
                        f"journal (default {LOCK_TIMEOUT_S:g})")  # fmt: skip
    timed = argparse.ArgumentParser(add_help=False)
    timed.add_argument("--at", type=_when, help="when the trade was made, ISO 8601 with a UTC "
                       "offset (default: now)")  # fmt: skip
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="JSON instead of text")

    p = sub.add_parser(
        "positions", help="log trades made elsewhere: manual positions the desk alerts on",
        description="Manual, alert-only positions: the desk service raises the same exit "
        "alerts for them as for its own positions, and never trades them.",
    )  # fmt: skip
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    s = actions.add_parser("add", parents=[common, timed], help="log a position opened elsewhere")
    s.add_argument("strategy", choices=list(STRATEGIES))
    s.add_argument("--underlying", required=True, type=str.upper, help="SPX, SPY, NDX, BTC ...")
    s.add_argument("--root", type=str.upper, help="option root (default: the weeklies of an "
                   "index, SPX -> SPXW, else the underlying)")  # fmt: skip
    s.add_argument("--expiry", required=True, type=day, help="YYYY-MM-DD")
    s.add_argument("--put", type=float, help="short put strike (strangle, iron_condor, "
                   "short_put)")  # fmt: skip
    s.add_argument("--call", type=float, help="short call strike (strangle, iron_condor, "
                   "short_call)")  # fmt: skip
    s.add_argument("--short", type=float, help="short strike of a put_spread/call_spread")
    s.add_argument("--long", type=float, help="long strike of a put_spread/call_spread")
    s.add_argument("--long-put", type=float, help="iron_condor: bought put strike")
    s.add_argument("--long-call", type=float, help="iron_condor: bought call strike")
    s.add_argument("--wings", type=float, help="iron_condor: wing width in points (instead of "
                   "--long-put/--long-call)")  # fmt: skip
    s.add_argument("--contracts", required=True, type=int, help="units of the strategy")
    s.add_argument("--credit", required=True, type=float, help="net credit per unit in points, "
                   "as quoted (4.20 on an SPX strangle is $420 a contract)")  # fmt: skip
    s.add_argument("--risk", type=float, help="your max risk in dollars for the whole position, "
                   "for undefined-risk ones (strangles, naked options)")  # fmt: skip
    s.add_argument("--note", default="", help="free text")
    s.add_argument("--id", help="your own id (default: m1, m2, ...)")
    s.set_defaults(func=cmd_add)

    s = actions.add_parser("update", parents=[common, timed],
                           help="add contracts, change the note or the stated risk")  # fmt: skip
    s.add_argument("id")
    s.add_argument("--contracts", type=int, help="the new total: the contracts added are sold "
                   "at --credit (reduce with close)")  # fmt: skip
    s.add_argument("--credit", type=float, help="net credit per unit of the added contracts")
    s.add_argument("--note", help="replace the note")
    s.add_argument("--risk", type=float, help="your max risk in dollars for the whole position")
    s.add_argument("--pnl", type=float, help="the open P&L in dollars for the whole position, "
                   "as your broker shows it, for contracts the feed does not quote (a live "
                   "mark wins; kit watch shows and alerts on it)")  # fmt: skip
    s.set_defaults(func=cmd_update)

    s = actions.add_parser("close", parents=[common, timed], help="log a full or partial close")
    s.add_argument("id")
    s.add_argument("--price", required=True, type=float, help="net debit per unit in points "
                   "(0 for worthless at expiry)")  # fmt: skip
    s.add_argument("--contracts", type=int, help="how many to close (default: all held)")
    s.set_defaults(func=cmd_close)

    s = actions.add_parser("list", parents=[common, as_json], help="open positions")
    s.add_argument("--all", action="store_true", help="closed positions too")
    s.set_defaults(func=cmd_list)

    s = actions.add_parser("summary", parents=[common, as_json],
                           help="totals: credit, max risk, realised P&L")  # fmt: skip
    s.set_defaults(func=cmd_summary)

"""A position statement from a broker's fills: the book's accounting replayed on the user's trades.

``kit book FILLS.csv`` groups the fills by their ``position`` label, replays them through a
:class:`~kit.portfolio.book.Book` in time order and reads its view, so the numbers are the
desk's own (credits, realised and open P&L, per-unit Greeks, stress loss) and the breakevens
come from :func:`kit.core.payoff.expiry_breakevens`: nothing here computes P&L a second way.

The fills carry no strategy record, so one is inferred from the whole history of each position:

- *entry legs* (their opening fills make the original credit) are the contracts opened before
  the position's first closing fill (sell a roll's new leg after buying back the old one, or its
  premium counts as entry);
- a contract flat at the end while the position is still open was *rolled out or closed on its
  own*: the record drops it before its first closing fill, so its P&L is an adjustment carried
  by the units held (the desk's roll does the same); other closing fills are reductions;
- each leg's ratio is its largest size over the greatest common divisor of all legs' largest
  sizes, so filled units are contracts held over contracts per unit (2 puts and 2 calls sold:
  2 units of a 1:1 strangle).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kit.core.model import Fill, Leg, Position, Quote, StrategyType, UnderlyingTick
from kit.core.payoff import expiry_breakevens
from kit.core.symbology import to_occ
from kit.portfolio.book import Book, BookConfig
from kit.portfolio.fills_csv import FillRow, Marks
from kit.portfolio.market import MarketConfig, MarketState


class StatementError(ValueError):
    """Fills that do not make a position (mixed underlyings), or marks that miss a held leg."""


@dataclass(frozen=True)
class _Plan:
    """What the whole history of one position says about its record."""

    entry: list[Any]  # contracts opened before the first closing fill
    removed: set[Any]  # flat at the end while the position is still open
    ratio: dict[Any, int]  # signed contracts per unit
    units: int


def _plan(rows: Sequence[FillRow]) -> _Plan:
    qty: dict[Any, int] = {}
    peak: dict[Any, int] = {}
    sign: dict[Any, int] = {}
    entry: list[Any] = []
    entering = True
    for r in rows:
        c, q = r.contract, qty.get(r.contract, 0)
        f = r.side.sign * r.qty
        if q * f < 0:
            entering = False
        elif entering and c not in entry:
            entry.append(c)
        qty[c] = q + f
        sign.setdefault(c, 1 if f > 0 else -1)
        peak[c] = max(peak.get(c, 0), abs(q + f))
    open_ = any(qty.values())
    removed = {c for c, q in qty.items() if open_ and q == 0}
    g = math.gcd(*(p for p in peak.values() if p)) or 1
    ratio = {c: sign[c] * max(1, round(p / g)) for c, p in peak.items()}
    return _Plan(entry or [rows[0].contract], removed, ratio, g)


def _replay(book: Book, pid: str, rows: Sequence[FillRow], name: str) -> None:
    """Open ``pid`` with its entry legs and apply its fills, amending the record as it goes."""
    plan = _plan(rows)
    unds = {r.contract.underlying for r in rows}
    if len(unds) > 1:
        raise StatementError(f"{name}: position {pid!r} mixes underlyings {sorted(unds)}")
    kept = [c for c in plan.ratio if c not in plan.removed]
    listed, retired = list(plan.entry), set()

    def record() -> Position:
        legs = [c for c in listed if c not in retired] or kept
        return Position(pid, StrategyType.CUSTOM, tuple(Leg(c, plan.ratio[c]) for c in legs),
                        plan.units, rows[0].ts_ns)  # fmt: skip

    book.open(record())
    held: dict[Any, int] = {}
    for r in rows:
        c = r.contract
        closing = held.get(c, 0) * r.side.sign < 0
        held[c] = held.get(c, 0) + r.side.sign * r.qty
        changed = c not in listed or (closing and c in plan.removed and c not in retired)
        if c not in listed:
            listed.append(c)
        if closing and c in plan.removed:
            retired.add(c)
        if changed:
            book.amend(record())
        fill = Fill(f"{name}:{r.line}", pid, c, r.side, float(r.qty), r.price, r.ts_ns,
                    commission=r.commission)  # fmt: skip
        book.apply_fill(fill, pid)


def build(rows: Sequence[FillRow], name: str, marks: Marks | None, at_ns: int) -> Book:
    """A book holding every position of ``rows`` (fills of file ``name``), marked at ``at_ns``.

    Marks are used at their mid whatever their width (the user's own marks are the marks). With
    marks, every contract still held needs a quote and every underlying held a spot.
    """
    market = MarketState(MarketConfig(max_spread_pct=math.inf))
    book = Book(market, BookConfig())
    by_pos: dict[str, list[FillRow]] = {}
    for r in rows:
        by_pos.setdefault(r.position, []).append(r)
    for pid, pos_rows in by_pos.items():
        _replay(book, pid, sorted(pos_rows, key=lambda r: (r.ts_ns, r.line)), name)
    if marks is None:
        return book
    for pid in book.ids:
        held = book.held(pid)
        if held is None:
            continue
        if held.underlying not in marks.spots:
            raise StatementError(f"marks: no spot row for {held.underlying} (position {pid!r})")
        for leg in held.legs:
            if leg.contract not in marks.quotes:
                raise StatementError(f"marks: no quote for {_occ(leg.contract)} (position {pid!r})")
    for symbol, spot in marks.spots.items():
        market.on_underlying(UnderlyingTick(symbol, spot, at_ns))
    for contract, (bid, ask) in marks.quotes.items():
        market.on_quote(Quote(contract, bid, ask, 1.0, 1.0, at_ns))
    market.refresh(None, at_ns)
    return book


def _occ(contract: Any) -> str:
    return to_occ(contract, padded=False)


def _num(x: float, marked: bool = True) -> float | None:
    return round(float(x), 6) if marked and np.isfinite(x) else None


def statement(book: Book, at_ns: int, marked: bool) -> list[dict[str, Any]]:
    """One dict per position (file order): the ``kit book`` fields, dollars rounded to the cent.

    Without marks, what needs a price (open P&L, P&L %, Greeks, worst loss) of a position still
    held is None; breakevens at expiry need no marks. Greeks are None too when a held leg has
    none (valued at or after its expiry, or a mark the model cannot invert).
    """
    v = book.view(at_ns)
    out = []
    for i, pid in enumerate(v.ids):
        is_open = bool(v.is_open[i])
        priced = marked or not is_open
        legs = book.legs(pid, at_ns)
        j = book.legs_of(pid)
        rows = book.leg_row[j][book.leg_qty[j] != 0]
        greeks = marked and is_open and bool(np.isfinite(book.market.delta[rows]).all())
        bes = expiry_breakevens(legs, book.banked(pid)) if is_open else np.zeros(0)
        cents = lambda x: round(float(x), 2)  # noqa: E731
        out.append({
            "position": pid, "underlying": v.underlying[i],
            "status": "open" if is_open else "closed", "units": _num(v.units[i]),
            "original_credit": cents(v.original_credit[i]), "net_credit": cents(v.net_credit[i]),
            "credit_held": cents(v.credit[i]), "realized_pnl": cents(v.realized[i]),
            "open_pnl": cents(v.open_pnl[i]) if priced else None,
            "total_pnl": cents(v.total_pnl[i]) if priced else None,
            "pnl_pct_credit": _num(v.pnl_pct[i], priced),
            "breakevens": [round(float(b), 2) for b in bes],
            "worst_loss_10pct": cents(v.risk[i]) if marked and is_open else None,
            "delta_per_unit": _num(v.delta_unit[i], greeks),
            "gamma_per_unit": _num(v.gamma_unit[i], greeks),
            "spot": _num(v.spot[i], marked),
        })  # fmt: skip
    return out

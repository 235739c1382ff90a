"""Manual positions: trades executed elsewhere, logged by hand, watched by the desk (alert-only).

A premium seller often trades at a broker the desk is not connected to. They log the trade here
(``kit positions add strangle ...``) and the desk service loads it into its book, so the same
risk rules raise the same exit alerts (profit target, stop, strike breach, delta ...) as for
automatic positions; it never trades them.

The positions live in a small JSON journal (``data/manual_positions.json`` or
``KIT_MANUAL_POSITIONS``), not in the DuckDB store: DuckDB admits one writing process and the
service holds it, while the command line must work whether the service runs or not. The service
polls the file's modification time. Every change takes an exclusive ``fcntl`` lock on a sibling
``.lock`` file (two commands at once cannot lose each other's writes) and replaces the journal
atomically (temp file + ``os.replace``): a reader sees the old or the new journal, never half of
one. A journal that cannot be read or decoded is an error naming the file; it is never
overwritten.

Each position is its legs and an append-only list of trades (open, add, close), prices per unit
in points as traders quote them ("sold the strangle for 4.20"): :mod:`kit.positions.records`.
:meth:`ManualBook.desk_records` turns them into :class:`~kit.core.model.Position` and
:class:`~kit.core.model.Fill` records with stable ids (``manual:m1:0:leg1``: position, trade
index, leg index), so re-applying the whole list to a book is idempotent. How strikes become
legs and a net price becomes leg prices is :mod:`kit.positions.legs`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from msgspec.structs import replace

from kit.core.clock import from_ns, to_ns
from kit.core.config import data_dir, env
from kit.core.model import Fill, ModelError, Position, _check_count, _check_price
from kit.portfolio.book import Book
from kit.portfolio.market import MarketState
from kit.positions.legs import Strikes, check_listing, default_root, legs_for, max_loss_usd
from kit.positions.records import DESK_PREFIX, ManualPosition, ManualTrade

__all__ = ["DEFAULT_PATH", "DESK_PREFIX", "ENV_PATH", "ManualBook", "ManualPosition",
           "ManualTrade", "Row", "Summary", "manual_path"]  # fmt: skip
DEFAULT_PATH = Path("data/manual_positions.json")
ENV_PATH = "KIT_MANUAL_POSITIONS"
JOURNAL_VERSION = 1
LOCK_TIMEOUT_S = 30.0  # a change waits this long for another command's lock, then gives up

log = logging.getLogger(__name__)


def _holder(lock_path: Path) -> str:
    try:
        pid = lock_path.read_text().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


_AUTO_ID = re.compile(r"m(\d+)")


def manual_path(path: str | None = None) -> Path:
    """The journal: ``path`` if given, else ``KIT_MANUAL_POSITIONS``, else the default."""
    return Path(path or env(ENV_PATH) or data_dir() / DEFAULT_PATH.name)


class _Journal(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    positions: list[ManualPosition]

    def __post_init__(self) -> None:
        if self.version != JOURNAL_VERSION:
            raise ModelError(f"version: {self.version!r} (this kit reads {JOURNAL_VERSION})")
        seen: set[str] = set()
        for p in self.positions:
            if p.id in seen:
                raise ModelError(f"id {p.id!r} appears twice")
            seen.add(p.id)


class Row(msgspec.Struct, frozen=True):
    """One position as ``kit positions list`` shows it; dollars from the book's accounting.

    ``credit`` is the average entry credit per unit (points) over every opening trade;
    ``credit_usd`` the credit of the contracts still held; ``max_risk_usd`` their worst loss
    (None: undefined, 0 once closed).
    """

    id: str
    status: str
    strategy: str
    underlying: str
    root: str
    expiry: date
    legs: str
    contracts: int
    credit: float
    credit_usd: float
    realized_usd: float
    max_risk_usd: float | None
    opened: datetime
    note: str
    pnl_usd: float | None = None  # the trader's stated open P&L (`update --pnl`), if any
    pnl_at: datetime | None = None


class UnderlyingTotals(msgspec.Struct):
    open_positions: int = 0
    credit_usd: float = 0.0
    max_risk_usd: float = 0.0  # defined risks only; ``undefined_risk`` counts the others
    undefined_risk: int = 0


class Summary(msgspec.Struct):
    """Totals of the journal: open positions by underlying and realised P&L."""

    open_positions: int
    credit_usd: float
    max_risk_usd: float
    undefined_risk: int
    closed_positions: int
    realized_closed_usd: float  # positions closed in full
    realized_open_usd: float  # partial closes of positions still open
    by_underlying: dict[str, UnderlyingTotals]


class ManualBook:
    """The journal of manual positions at ``path``: reads need no lock, changes take one."""

    def __init__(
        self, path: str | os.PathLike[str], *, lock_timeout_s: float = LOCK_TIMEOUT_S
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.lock_timeout_s = lock_timeout_s

    # --- reading ---

    def positions(self) -> list[ManualPosition]:
        """Every position in the journal, oldest first (empty when there is no journal yet)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ValueError(f"{self.path}: cannot read the manual positions journal "
                             f"({exc.strerror or exc})") from None  # fmt: skip
        try:
            return msgspec.json.decode(data, type=_Journal).positions
        except msgspec.DecodeError as exc:
            raise ValueError(f"{self.path}: not a valid manual positions journal ({exc}); "
                             "fix or move it, it is left untouched") from None  # fmt: skip

    def desk_records(self) -> list[tuple[Position, list[Fill]]]:
        """Every position (closed ones too: their closing fills flatten them) with all its
        fills. Fill ids are stable, so applying the list again to the same book changes nothing
        (``Book.apply_fill`` returns False for a known id)."""
        return [(p.position(), p.fills()) for p in self.positions()]

    def rows(self, *, include_closed: bool = False) -> list[Row]:
        """Positions with the book's numbers: the journal replayed into a :class:`Book`."""
        positions = self.positions()
        book = _replay([(p.position(), p.fills()) for p in positions])
        return [_row(p, book) for p in positions if include_closed or p.held]

    def summary(self) -> Summary:
        rows = self.rows(include_closed=True)
        by: dict[str, UnderlyingTotals] = {}
        for r in rows:
            if r.status != "open":
                continue
            t = by.setdefault(r.underlying, UnderlyingTotals())
            t.open_positions += 1
            t.credit_usd += r.credit_usd
            if r.max_risk_usd is None:
                t.undefined_risk += 1
            else:
                t.max_risk_usd += r.max_risk_usd
        closed = [r for r in rows if r.status == "closed"]
        return Summary(
            open_positions=sum(t.open_positions for t in by.values()),
            credit_usd=sum(t.credit_usd for t in by.values()),
            max_risk_usd=sum(t.max_risk_usd for t in by.values()),
            undefined_risk=sum(t.undefined_risk for t in by.values()),
            closed_positions=len(closed),
            realized_closed_usd=sum(r.realized_usd for r in closed),
            realized_open_usd=sum(r.realized_usd for r in rows if r.status == "open"),
            by_underlying=dict(sorted(by.items())),
        )

    # --- changing ---

    def add(
        self,
        strategy: str,
        *,
        underlying: str,
        expiry: date,
        strikes: Strikes,
        contracts: int,
        credit: float,
        at: datetime,
        root: str | None = None,
        note: str = "",
        risk_usd: float | None = None,
        position_id: str | None = None,
    ) -> ManualPosition:
        """Log a position opened at ``at`` for a net ``credit`` per unit (points).

        ``root`` defaults to the underlying's weeklies (SPX -> SPXW); ``risk_usd`` is the
        trader's max risk for the whole position when its structure leaves it undefined.
        """
        root = root or default_root(underlying)
        legs = legs_for(strategy, root, expiry, strikes)
        if legs[0].contract.underlying != underlying:
            raise ModelError(f"root {root} is not an option root of {underlying} "
                             f"(its underlying is {legs[0].contract.underlying})")  # fmt: skip
        check_listing(underlying, legs)
        _check_count("contracts", contracts)
        trade = ManualTrade("open", to_ns(at), contracts, credit)
        risk = None
        if risk_usd is not None:
            _check_price("risk", risk_usd, positive=True)
            risk = risk_usd / contracts

        def edit(positions: list[ManualPosition]) -> ManualPosition:
            pid = position_id if position_id is not None else _next_id(positions)
            if any(p.id == pid for p in positions):
                raise ValueError(f"id {pid!r} is already taken in {self.path}")
            new = ManualPosition(pid, strategy, legs, (trade,), note, risk)
            positions.append(new)
            return new

        return self._change(edit)

    def update(
        self,
        position_id: str,
        *,
        at: datetime,
        contracts: int | None = None,
        credit: float | None = None,
        note: str | None = None,
        risk_usd: float | None = None,
        pnl_usd: float | None = None,
    ) -> ManualPosition:
        """Add to a position (``contracts`` is the new total, the added ones sold at ``credit``),
        or change its note or its stated risk (dollars for the whole position, kept per
        contract so it scales with later adds and partial closes), or state its open P&L
        (dollars, whole position, at ``at``) for contracts the feed does not quote."""
        if (contracts is None and credit is None and note is None and risk_usd is None
                and pnl_usd is None):  # fmt: skip
            raise ValueError("nothing to update: give --contracts with --credit, --note, --risk "
                             "or --pnl")  # fmt: skip
        if (contracts is None) != (credit is None):
            raise ValueError("--contracts (the new total) and --credit (of the added "
                             "contracts) go together")  # fmt: skip

        def edit(positions: list[ManualPosition]) -> ManualPosition:
            i, p = self._find(positions, position_id)
            trades, risk = p.trades, p.risk_per_contract_usd
            changes = (contracts, risk_usd, pnl_usd)
            if any(x is not None for x in changes) and not p.held:
                raise ValueError(f"{p.id} is closed: only its note can change")
            if contracts is not None and credit is not None:
                _check_count("contracts", contracts)
                if contracts <= p.held:
                    raise ValueError(f"--contracts is the new total: {contracts} is not above "
                                     f"the {p.held} held (reduce with close)")  # fmt: skip
                trades += (ManualTrade("add", to_ns(at), contracts - p.held, credit),)
            if pnl_usd is not None and not math.isfinite(pnl_usd):
                raise ValueError(f"--pnl: a number of dollars, got {pnl_usd!r}")
            if risk_usd is not None:
                _check_price("risk", risk_usd, positive=True)
                risk = risk_usd / (contracts or p.held)
            mark = {} if pnl_usd is None else {"pnl_usd": pnl_usd, "pnl_ts_ns": to_ns(at)}
            new = replace(p, trades=trades, note=p.note if note is None else note,
                          risk_per_contract_usd=risk, **mark)  # fmt: skip
            positions[i] = new
            return new

        return self._change(edit)

    def close(
        self, position_id: str, *, price: float, at: datetime, contracts: int | None = None
    ) -> ManualPosition:
        """Log a close of ``contracts`` (default: all held) at a net debit ``price`` per unit."""

        def edit(positions: list[ManualPosition]) -> ManualPosition:
            i, p = self._find(positions, position_id)
            if not p.held:
                raise ValueError(f"{p.id} is already closed")
            n = p.held if contracts is None else contracts
            new = replace(p, trades=(*p.trades, ManualTrade("close", to_ns(at), n, price)))
            positions[i] = new
            return new

        return self._change(edit)

    # --- the journal file ---

    def _find(self, positions: list[ManualPosition], pid: str) -> tuple[int, ManualPosition]:
        for i, p in enumerate(positions):
            if p.id == pid:
                return i, p
        have = ", ".join(p.id for p in positions) or "none"
        raise ValueError(f"no manual position {pid!r} in {self.path} (have: {have})")

    def _change(self, edit: Callable[[list[ManualPosition]], ManualPosition]) -> ManualPosition:
        """Load, edit and save under the exclusive lock: read-modify-write is one step."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+b") as lock:
            self._lock(lock)  # released when the file closes
            positions = self.positions()
            changed = edit(positions)
            self._save(positions)
        return changed

    def _lock(self, lock: Any) -> None:
        """Take the exclusive lock; while another process holds it, say so (once) and wait up
        to ``lock_timeout_s``, then raise a ValueError naming the lock and its holder."""
        deadline, told = time.monotonic() + self.lock_timeout_s, False
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(self.lock_path)
                if time.monotonic() >= deadline:
                    raise ValueError(
                        f"{self.path}: gave up after {self.lock_timeout_s:g} s waiting for the "
                        f"journal lock {self.lock_path} held by {holder}; try again when it "
                        "has finished") from None  # fmt: skip
                if not told:
                    told = True
                    log.warning("waiting up to %g s for the journal lock %s held by %s",
                                self.lock_timeout_s, self.lock_path, holder)  # fmt: skip
                time.sleep(0.05)
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n".encode())  # who holds it, for a command that waits
        lock.flush()

    def _save(self, positions: list[ManualPosition]) -> None:
        data = msgspec.json.encode(_Journal(JOURNAL_VERSION, positions))
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                   suffix=".tmp")  # fmt: skip
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(msgspec.json.format(data, indent=2) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def _next_id(positions: list[ManualPosition]) -> str:
    taken = [int(m.group(1)) for p in positions if (m := _AUTO_ID.fullmatch(p.id))]
    return f"m{max(taken, default=0) + 1}"


def _replay(records: list[tuple[Position, list[Fill]]]) -> Book:
    book = Book(MarketState())
    for position, fills in records:
        book.open(position)
        for fill in fills:
            book.apply_fill(fill, position.id)
    return book


def _row(p: ManualPosition, book: Book) -> Row:
    j = book.legs_of(p.desk_id)
    held_credit = -float(np.sum(book.leg_qty[j] * book.leg_avg[j])) * p.multiplier
    if not p.held:
        risk: float | None = 0.0
    elif p.risk_per_contract_usd is not None:
        risk = p.risk_per_contract_usd * p.held
    else:
        risk = max_loss_usd(book.legs(p.desk_id, p.opened_ts_ns))
    opening = [t for t in p.trades if t.kind != "close"]
    units = sum(t.contracts for t in opening)
    return Row(
        id=p.id, status=p.status, strategy=p.strategy, underlying=p.underlying, root=p.root,
        expiry=p.expiry, legs=p.legs_text, contracts=p.held,
        credit=sum(t.contracts * t.price for t in opening) / units,
        credit_usd=held_credit + 0.0,  # + 0.0: no "-0.0" once closed
        realized_usd=float(np.sum(book.leg_realized[j])),
        max_risk_usd=risk, opened=from_ns(p.opened_ts_ns), note=p.note,
        pnl_usd=p.pnl_usd if p.held else None,
        pnl_at=from_ns(p.pnl_ts_ns) if p.held and p.pnl_ts_ns is not None else None,
    )  # fmt: skip

"""A manual position as the journal stores it: its legs and its trades, checked on construction.

Each position is its legs and an append-only list of trades (open, add, close), prices per unit
in points as traders quote them ("sold the strangle for 4.20"). :meth:`ManualPosition.position`
and :meth:`ManualPosition.fills` turn one into the desk's :class:`~kit.core.model.Position` and
:class:`~kit.core.model.Fill` records with stable ids (``manual:m1:0:leg1``: position, trade
index, leg index), so re-applying them to a book is idempotent. The journal file that holds
them is :mod:`kit.positions.manual`; how strikes become legs and a net price becomes leg prices
is :mod:`kit.positions.legs`.
"""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Literal

import msgspec

from kit.core.clock import expiry_time, from_ns
from kit.core.model import (
    Fill,
    Leg,
    ModelError,
    Position,
    Side,
    StrategyType,
    _check_count,
    _check_price,
    _check_ts,
)
from kit.positions.legs import SINGLE_RIGHT, STRATEGIES, leg_prices, width_usd

DESK_PREFIX = "manual:"  # desk position ids: never clash with automatic positions

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


class ManualTrade(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One trade of a manual position. ``price`` is per unit in points: the net credit received
    for ``open`` and ``add``, the net debit paid for ``close``."""

    kind: Literal["open", "add", "close"]
    ts_ns: int
    contracts: int
    price: float

    def __post_init__(self) -> None:
        _check_ts(self.ts_ns)
        _check_count("contracts", self.contracts)
        opening = self.kind != "close"
        _check_price("credit" if opening else "price", self.price, positive=opening)


class ManualPosition(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A position traded elsewhere: its legs (per unit) and its trades, oldest first.

    ``risk_per_contract_usd`` is the trader's own max risk for undefined-risk structures
    (strangles, naked options); defined-risk ones have theirs from the strikes. Construction
    (and so every decode of the journal) checks the whole history: shape, order of trades,
    nothing closed that was not held, no entry after expiry, no credit at or above a spread's
    width.
    """

    id: str
    strategy: str
    legs: tuple[Leg, ...]
    trades: tuple[ManualTrade, ...]
    note: str = ""
    risk_per_contract_usd: float | None = None
    # the trader's own mark of the open P&L (dollars, whole position) and when it was stated,
    # for contracts no feed quotes (`kit positions update ID --pnl X`); a live mark wins
    pnl_usd: float | None = None
    pnl_ts_ns: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID.fullmatch(self.id):
            raise ModelError(f"id: 1-32 letters, digits, '_', '.' or '-', got {self.id!r}")
        if self.strategy not in STRATEGIES:
            raise ModelError(f"strategy: unknown {self.strategy!r} (expected one of "
                             f"{', '.join(STRATEGIES)})")  # fmt: skip
        Position(self.desk_id, self.kind, self.legs, 1, 0)  # the model checks the shape
        single = SINGLE_RIGHT.get(self.strategy)
        if single and (len(self.legs) != 1 or self.legs[0].contract.right is not single):
            raise ModelError(f"legs: a {self.strategy} is one {single.name.lower()}")
        if not any(leg.ratio < 0 for leg in self.legs):
            raise ModelError("legs: a manual position sells premium, it needs a short leg")
        self._check_trades()
        width = width_usd(self.legs)
        for t in self.trades:
            if t.kind != "close" and width is not None and t.price * self.multiplier >= width:
                points = width / self.multiplier
                raise ModelError(f"credit {t.price:g} must be below the width of this "
                                 f"{self.strategy} ({points:g} points)")  # fmt: skip
        if self.pnl_usd is not None and not math.isfinite(self.pnl_usd):
            raise ModelError(f"pnl: a finite number of dollars, got {self.pnl_usd!r}")
        risk = self.risk_per_contract_usd
        if risk is not None:
            _check_price("risk", risk, positive=True)
            if width is not None:
                raise ModelError(f"risk: the max risk of this {self.strategy} is defined by its "
                                 "strikes; --risk is for undefined-risk positions")  # fmt: skip

    def _check_trades(self) -> None:
        if not self.trades or self.trades[0].kind != "open":
            raise ModelError(f"{self.id}: the first trade must open the position")
        expires = expiry_time(self.legs[0].contract)
        held, last_ns = 0, self.trades[0].ts_ns
        for t in self.trades:
            if held == 0 and t is not self.trades[0]:
                raise ModelError(f"{self.id} is closed: no trades after its close")
            if t.kind == "open" and t is not self.trades[0]:
                raise ModelError(f"{self.id}: only the first trade opens the position")
            if t.ts_ns < last_ns:
                raise ModelError(f"{self.id}: a trade at {from_ns(t.ts_ns):%Y-%m-%d %H:%M} UTC is "
                                 f"before the previous one")  # fmt: skip
            if t.kind != "close" and from_ns(t.ts_ns) >= expires:
                raise ModelError(f"{self.id}: expiry {self.expiry} (settled "
                                 f"{expires:%Y-%m-%d %H:%M} UTC) is not after the trade at "
                                 f"{from_ns(t.ts_ns):%Y-%m-%d %H:%M} UTC")  # fmt: skip
            if t.kind == "close" and t.contracts > held:
                raise ModelError(f"cannot close {t.contracts} contracts of {self.id}: "
                                 f"{held} held")  # fmt: skip
            held += -t.contracts if t.kind == "close" else t.contracts
            last_ns = t.ts_ns

    # --- what the position is ---

    @property
    def desk_id(self) -> str:
        return DESK_PREFIX + self.id

    @property
    def kind(self) -> StrategyType:
        return STRATEGIES[self.strategy]

    @property
    def underlying(self) -> str:
        return self.legs[0].contract.underlying

    @property
    def root(self) -> str:
        return self.legs[0].contract.root

    @property
    def expiry(self) -> date:
        return self.legs[0].contract.expiry

    @property
    def multiplier(self) -> float:
        return self.legs[0].contract.multiplier

    @property
    def opened_ts_ns(self) -> int:
        return self.trades[0].ts_ns

    @property
    def held(self) -> int:
        """Contracts (strategy units) held now."""
        return sum(-t.contracts if t.kind == "close" else t.contracts for t in self.trades)

    @property
    def status(self) -> Literal["open", "closed"]:
        return "open" if self.held else "closed"

    @property
    def legs_text(self) -> str:
        """``-5000P -5200C``: sign (short -, long +), ratio when not 1, strike and right."""
        return " ".join(
            f"{'-' if leg.ratio < 0 else '+'}{abs(leg.ratio) if abs(leg.ratio) != 1 else ''}"
            f"{leg.contract.strike:g}{leg.contract.right.value}"
            for leg in self.legs
        )

    # --- what the desk needs ---

    def position(self) -> Position:
        """The book's record: units held now (before the last close, once closed). A reader
        holding an older record of the same id amends it when the units change
        (``Book.amend``)."""
        units = self.held or self.trades[-1].contracts
        return Position(self.desk_id, self.kind, self.legs, units, self.opened_ts_ns, self.note)

    def fills(self) -> list[Fill]:
        """Every trade as one fill per leg, ids ``manual:<id>:<trade>:leg<j>`` (stable: trades
        are only ever appended), prices split by :func:`leg_prices`."""
        out = []
        for i, t in enumerate(self.trades):
            opening = t.kind != "close"
            for j, (leg, price) in enumerate(zip(self.legs, leg_prices(self.legs, t.price),
                                                 strict=True)):  # fmt: skip
                sells = (leg.ratio < 0) == opening
                out.append(Fill(
                    fill_id=f"{self.desk_id}:{i}:leg{j}", client_id=f"{self.desk_id}:{i}",
                    contract=leg.contract, side=Side.SELL if sells else Side.BUY,
                    quantity=float(t.contracts * abs(leg.ratio)), price=price, ts_ns=t.ts_ns,
                ))  # fmt: skip
        return out

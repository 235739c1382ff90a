"""Intents: what a trader, a dashboard button or a rule wants done to one position.

An intent names the outcome (open this strangle, close half, roll the put, buy wings); the order
manager turns it into orders when it starts working, so a close sized "half" is sized against
what is held *then*, after lingering orders were cancelled, not when a button was clicked.

Rules propose :class:`~kit.core.model.Action` records; :func:`intent_for_action` maps each kind onto
an intent, choosing new strikes from the desk's own Greeks (:mod:`kit.portfolio.strategies`).
"""

from __future__ import annotations

import re
from enum import StrEnum

import msgspec

from kit.core.model import Action, ActionKind, Contract, Leg, ModelError, Position, Right
from kit.portfolio.book import Book
from kit.portfolio.market import MarketState
from kit.portfolio.strategies import protected, roll_target, rolled, wings

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
# a close of a position whose legs left are long options with no bid (see closing_legs)
NOTHING_TO_SELL = ("nothing to close in {}: the legs left are long options nobody bids for, "
                   "left to expire")  # fmt: skip
CLOSE_FRACTIONS = {
    ActionKind.CLOSE_ALL: 1.0,
    ActionKind.CLOSE_HALF: 0.5,
    ActionKind.REDUCE_25: 0.25,
}


class IntentKind(StrEnum):
    OPEN = "open"
    CLOSE = "close"
    ROLL = "roll"
    PROTECT = "protect"

    @property
    def adds_risk(self) -> bool:
        """Opening and rolling can add risk, so they pass the risk limits; closing and buying
        protection only reduce it and are never blocked (a limit must not trap a position)."""
        return self in (IntentKind.OPEN, IntentKind.ROLL)


class Intent(msgspec.Struct, frozen=True):
    """One wanted change to one position.

    ``id`` is the idempotency key: every client order id the manager sends for this intent is
    derived from it, so submitting it again (a double click, a restart) cannot trade twice.
    ``target`` is the position after the intent (OPEN: the new position; ROLL/PROTECT: with the
    new legs); ``legs`` what ROLL/PROTECT trade per unit (signed: + buy, - sell); ``fraction``
    the share of the held units a CLOSE closes.
    """

    id: str
    kind: IntentKind
    position_id: str
    strategy_id: str
    ts_ns: int
    reason: str
    source: str = "manual"
    target: Position | None = None
    legs: tuple[Leg, ...] = ()
    fraction: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise ModelError(f"id: use 1-80 letters, digits or _.:- (got {self.id!r})")
        try:
            msgspec.structs.force_setattr(self, "kind", IntentKind(self.kind))
        except ValueError:
            raise ModelError(f"kind: unknown intent kind {self.kind!r}") from None
        if not self.position_id or not self.strategy_id:
            raise ModelError("position_id and strategy_id must be non-empty")
        if self.kind is IntentKind.OPEN and (
            self.target is None or self.target.id != self.position_id
        ):
            raise ModelError("an open intent needs its target position, with the same id")
        if self.kind in (IntentKind.ROLL, IntentKind.PROTECT) and (
            not self.legs or self.target is None
        ):
            raise ModelError(f"a {self.kind} intent needs the legs to trade and the target")
        if self.target is not None and self.target.id != self.position_id:  # it amends the book
            raise ModelError(f"target: position {self.target.id!r} is not {self.position_id!r}")
        if self.kind is IntentKind.CLOSE and (self.legs or self.target is not None):
            raise ModelError("a close intent takes a fraction, not legs or a target")
        f = self.fraction
        if not isinstance(f, int | float) or isinstance(f, bool) or not 0 < f <= 1:
            raise ModelError(f"fraction: must be in (0, 1], got {f!r}")


class IntentRecord(msgspec.Struct):
    """An intent and how far it got: the journal entry that survives a restart."""

    intent: Intent
    # accepted | working | done | partial | failed | superseded | cancelled
    status: str = "accepted"
    quantity: int = 0  # units worked, resolved when work starts
    filled: int = 0  # units done
    steps: dict[str, int] = msgspec.field(default_factory=dict)  # ladder step per stage
    message: str = ""

    @property
    def active(self) -> bool:
        return self.status in ("accepted", "working")


def chain_of(market: MarketState, contract: Contract) -> list[Contract]:
    """The tracked contracts of ``contract``'s root and expiry: where a roll or wings choose."""
    return [c for c in market.contracts if c.root == contract.root and c.expiry == contract.expiry]


def open_intent(
    position: Position, strategy_id: str, reason: str, *, intent_id: str | None = None,
    source: str = "manual",
) -> Intent:  # fmt: skip
    return Intent(intent_id or f"{position.id}.open", IntentKind.OPEN, position.id, strategy_id,
                  position.opened_ts_ns, reason, source, target=position)  # fmt: skip


def close_intent(
    held: Position, strategy_id: str, fraction: float, reason: str, ts_ns: int, intent_id: str,
    source: str = "manual",
) -> Intent:  # fmt: skip
    return Intent(intent_id, IntentKind.CLOSE, held.id, strategy_id, ts_ns, reason, source,
                  fraction=fraction)  # fmt: skip


def closing_legs(market: MarketState, held: Position) -> tuple[Leg, ...]:
    """The legs (per unit, signed) that close ``held``: each leg reversed, except a long leg
    nobody bids for. Such an option (a 0DTE wing quoted 0.00 / 0.05) cannot be sold; it is
    left to expire, worth nothing now and whatever a late move gives it, instead of holding
    back the buy-back of the shorts it protected. Empty: nothing can be closed now."""
    out = []
    for leg in held.legs:
        row = market.index.get(leg.contract)
        if leg.ratio > 0 and row is not None and not market.tradable(row, buy=False):
            continue
        out.append(Leg(leg.contract, -leg.ratio))
    return tuple(out)


def roll_intent(
    market: MarketState, held: Position, strategy_id: str, side: Right | None, reason: str,
    ts_ns: int, intent_id: str, source: str = "manual",
) -> Intent:  # fmt: skip
    """Roll one short side (``None``: the untested one) to restore delta neutrality."""
    leg = next((leg for leg in held.legs if leg.ratio < 0), held.legs[0])
    old, new = roll_target(market, chain_of(market, leg.contract), held, side)
    return Intent(intent_id, IntentKind.ROLL, held.id, strategy_id, ts_ns, reason, source,
                  target=rolled(held, old, new),
                  legs=(Leg(old.contract, -old.ratio), new))  # fmt: skip


def protect_intent(
    market: MarketState, held: Position, strategy_id: str, reason: str, ts_ns: int,
    intent_id: str, source: str = "manual",
) -> Intent:  # fmt: skip
    """Buy wings beyond the short strikes: a strangle becomes an iron condor."""
    wing_legs = wings(market, chain_of(market, held.legs[0].contract), held)
    return Intent(intent_id, IntentKind.PROTECT, held.id, strategy_id, ts_ns, reason, source,
                  target=protected(held, wing_legs), legs=tuple(wing_legs))  # fmt: skip


def intent_for_action(
    action: Action, book: Book, market: MarketState, strategy_id: str, intent_id: str
) -> Intent:
    """The intent carrying out a rule's action (raises StrategyError when no strike fits)."""
    pid = action.position_id or ""
    held = book.held(pid) if pid in book.rows else None
    if held is None:
        raise ModelError(f"{action.kind}: position {pid!r} is not held")
    level = action.params.get("level")  # a partial close's level: the desk's once-memory
    source = f"auto:{action.rule}" if level is None else f"auto:{action.rule}:{level}"
    why = f"{action.rule}: {action.reason}"
    if action.kind in CLOSE_FRACTIONS:
        return close_intent(held, strategy_id, CLOSE_FRACTIONS[action.kind], why, action.ts_ns,
                            intent_id, source)  # fmt: skip
    if action.kind in (ActionKind.ROLL_PUT, ActionKind.ROLL_CALL):
        side = Right.PUT if action.kind is ActionKind.ROLL_PUT else Right.CALL
        return roll_intent(market, held, strategy_id, side, why, action.ts_ns, intent_id, source)
    if action.kind is ActionKind.ADD_PROTECTION:
        return protect_intent(market, held, strategy_id, why, action.ts_ns, intent_id, source)
    raise ModelError(f"{action.kind}: not an action on a position")

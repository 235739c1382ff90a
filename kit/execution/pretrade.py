"""Pre-trade checks: what refuses an intent before any broker sees an order.

Bad parameters, an unknown or flat position, a missing or expired quote and the risk limits
(:mod:`kit.risk.limits`, at the tighter of the settings and the limits the engine started with)
refuse an intent. An entry is refused while its strategy holds a position or has one pending
(duplicate-trade prevention). Each refusal is an :class:`OrderRejectedError` whose message is
the reason, for a person.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from kit.execution.broker import OrderRejectedError
from kit.execution.intents import NOTHING_TO_SELL, Intent, IntentKind, closing_legs
from kit.risk.limits import check_limits, stress_loss, tightest

if TYPE_CHECKING:
    from kit.engine.desk import Desk


def check_intent(
    intent: Intent, desk: Desk, strategies: Mapping[str, str], pending: Sequence[Intent]
) -> None:
    """Refuse ``intent`` unless it may reach a broker now. ``strategies`` maps each strategy to
    its position (held or pending); ``pending`` are the intents still being worked, in order."""
    book, market = desk.book, desk.market
    pid = intent.position_id
    if intent.kind is IntentKind.OPEN:
        assert intent.target is not None
        held_by = strategies.get(intent.strategy_id)
        if held_by is not None and (any(i.position_id == held_by for i in pending) or (
                held_by in book.rows and book.held(held_by) is not None)):  # fmt: skip
            raise OrderRejectedError(
                f"strategy {intent.strategy_id!r} already has position {held_by!r} open or "
                "pending: no second entry (duplicate-trade prevention)")  # fmt: skip
        if pid in book.rows:
            raise OrderRejectedError(f"position {pid!r} already exists")
        legs, quantity = intent.target.legs, intent.target.quantity
    else:
        held = book.held(pid) if pid in book.rows else None
        if held is None:
            raise OrderRejectedError(f"position {pid!r} is not held: nothing to {intent.kind}")
        legs, quantity = intent.legs or held.legs, held.quantity
        if intent.kind is IntentKind.CLOSE and not closing_legs(market, held):
            raise OrderRejectedError(NOTHING_TO_SELL.format(pid))
    now = desk.clock.now_ns()
    for leg in legs:
        i = market.index.get(leg.contract)
        # what adds risk needs both sides; a close may buy a short back from a worthless
        # option's no-bid quote (the ladder and the broker then check each leg's side)
        if i is None or not (market.tradable(i, buy=True)
                             and (market.bid[i] > 0 or not intent.kind.adds_risk)):  # fmt: skip
            raise OrderRejectedError(f"no two-sided quote for {leg.contract}")
        if market.expiry_ns[i] <= now:
            raise OrderRejectedError(f"{leg.contract} has expired")
    if not intent.kind.adds_risk:
        return
    view = desk.view
    underlying = legs[0].contract.underlying
    spot = market.spot_of(underlying)
    limits = tightest(desk.rules.limits, desk.limit_ceiling)
    if limits.enabled and not math.isfinite(spot):  # the stress would read 0
        raise OrderRejectedError(f"no {underlying} spot: the risk limits cannot be checked")
    added = stress_loss(market, book, legs, quantity, spot)
    if intent.kind is IntentKind.ROLL:
        held = book.held(pid)
        assert held is not None and intent.target is not None
        added = stress_loss(market, book, intent.target.legs, quantity, spot) - stress_loss(
            market, book, held.legs, quantity, spot)  # fmt: skip
    # entries still being worked count once each, at their full size and risk, whether or
    # not part of them filled (a filled part is also a row of the book: not counted twice)
    entries = [i.target for i in pending if i.kind is IntentKind.OPEN and i.target is not None]
    entering = {p.id for p in entries}
    n = len(view.is_open)  # view.ids is the book's list: positions added later follow it
    live = view.is_open & np.array([p not in entering for p in view.ids[:n]], dtype=bool)
    pending_risk = sum(
        stress_loss(market, book, p.legs, p.quantity, market.spot_of(p.underlying)) for p in entries
    )
    why = check_limits(
        limits, opening=intent.kind is IntentKind.OPEN, quantity=quantity,
        added_risk=added, open_positions=int(live.sum()) + len(entries),
        total_risk=float(view.risk[live].sum()) + pending_risk,
        day_pnl=float(view.day_pnl.sum()),
        killed=desk.killed, blocked_by=tuple(desk.blocked_by.values()),
    )  # fmt: skip
    if why:
        raise OrderRejectedError("; ".join(why))

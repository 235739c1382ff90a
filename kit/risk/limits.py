"""Pre-trade risk limits: every intent passes them inside the desk, whoever sent it.

Limits guard what can add risk (opening, rolling). Closing and buying protection are never
blocked: a limit that traps a position is itself a risk. The same stress measure as the book's
(worst expiry loss within the configured spot move, :func:`kit.core.payoff.stress_loss`) sizes
a new position's risk, so "total risk" means the same before and after the trade.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace

import numpy as np

from kit.core import payoff
from kit.core.model import Leg
from kit.portfolio.book import Book
from kit.portfolio.market import MarketState
from kit.risk.rules import LimitsRule


def stress_loss(
    market: MarketState, book: Book, legs: Sequence[Leg], quantity: int, spot: float
) -> float:
    """Worst expiry loss (dollars, ≥ 0) of ``quantity`` units of ``legs`` entered at mids."""
    if not legs or not np.isfinite(spot):
        return 0.0
    rows = market.rows([leg.contract for leg in legs])
    ratio = np.array([leg.ratio for leg in legs], dtype=float)
    mid = 0.5 * (market.bid[rows] + market.ask[rows])
    loss = payoff.stress_loss(np.full(len(legs), spot), market.strike[rows], market.is_call[rows],
                              ratio * quantity * market.multiplier[rows], mid,
                              book.config.stress_move_pct)  # fmt: skip
    return max(0.0, float(loss[0]))


_THRESHOLDS = tuple(f.name for f in fields(LimitsRule) if f.name != "enabled")


def tightest(current: LimitsRule, ceiling: LimitsRule) -> LimitsRule:
    """The limits an order must pass: each threshold the smaller of ``current`` (the settings in
    force) and ``ceiling`` (the rules file the engine started with), enabled if either is.

    Why: settings can arrive remotely; whatever they say, no order may exceed the file's limits
    (loosening needs a restart with a new file)."""
    on = [lim for lim in (current, ceiling) if lim.enabled]
    if not on:
        return current
    return replace(on[0], enabled=True,
                   **{k: min(getattr(lim, k) for lim in on) for k in _THRESHOLDS})  # fmt: skip


def loosened(new: LimitsRule, ceiling: LimitsRule) -> list[str]:
    """How ``new`` is looser than ``ceiling``, in words (empty: it is as tight or tighter)."""
    if not ceiling.enabled:
        return []
    if not new.enabled:
        return ["limits.enabled: the limits cannot be switched off"]
    return [f"limits.{k}: {getattr(new, k):g} is looser than the {getattr(ceiling, k):g} the "
            f"engine started with" for k in _THRESHOLDS
            if getattr(new, k) > getattr(ceiling, k)]  # fmt: skip


def check_limits(
    limits: LimitsRule,
    *,
    opening: bool,
    quantity: int,
    added_risk: float,
    open_positions: int,
    total_risk: float,
    day_pnl: float,
    killed: bool,
    blocked_by: Sequence[str] = (),
) -> list[str]:
    """Why a risk-adding intent is refused (empty: it may go). ``opening`` is a new position."""
    why: list[str] = []
    if killed:
        why.append("the kill switch is on")
    if opening:
        why.extend(f"entries blocked by {b}" for b in blocked_by)
    if not limits.enabled:
        return why
    if quantity > limits.max_position_size:
        why.append(f"size {quantity} > the position limit {limits.max_position_size:g}")
    if opening and open_positions + 1 > limits.max_open_positions:
        why.append(f"{open_positions} open or pending positions: the limit is "
                   f"{limits.max_open_positions:g}")  # fmt: skip
    if added_risk > 0 and total_risk + added_risk > limits.max_total_risk:
        why.append(f"total risk ${total_risk + added_risk:,.0f} would exceed "
                   f"${limits.max_total_risk:,.0f}")  # fmt: skip
    if opening and day_pnl <= -limits.daily_loss_limit:
        why.append(f"day P&L ${day_pnl:,.0f} is at the daily loss limit "
                   f"${limits.daily_loss_limit:,.0f}")  # fmt: skip
    return why

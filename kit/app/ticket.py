"""The order ticket's preview: what an entry would send, priced at the current quotes, before
anything is sent. A trader confirms a number, not a hope: the legs with their quotes, the
credit at mid and at the natural price (what crossing every spread gets), the buying power it
ties up (a Reg-T style estimate, :mod:`kit.risk.margin`), its stress loss (the risk limit's
measure), and each entry check's verdict.

Pure reads of the desk's market and book; nothing here trades.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from kit.core.model import Contract, Position
from kit.engine.desk import Desk
from kit.risk.checks import EntryCheck
from kit.risk.limits import stress_loss
from kit.risk.margin import reg_t_margin


def _num(x: float) -> float | None:
    return round(float(x), 4) if math.isfinite(x) else None


def label(c: Contract) -> str:
    """``SPXW 2024-03-12 4950P``: how a trader names a contract."""
    return f"{c.root} {c.expiry:%Y-%m-%d} {c.strike:g}{c.right.value}"


def describe(position: Position) -> str:
    """``sell 2 × SPXW 2024-03-12 4950P / 5050C (short strangle)``: the words a confirmation
    shows, from the legs themselves."""
    first = position.legs[0].contract
    strikes = " / ".join(f"{'+' if g.ratio > 0 else '−'}{g.contract.strike:g}"
                         f"{g.contract.right.name[0]}" for g in position.legs)  # fmt: skip
    kind = position.strategy.name.lower().replace("_", " ")
    return f"{position.quantity} × {first.root} {first.expiry:%Y-%m-%d} {strikes} ({kind})"


def preview(desk: Desk, position: Position, check: EntryCheck,
            refusals: Sequence[str] = ()) -> dict[str, Any]:  # fmt: skip
    """The ticket's preview document for ``position`` (its legs' rows already refreshed by the
    entry check); ``refusals``: what the order manager's pre-trade checks would say (the kill
    switch, duplicate-trade prevention, the risk limits). Money in dollars for the whole
    order; credits positive when received."""
    m = desk.market
    rows = m.rows([leg.contract for leg in position.legs])
    ratio = np.array([leg.ratio for leg in position.legs], dtype=float)
    bid, ask = m.bid[rows], m.ask[rows]
    mid = 0.5 * (bid + ask)
    per = m.multiplier[rows] * position.quantity
    natural = np.where(ratio < 0, bid, ask)  # sell at the bid, buy at the ask
    spot = m.spot_of(position.underlying)
    legs = [
        {"label": label(leg.contract), "root": leg.contract.root,
         "expiry": leg.contract.expiry.isoformat(), "strike": leg.contract.strike,
         "right": leg.contract.right.value, "ratio": leg.ratio, "bid": _num(b), "ask": _num(a),
         "mid": _num(x), "delta": _num(d)}
        for leg, b, a, x, d in zip(position.legs, bid, ask, mid, m.delta[rows], strict=True)
    ]  # fmt: skip
    margin = reg_t_margin(position.legs, [float(x) for x in mid], float(spot), position.quantity)
    return {
        "preview": True,
        "position": position.id,
        "strategy": position.strategy.name,
        "quantity": position.quantity,
        "summary": "sell " + describe(position),
        "spot": _num(spot),
        "legs": legs,
        "credit_mid": _num(float(-np.sum(ratio * mid * per))),
        "credit_natural": _num(float(-np.sum(ratio * natural * per))),
        "buying_power": _num(margin),
        "stress_loss": _num(stress_loss(m, desk.book, position.legs, position.quantity, spot)),
        "stress_move_pct": desk.book.config.stress_move_pct,
        "checks": {
            "ok": check.ok and not refusals,
            "failures": [*check.failures, *(f for f in refusals if f not in check.failures)],
        },
    }

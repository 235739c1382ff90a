"""Strategy construction: pick strikes by delta from the desk's own Greeks.

Premium sellers choose strikes by delta ("the 10-delta strangle"), not by price, so selection
reads the market state's Greeks, computed by the desk the same way live, in replay and in a
backtest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kit.market import MarketState
from kit.model import Contract, Leg, Position, StrategyType


def nearest_delta(market: MarketState, contracts: Sequence[Contract], target: float) -> Contract:
    """The contract whose delta is closest to ``target`` (signed: puts negative)."""
    if not contracts:
        raise ValueError("no contracts to choose from")
    rows = market.rows(contracts)
    gap = np.abs(market.delta[rows] - target)
    if not np.isfinite(gap).any():
        raise ValueError("no Greeks for these contracts yet: quotes and a spot are needed")
    return contracts[int(np.nanargmin(gap))]


def short_strangle(
    market: MarketState,
    chain: Sequence[Contract],
    position_id: str,
    opened_ts_ns: int,
    *,
    delta: float = 0.10,
    quantity: int = 1,
) -> Position:
    """Sell the put and the call nearest ``delta`` (absolute) from one expiry's ``chain``."""
    if len({c.expiry for c in chain}) != 1:
        raise ValueError("a strangle's chain must hold one expiry")
    put = nearest_delta(market, [c for c in chain if not c.is_call], -abs(delta))
    call = nearest_delta(market, [c for c in chain if c.is_call], abs(delta))
    return Position(position_id, StrategyType.STRANGLE, (Leg(put, -1), Leg(call, -1)), quantity,
                    opened_ts_ns, note=f"short {abs(delta):g}-delta strangle")  # fmt: skip

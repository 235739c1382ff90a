"""Executing the strangle's legs on any broker: the limit ladder, the market fallback, unwinds.

Used by :mod:`kit.app.delta_trader` with the Delta broker (live) or the paper broker (dry run).
Each leg is one order per step: placed at the ladder's first price, repriced with ``replace``
every ``fill_wait_s`` toward the natural price, then what is left is cancelled and sent as a
market order. Client ids are deterministic (day, coin, leg, step), so a restarted trader that
places them again adopts the orders already on the exchange instead of trading twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kit.app.delta_strategy import Candidate, entry_prices
from kit.core.clock import Clock
from kit.core.model import Leg, Order, OrderType, Side
from kit.execution.broker import Broker, OrderRejectedError, OrderState

log = logging.getLogger("kit.delta_trader")


@dataclass
class LegResult:
    symbol: str
    filled: int = 0
    avg: float = 0.0  # USD per coin
    orders: tuple[str, ...] = ()

    def add(self, qty: int, price: float) -> None:
        if qty > 0:
            self.avg = (self.avg * self.filled + price * qty) / (self.filled + qty)
            self.filled += qty


class LegExecutor:
    """Works one leg's orders to completion (``refresh`` feeds a paper venue its quotes)."""

    def __init__(self, broker: Broker, clock: Clock, *, fill_wait_s: float, steps: int,
                 refresh: Callable[[], Awaitable[None]] | None = None) -> None:  # fmt: skip
        self.broker, self.clock = broker, clock
        self.fill_wait_s, self.steps = fill_wait_s, steps
        self.refresh = refresh

    async def _wait(self, cid: str, seconds: float) -> OrderState | None:
        waited = 0.0
        step = min(0.5, max(seconds / 4, 0.05))
        while True:
            if self.refresh is not None:
                await self.refresh()
            state = self.broker.order(cid)
            if state is None or state.status.done or waited >= seconds:
                return state
            await self.clock.sleep(step)
            waited += step

    async def trade(self, cand: Candidate, qty: int, side: Side, prefix: str, *,
                    tick: float) -> LegResult:  # fmt: skip
        """Sell (or buy back) ``qty`` of ``cand``: ladder, then market. Returns what filled."""
        res = LegResult(cand.symbol)
        sell = side is Side.SELL
        prices = entry_prices(cand.bid, cand.ask, self.steps, sell=sell, tick=tick)
        cid = f"{prefix}l"
        leg = (Leg(cand.contract, 1),)
        state: OrderState | None = None
        if prices:
            order = Order(cid, leg, side, qty, OrderType.LIMIT, self.clock.now_ns(), prices[0])
            try:
                state = await self.broker.place(order)
            except OrderRejectedError as exc:
                log.error("%s: limit order refused: %s", cand.symbol, exc)
                return res
            res.orders += (cid,)
            log.info("%s %d %s limit %.4g", side.value, qty, cand.symbol, prices[0])
            for price in [*prices[1:], None]:
                state = await self._wait(cid, self.fill_wait_s)
                if state is None or state.status.done:
                    break
                if price is None:
                    state = await self.broker.cancel(cid)
                    state = await self._wait(cid, self.fill_wait_s)
                    break
                log.info("reprice %s to %.4g (toward the natural price)", cand.symbol, price)
                try:
                    await self.broker.replace(cid, limit_price=price)
                except OrderRejectedError as exc:  # filled meanwhile
                    log.info("reprice refused: %s", exc)
        filled = state.filled_qty if state is not None else 0
        if filled:
            res.add(filled, abs(state.avg_price))
        left = qty - filled
        if left > 0:
            mid = f"{prefix}m"
            log.warning("%s: %d left after the limit ladder: market order", cand.symbol, left)
            try:
                m = await self.broker.place(Order(mid, leg, side, left, OrderType.MARKET,
                                                  self.clock.now_ns()))  # fmt: skip
            except OrderRejectedError as exc:  # the caller sees the shortfall and unwinds
                log.error("%s: market order refused: %s", cand.symbol, exc)
                return res
            res.orders += (mid,)
            m = await self._wait(mid, self.fill_wait_s) or m
            if m.filled_qty:
                res.add(m.filled_qty, abs(m.avg_price))
        return res

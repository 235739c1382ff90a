"""Working one order on a broker: the limit ladder, the market fallback and protected legging.

The order manager decides *what* to trade for an intent; this module trades it:

* **A limit ladder.** The order starts at mid and, after each wait (growing by ``backoff``),
  steps ``step_fraction`` of the way to the natural price (the touch), reaching it on the last
  retry; then it is cancelled. Optionally a market order finishes what is left.
* **Protected legging.** Without combo support, legs go one by one, buys before sells (a long
  wing is never missing under a short), each sized to what the previous legs filled, and any
  excess left by a leg that could not be completed is unwound.
* **Confirmed cancels.** A cancel is awaited until the broker confirms it (a fill may win the
  race: that counts); an unconfirmed cancel fails the intent rather than send anything new.

Each order's client id is ``<intent id>/<stage>`` and each ladder step is journaled on the
intent's record before the replace is sent, so a restart resumes the ladder where it was.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kit.core.clock import Clock
from kit.core.model import Leg, Order, OrderType, Side
from kit.core.symbology import to_occ
from kit.execution.broker import Broker, BrokerError, OrderRejectedError, OrderState
from kit.execution.intents import IntentRecord
from kit.portfolio.market import MarketState

Decide = Callable[[str, str, str | None, dict[str, Any]], None]  # kind, message, pid, inputs


@dataclass(frozen=True)
class ManagerConfig:
    """How orders are worked. Prices are per unit of the order (net for combos)."""

    tick: float = 0.05  # limit prices are multiples of this ...
    ticks: Mapping[str, float] = field(default_factory=lambda: {"SPY": 0.01})  # ... by underlying
    step_fraction: float = 0.25  # each retry moves the limit this share of mid → natural
    retries: int = 4  # price steps after the first (at mid); the last one reaches natural
    wait_s: float = 5.0  # wait for a fill at the first price ...
    backoff: float = 1.5  # ... and this much longer at each later price
    cancel_timeout_s: float = 10.0  # a cancel not confirmed by then fails the intent
    market_fallback_close: bool = True  # closes finish with a market order if the ladder didn't
    market_fallback_open: bool = False  # entries never chase: an unfilled entry is let go
    market_wait_s: float = 10.0  # how long a market order may take
    state_key: str = "order_manager"

    def __post_init__(self) -> None:
        if not 0 < self.step_fraction <= 1 or self.retries < 0 or self.backoff < 1:
            raise ValueError("step_fraction must be in (0, 1], retries >= 0 and backoff >= 1")
        waits = (self.wait_s, self.cancel_timeout_s, self.market_wait_s, self.tick,
                 *self.ticks.values())  # fmt: skip
        if not all(w > 0 for w in waits):
            raise ValueError("ticks and waits must be positive")


# why a leg cannot trade (MarketState.tradable); the backtest names such refusals held_quote
NEEDS_QUOTE = "a leg bought needs an ask, a leg sold a bid"


def orient(legs: tuple[Leg, ...]) -> tuple[Side, tuple[Leg, ...]]:
    """The order side and legs for per-unit ``legs`` (signed): all-short legs become a SELL of
    the positive combo (a strangle is sold for a credit), anything else a BUY as given."""
    if all(leg.ratio < 0 for leg in legs):
        return Side.SELL, tuple(Leg(leg.contract, -leg.ratio) for leg in legs)
    return Side.BUY, legs


def ladder_price(
    market: MarketState, config: ManagerConfig, legs: tuple[Leg, ...], side: Side, step: int
) -> float:
    """The ladder's price at ``step``: mid, then ``step_fraction`` steps to the natural."""
    m, cfg = market, config
    rows = m.rows([leg.contract for leg in legs])
    ratio = np.array([leg.ratio for leg in legs], dtype=float)
    bid, ask = m.bid[rows], m.ask[rows]
    buying = (ratio > 0) == (side is Side.BUY)
    if not all(m.tradable(int(r), bool(b)) for r, b in zip(rows, buying, strict=True)):
        names = ", ".join(to_occ(leg.contract, padded=False) for leg in legs)
        raise OrderRejectedError(f"no quote to trade every leg of {names} against ({NEEDS_QUOTE})")
    mid = float(ratio @ (0.5 * (bid + ask)))
    natural = float(ratio @ np.where(buying, ask, bid))
    price = mid + min(1.0, step * cfg.step_fraction) * (natural - mid)
    tick = cfg.ticks.get(legs[0].contract.underlying, cfg.tick)
    units = price / tick
    if step * cfg.step_fraction >= 1:  # the last step is marketable: round toward natural
        units = math.ceil(units - 1e-9) if side is Side.BUY else math.floor(units + 1e-9)
    return round(round(units) * tick, 10)


class Ladder:
    """Works orders on one broker, pricing from ``market`` and waiting on ``clock``.

    ``save`` journals the records (a step is saved before its replace is sent); ``decide``
    audits what a person should know (legging that stopped short). :meth:`wake` is called by
    whoever hears the broker's events, so a wait ends as soon as its order changes.
    """

    def __init__(self, broker: Broker, clock: Clock, market: MarketState, config: ManagerConfig,
                 save: Callable[[], None], decide: Decide) -> None:  # fmt: skip
        self.broker, self.clock, self.market, self.config = broker, clock, market, config
        self._save, self._decide = save, decide
        self._wake: dict[str, asyncio.Event] = {}

    def wake(self, client_id: str) -> None:
        """The broker reported a change of ``client_id``: its waiter looks again."""
        event = self._wake.get(client_id)
        if event is not None:
            event.set()

    def price(self, legs: tuple[Leg, ...], side: Side, step: int) -> float:
        return ladder_price(self.market, self.config, legs, side, step)

    async def leg_in(
        self, rec: IntentRecord, legs: tuple[Leg, ...], quantity: int, fallback: bool
    ) -> int:
        """Legs one by one, buys first, each sized to what the earlier legs filled; excess
        from a leg that fell short is unwound (with a market fallback) so no leg is left
        unmatched."""
        order = sorted(range(len(legs)), key=lambda n: legs[n].ratio < 0)
        matched, got = quantity, {}
        for n in order:
            leg = legs[n]
            if matched == 0:
                break
            side = Side.BUY if leg.ratio > 0 else Side.SELL
            units = matched * abs(leg.ratio)
            done = await self.work(rec, f"L{n}", (Leg(leg.contract, 1),), side, units, fallback)
            got[n] = done
            matched = min(matched, done // abs(leg.ratio))
        for n, done in got.items():
            leg = legs[n]
            excess = done - matched * abs(leg.ratio)
            if excess > 0:
                side = Side.SELL if leg.ratio > 0 else Side.BUY
                await self.work(rec, f"U{n}", (Leg(leg.contract, 1),), side, excess, True)
        if matched < quantity:
            self._decide(
                "order",
                f"legging stopped at {matched} of {quantity} units; unmatched legs unwound",
                rec.intent.position_id,
                {"intent": rec.intent.id, "filled": {str(k): v for k, v in got.items()}},
            )
        return matched

    async def work(
        self, rec: IntentRecord, stage: str, legs: tuple[Leg, ...], side: Side, quantity: int,
        fallback: bool,
    ) -> int:  # fmt: skip
        """One order through the ladder (and the market fallback); returns units filled."""
        cfg, broker = self.config, self.broker
        cid = f"{rec.intent.id}/{stage}"
        step = rec.steps.get(stage, 0)
        state = broker.order(cid)
        if state is None:
            order = Order(cid, legs, side, quantity, OrderType.LIMIT, self.clock.now_ns(),
                          self.price(legs, side, step), rec.intent.position_id)  # fmt: skip
            state = await broker.place(order)
        while not state.status.done:
            state = await self.wait(cid, cfg.wait_s * cfg.backoff**step)
            if state.status.done or rec.status == "superseded":
                break
            step += 1
            if step > cfg.retries:
                break
            try:
                limit = self.price(legs, side, step)
                rec.steps[stage] = step
                self._save()
                state = await broker.replace(cid, limit_price=limit)
            except OrderRejectedError as exc:  # e.g. a quote went one-sided: the order must not
                rec.message = f"ladder stopped: {exc}"  # keep working, so cancel it below
                break
        if not state.status.done:
            state = await self.cancel(cid)
        filled = state.filled_qty
        if filled < quantity and fallback and rec.status != "superseded":
            mid = f"{cid}/mkt"
            m = broker.order(mid) or await broker.place(
                Order(mid, legs, side, quantity - filled, OrderType.MARKET,
                      self.clock.now_ns(), None, rec.intent.position_id))  # fmt: skip
            m = await self.wait(mid, cfg.market_wait_s)
            if not m.status.done:
                m = await self.cancel(mid)
            filled += m.filled_qty
            self._wake.pop(mid, None)
        self._wake.pop(cid, None)  # done with these orders: nothing waits on them any more
        return filled

    async def wait(self, cid: str, seconds: float) -> OrderState:
        """The order's state once it is done or ``seconds`` (on the desk's clock) have passed."""
        clock = self.clock
        deadline = clock.now_ns() + int(seconds * 1e9)
        while True:
            state = self.broker.order(cid)
            if state is None:
                raise BrokerError(f"{self.broker.name} does not know order {cid}")
            left = (deadline - clock.now_ns()) / 1e9
            if state.status.done or left <= 0:
                return state
            wake = self._wake.setdefault(cid, asyncio.Event())
            wake.clear()
            waiter = asyncio.ensure_future(wake.wait())
            sleeper = asyncio.ensure_future(clock.sleep(left))
            try:
                await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                sleeper.cancel()

    async def cancel(self, cid: str) -> OrderState:
        """Cancel and wait for the confirmation (a fill may win the race: that counts)."""
        state = await self.broker.cancel(cid)
        if not state.status.done:
            state = await self.wait(cid, self.config.cancel_timeout_s)
        if not state.status.done:
            raise BrokerError(
                f"cancel of {cid} not confirmed within "
                f"{self.config.cancel_timeout_s:g} s: sending nothing new"
            )
        return state

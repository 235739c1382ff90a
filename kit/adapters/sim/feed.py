"""The simulated market as a Feed: the embedded default, so everything runs offline.

It steps :class:`~kit.adapters.sim.market.MarketSim` on the injected clock (real time, paced N x, or
jumped timer to timer by a backtest) and emits, for each step, the changes of what is subscribed:
underlying ticks, quotes whose bid/ask/size changed, and trades. Scripts inject the scenarios the
risk rules are tested against: a fast drop, a vol spike, a feed pause.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np

from kit.adapters.base import FeedBase, SubKey
from kit.adapters.sim.market import MarketSim, Shock, SimConfig
from kit.core.clock import NS_PER_S, Clock
from kit.core.model import Contract, FeedState

log = logging.getLogger(__name__)

ScriptKind = Literal["drop", "rally", "vol_spike", "pause"]
INDEX_SYMBOLS = ("SPX", "SPY", "NDX", "VIX", "BTC", "ETH")


@dataclass(frozen=True)
class ScriptStep:
    """One scripted event, ``at_s`` seconds after the feed starts.

    ``size`` is a percentage for drop/rally, vol points for vol_spike and seconds for pause;
    ``over_s`` is how long a drop, rally or spike takes.
    """

    at_s: float
    kind: ScriptKind
    symbol: str = "SPX"
    size: float = 1.0
    over_s: float = 300.0


SCRIPTS: dict[str, tuple[ScriptStep, ...]] = {
    "rapid_drop": (ScriptStep(600, "drop", "SPX", 1.3, 300),),
    "vol_spike": (
        ScriptStep(600, "vol_spike", "SPX", 12, 600),
        ScriptStep(600, "drop", "SPX", 0.6, 600),
    ),
    "feed_pause": (ScriptStep(600, "pause", size=45),),
    "zero_dte_close": (),  # a quiet last hour: theta does the work
    "day": (  # from 09:45: a fast drop that recovers, a vol spike, an outage, the last hour
        ScriptStep(1800, "drop", "SPX", 1.3, 300),
        ScriptStep(2400, "rally", "SPX", 1.2, 3600),
        ScriptStep(8100, "vol_spike", "SPX", 12, 600),
        ScriptStep(8100, "drop", "SPX", 0.6, 600),
        ScriptStep(13500, "pause", size=45),
    ),
}  # fmt: skip


class SimFeed(FeedBase):
    """Feed over the simulated market. ``market`` is public for chain listing and analytics."""

    def __init__(
        self,
        clock: Clock,
        *,
        config: SimConfig | None = None,
        script: Sequence[ScriptStep] | str = (),
        name: str = "sim",
        start: datetime | None = None,
        conflate_s: float | None = None,
    ) -> None:
        """``start``: when the simulated path begins (default: now). An earlier start replays
        the same seeded path up to now without emitting it: a restarted desk resumes in the
        market it left, scripts still timed from ``start``.

        ``conflate_s`` (a backtest): the market still steps every ``step_s`` (the same path as
        live), but the feed delivers one batch per ``conflate_s``: each quote as it stands at
        the batch's last step (only those that changed since the previous batch) and the last
        underlying ticks; no prints (no rule reads trades: they only fill the tape). A desk then
        evaluates once per batch instead of once per second, which is what makes a backtest day
        take seconds instead of minutes."""
        if conflate_s is not None and not conflate_s > 0:
            raise ValueError(f"conflate_s must be positive, got {conflate_s!r}")
        super().__init__(name, clock)
        self.conflate_s = conflate_s
        self._block: tuple[tuple[Contract, ...], dict[int, tuple]] | None = None  # batches ahead
        self.market = MarketSim(start or clock.now(), config)
        self._contracts: list[Contract] = []
        self._symbols: list[str] = []
        self._last: np.ndarray | None = None  # last emitted bid, ask, sizes per contract
        self._last_ticks: dict[str, float] = {}
        self._pauses: list[tuple[int, int]] = []
        self._start_ns = self.market.now_ns
        steps = SCRIPTS[script] if isinstance(script, str) else tuple(script)
        for step in steps:
            self._schedule(step)
        self.market.advance_to(clock.now_ns())

    def _schedule(self, step: ScriptStep) -> None:
        start = self._start_ns + int(step.at_s * NS_PER_S)
        if step.kind == "pause":
            self._pauses.append((start, start + int(step.size * NS_PER_S)))
            return
        end = start + int(step.over_s * NS_PER_S)
        sign = -1.0 if step.kind == "drop" else 1.0
        if step.kind in ("drop", "rally"):
            self.market.shock(
                Shock(step.symbol, start, end, log_return=float(np.log1p(sign * step.size / 100)))
            )
        elif step.kind == "vol_spike":
            self.market.shock(Shock(step.symbol, start, end, vol_points=step.size))
        else:
            raise ValueError(f"unknown script step kind {step.kind!r}")

    # --- Feed protocol ---

    async def _on_start(self) -> None:
        self._set_state(FeedState.LIVE, "simulated market")
        self._emit_step(self.market.steps)

    async def subscribe(self, keys: Iterable[SubKey]) -> None:
        for key in keys:
            if isinstance(key, Contract):
                if not self.market.is_listed(key):
                    self.stats.rejected["unknown_contract"] = (
                        self.stats.rejected.get("unknown_contract", 0) + 1
                    )
                    log.warning(
                        "%s: not subscribing to %s: the simulator does not list it", self.name, key
                    )
                    continue
                if key not in self._contracts:
                    self._contracts.append(key)
                    self._last = None
            elif key in INDEX_SYMBOLS:
                if key not in self._symbols:
                    self._symbols.append(key)
            else:
                self.stats.rejected["unknown_symbol"] = (
                    self.stats.rejected.get("unknown_symbol", 0) + 1
                )
                log.warning(
                    "%s: unknown symbol %r (have %s)", self.name, key, ", ".join(INDEX_SYMBOLS)
                )

    async def unsubscribe(self, keys: Iterable[SubKey]) -> None:
        for key in keys:
            if key in self._contracts:
                self._contracts.remove(key)
                self._last = None
            elif key in self._symbols:
                self._symbols.remove(key)

    @property
    def subscriptions(self) -> list[SubKey]:
        return [*self._contracts, *self._symbols]

    # --- stepping ---

    async def _run(self) -> None:
        period = max(self.conflate_s or 0.0, self.market.config.step_s)
        while True:
            await self.clock.sleep(period)
            before = self.market.steps
            self.market.advance_to(self.clock.now_ns())
            if self.conflate_s is not None:
                if self.market.steps > before:
                    self._emit_step(self.market.steps, trades=False)
                continue
            for i in range(before + 1, self.market.steps + 1):
                self._emit_step(i)

    def _ahead(self, step: int) -> tuple | None:
        """This batch's quote arrays, priced with the next batches' in one vectorised call
        (:meth:`MarketSim.quote_block`); recomputed when the subscriptions change."""
        key = tuple(self._contracts)
        if self._block is None or self._block[0] != key or step not in self._block[1]:
            every = round(max(self.conflate_s or 0.0, self.market.config.step_s)
                          / self.market.config.step_s)  # fmt: skip
            steps, arrays = self.market.quote_block(self._contracts, step, every)
            rows = {int(st): tuple(a[i] for a in arrays) for i, st in enumerate(steps)}
            self._block = (key, rows)
        return self._block[1].pop(step)

    def paused(self, ts_ns: int) -> bool:
        return any(a <= ts_ns < b for a, b in self._pauses)

    def _emit_step(self, step: int, *, trades: bool = True) -> None:
        ts = self.market.step_time(step)
        paused = self.paused(ts)  # a pause loses data, like a real outage; the market goes on
        us_open = self.market.us_market_open(step)
        for sym in self._symbols:
            if sym in ("BTC", "ETH") or us_open:
                tick = self.market.ticks([sym], step)[0]
                if not paused and self._last_ticks.get(sym) != tick.price:
                    self._last_ticks[sym] = tick.price
                    self._sink.emit(tick)
        if self._contracts:
            arrays = self._ahead(step) if self.conflate_s is not None else None
            quotes, self._last = self.market.quote_updates(self._contracts, step, self._last,
                                                           arrays)  # fmt: skip
            if not paused:
                for q in quotes:
                    self._sink.emit(q)
                if trades:
                    for trade in self.market.trades(self._contracts, step):
                        self._sink.emit(trade)

"""The daily Delta strangle on the desk's own machinery (``kit delta run --engine desk``).

Instead of working its two legs itself (:mod:`kit.app.delta_legs`), the trader hands the
strangle to the desk's order manager as one intent: the same pre-trade checks, limit ladder,
protected legging (Delta has no combo orders), idempotent client ids and journal as the index
strangles, on a desk built by :func:`kit.app.build.build` with ``--feed delta`` and the paper
broker (dry run) or the Delta broker (live, through the gate). The desk's book holds the
position, so its risk rules and alerts watch it like any other. The trader keeps what is its
own: the selection, the exits and the reports.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from kit.app.delta_legs import LegResult
from kit.app.delta_strategy import Strangle
from kit.core.model import Contract, Leg, Position, Side, StrategyType
from kit.core.symbology import from_delta
from kit.execution.intents import close_intent, open_intent

STRATEGY = "delta-daily-strangle"


class DeskExecution:
    """Open and close one day's strangle through ``run``'s order manager."""

    def __init__(self, run: Any, position_id: str, *, timeout_s: float = 600.0) -> None:
        self.run, self.pid, self.timeout_s = run, position_id, timeout_s

    async def _finish(self, rec: Any) -> Any:
        waited = 0.0
        while rec.active and waited < self.timeout_s:
            await self.run.clock.sleep(0.25)
            waited += 0.25
        return rec

    async def _legs(self, chosen: Strangle, prefix: str, side: Side) -> dict[str, LegResult]:
        """Per-leg quantity and average price of the fills of the intent ``prefix``."""
        by: dict[Any, list] = defaultdict(list)
        for f in await self.run.broker.fills():
            if f.client_id.startswith(prefix) and f.side is side:
                by[f.contract].append(f)
        out = {}
        for name, cand in (("C", chosen.call), ("P", chosen.put)):
            res = LegResult(cand.symbol)
            for f in by.get(cand.contract, []):
                res.add(int(f.quantity), f.price)
            out[name] = res
        return out

    async def watch(self, chosen: Strangle) -> None:
        """The legs on the desk's feed, with a snapshot so the ladder has quotes at once."""
        legs = [chosen.call.contract, chosen.put.contract]
        await self.run.desk.subscribe(legs)
        await self.quote(legs)

    async def quote(self, legs: list[Contract]) -> None:
        """A REST snapshot of ``legs`` into the desk's market."""
        snap = await self.run.chains.snapshot(legs)
        self.run.desk.process(snap.events)

    async def enter(self, chosen: Strangle, quantity: int) -> dict[str, LegResult]:
        await self.watch(chosen)
        legs = (Leg(chosen.put.contract, -1), Leg(chosen.call.contract, -1))
        pos = Position(self.pid, StrategyType.STRANGLE, legs, quantity, self.run.clock.now_ns())
        rec = self.run.orders.submit(open_intent(pos, STRATEGY, "daily strangle entry",
                                                 intent_id=f"{self.pid}.open"))  # fmt: skip
        await self._finish(rec)
        return await self._legs(chosen, f"{self.pid}.open", Side.SELL)

    async def exit(self, chosen: Strangle, reason: str) -> dict[str, LegResult]:
        await self.watch(chosen)
        held = self.run.desk.book.held(self.pid)
        if held is None:
            return {}
        rec = self.run.orders.submit(close_intent(held, STRATEGY, 1.0, reason,
                                                  self.run.clock.now_ns(),
                                                  f"{self.pid}.close"))  # fmt: skip
        await self._finish(rec)
        return await self._legs(chosen, f"{self.pid}.close", Side.BUY)


TICKS = {"BTC": 0.5, "ETH": 0.1}  # option price increments per coin (as the products list them)


async def desk_trader(settings: Any, client: Any, *, live: bool, confirm: str | None,
                      state: Any, log_dir: Any, paper: Any = None) -> tuple[Any, Any]:  # fmt: skip
    """A started desk on ``--feed delta`` (paper broker, or the Delta broker through the live
    gate) and a :class:`~kit.app.delta_trader.DeltaTrader` that trades through its order
    manager. Returns ``(trader, run)``; the caller closes ``run``."""
    from kit.app.build import FeedSpec, RunSpec, build
    from kit.app.delta_trader import DeltaTrader
    from kit.execution.ladder import ManagerConfig

    manager = ManagerConfig(tick=0.1, ticks=TICKS, wait_s=max(settings.fill_wait_s, 0.05),
                            retries=settings.entry_retries, market_fallback_open=True)  # fmt: skip
    spec = RunSpec(mode="live" if live else "paper", feed=FeedSpec.parse("delta"),
                   broker="delta" if live else "paper", confirm_live=confirm, state=state,
                   env_sinks=False, manager=manager, paper=paper)  # fmt: skip
    run = await build(spec)
    try:
        trader = DeltaTrader(settings, client, run.broker, clock=run.clock, state=state,
                             log_dir=log_dir, live=live, feed=run.feed)  # fmt: skip
        trader.desk = DeskExecution(run, trader.key)
        saved = trader.trade.strangle
        if trader.trade.phase not in ("idle", "done") and saved:
            # a restart mid-trade: the order manager resumes the unfinished intent as it
            # starts, so the saved legs must be quoted in the desk's market before it does
            legs = [from_delta(saved["call"]), from_delta(saved["put"])]
            await trader.desk.quote(legs)
        await run.start()
    except BaseException:
        await run.close()
        raise
    return trader, run

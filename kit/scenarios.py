"""Scripted simulator sessions: a desk, a demo position and a scenario run to its end.

``kit run --feed sim --script NAME`` calls :func:`run`. Each scenario is built so that its rule
really fires on the default seed: a fast drop (``rapid_move``), a vol spike (``gamma``/``delta``),
a feed pause (``feed_stale``) and a quiet 0DTE last hour (``time_stop``); ``day`` chains them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from kit.alerts import AlertManager, AlertRecord, AlertSink
from kit.clock import NEW_YORK, SimClock, us_session
from kit.desk import Desk, Snapshot
from kit.feeds.sim import SCRIPTS, SimFeed
from kit.feeds.sim_market import SimConfig
from kit.model import Fill, Position, Side
from kit.rules import Rules
from kit.strategies import short_strangle

DEFAULT_DAY = date(2024, 3, 12)  # a plain Tuesday: reproducible runs


@dataclass(frozen=True)
class Scenario:
    description: str
    start: time  # New York time of day the run starts
    duration_s: float
    expects: tuple[str, ...]  # rules built to fire, in order
    demo_dte: int = 0


SCENARIOS: dict[str, Scenario] = {
    "rapid_drop": Scenario("SPX falls 1.3% in 5 minutes at 10:10", time(10), 1500, ("rapid_move",)),
    "vol_spike": Scenario("SPX vol +12 points and -0.6% over 10 minutes at 10:10", time(10), 1500,
                          ("gamma", "delta")),
    "feed_pause": Scenario("the feed goes silent for 45 s at 10:10", time(10), 900,
                           ("feed_stale",)),
    "zero_dte_close": Scenario("a quiet 0DTE last hour to the close", time(15), 3600,
                               ("time_stop",)),
    "day": Scenario("09:45 to the close: drop and recovery, vol spike, outage, last hour",
                    time(9, 45), 22500, ("rapid_move", "delta", "feed_stale", "time_stop")),
}  # fmt: skip


@dataclass(frozen=True)
class RunResult:
    alerts: list[AlertRecord]
    snapshot: Snapshot
    desk_stats: dict[str, int]


def _demo_position(desk: Desk, feed: SimFeed, dte: int) -> tuple[Position, list[Fill]]:
    """A short 10-delta SPXW strangle ``dte`` sessions out, filled at the mids."""
    m, now = feed.market, desk.clock.now_ns()
    expiries = sorted({c.expiry for c in m.chain("SPXW")})
    chain = [c for c in m.chain("SPXW") if c.expiry == expiries[min(dte, len(expiries) - 1)]]
    desk.process([*m.ticks(["SPX", "SPY", "VIX"]), *m.quotes(chain)])  # the opening snapshot
    desk.market.refresh(desk.market.track_all(chain), now)
    position = short_strangle(desk.market, chain, "demo-strangle", now)
    legs = [leg.contract for leg in position.legs]
    desk.market.set_open_interest(legs, m.open_interest(legs))
    fills = [
        Fill(f"demo-{i}", "demo", leg.contract, Side.SELL, float(position.quantity),
             round(float(desk.market.mark[desk.market.index[leg.contract]]), 2), now)
        for i, leg in enumerate(position.legs)
    ]  # fmt: skip
    return position, fills


async def run(
    name: str,
    *,
    sinks: Sequence[AlertSink] = (),
    speed: float | None = None,
    seed: int = 0,
    day: date = DEFAULT_DAY,
    demo: bool = True,
    rules: Rules | None = None,
    auto_manage: bool = False,
) -> RunResult:
    """Run scenario ``name`` on ``day`` (stepped as fast as possible unless ``speed`` is given)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r} (have {', '.join(SCENARIOS)})")
    scenario = SCENARIOS[name]
    session = us_session(day)
    if session is None:
        raise ValueError(f"{day} is not a US trading session")
    start = datetime.combine(day, scenario.start, NEW_YORK)
    end = min(start + timedelta(seconds=scenario.duration_s), session.close)
    clock = SimClock(start, speed=speed)
    feed = SimFeed(clock, config=SimConfig(seed=seed), script=SCRIPTS[name])
    desk = Desk(clock, [feed], rules=rules, alerts=AlertManager(clock, sinks),
                auto_manage=auto_manage)  # fmt: skip
    for symbol in ("SPX", "SPY"):
        desk.iv_history[symbol] = feed.market.iv_history("SPX")
    await desk.start()
    try:
        await desk.subscribe(["SPX", "SPY", "VIX"])
        if demo:
            position, fills = _demo_position(desk, feed, scenario.demo_dte)
            desk.check_entry(position)
            desk.open_position(position, fills)
            await desk.subscribe(leg.contract for leg in position.legs)
        if speed is None:
            await clock.run_until(end)
        else:
            while clock.now() < end:
                await asyncio.sleep(min(0.2, (end - clock.now()).total_seconds() / speed))
    finally:
        await desk.close()
    return RunResult(desk.alerts.history, desk.snapshot(), dict(desk.stats))

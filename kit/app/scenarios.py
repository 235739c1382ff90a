"""Scripted simulator sessions: a desk, a demo position and a scenario run to its end.

``kit run --feed sim --script NAME`` calls :func:`run`. Each scenario is built so that its rule
really fires on the default seed: a fast drop (``rapid_move``, ``delta``), a vol spike (``gamma``:
it pulls the strikes in, in sigma terms; its 0.6% drop is too small a share of the bigger sigma
for the direction rule), a feed pause (``feed_stale``) and a quiet 0DTE last hour
(``time_stop``); ``day`` chains them all
(its 4-day 5-delta strangle is not pushed towards a strike by the spike's 0.6% drop, which is a
quarter of a 4-day sigma, so the delta rule stays quiet; the spike's vega loss trips the stop).
``quiet`` is the control: a calm market (:func:`quiet_market`) in which nothing should need
adjusting, the test that the delta and gamma rules do not fire on noise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, time, timedelta
from typing import Any

import numpy as np

from kit.adapters.sim.feed import SCRIPTS, ScriptStep
from kit.adapters.sim.market import DEFAULT_UNDERLYINGS, SimConfig
from kit.app.build import DEFAULT_DAY, Run, RunSpec, build
from kit.core.clock import us_session
from kit.core.model import Fill, Side
from kit.engine.alerts import AlertRecord, AlertSink, DeskRecord
from kit.engine.desk import Snapshot
from kit.portfolio.strategies import short_strangle
from kit.risk.rules import Rules


@dataclass(frozen=True)
class Demo:
    """A demo short strangle opened ``at_s`` into the run, ``dte`` sessions out."""

    id: str = "demo-strangle"
    dte: int = 0
    at_s: float = 0.0
    delta: float = 0.10


@dataclass(frozen=True)
class Scenario:
    description: str
    start: time  # New York time of day the run starts
    duration_s: float
    expects: tuple[tuple[str, float, float], ...]  # (rule, from_s, to_s) built to fire, in order
    demos: tuple[Demo, ...] = (Demo(),)
    market: Callable[[], SimConfig] | None = None  # the simulator's settings; None: defaults


def quiet_market() -> SimConfig:
    """A calm day: the simulator's calm regime (SPX starts at 0.6x its usual vol), no jumps and
    a third of the usual vol of vol, so nothing but diffusion moves SPX, and options priced at
    2.5x the variance it realises (implied vol ~1.6x realised, the usual premium being 1.2x):
    the day a premium seller hopes for, on which the market moves less than it priced.

    A function, so that a change to the simulator's settings shows up when the quiet script runs,
    not when this module is imported."""
    spx = next(u for u in DEFAULT_UNDERLYINGS if u.symbol == "SPX")
    calm = replace(spx, jumps_per_year=0.0, vol_of_var=spx.vol_of_var / 3)
    underlyings = tuple(calm if u is spx else u for u in DEFAULT_UNDERLYINGS)
    return SimConfig(underlyings=underlyings, vol_regime="calm", variance_premium=2.5)


SCENARIOS: dict[str, Scenario] = {
    "rapid_drop": Scenario("SPX falls 1.3% in 5 minutes at 10:10", time(10), 1500,
                           (("rapid_move", 600, 900), ("delta", 600, 1200))),
    "vol_spike": Scenario("SPX vol +12 points and -0.6% over 10 minutes at 10:10", time(10), 1500,
                          (("gamma", 0, 1500),)),
    "feed_pause": Scenario("the feed goes silent for 45 s at 10:10", time(10), 900,
                           (("feed_stale", 625, 645),)),
    "zero_dte_close": Scenario("a quiet 0DTE last hour to the close", time(15), 3600,
                               (("time_stop", 1800, 3600),)),
    "day": Scenario(
        "09:45 to the close: a 4-day 5-delta strangle through a drop and recovery, a vol "
        "spike and an outage; a 0DTE strangle sold at 14:30 for the last hour",
        time(9, 45), 22500,
        (("rapid_move", 1800, 2100), ("stop_loss", 8100, 13500), ("feed_stale", 13525, 13545),
         ("time_stop", 20700, 22500)),
        (Demo("demo-4dte", dte=4, delta=0.05), Demo("demo-0dte", dte=0, at_s=17100)),
    ),
    "quiet": Scenario("14:00 to the close of a calm day (low vol, no jumps, no shocks): a 0DTE "
                      "strangle that needs no adjustment", time(14), 7200, (),
                      market=quiet_market),
}  # fmt: skip


def sim_setup(script: Sequence[ScriptStep] | str) -> tuple[tuple[ScriptStep, ...], Any]:
    """The simulator events and settings (None: defaults) of a scenario name or of steps."""
    if not isinstance(script, str):
        return tuple(script), None
    scenario = SCENARIOS.get(script)
    if scenario is None:
        raise ValueError(f"unknown scenario {script!r} (have {', '.join(SCENARIOS)})")
    return SCRIPTS.get(script, ()), scenario.market() if scenario.market else None


@dataclass(frozen=True)
class RunResult:
    alerts: list[AlertRecord]
    snapshot: Snapshot
    desk_stats: dict[str, int]


async def _open_demo(run: Run, demo: Demo) -> None:
    """Sell the demo strangle at the mids of a chain snapshot, after the entry check."""
    desk, now = run.desk, run.desk.clock.now_ns()
    expiries = await run.chains.expirations("SPXW")
    chain = await run.chains.contracts("SPXW", expiries[min(demo.dte, len(expiries) - 1)])
    snap = await run.chains.snapshot(chain)
    desk.process(snap.events)  # the chain snapshot
    desk.market.refresh(desk.market.track_all(chain), now)
    position = short_strangle(desk.market, chain, demo.id, now, delta=demo.delta)
    legs = [leg.contract for leg in position.legs]
    desk.market.set_open_interest(legs, [snap.open_interest.get(c, np.nan) for c in legs])
    desk.check_entry(position)
    fills = [
        Fill(f"{demo.id}-{i}", demo.id, leg.contract, Side.SELL, float(position.quantity),
             round(float(desk.market.mark[desk.market.index[leg.contract]]), 2), now)
        for i, leg in enumerate(position.legs)
    ]  # fmt: skip
    desk.open_position(position, fills)
    await desk.subscribe(legs)


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
    listener: Callable[[DeskRecord], None] | None = None,
    db: str | None = None,
) -> RunResult:
    """Run scenario ``name`` on ``day`` (stepped as fast as possible unless ``speed`` is given)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r} (have {', '.join(SCENARIOS)})")
    scenario = SCENARIOS[name]
    steps, market = sim_setup(name)
    spec = RunSpec(mode="alert_only", day=day, start=scenario.start, seed=seed, speed=speed,
                   script=steps, sim=market, rules=rules, auto_manage=auto_manage,
                   sinks=tuple(sinks), listener=listener, db=db, resume_key="scenario",
                   path_from_open=False)  # fmt: skip
    built = await build(spec)
    clock = built.clock
    session = us_session(day)
    assert session is not None  # the builder refused a day without one
    start = clock.now()
    end = min(start + timedelta(seconds=scenario.duration_s), session.close)
    await built.start()
    try:
        stops = [(start + timedelta(seconds=d.at_s), d) for d in scenario.demos if demo]
        for when, d in [*sorted(stops, key=lambda s: s[0]), (end, None)]:
            if speed is None:
                await clock.run_until(when)
            else:
                while clock.now() < when:
                    await asyncio.sleep(min(0.2, (when - clock.now()).total_seconds() / speed))
            if d is not None:
                await _open_demo(built, d)
    finally:
        await built.close()
    desk = built.desk
    return RunResult(desk.alerts.history, desk.snapshot(), dict(desk.stats))

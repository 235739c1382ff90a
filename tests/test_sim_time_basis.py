"""The simulator's one time basis: options price the moves its path makes.

A thousand independent sessions run at once through the market itself (one seeded
:class:`MarketSim` with a thousand copies of SPX's dynamics: the same clock, random blocks and
vectorised stepping as the desk's market, at 60-second steps). An at-the-money straddle is worth
about sqrt(2/pi) x sigma x sqrt(T) x S, which is also the mean absolute move of a normal path, so
mean |move| / straddle ~ 1 / sqrt(variance premium) (minus a little for fat tails: jumps and
stochastic variance make the mean absolute move smaller than sqrt(2/pi) x its RMS).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time

import numpy as np
import pytest

from kit.adapters.sim.chains import ChainSpec
from kit.adapters.sim.market import DEFAULT_UNDERLYINGS, MarketSim, SimConfig
from kit.adapters.sim.varclock import VarianceClock
from kit.core.clock import NEW_YORK, to_ns

N = 1000
SPX = DEFAULT_UNDERLYINGS[0]


def sessions(
    start: datetime, end: datetime, premium: float, seed: int = 11
) -> tuple[float, np.ndarray]:
    """The ATM straddle (fraction of spot) of the first daily expiry at ``start`` and the
    absolute move of N independent paths from ``start`` to ``end``."""
    cfg = SimConfig(
        seed=seed,
        step_s=60.0,
        variance_premium=premium,
        underlyings=(SPX, *(replace(SPX, symbol=f"PATH{i}") for i in range(N))),
        chains=(ChainSpec("SPXW", "SPX", "daily", 1, 5.0),),
    )
    m = MarketSim(start, cfg)
    legs = [c for c in m.chain("SPXW") if c.strike == SPX.spot]
    assert len(legs) == 2
    straddle = float(m.quote_arrays(legs)[4].sum()) / SPX.spot
    m.advance_to(to_ns(end))
    spots = np.array([m.spot(f"PATH{i}") for i in range(N)])
    return straddle, np.abs(spots / SPX.spot - 1)


def at(day: date, h: int, mi: int = 0) -> datetime:
    return datetime.combine(day, time(h, mi), tzinfo=NEW_YORK)


@pytest.mark.parametrize("premium", [1.0, 1.2])
def test_zero_dte_straddle_at_the_open_prices_the_open_to_close_move(premium):
    day = date(2024, 3, 12)
    straddle, move = sessions(at(day, 9, 30), at(day, 16), premium)
    ratio = move.mean() / straddle
    # 1000 sessions: the mean absolute move has a standard error of about 2.5%
    expected = 1 / np.sqrt(premium)
    assert 0.92 * expected < ratio < 1.05 * expected, (premium, straddle, move.mean())
    # the move is really the 0DTE's: about 0.7% of spot for a 15% vol day
    assert 0.005 < move.mean() < 0.009


def test_implied_is_above_realised_by_the_premium_on_the_same_paths():
    day = date(2024, 3, 12)
    fair, move_a = sessions(at(day, 10), at(day, 16), 1.0)
    rich, move_b = sessions(at(day, 10), at(day, 16), 1.44)
    np.testing.assert_array_equal(move_a, move_b)  # the premium prices; it does not move spot
    assert rich / fair == pytest.approx(1.2, rel=0.01)  # sqrt(1.44): vol, not variance
    assert move_a.mean() < rich  # the seller's edge: implied above realised on average


def test_a_weekend_position_prices_the_gap_it_carries():
    """Friday after the close to Monday's close: the Monday 0DTE's straddle includes the
    weekend's share of variance (overnight + 2 closed days) and the path realises it at the
    open; calendar time would have priced 3.3 days of variance."""
    straddle, move = sessions(at(date(2024, 3, 15), 16, 5), at(date(2024, 3, 18), 16), 1.0)
    assert 0.92 < move.mean() / straddle < 1.05
    clock = VarianceClock()
    weekend = (clock.overnight_share + 2 * clock.weekend_share) / 252
    session = (1 - clock.overnight_share) / 252
    sigma = np.sqrt(np.mean(straddle**2) / (2 / np.pi) / (weekend + session))
    assert 0.14 < sigma < 0.18  # ~ the spot vol (15%) plus jumps: not 3.3x a day's variance


def test_the_clock_spreads_a_day_over_the_session_and_the_night():
    clock = VarianceClock()
    day = date(2024, 3, 12)
    o, c = to_ns(at(day, 9, 30)), to_ns(at(day, 16))
    session = float(clock.tau(c) - clock.tau(o))
    assert session == pytest.approx(0.8 / 252)
    night = float(clock.tau(o) - clock.tau(to_ns(at(date(2024, 3, 11), 16))))
    assert night == pytest.approx(0.2 / 252)
    weekend = float(
        clock.tau(to_ns(at(date(2024, 3, 18), 9, 30))) - clock.tau(c + 3 * 86400 * 10**9)
    )
    assert weekend == pytest.approx(0.4 / 252)  # Friday 16:00 -> Monday open: 0.2 + 2 x 0.1
    closed = clock.tau(np.array([c, c + 3600 * 10**9]))
    assert closed[0] == closed[1]  # no variance while closed
    half_day = date(2024, 11, 29)  # the day after Thanksgiving closes at 13:00
    short = float(clock.tau(to_ns(at(half_day, 13))) - clock.tau(to_ns(at(half_day, 9, 30))))
    assert short == pytest.approx(0.8 / 252 * 210 / 390)
    with pytest.raises(ValueError, match="overnight_share"):
        VarianceClock(overnight_share=1.5)

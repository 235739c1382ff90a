"""The Reg-T style margin estimate against figures worked by hand from Cboe's rules."""

from __future__ import annotations

import math
from datetime import date

import pytest

from kit.core.model import Contract, Leg, Right
from kit.risk.margin import naked_requirement, reg_t_margin

EXP = date(2024, 3, 15)


def leg(strike: float, right: Right, ratio: int) -> Leg:
    return Leg(Contract("SPXW", EXP, strike, right), ratio)


def test_a_naked_put_is_premium_plus_15pct_less_otm_at_least_10pct_of_strike() -> None:
    # 5 + (0.15 * 5000 - 100) = 655 points; the floor 5 + 490 does not bind
    assert naked_requirement(False, 4900, 5000, 5.0) == pytest.approx(655.0)
    # far out of the money the floor binds: 0.5 + 0.10 * 4000
    assert naked_requirement(False, 4000, 5000, 0.5) == pytest.approx(400.5)
    assert reg_t_margin([leg(4000, Right.PUT, -1)], [0.5], 5000) == pytest.approx(40_050)


def test_a_strangle_takes_the_greater_side_plus_the_other_premium() -> None:
    legs = [leg(4900, Right.PUT, -1), leg(5100, Right.CALL, -1)]
    # put side 655, call side 4 + 650 = 654: 655 + the call's 4.00 premium, x100, x2 units
    assert reg_t_margin(legs, [5.0, 4.0], 5000, quantity=2) == pytest.approx(2 * 65_900)


def test_spreads_need_their_width_and_a_condor_only_its_wider_side() -> None:
    spread = [leg(4850, Right.PUT, 1), leg(4900, Right.PUT, -1)]
    assert reg_t_margin(spread, [3.0, 5.0], 5000) == pytest.approx(5_000)
    condor = [*spread, leg(5100, Right.CALL, -1), leg(5175, Right.CALL, 1)]
    assert reg_t_margin(condor, [3.0, 5.0, 4.0, 1.0], 5000, 3) == pytest.approx(3 * 7_500)


def test_a_long_on_the_wrong_side_does_not_cover_the_short() -> None:
    # a long put *above* the short put is no cover: the short is naked
    legs = [leg(4950, Right.PUT, 1), leg(4900, Right.PUT, -1)]
    assert reg_t_margin(legs, [8.0, 5.0], 5000) == pytest.approx(65_500)


def test_unknown_prices_or_spot_are_nan_not_zero() -> None:
    legs = [leg(4900, Right.PUT, -1)]
    assert math.isnan(reg_t_margin(legs, [math.nan], 5000))
    assert math.isnan(reg_t_margin(legs, [5.0], math.nan))
    assert reg_t_margin([], [], 5000) == 0.0

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit.core.payoff import (
    Legs,
    breakevens,
    expected_move,
    expected_move_levels,
    max_profit_loss,
    pnl_at_expiry,
    pnl_t0,
    profile,
    short_strike_distance,
    spot_grid,
    stress_loss,
)
from kit.core.pricing import price

SPOT, R, Q, DAYS = 5000.0, 0.04, 0.01, 30.0


def make_legs(strike, is_call, qty, entry, *, days=DAYS, iv=0.2, multiplier=100.0) -> Legs:
    n = len(strike)
    return Legs(
        strike=strike,
        is_call=is_call,
        qty=qty,
        multiplier=[multiplier] * n,
        entry_price=entry,
        T_years=[days / 365.0] * n if np.isscalar(days) else np.asarray(days) / 365.0,
        iv=[iv] * n,
    )


@pytest.fixture
def strangle() -> Legs:
    """Sell the 4900 put at 10.00 and the 5100 call at 12.00: 22.00 credit."""
    return make_legs([4900.0, 5100.0], [False, True], [-1, -1], [10.0, 12.0])


@pytest.fixture
def condor() -> Legs:
    """4800/4900 put spread for 6.00 and 5100/5200 call spread for 7.00: 13.00 credit, 100 wide."""
    return make_legs(
        [4800.0, 4900.0, 5100.0, 5200.0],
        [False, False, True, True],
        [1, -1, -1, 1],
        [4.0, 10.0, 12.0, 5.0],
    )


@pytest.fixture
def grid() -> np.ndarray:
    return spot_grid(SPOT, 0.2, DAYS)


# --- grid and expected move ---


def test_expected_move_one_year():
    assert expected_move(5000.0, 0.2, 365.0) == pytest.approx(1000.0, rel=1e-15)
    assert expected_move_levels(5000.0, 0.2, 365.0) == pytest.approx((3000, 4000, 6000, 7000))


@pytest.mark.parametrize(("spot", "iv", "days"), [(0.0, 0.2, 1), (100.0, -0.1, 1), (100, 0.2, -1)])
def test_expected_move_rejects_bad_inputs(spot, iv, days):
    with pytest.raises(ValueError, match="expected_move"):
        expected_move(spot, iv, days)


def test_grid_is_201_even_points_centred_on_spot(grid):
    m = expected_move(SPOT, 0.2, DAYS)
    assert grid.shape == (201,)
    assert grid[100] == SPOT
    assert (grid > 0).all()
    np.testing.assert_allclose(np.diff(grid), 2 * 3 * m / 200, rtol=1e-9)
    assert grid[0] == pytest.approx(SPOT - 3 * m)
    assert grid[-1] == pytest.approx(SPOT + 3 * m)


def test_grid_is_floored_above_zero_when_moves_are_huge():
    g = spot_grid(100.0, 2.0, 365.0, points=51)  # 3 sigma = 600 points below a spot of 100
    assert len(g) == 51
    assert g[0] == pytest.approx(0.1)
    assert g[-1] == pytest.approx(700.0)
    assert (g > 0).all()
    np.testing.assert_allclose(np.diff(g), (700.0 - 0.1) / 50)


def test_grid_keeps_a_width_on_expiry_day():
    g = spot_grid(SPOT, 0.2, 0.0)
    assert g[0] == pytest.approx(0.99 * SPOT)
    assert g[-1] == pytest.approx(1.01 * SPOT)


def test_grid_from_explicit_bounds():
    np.testing.assert_allclose(
        spot_grid(SPOT, 0.2, DAYS, 5, bounds=(4000, 6000)), [4000, 4500, 5000, 5500, 6000]
    )
    assert spot_grid(SPOT, 0.2, DAYS, bounds=(-100.0, 6000.0))[0] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="bounds"):
        spot_grid(SPOT, 0.2, DAYS, bounds=(6000.0, 4000.0))
    with pytest.raises(ValueError, match="points"):
        spot_grid(SPOT, 0.2, DAYS, points=1)


# --- legs ---


def test_legs_reject_mismatched_or_bad_columns():
    with pytest.raises(ValueError, match="qty"):
        make_legs([4900.0, 5100.0], [False, True], [-1], [10.0, 12.0])
    with pytest.raises(ValueError, match="strike"):
        make_legs([0.0], [True], [1], [1.0])
    with pytest.raises(ValueError, match="entry_price"):
        make_legs([5000.0], [True], [1], [-1.0])
    with pytest.raises(ValueError, match="iv"):
        make_legs([5000.0], [True], [1], [1.0], iv=float("nan"))


def test_legs_are_copied_and_read_only():
    strikes = np.array([4900.0, 5100.0])
    legs = make_legs(strikes, [False, True], [-1, -1], [10.0, 12.0])
    strikes[0] = 1.0
    assert legs.strike[0] == 4900.0
    with pytest.raises(ValueError, match="read-only"):
        legs.qty[0] = 5


# --- P&L at expiry ---


def test_short_strangle_at_expiry(strangle, grid):
    pnl = pnl_at_expiry(strangle, grid)
    assert pnl[100] == pytest.approx(2200.0)
    np.testing.assert_allclose(breakevens(grid, pnl), [4878.0, 5122.0], rtol=0, atol=1e-9)
    ext = max_profit_loss(grid, pnl)
    assert ext.max_pnl == pytest.approx(2200.0)
    assert ext.unbounded_loss_below
    assert ext.unbounded_loss_above
    assert ext.min_pnl == pytest.approx(min(pnl[0], pnl[-1]))


@pytest.mark.parametrize("grid_iv", [0.15, 0.1875, 0.2])  # 0.1875: edges differ by ~1e-11 $
def test_iron_condor_loss_is_width_minus_credit_and_bounded(condor, grid_iv):
    grid = spot_grid(SPOT, grid_iv, DAYS)
    ext = max_profit_loss(grid, pnl_at_expiry(condor, grid))
    assert ext.min_pnl == pytest.approx(-(100.0 - 13.0) * 100.0)
    assert ext.max_pnl == pytest.approx(13.0 * 100.0)
    assert not ext.unbounded_loss_below
    assert not ext.unbounded_loss_above


def test_naked_short_put_is_unbounded_below_only(grid):
    legs = make_legs([4900.0], [False], [-3], [10.0])
    ext = max_profit_loss(grid, pnl_at_expiry(legs, grid))
    assert ext.unbounded_loss_below
    assert not ext.unbounded_loss_above
    assert ext.max_pnl == pytest.approx(3000.0)


def test_long_call_at_expiry_is_intrinsic_minus_premium(grid):
    legs = make_legs([5000.0], [True], [2], [50.0])
    expected = 2 * 100.0 * (np.maximum(grid - 5000.0, 0.0) - 50.0)
    np.testing.assert_allclose(pnl_at_expiry(legs, grid), expected, rtol=1e-12, atol=1e-9)
    ext = max_profit_loss(grid, pnl_at_expiry(legs, grid))
    assert ext.min_pnl == pytest.approx(-10_000.0)
    assert not ext.unbounded_loss_below


# --- T+0 ---


def test_t0_is_zero_at_spot_when_entered_at_model_price(grid):
    strike, is_call, T = np.array([4800.0, 4950.0, 5100.0]), np.array([False, True, True]), 0.1
    entry = price(SPOT, strike, T, R, Q, 0.2, is_call)
    legs = make_legs(strike, is_call, [-2, 1, -1], entry, days=T * 365)
    assert pnl_t0(legs, grid, R, Q)[100] == pytest.approx(0.0, abs=1e-9)


def test_t0_converges_to_expiry_as_time_runs_out(strangle, grid):
    expiry = pnl_at_expiry(strangle, grid)
    gaps = []
    for days in (30.0, 3.0, 0.3, 0.003, 3e-6):
        legs = make_legs(
            strangle.strike, strangle.is_call, strangle.qty, strangle.entry_price, days=days
        )
        gaps.append(np.abs(pnl_t0(legs, grid, R, Q) - expiry).max())
    assert all(a > b for a, b in itertools.pairwise(gaps))
    assert gaps[-1] < 1.0  # dollars, 0.26 s before expiry


def test_days_forward_past_expiry_settles_at_intrinsic(condor, grid):
    after = pnl_t0(condor, grid, R, Q, days_forward=DAYS + 5)
    np.testing.assert_allclose(after, pnl_at_expiry(condor, grid), rtol=0, atol=1e-9)


def test_short_strangle_earns_theta_as_days_pass(strangle, grid):
    at_spot = [pnl_t0(strangle, grid, R, Q, days_forward=d)[100] for d in (0, 1, 5, 10, 20, 29)]
    assert all(a < b for a, b in itertools.pairwise(at_spot))


def test_iv_up_hurts_short_premium(strangle, grid):
    base = pnl_t0(strangle, grid, R, Q)
    shocked = pnl_t0(strangle, grid, R, Q, iv_shift=0.05)
    assert shocked[100] < base[100] - 100.0  # 5 vol points on two 30-day legs: hundreds of $
    assert (shocked <= base + 1e-9).all()


def test_iv_shift_down_is_floored_at_zero_vol(strangle, grid):
    crushed = pnl_t0(strangle, grid, 0.0, 0.0, iv_shift=-1.0)
    np.testing.assert_allclose(crushed, pnl_at_expiry(strangle, grid), rtol=0, atol=1e-9)


# --- breakevens ---


@pytest.mark.parametrize(
    ("pnl", "expected"),
    [
        ([1, 0, -1, 0, 0, 2, 0], [1, 3, 4, 6]),  # crossing at a point, flat run by its ends, edge
        ([1, 0, 1, 2, 3, 4, 5], [1]),  # a touch counts once
        ([-1, 0, 0, 0, 2, 0, 1], [1, 3, 5]),  # the inside of a flat zero run is dropped
        ([2, -2, 2, -2, 2, -2, 2], [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]),
        ([1, 2, 3, 4, 5, 6, 7], []),
        ([-1, -0.0, 1, 1, 1, 1, 1], [1]),
        ([-1, 5e-324, -1, -1, -1, -1, -1], [1]),  # two crossings that round to one level
    ],
)
def test_breakevens_at_and_between_grid_points(pnl, expected):
    found = breakevens(np.arange(7.0), np.array(pnl, dtype=float))
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-12)
    assert found.shape == (len(expected),)


@st.composite
def piecewise_linear(draw, allow_zero: bool):
    """A grid and P&L values. Without zeros, |P&L| is in [1, 100] at every grid point, so each
    region of one sign is at least 1/101 of a grid gap wide and the dense scan cannot miss it."""
    n = draw(st.integers(2, 30))
    gaps = draw(st.lists(st.floats(0.1, 10.0), min_size=n - 1, max_size=n - 1))
    grid = 4000.0 + np.concatenate([[0.0], np.cumsum(gaps)])
    if allow_zero:
        values = st.one_of(st.floats(-100.0, 100.0), st.just(0.0))
    else:
        values = st.builds(lambda m, neg: -m if neg else m, st.floats(1.0, 100.0), st.booleans())
    return grid, np.array(draw(st.lists(values, min_size=n, max_size=n)))


def dense_sign_changes(grid, pnl):
    """Brute force: sample the linear interpolant 200 times per grid gap, drop exact zeros and
    bracket every sign flip between neighbouring samples."""
    t = np.arange(200) / 200
    x = np.append((grid[:-1, None] + np.diff(grid)[:, None] * t).ravel(), grid[-1])
    y = np.interp(x, grid, pnl)
    x, y = x[y != 0], y[y != 0]
    flips = np.flatnonzero(np.sign(y[:-1]) != np.sign(y[1:]))
    return [(x[i], x[i + 1]) for i in flips]


@given(piecewise_linear(allow_zero=False))
def test_breakevens_match_dense_sign_changes(case):
    grid, pnl = case
    found = breakevens(grid, pnl)
    brackets = dense_sign_changes(grid, pnl)
    assert len(found) == len(brackets)
    for b, (lo, hi) in zip(found, brackets, strict=True):
        assert lo - 1e-9 <= b <= hi + 1e-9
    np.testing.assert_allclose(np.interp(found, grid, pnl), 0.0, atol=1e-9)


@given(piecewise_linear(allow_zero=True))
def test_breakevens_with_zeros_are_zeros_and_cover_every_sign_change(case):
    grid, pnl = case
    found = breakevens(grid, pnl)
    assert (np.diff(found) > 0).all()  # sorted, each counted once
    np.testing.assert_allclose(np.interp(found, grid, pnl), 0.0, atol=1e-9)
    for lo, hi in dense_sign_changes(grid, pnl):
        assert ((found >= lo - 1e-9) & (found <= hi + 1e-9)).any()


# --- short strikes ---


def test_short_strike_distance_signs():
    legs = make_legs(
        [4900.0, 5100.0, 5100.0, 4900.0, 4800.0],
        [False, False, True, True, False],
        [-1, -1, -2, -1, 1],  # OTM put, ITM put, OTM call, ITM call, a long wing (ignored)
        [10.0, 110.0, 12.0, 112.0, 4.0],
    )
    d = short_strike_distance(SPOT, legs)
    np.testing.assert_array_equal(d.leg_index, [0, 1, 2, 3])
    np.testing.assert_allclose(d.points, [100.0, -100.0, 100.0, -100.0])
    np.testing.assert_allclose(d.pct, [2.0, -2.0, 2.0, -2.0])


# --- profile ---


def test_profile_bundles_the_pieces(strangle):
    p = profile(strangle, SPOT, R, Q, DAYS)
    np.testing.assert_array_equal(p.grid, spot_grid(SPOT, 0.2, DAYS))
    assert p.grid.shape == p.pnl_expiry.shape == p.pnl_t0.shape == (201,)
    np.testing.assert_allclose(p.breakevens_expiry, [4878.0, 5122.0], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(p.pnl_t0, pnl_t0(strangle, p.grid, R, Q))
    np.testing.assert_array_equal(p.breakevens_t0, breakevens(p.grid, p.pnl_t0))
    assert p.expected_move == pytest.approx(expected_move(SPOT, 0.2, DAYS))
    assert p.move_levels == pytest.approx(expected_move_levels(SPOT, 0.2, DAYS))
    assert p.extremes.unbounded_loss_below
    assert p.extremes.unbounded_loss_above
    # with 30 days left the legs still hold time value: T+0 at spot is below the expiry P&L
    assert p.pnl_t0[100] < p.pnl_expiry[100] - 1000.0


def test_profile_uses_an_explicit_iv_for_the_grid(strangle):
    p = profile(strangle, SPOT, R, Q, DAYS, points=11, iv=0.4)
    assert len(p.grid) == 11
    assert p.expected_move == pytest.approx(expected_move(SPOT, 0.4, DAYS))
    assert p.grid[-1] == pytest.approx(SPOT + 3 * p.expected_move)


def test_stress_loss_is_the_worst_expiry_loss_within_the_move_per_group():
    # a 1-lot short 4900/5100 strangle sold for 10 + 10 points (x100) and a 1-lot long 5000 call
    # paid 50: at ±10% of 5000 the strangle loses (400 - 20) x 100, the call at worst its premium
    spot = np.full(3, 5000.0)
    args = (spot, [4900.0, 5100.0, 5000.0], [False, True, True], [-100.0, -100.0, 100.0],
            [10.0, 10.0, 50.0])  # fmt: skip
    per_group = stress_loss(*args, 10.0, group=[0, 0, 1], n_groups=2)
    assert per_group == pytest.approx([38_000.0, 5_000.0])
    alone = [stress_loss(*(np.asarray(a)[:2] for a in args), 10.0)[0],
             stress_loss(*(np.asarray(a)[2:] for a in args), 10.0)[0]]  # fmt: skip
    assert per_group == pytest.approx(alone)
    assert stress_loss(np.full(3, np.nan), *args[1:], 10.0)[0] == 0.0  # no spot: reads 0

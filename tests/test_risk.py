"""Risk rules over generated books: each fires exactly at its threshold and not before."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit.core.clock import NS_PER_S, to_ns
from kit.core.model import ActionKind, Contract, Right, Severity, UnderlyingTick
from kit.portfolio.book import PositionView
from kit.portfolio.market import MarketConfig, MarketState
from kit.risk import checks as risk
from kit.risk.rules import load_rules
from kit.risk.tenor import GAMMA_FLOOR

RULES = load_rules()
NOW = to_ns(datetime(2024, 3, 12, 15, 0, tzinfo=UTC))  # 11:00 New York, market open
NIGHT = to_ns(datetime(2024, 3, 13, 3, 0, tzinfo=UTC))
# The delta and gamma rules scale by the 1-sigma move to the nearest expiry: 91.25 days out at
# 16% IV it is exactly 8% (0.16 x sqrt(1/4)), so "gamma per 1%" x 8 is exact in floating point.
EXPIRY_NS = NOW + int(91.25 * 86400) * NS_PER_S
SIGMA_MOVE_PCT = 8.0


def priced_market(iv: float = 0.16) -> MarketState:
    """SPX at 5000 with a put and a call of the views' expiry quoted now at ``iv``: what the
    delta and gamma rules read the at-the-money IV from."""
    m = MarketState()
    m.on_underlying(UnderlyingTick("SPX", 5000.0, NOW))
    rows = m.track_all([Contract("SPXW", date(2024, 6, 11), k, r)
                        for k, r in ((4900.0, Right.PUT), (5100.0, Right.CALL))])  # fmt: skip
    m.expiry_ns[rows], m.iv[rows], m.mark_ts[rows] = EXPIRY_NS, iv, NOW
    return m


def make_view(n: int = 1, **arrays) -> PositionView:
    """A quiet book of ``n`` open positions (no rule fires), with ``arrays`` overriding fields."""
    full = lambda v, dtype=float: np.full(n, v, dtype=dtype)  # noqa: E731
    fields = {
        "ts_ns": NOW, "ids": [f"P{i}" for i in range(n)], "is_open": full(True, bool),
        "quantity": full(1.0),
        "spot": full(5000.0), "open_pnl": full(0.0), "realized": full(0.0), "total_pnl": full(0.0),
        "day_pnl": full(0.0), "credit": full(500.0), "pnl_pct": full(0.0), "peak_pct": full(0.0),
        "delta_unit": full(0.0), "gamma_unit": full(0.0), "delta_shares": full(0.0),
        "beta_delta_spy": full(0.0), "theta_per_day": full(0.0), "vega_per_point": full(0.0),
        "vanna_shares": full(0.0), "charm_shares": full(0.0), "short_dist_pct": full(5.0),
        "tested": full(0, np.int64), "stale": full(False, bool), "max_spread_pct": full(1.0),
        "nearest_expiry_ns": full(float(EXPIRY_NS)), "risk": full(0.0),
        "underlying": ["SPX"] * n,
    }  # fmt: skip
    for name, value in arrays.items():
        fields[name] = np.asarray(value) if name not in ("ids", "underlying") else value
    return PositionView(**fields)


def ctx(view: PositionView, market: MarketState | None = None, **kw) -> risk.Context:
    args = {"now_ns": NOW, "last_data_ns": NOW, "rules": RULES} | kw
    return risk.Context(view, market or priced_market(), **args)


def fired(findings, rule: str) -> set[tuple[str | None, str]]:
    return {(f.alert.position_id, f.alert.key) for f in findings if f.alert.rule == rule}


def test_a_quiet_book_raises_nothing():
    assert risk.evaluate(ctx(make_view(5))) == []


LEVEL_RULES = {  # rule -> (view field, metric -> field value, fires when metric >= level)
    # no gamma: sigmas from delta-neutral = |delta| / the 0.25 floor (exact: a power of 2)
    "delta": ("delta_unit", lambda x: x * GAMMA_FLOOR),
    # short gamma is negative; the rule reads |gamma per 1%| x the 1-sigma move in %
    "gamma": ("gamma_unit", lambda x: -x / SIGMA_MOVE_PCT),
    "profit_target": ("pnl_pct", lambda x: x),
    "stop_loss": ("pnl_pct", lambda x: -x),
    "strike_breach": ("short_dist_pct", lambda x: x),
}


@pytest.mark.parametrize("rule", LEVEL_RULES)
def test_each_level_fires_at_its_threshold_and_not_a_hair_before(rule):
    field, to_value = LEVEL_RULES[rule]
    for level in getattr(RULES, rule).levels:
        below_first = rule == "strike_breach"  # a distance breaches at or *below* its level
        before = np.nextafter(level.at, np.inf if below_first else -np.inf)
        extra = {"total_pnl": np.array([1.0, 1.0])} if level.profitable_only else {}
        view = make_view(2, **{field: np.array([to_value(level.at), to_value(before)])}, **extra)
        got = fired(risk.evaluate(ctx(view)), rule)
        assert ("P0", f"{level.at:g}") in got
        assert ("P1", f"{level.at:g}") not in got


@given(st.lists(st.floats(-0.5, 0.5, allow_nan=False), min_size=1, max_size=30))
def test_delta_fires_for_exactly_the_positions_past_each_level(deltas):
    view = make_view(len(deltas), delta_unit=np.array(deltas))
    got = fired(risk.delta(ctx(view)), "delta")
    expected = {(f"P{i}", f"{lv.at:g}") for i, d in enumerate(deltas)
                for lv in RULES.delta.levels if abs(d) / GAMMA_FLOOR >= lv.at}  # fmt: skip
    assert got == expected


@given(st.lists(st.tuples(st.floats(-400, 150), st.booleans()), min_size=1, max_size=30))
def test_profit_and_loss_levels_over_generated_books(rows):
    pct = np.array([p for p, _ in rows])
    is_open = np.array([o for _, o in rows])
    view = make_view(len(rows), pnl_pct=pct, is_open=is_open)
    findings = risk.evaluate(ctx(view))
    for rule, sign in (("profit_target", 1), ("stop_loss", -1)):
        expected = {(f"P{i}", f"{lv.at:g}") for i in range(len(rows))
                    for lv in getattr(RULES, rule).levels
                    if is_open[i] and sign * pct[i] >= lv.at}  # fmt: skip
        assert fired(findings, rule) == expected


def test_gamma_reduce_level_needs_a_profit():
    gamma = -0.65 / SIGMA_MOVE_PCT  # a 1-sigma move swings delta 0.65: past both levels
    view = make_view(2, gamma_unit=np.array([gamma, gamma]), total_pnl=np.array([10.0, -10.0]))
    got = fired(risk.gamma(ctx(view)), "gamma")
    assert got == {("P0", "0.5"), ("P0", "0.6"), ("P1", "0.5")}


@given(st.lists(st.tuples(st.floats(-1.5, 1.5), st.floats(-0.2, 0.2), st.floats(0.05, 0.8)),
                min_size=1, max_size=20))  # fmt: skip
def test_delta_and_gamma_read_the_move_left_at_the_atm_iv(rows):
    """gamma_1s = |gamma per 1%| x move%, delta_1s = |delta| / max(gamma_1s, 0.25), with move%
    = 100 x IV x sqrt(T): the same position reads more gamma and less delta at a higher IV."""
    deltas, gammas, ivs = (np.array(c) for c in zip(*rows, strict=True))
    view = make_view(len(rows), delta_unit=deltas, gamma_unit=gammas)
    for iv in np.unique(ivs)[:3]:
        c = ctx(view, priced_market(float(iv)))
        move = 100 * iv * 0.5  # sqrt(91.25 / 365) = 0.5
        assert c.sigma.move_pct == pytest.approx(np.full(len(rows), move), rel=1e-12)
        want_g = np.abs(gammas) * move
        assert c.sigma.gamma_1s == pytest.approx(want_g, rel=1e-12)
        d1s = np.abs(deltas) / np.maximum(want_g, GAMMA_FLOOR)
        assert c.sigma.delta_1s == pytest.approx(d1s, rel=1e-12)
        got = fired(risk.evaluate(c), "delta")
        assert got == {(f"P{i}", f"{lv.at:g}") for i in range(len(rows))
                       for lv in RULES.delta.levels if d1s[i] >= lv.at}  # fmt: skip


def test_delta_action_rolls_the_untested_side():
    view = make_view(2, delta_unit=np.array([0.2, -0.2]))  # 0.8 sigma: the roll, not the close
    actions = {f.alert.position_id: f.action.kind for f in risk.delta(ctx(view)) if f.action}
    assert actions == {"P0": ActionKind.ROLL_CALL, "P1": ActionKind.ROLL_PUT}  # spot fell / rose


def test_trailing_stop_arms_at_40_sits_at_breakeven_then_trails_25_below_the_peak():
    view = make_view(5, peak_pct=np.array([39.9, 40.0, 45.0, 60.0, 60.0]),
                     pnl_pct=np.array([-1.0, 0.0, 0.1, 35.0, 35.1]))  # fmt: skip
    got = {pid for pid, _ in fired(risk.trailing_stop(ctx(view)), "trailing_stop")}
    assert got == {"P1", "P3"}


def test_time_stop_only_in_the_last_30_minutes_of_an_expiring_position_with_profit():
    expiry = NOW + np.array([1800, 1801, 600, 600]) * NS_PER_S
    view = make_view(4, nearest_expiry_ns=expiry.astype(float),
                     pnl_pct=np.array([10.0, 50.0, 9.99, 10.0]))  # fmt: skip
    got = {pid for pid, _ in fired(risk.time_stop(ctx(view)), "time_stop")}
    assert got == {"P0", "P3"}


def test_liquidity_alerts_without_an_action():
    view = make_view(3, max_spread_pct=np.array([9.99, 10.0, 1.0]),
                     stale=np.array([False, False, True]))  # fmt: skip
    findings = risk.liquidity(ctx(view))
    assert {f.alert.position_id for f in findings} == {"P1", "P2"}
    assert all(f.action is None for f in findings)


def test_a_leg_without_a_two_sided_quote_says_so_not_an_infinite_spread():
    view = make_view(1, max_spread_pct=np.array([np.inf]), stale=np.array([True]))
    (f,) = risk.liquidity(ctx(view))
    assert f.alert.message.startswith("a leg has no two-sided quote: marks held")
    assert "%" not in f.alert.message and f.alert.inputs["max_spread_pct"] is None


def test_feed_stale_after_30_s_of_silence_while_the_market_is_open():
    view = make_view()
    assert risk.feed_stale(ctx(view, last_data_ns=NOW - 29_999_999_999)) == []
    (f,) = risk.feed_stale(ctx(view, last_data_ns=NOW - 30 * NS_PER_S))
    assert f.alert.severity is Severity.CRITICAL and f.action.kind is ActionKind.FREEZE
    assert f.alert.inputs["silent_s"] == 30.0
    night = ctx(view, now_ns=NIGHT, last_data_ns=NIGHT - 3600 * NS_PER_S)
    assert risk.feed_stale(night) == []  # a closed market is quiet, not stale
    (down,) = risk.feed_stale(ctx(view, feed_down_since={"thetadata": NOW - 31 * NS_PER_S}))
    assert "thetadata" in down.alert.message


def _market_with(prices: dict[str, list[tuple[float, float]]]) -> MarketState:
    m = MarketState(MarketConfig(windows_s=(300.0,)))
    for symbol, points in prices.items():
        for t_s, price in points:
            m.on_underlying(UnderlyingTick(symbol, price, NOW + int(t_s * NS_PER_S)))
    return m


def test_rapid_move_fires_at_one_percent_within_five_minutes():
    view = make_view()
    slow = _market_with({"SPX": [(-301, 5000.0), (0, 4949.0)]})  # 1.02% but over 301 s
    assert risk.rapid_move(ctx(view, slow)) == []
    almost = _market_with({"SPX": [(-200, 5000.0), (-100, 5010.0), (0, 4960.0)]})
    assert risk.rapid_move(ctx(view, almost)) == []  # -0.998% from the high
    fast = _market_with({"SPX": [(-200, 5000.0), (-100, 5010.0), (0, 4959.9)]})
    (f,) = risk.rapid_move(ctx(view, fast))
    assert f.alert.key == "SPX" and f.alert.severity is Severity.CRITICAL
    assert f.alert.inputs["move_pct"] == pytest.approx(-1.0, abs=1e-3)


def test_rapid_move_on_a_watched_index_even_without_positions():
    fast = _market_with({"NDX": [(-60, 18000.0), (0, 18200.0)], "VIX": [(-60, 15), (0, 18)]})
    findings = risk.rapid_move(ctx(make_view(0), fast))
    assert [f.alert.key for f in findings] == ["NDX"]  # VIX is not watched


def test_correlation_break_when_index_and_vix_fall_together():
    view = make_view()
    m = _market_with({"SPX": [(-250, 5000.0), (0, 4987.0)], "VIX": [(-250, 15.0), (0, 14.8)]})
    (f,) = risk.correlation_break(ctx(view, m))
    assert f.action.kind is ActionKind.BLOCK_ENTRIES
    normal = _market_with({"SPX": [(-250, 5000.0), (0, 4987.0)], "VIX": [(-250, 15.0), (0, 15.6)]})
    assert risk.correlation_break(ctx(view, normal)) == []


def test_limits():
    view = make_view(3, quantity=np.array([1.0, 11.0, 10.0]), risk=np.array([1e5, 1e5, 50001.0]),
                     day_pnl=np.array([-5000.0, -5000.0, 0.0]))  # fmt: skip
    got = fired(risk.limits(ctx(view)), "limits")
    assert got == {(None, "daily_loss"), (None, "total_risk"), ("P1", "size")}
    quiet = replace(view, quantity=np.ones(3), risk=np.ones(3), day_pnl=np.zeros(3))
    assert risk.limits(ctx(quiet)) == []


def test_every_finding_carries_its_inputs_and_disabled_rules_stay_silent():
    view = make_view(1, delta_unit=np.array([0.8]), pnl_pct=np.array([80.0]))
    findings = risk.evaluate(ctx(view))
    assert fired(findings, "delta") and all(f.alert.inputs for f in findings)
    assert all(f.action.inputs == f.alert.inputs for f in findings if f.action)
    off = load_rules(overrides={"delta": {"enabled": False}})
    assert not fired(risk.evaluate(ctx(view, rules=off)), "delta")


def test_leg_delta_fires_at_a_short_legs_own_delta_when_enabled():
    """The grid's exit_delta as a desk rule: the largest |delta| of the short legs, level by
    level; off by default, NaN (no short leg) never fires."""
    view = make_view(3, short_delta=[0.29999, 0.30, np.nan])
    assert fired(risk.evaluate(ctx(view)), "leg_delta") == set()  # off by default
    on = load_rules(overrides={"leg_delta": {"enabled": True, "levels": [
        {"at": 0.30, "severity": "WARNING", "action": "close_all"}]}})  # fmt: skip
    found = [f for f in risk.evaluate(ctx(view, rules=on)) if f.alert.rule == "leg_delta"]
    assert [(f.alert.position_id, f.alert.key) for f in found] == [("P1", "0.3")]
    assert found[0].action.kind is ActionKind.CLOSE_ALL
    assert found[0].alert.inputs["short_delta"] == 0.30
    assert "|delta| 0.300 reached 0.3" in found[0].alert.message


def test_trailing_locks_are_fixed_tiers_beside_the_breakeven_stop_and_the_trail():
    """The grid's ``trailing = "20:5,45:25"``: from a 20% peak the stop is at 5%, from 45% at
    25%, never following the peak; with the default stages (breakeven at 40, trailing from 50)
    the higher stop wins."""
    rules = load_rules(overrides={"trailing_stop": {
        "arm_pct": 1e9, "tighten_from_pct": 1e9,
        "locks": [{"at": 45, "lock": 25}, {"at": 20, "lock": 5}]}})  # fmt: skip
    assert [(lk.at, lk.lock) for lk in rules.trailing_stop.locks] == [(20, 5), (45, 25)]
    view = make_view(6, peak_pct=[19.9, 20.0, 30.0, 44.9, 45.0, 90.0],
                     pnl_pct=[-50.0, 5.0, 5.1, 5.0, 25.0, 25.1])  # fmt: skip
    got = {pid for pid, _ in fired(risk.trailing_stop(ctx(view, rules=rules)), "trailing_stop")}
    assert got == {"P1", "P3", "P4"}  # at each lock, not a hair above, never below 20% peak
    both = load_rules(overrides={"trailing_stop": {"locks": [{"at": 20, "lock": 5}]}})
    view = make_view(3, peak_pct=[30.0, 45.0, 60.0], pnl_pct=[5.0, 0.1, 35.0])
    got = {pid for pid, _ in fired(risk.trailing_stop(ctx(view, rules=both)), "trailing_stop")}
    assert got == {"P0", "P1", "P2"}  # the lock below 40; from 40 the stop is max(0, lock 5)

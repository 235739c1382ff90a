"""MarketState: marks and the liquidity guard, growth, rolling windows and the Greeks refresh."""

import math
from datetime import date, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.core.clock import NEW_YORK, NS_PER_S, expiry_time, to_ns
from kit.core.model import Contract, Quote, Right, UnderlyingTick
from kit.core.pricing import greeks, implied_vol
from kit.portfolio.market import YEAR_NS, MarketConfig, MarketState, RollingWindow

EXPIRY = date(2024, 3, 15)
NOW = to_ns(datetime(2024, 3, 12, 11, 0, tzinfo=NEW_YORK))  # 15:00 UTC
SPOT = 5100.0
R_SPX, Q_SPX = 0.045, 0.013
PUT = Contract("SPXW", EXPIRY, 5000.0, Right.PUT)
CALL = Contract("SPXW", EXPIRY, 5200.0, Right.CALL)


def quote(contract: Contract, bid: float, ask: float, ts: int = NOW) -> Quote:
    return Quote(contract, float(bid), float(ask), 10.0, 10.0, ts)


def tick(symbol: str, price: float, ts: int = NOW) -> UnderlyingTick:
    return UnderlyingTick(symbol, float(price), ts)


def years(contract: Contract, now: int = NOW) -> float:
    return (to_ns(expiry_time(contract)) - now) / YEAR_NS


def bs_delta(contract: Contract, spot: float, iv: float, now: int = NOW) -> float:
    g = greeks(spot, contract.strike, years(contract, now), R_SPX, Q_SPX, iv, contract.is_call)
    return float(g.delta)


# --- marks and the liquidity guard ---


def test_a_tight_quote_sets_the_mark_to_the_mid():
    m = MarketState()
    i = m.on_quote(quote(PUT, 29.5, 30.5))
    assert i == m.index[PUT] == 0
    assert m.mark[i] == 30.0
    assert (m.bid[i], m.ask[i]) == (29.5, 30.5)
    assert not m.wide[i]
    assert m.fresh[i]
    assert m.mark_ts[i] == m.quote_ts[i] == NOW
    assert m.last_event_ns == NOW


def test_a_wide_quote_keeps_the_last_mark_and_a_tight_one_clears_the_flag():
    m = MarketState()
    i = m.on_quote(quote(PUT, 9.9, 10.1, NOW))
    # spread 1.4 on a mid of 10.3: 13.6 % > 10 %
    assert m.on_quote(quote(PUT, 9.6, 11.0, NOW + 1)) == i
    assert m.mark[i] == pytest.approx(10.0)
    assert m.wide[i]
    assert (m.bid[i], m.ask[i]) == (9.6, 11.0)  # the quote itself is recorded
    assert m.quote_ts[i] == NOW + 1
    assert m.mark_ts[i] == NOW  # the mark is still the old one
    m.on_quote(quote(PUT, 10.3, 10.7, NOW + 2))
    assert m.mark[i] == pytest.approx(10.5)
    assert not m.wide[i]
    assert m.mark_ts[i] == NOW + 2


def test_the_guard_uses_max_spread_pct_of_mid():
    tight, loose = MarketState(MarketConfig(max_spread_pct=5.0)), MarketState()
    for m in (tight, loose):
        m.on_quote(quote(PUT, 9.6, 10.4))  # 8 % of mid
    assert tight.wide[0] and math.isnan(tight.mark[0])
    assert not loose.wide[0] and loose.mark[0] == pytest.approx(10.0)


def test_a_zero_bid_keeps_the_last_mark_unless_the_ask_is_a_tick_or_two():
    """No bid and a wide ask is a missing market (the mark is held); no bid and an ask within
    ``max_spread`` (0.00 / 0.05) is a worthless option's market, marked at its mid: held, a
    0DTE short leg kept its last bid-side mark and froze the position's automation."""
    m = MarketState()
    i = m.on_quote(quote(PUT, 0.98, 1.02))
    m.on_underlying(UnderlyingTick("SPX", 5000.0, NOW))
    m.refresh(None, NOW)  # consume the fresh flag
    m.on_quote(quote(PUT, 0.0, 0.95, NOW + 1))  # no bid, an ask far from it: no mark
    assert m.mark[i] == pytest.approx(1.0)
    assert m.wide[i] and not m.fresh[i]
    assert m.tradable(i, buy=True) and not m.tradable(i, buy=False)  # bought back, not sold
    m.on_quote(quote(PUT, 0.0, 0.05, NOW + 2))
    assert m.mark[i] == pytest.approx(0.025) and not m.wide[i] and m.fresh[i]
    m.on_quote(quote(PUT, 0.0, 0.0, NOW + 3))  # nothing shown at all
    assert not m.tradable(i, buy=True) and m.wide[i]


def test_a_quote_without_an_offer_is_not_a_mark():
    """A zero ask means "no offer" (Quote.mid is NaN): half the bid is no mark."""
    m = MarketState()
    i = m.on_quote(quote(PUT, 9.9, 10.1))
    m.on_quote(quote(PUT, 5.0, 0.0, NOW + 1))
    assert math.isnan(quote(PUT, 5.0, 0.0).mid)
    assert m.mark[i] == pytest.approx(10.0)
    assert m.wide[i]


def test_a_first_quote_that_is_wide_leaves_no_mark():
    m = MarketState()
    i = m.on_quote(quote(CALL, 1.0, 3.0))
    assert math.isnan(m.mark[i])
    assert m.wide[i]
    assert not m.fresh[i]
    assert m.mark_ts[i] == 0


def test_last_event_ns_is_the_newest_event_of_any_kind():
    m = MarketState()
    m.on_quote(quote(PUT, 9.9, 10.1, NOW + 5))
    m.on_underlying(tick("SPX", SPOT, NOW + 3))  # late tick: does not move it back
    assert m.last_event_ns == NOW + 5
    m.on_underlying(tick("SPX", SPOT, NOW + 9))
    assert m.last_event_ns == NOW + 9


# --- rows ---


def test_track_stores_static_attributes_and_is_idempotent():
    m = MarketState()
    i = m.track(CALL)
    assert m.track(CALL) == i and m.size == 1
    assert m.strike[i] == 5200.0
    assert m.is_call[i] and not m.is_call[m.track(PUT)]
    assert m.multiplier[i] == 100.0
    assert m.expiry_ns[i] == to_ns(expiry_time(CALL))
    assert (m.rate[i], m.div_yield[i]) == (R_SPX, Q_SPX)
    assert m.contracts == [CALL, PUT] and m.underlyings == {"SPX": int(m.und[i])}
    btc = m.track(Contract("BTC", EXPIRY, 70000.0, Right.CALL))
    assert (m.rate[btc], m.div_yield[btc]) == (0.0, 0.0)
    assert m.multiplier[btc] == 0.001


def test_arrays_grow_past_the_initial_capacity_keeping_values():
    m = MarketState(MarketConfig(capacity=2))
    contracts = [Contract("SPXW", EXPIRY, 4000.0 + 10 * k, Right.PUT) for k in range(50)]
    m.on_quote(quote(contracts[0], 9.9, 10.1))
    m.on_quote(quote(contracts[1], 4.9, 5.1))
    m.on_quote(quote(contracts[1], 1.0, 9.0))  # wide: flag must survive growth
    rows = m.track_all(contracts)
    assert rows.tolist() == list(range(50))
    assert m.size == 50 and len(m.bid) >= 50
    assert m.strike[:50].tolist() == [c.strike for c in contracts]
    assert m.mark[0] == pytest.approx(10.0) and m.mark[1] == pytest.approx(5.0)
    assert m.wide[1] and not m.wide[0] and m.fresh[0]
    assert np.isnan(m.mark[2:50]).all() and not m.wide[2:50].any()
    assert (m.expiry_ns[:50] == to_ns(expiry_time(contracts[0]))).all()
    assert m.rows(contracts[::7]).tolist() == list(range(0, 50, 7))
    m.on_quote(quote(contracts[49], 0.98, 1.02))
    assert m.mark[49] == pytest.approx(1.0)


def test_many_underlyings_keep_their_spots():
    m = MarketState()
    symbols = [f"U{k}" for k in range(20)]
    for k, s in enumerate(symbols):
        m.on_underlying(tick(s, 100.0 + k))
    assert [m.spot_of(s) for s in symbols] == [100.0 + k for k in range(20)]
    assert math.isnan(m.spot_of("NOPE"))
    assert all(len(rows) == 20 for rows in m.windows.values())


# --- rolling windows ---


@settings(max_examples=150)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 6), st.integers(1, 6).map(float)), min_size=1, max_size=40
    ),
    later=st.integers(0, 25),
)
def test_rolling_window_matches_brute_force(steps, later):
    window = 10
    w = RollingWindow(window)
    seen: list[tuple[int, float]] = []
    t = 0
    for dt, price in steps:
        t += dt
        w.push(t, price)
        seen.append((t, price))
        live = [p for ts, p in seen if ts >= t - window]
        assert len(w) == len(live)
        assert (w.first, w.high, w.low) == (live[0], max(live), min(live))
    w.trim(t + later)
    live = [p for ts, p in seen if ts >= t + later - window]
    assert len(w) == len(live)
    if live:
        assert (w.first, w.high, w.low) == (live[0], max(live), min(live))
    else:
        assert math.isnan(w.first) and math.isnan(w.high) and math.isnan(w.low)


def test_move_pct_reports_a_fall_within_the_window_and_forgets_it():
    m = MarketState()
    m.on_underlying(tick("SPX", 5000.0, NOW))
    m.on_underlying(tick("SPX", 5050.0, NOW + 60 * NS_PER_S))  # the high is not the first print
    m.on_underlying(tick("SPX", 4989.4, NOW + 120 * NS_PER_S))  # 1.2 % below the high
    rise, fall = m.move_pct("SPX", 300.0, NOW + 120 * NS_PER_S)
    assert rise == 0.0
    assert fall == pytest.approx(1.2)
    # the high is still inside the window 300 s after it printed
    assert m.move_pct("SPX", 300, NOW + 360 * NS_PER_S)[1] == pytest.approx(1.2)
    # the 5050 print is older than 300 s: only 4989.4 remains
    assert m.move_pct("SPX", 300.0, NOW + 361 * NS_PER_S) == (0.0, 0.0)
    # nothing left in the window at all
    assert m.move_pct("SPX", 300.0, NOW + 600 * NS_PER_S) == (0.0, 0.0)


def test_move_pct_reports_a_rise_from_the_low():
    m = MarketState()
    for k, p in enumerate((5000.0, 4950.0, 5009.4)):
        m.on_underlying(tick("SPX", p, NOW + k * 60 * NS_PER_S))
    rise, fall = m.move_pct("SPX", 300.0, NOW + 120 * NS_PER_S)
    assert rise == pytest.approx(1.2)
    assert fall == 0.0
    assert m.move_pct("NDX", 300.0, NOW) == (0.0, 0.0)  # unknown symbol


def test_window_return_pct_is_from_the_oldest_price_in_the_window():
    m = MarketState()
    m.on_underlying(tick("SPX", 5000.0, NOW))
    m.on_underlying(tick("SPX", 5100.0, NOW + 100 * NS_PER_S))
    m.on_underlying(tick("SPX", 5050.0, NOW + 200 * NS_PER_S))
    assert m.window_return_pct("SPX", 300.0, NOW + 200 * NS_PER_S) == pytest.approx(1.0)
    later = m.window_return_pct("SPX", 300.0, NOW + 350 * NS_PER_S)
    assert later == pytest.approx((5050 / 5100 - 1) * 100)
    assert math.isnan(m.window_return_pct("SPX", 300.0, NOW + 1000 * NS_PER_S))
    assert math.isnan(m.window_return_pct("NDX", 300.0, NOW))


def test_configured_windows_are_kept_and_others_raise_key_error():
    m = MarketState(MarketConfig(windows_s=(60.0, 300.0)))
    m.on_underlying(tick("SPX", 5000.0, NOW))
    m.on_underlying(tick("SPX", 4950.0, NOW + 90 * NS_PER_S))
    assert m.move_pct("SPX", 300.0, NOW + 90 * NS_PER_S)[1] == pytest.approx(1.0)
    assert m.move_pct("SPX", 60.0, NOW + 90 * NS_PER_S) == (0.0, 0.0)
    with pytest.raises(KeyError):
        m.move_pct("SPX", 120.0, NOW)
    with pytest.raises(KeyError):
        m.window_return_pct("SPX", 900.0, NOW)


# --- Greeks refresh ---


def marked_market() -> tuple[MarketState, int, int]:
    m = MarketState()
    m.on_underlying(tick("SPX", SPOT))
    p = m.on_quote(quote(PUT, 29.5, 30.5))
    c = m.on_quote(quote(CALL, 24.5, 25.5))
    return m, p, c


def test_refresh_computes_iv_from_the_mark_and_greeks_from_the_iv():
    m, p, c = marked_market()
    m.refresh(np.array([p, c]), NOW)
    for row, contract, mark in ((p, PUT, 30.0), (c, CALL, 25.0)):
        T = years(contract)
        iv = float(implied_vol(mark, SPOT, contract.strike, T, R_SPX, Q_SPX, contract.is_call))
        assert 0.05 < iv < 1.0
        assert m.iv[row] == pytest.approx(iv, rel=1e-9)
        g = greeks(SPOT, contract.strike, T, R_SPX, Q_SPX, iv, contract.is_call)
        assert m.model_price[row] == pytest.approx(mark, rel=1e-8)
        assert m.delta[row] == pytest.approx(float(g.delta), rel=1e-8)
        assert m.gamma[row] == pytest.approx(float(g.gamma), rel=1e-8)
        assert m.theta_per_day[row] == pytest.approx(float(g.theta_per_day), rel=1e-8)
        assert m.vega_per_point[row] == pytest.approx(float(g.vega_per_point), rel=1e-8)
        assert m.vanna_per_point[row] == pytest.approx(float(g.vanna_per_point), rel=1e-8)
        assert m.charm_per_day[row] == pytest.approx(float(g.charm_per_day), rel=1e-8)
        assert not m.fresh[row]
    assert -0.5 < m.delta[p] < 0 < m.delta[c] < 0.5


def test_a_second_refresh_from_the_previous_iv_matches_a_cold_solve():
    m, p, _ = marked_market()
    m.refresh(None, NOW)
    m.on_underlying(tick("SPX", 5080.0, NOW + NS_PER_S))
    m.on_quote(quote(PUT, 34.6, 35.4, NOW + NS_PER_S))
    m.refresh(None, NOW + NS_PER_S)
    T = years(PUT, NOW + NS_PER_S)
    iv = float(implied_vol(35.0, 5080.0, PUT.strike, T, R_SPX, Q_SPX, False))
    assert m.iv[p] == pytest.approx(iv, rel=1e-9)
    assert m.delta[p] == pytest.approx(bs_delta(PUT, 5080.0, iv, NOW + NS_PER_S), rel=1e-8)


def test_a_mark_below_intrinsic_keeps_the_previous_iv():
    m, p, _ = marked_market()
    m.refresh(None, NOW)
    iv0 = float(m.iv[p])
    assert np.isfinite(iv0)
    m.on_underlying(tick("SPX", 4900.0, NOW + NS_PER_S))  # the 5000 put is ~99 in the money
    m.on_quote(quote(PUT, 49.5, 50.5, NOW + NS_PER_S))  # stale mark below intrinsic
    m.refresh(np.array([p]), NOW + NS_PER_S)
    assert m.iv[p] == iv0
    # Greeks are recomputed at the new spot with the kept IV
    assert m.delta[p] == pytest.approx(bs_delta(PUT, 4900.0, iv0, NOW + NS_PER_S), rel=1e-8)
    assert m.delta[p] < -0.5


def test_refresh_none_only_touches_rows_with_a_new_mark():
    m, p, c = marked_market()
    m.refresh(None, NOW)
    delta_put, delta_call, iv_call = float(m.delta[p]), float(m.delta[c]), float(m.iv[c])
    later = NOW + 60 * NS_PER_S
    m.on_underlying(tick("SPX", 5150.0, later))
    m.on_quote(quote(PUT, 21.6, 22.4, later))  # new mark for the put only
    m.on_quote(quote(CALL, 30.0, 40.0, later))  # wide: not a new mark
    assert m.fresh[p] and not m.fresh[c]
    m.refresh(None, later)
    iv_put = float(implied_vol(22.0, 5150.0, PUT.strike, years(PUT, later), R_SPX, Q_SPX, False))
    assert m.iv[p] == pytest.approx(iv_put, rel=1e-9)
    assert m.delta[p] != delta_put
    assert (m.delta[c], m.iv[c]) == (delta_call, iv_call)  # untouched despite the spot move
    # an explicit row list recomputes it anyway
    m.refresh(np.array([c, c]), later)
    assert m.delta[c] == pytest.approx(bs_delta(CALL, 5150.0, float(m.iv[c]), later), rel=1e-8)
    assert m.delta[c] > delta_call


def test_refresh_without_spot_or_mark_leaves_nan():
    m = MarketState()
    unquoted = m.track(CALL)
    no_spot = m.on_quote(quote(Contract("SPY", EXPIRY, 500.0, Right.PUT), 2.95, 3.05))
    m.on_underlying(tick("SPX", SPOT))
    m.refresh(np.array([unquoted, no_spot]), NOW)
    for name in ("iv", "delta", "gamma", "theta_per_day", "vega_per_point"):
        assert np.isnan(getattr(m, name)[[unquoted, no_spot]]).all(), name

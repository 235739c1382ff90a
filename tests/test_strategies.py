"""Strike selection and adjustments by delta, on the real simulator and on hand-built markets.

The simulator market is a real chain priced by the desk (quotes -> marks -> IV -> Greeks), so the
selection is checked against what a trader would see; hand-built markets pin deltas and quotes to
exact values so each filter and each tie-break is tested on its own.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit.adapters.sim.market import MarketSim, SimConfig
from kit.core.clock import NEW_YORK, NS_PER_S, to_ns
from kit.core.model import Contract, Leg, Position, Quote, Right, StrategyType, UnderlyingTick
from kit.core.pricing import greeks
from kit.portfolio.market import MarketState
from kit.portfolio.strategies import (
    DeltaBand,
    LiquidityFilter,
    StrategyError,
    nearest_delta,
    nearest_otm,
    protected,
    roll_target,
    rolled,
    short_strangle,
    strangle,
    strangle_strikes,
    units_to_close,
    wings,
)
from kit.risk.rules import load_rules

START = datetime(2024, 3, 12, 10, 0, tzinfo=NEW_YORK)
NOW = to_ns(START)
EXPIRY = date(2024, 3, 15)


# --- markets ---


@pytest.fixture(scope="module")
def sim() -> MarketSim:
    return MarketSim(START, SimConfig(seed=0))


@pytest.fixture
def sim_market(sim: MarketSim) -> tuple[MarketState, list[Contract]]:
    """Tomorrow's SPXW chain as the desk sees it at 10:00 (fresh per test: tests move spot)."""
    expiries = sorted({c.expiry for c in sim.chain("SPXW")})
    chain = [c for c in sim.chain("SPXW") if c.expiry == expiries[1]]
    market = MarketState()
    for event in [*sim.ticks(["SPX", "SPY", "VIX"]), *sim.quotes(chain)]:
        (market.on_quote if isinstance(event, Quote) else market.on_underlying)(event)
    market.refresh(market.track_all(chain), sim.now_ns)
    market.set_open_interest(chain, sim.open_interest(chain))
    return market, chain


def hand_market(
    rows: list[tuple[float, str, float]], *, spot: float = 5000.0
) -> tuple[MarketState, list[Contract]]:
    """(strike, right, delta) rows quoted 1.00 / 1.04 (4% of mid), 1000 open interest; deltas are
    written straight into the state so each test pins them."""
    market = MarketState()
    market.on_underlying(UnderlyingTick("SPX", spot, NOW))
    chain = [Contract("SPXW", EXPIRY, strike, right) for strike, right, _ in rows]
    for c, (_, _, delta) in zip(chain, rows, strict=True):
        i = market.on_quote(Quote(c, 1.00, 1.04, 10.0, 10.0, NOW))
        market.delta[i] = delta
        market.open_interest[i] = 1000.0
    return market, chain


def requote(market: MarketState, c: Contract, bid: float, ask: float) -> None:
    market.on_quote(Quote(c, bid, ask, 10.0, 10.0, NOW))


def priced_market(spot: float, strikes: np.ndarray, vol: float = 0.15):
    """A Black-Scholes chain quoted +-1% around model prices, priced by the desk's refresh."""
    market = MarketState()
    chain = [
        Contract("SPXW", EXPIRY, float(k), r) for k in strikes for r in (Right.PUT, Right.CALL)
    ]
    move_to(market, chain, spot, NOW, vol)
    return market, chain


def move_to(market: MarketState, chain: list[Contract], spot: float, now: int, vol: float) -> None:
    """Feed ``spot`` and quotes re-priced at it, then refresh: the market after a move."""
    market.on_underlying(UnderlyingTick("SPX", spot, now))
    rows = market.track_all(chain)
    T = market.years_to_expiry(rows, now)
    g = greeks(spot, market.strike[rows], T, market.rate[rows], market.div_yield[rows], vol,
               market.is_call[rows])  # fmt: skip
    for c, price in zip(chain, g.price, strict=True):
        market.on_quote(Quote(c, round(0.99 * price, 4), round(1.01 * price, 4), 5.0, 5.0, now))
    market.refresh(rows, now)


def delta_of(market: MarketState, legs) -> float:
    return sum(leg.ratio * float(market.delta[market.index[leg.contract]]) for leg in legs)


def short(market_chain, put: float, call: float, ratio: int = -1) -> Position:
    _, chain = market_chain
    p = next(c for c in chain if c.strike == put and c.right is Right.PUT)
    c = next(c for c in chain if c.strike == call and c.right is Right.CALL)
    return Position("pos", StrategyType.STRANGLE, (Leg(p, ratio), Leg(c, ratio)), 3, NOW)


# --- DeltaBand / LiquidityFilter ---


def test_delta_band_midpoint_and_validation():
    assert DeltaBand().mid == pytest.approx(0.125)
    assert DeltaBand(0.16, 0.16).mid == pytest.approx(0.16)
    for low, high in [(0.0, 0.1), (0.2, 0.1), (0.1, 0.5), (-0.1, 0.1)]:
        with pytest.raises(ValueError, match=r"0 < low <= high < 0\.5"):
            DeltaBand(low, high)
    with pytest.raises(ValueError, match="liquidity"):
        LiquidityFilter(max_spread_pct=0)


def test_liquidity_filter_for_entry_takes_the_entry_rule():
    f = LiquidityFilter.for_entry(load_rules().entry)
    assert (f.max_spread_pct, f.min_open_interest) == (2.0, 100.0)


# --- strangle selection on the simulator ---


def test_sim_band_selection_balances_delta_then_nears_the_midpoint(sim_market):
    market, chain = sim_market
    band, liq = DeltaBand(0.08, 0.20), LiquidityFilter()  # wide enough for several strikes
    put, call = strangle_strikes(market, chain, band, liq)
    spot = market.spot_of("SPX")
    assert put.strike < spot < call.strike
    eligible = {}
    for right in (Right.PUT, Right.CALL):
        side = [c for c in chain if c.right is right]
        rows = market.rows(side)
        ok = liq.passes(market, rows)
        d = market.delta[rows]
        eligible[right] = [(c, x) for c, x, o in zip(side, d, ok, strict=True)
                           if o and band.low <= abs(x) <= band.high]  # fmt: skip
        assert len(eligible[right]) > 1  # a real choice was made
    # brute force over every in-band pair: best net delta, then nearest the band's midpoint
    pairs = [(round(abs(dp + dc), 6), abs(abs(dp) - band.mid) + abs(dc - band.mid), p, c)
             for p, dp in eligible[Right.PUT] for c, dc in eligible[Right.CALL]]  # fmt: skip
    best = min(pairs, key=lambda t: (t[0], t[1]))
    assert (put, call) == (best[2], best[3])
    assert put.right is Right.PUT and call.right is Right.CALL


def test_sim_strangle_position_names_the_band(sim_market):
    market, chain = sim_market
    pos = strangle(market, chain, "s1", NOW, band=DeltaBand(0.05, 0.10), quantity=4)
    assert pos.strategy is StrategyType.STRANGLE and pos.quantity == 4
    assert [leg.ratio for leg in pos.legs] == [-1, -1]
    assert [leg.contract.right for leg in pos.legs] == [Right.PUT, Right.CALL]
    assert "0.05-0.1" in pos.note
    for leg in pos.legs:
        assert 0.05 <= abs(market.delta[market.index[leg.contract]]) <= 0.10


def test_sim_entry_filter_too_tight_for_the_sim_spreads_says_why(sim_market):
    """The sim's 1DTE wings quote 4-9% wide: the 2% entry rule leaves nothing, and says so."""
    market, chain = sim_market
    with pytest.raises(StrategyError) as err:
        strangle_strikes(market, chain, liquidity=LiquidityFilter.for_entry(load_rules().entry))
    msg = str(err.value)
    assert re.search(r"no put with \|delta\| in 0\.10-0\.15 passes the liquidity filters", msg)
    assert re.search(r"nearest: \d+ P, \|delta\| 0\.1\d, spread \d+% of mid", msg)


def test_short_strangle_is_unchanged_for_existing_callers(sim_market):
    market, chain = sim_market
    pos = short_strangle(market, chain, "demo", NOW, delta=0.10)
    put = nearest_delta(market, [c for c in chain if not c.is_call], -0.10)
    call = nearest_delta(market, [c for c in chain if c.is_call], 0.10)
    assert pos.legs == (Leg(put, -1), Leg(call, -1))
    assert pos.note == "short 0.1-delta strangle" and pos.quantity == 1


def test_mixed_expiries_are_rejected(sim, sim_market):
    market, chain = sim_market
    other = [c for c in sim.chain("SPXW") if c.expiry != chain[0].expiry][:4]
    market.track_all(other)
    for fn in (strangle_strikes, short_strangle):
        args = ("id", NOW) if fn is short_strangle else ()
        with pytest.raises(StrategyError, match="one expiry, got 2"):
            fn(market, [*chain, *other], *args)
    with pytest.raises(StrategyError, match="one expiry, got 0"):
        strangle_strikes(market, [])


# --- strangle selection on hand-built markets ---

BAND_ROWS = [
    (4900.0, "P", -0.16), (4910.0, "P", -0.14), (4920.0, "P", -0.12), (4930.0, "P", -0.10),
    (4940.0, "P", -0.09), (5060.0, "C", 0.09), (5070.0, "C", 0.11), (5080.0, "C", 0.13),
    (5090.0, "C", 0.155),
]  # fmt: skip


def test_band_picks_the_contract_nearest_the_midpoint_on_both_sides():
    market, chain = hand_market(BAND_ROWS)
    put, call = strangle_strikes(market, chain)
    assert (put.strike, call.strike) == (4920.0, 5080.0)  # 0.12 and 0.13 vs midpoint 0.125
    put, call = strangle_strikes(market, chain, DeltaBand(0.12, 0.15))  # midpoint 0.135
    assert (put.strike, call.strike) == (4910.0, 5080.0)
    # nothing inside the band: never settle for a contract outside it
    with pytest.raises(
        StrategyError, match=r"nearest: 5090 C, \|delta\| 0\.15\d*, outside the band"
    ):
        strangle_strikes(market, chain, DeltaBand(0.14, 0.15))
    # the band edges are inclusive
    assert strangle_strikes(market, chain, DeltaBand(0.09, 0.09)) == (chain[4], chain[5])


@pytest.mark.parametrize(
    ("quote", "oi", "delta", "liquidity"),
    [
        ((1.00, 1.30), 1000.0, 0.12, LiquidityFilter()),  # spread 26% of mid
        ((0.00, 0.10), 1000.0, 0.12, LiquidityFilter()),  # no bid: one-sided
        ((0.03, 0.031), 1000.0, 0.12, LiquidityFilter(min_bid=0.05)),  # bid below the minimum
        ((1.00, 1.04), 50.0, 0.12, LiquidityFilter(min_open_interest=100)),  # thin OI
        ((1.00, 1.04), math.nan, 0.12, LiquidityFilter(min_open_interest=100)),  # unknown OI
        ((1.00, 1.04), 1000.0, math.nan, LiquidityFilter()),  # unpriced
    ],
)
def test_filters_exclude_the_best_contract_and_the_next_best_wins(quote, oi, delta, liquidity):
    market, chain = hand_market(BAND_ROWS)
    best = chain[7]  # 5080 C, 0.13
    requote(market, best, *quote)
    market.open_interest[market.index[best]] = oi
    market.delta[market.index[best]] = delta
    assert strangle_strikes(market, chain, liquidity=liquidity)[1].strike == 5070.0


def test_unknown_open_interest_passes_without_a_minimum():
    market, chain = hand_market(BAND_ROWS)
    market.open_interest[:] = np.nan
    assert strangle_strikes(market, chain)[1].strike == 5080.0
    with pytest.raises(StrategyError, match="open interest unknown"):
        strangle_strikes(market, chain, liquidity=LiquidityFilter(min_open_interest=1))


def test_empty_result_names_the_nearest_contract_and_why_it_failed():
    market, chain = hand_market(BAND_ROWS)
    for c in chain[6:8]:  # both calls inside the band go wide
        requote(market, c, 1.00, 1.15)
    market.open_interest[market.index[chain[7]]] = 20.0
    with pytest.raises(StrategyError) as err:
        strangle_strikes(market, chain, liquidity=LiquidityFilter(min_open_interest=100))
    assert str(err.value) == (
        "no call with |delta| in 0.10-0.15 passes the liquidity filters "
        "(nearest: 5080 C, |delta| 0.13, spread 14% of mid, open interest 20)"
    )


def test_no_greeks_and_untracked_contracts_are_clear_errors():
    market = MarketState()  # quotes but no spot: no deltas
    chain = [Contract("SPXW", EXPIRY, 4900.0, "P"), Contract("SPXW", EXPIRY, 5100.0, "C")]
    for c in chain:
        requote(market, c, 1.0, 1.04)
    market.refresh(None, NOW)
    with pytest.raises(StrategyError, match="no candidate has a delta yet"):
        strangle_strikes(market, chain)
    market, chain = hand_market(BAND_ROWS)
    with pytest.raises(StrategyError, match="SPXW 2024-03-15 5200 C is not tracked"):
        strangle_strikes(market, [*chain, Contract("SPXW", EXPIRY, 5200.0, "C")])


# --- rolls ---


def test_sim_roll_of_the_untested_call_after_spot_falls(sim_market):
    market, chain = sim_market
    pos = strangle(market, chain, "s1", NOW, quantity=2)
    before_open = delta_of(market, pos.legs)
    spot = market.spot_of("SPX")
    market.on_underlying(UnderlyingTick("SPX", spot * 0.99, NOW + NS_PER_S))
    market.refresh(market.track_all(chain), NOW + NS_PER_S)
    before = delta_of(market, pos.legs)
    assert before > before_open + 0.05  # the fall made the short strangle long delta
    old, new = roll_target(market, chain, pos)
    put, call = pos.legs
    assert old == call and new.ratio == -1 and new.contract.right is Right.CALL
    assert new.contract.expiry == call.contract.expiry
    assert put.contract.strike <= new.contract.strike < call.contract.strike  # toward spot
    after = rolled(pos, old, new)
    assert abs(delta_of(market, after.legs)) < abs(before)
    assert (after.id, after.quantity, after.strategy) == ("s1", 2, StrategyType.STRANGLE)
    assert after.legs == (put, new)
    assert LiquidityFilter().passes(market, market.rows([new.contract])).all()


def test_priced_roll_is_the_strike_nearest_delta_neutral():
    strikes = np.arange(4800.0, 5205.0, 5.0)
    market, chain = priced_market(5000.0, strikes)
    pos = strangle(market, chain, "s1", NOW)
    move_to(market, chain, 4940.0, NOW + NS_PER_S, 0.15)
    before = delta_of(market, pos.legs)
    _, new = roll_target(market, chain, pos)
    # brute force: every call from the short put strike up
    calls = [c for c in chain if c.is_call and c.strike >= pos.legs[0].contract.strike]
    nets = [abs(delta_of(market, (pos.legs[0], Leg(c, -1)))) for c in calls]
    assert new.contract == calls[int(np.argmin(nets))]
    assert min(nets) < 0.02 < 0.2 < abs(before)


def test_explicit_side_rolls_the_tested_put_down_and_out():
    strikes = np.arange(4700.0, 5205.0, 5.0)
    market, chain = priced_market(5000.0, strikes)
    pos = strangle(market, chain, "s1", NOW)
    move_to(market, chain, 4940.0, NOW + NS_PER_S, 0.15)
    before = delta_of(market, pos.legs)
    old, new = roll_target(market, chain, pos, Right.PUT)
    assert old == pos.legs[0] and new.contract.right is Right.PUT
    assert new.contract.strike < old.contract.strike <= pos.legs[1].contract.strike
    assert abs(delta_of(market, rolled(pos, old, new).legs)) < abs(before)
    assert roll_target(market, chain, pos, "C")[0] == pos.legs[1]  # a plain "C" is a right too


def test_a_roll_never_crosses_the_other_short_strike():
    market, chain = hand_market([
        (4950.0, "P", -0.60), (4900.0, "C", 0.70), (4950.0, "C", 0.45), (5000.0, "C", 0.25),
        (5050.0, "C", 0.05),
    ], spot=4900.0)  # fmt: skip
    pos = short((market, chain), put=4950.0, call=5050.0)
    old, new = roll_target(market, chain, pos)  # target call delta 0.60: 4900 C would be nearest
    assert new.contract.strike == 4950.0
    assert rolled(pos, old, new).strategy is StrategyType.STRANGLE  # a straddle is a strangle


def test_a_roll_keeps_the_ratio_and_an_iron_condor_inside_its_wings():
    market, chain = hand_market([
        (4800.0, "P", -0.02), (4900.0, "P", -0.40), (5050.0, "C", 0.20), (5100.0, "C", 0.10),
        (5150.0, "C", 0.02),
    ], spot=4950.0)  # fmt: skip
    lp, sp, _, sc, lc = (Leg(c, r) for c, r in zip(chain, (2, -2, -2, -2, 2), strict=True))
    condor = Position("ic", StrategyType.IRON_CONDOR, (lp, sp, sc, lc), 1, NOW)
    assert delta_of(market, condor.legs) == pytest.approx(0.60)
    old, new = roll_target(market, chain, condor)  # the untested call, down toward spot
    assert (old, new) == (sc, Leg(chain[2], -2))
    assert rolled(condor, old, new).strategy is StrategyType.IRON_CONDOR
    # the put would go to delta -0.10, but the only put beyond it is its own 4800 wing
    with pytest.raises(StrategyError, match="already delta-neutral for this side"):
        roll_target(market, chain, condor, Right.PUT)


def test_already_delta_neutral_and_bad_rolls_are_errors():
    market, chain = hand_market([
        (4900.0, "P", -0.08), (4950.0, "P", -0.12), (5050.0, "C", 0.12), (5100.0, "C", 0.08),
    ])  # fmt: skip
    pos = short((market, chain), put=4950.0, call=5050.0)
    for side in (None, Right.PUT, Right.CALL):
        with pytest.raises(StrategyError, match=r"already delta-neutral.*net delta \+0\.000"):
            roll_target(market, chain, pos, side)
    long_only = Position("l", StrategyType.CUSTOM, (Leg(chain[0], 1),), 1, NOW)
    with pytest.raises(StrategyError, match="no short leg to roll"):
        roll_target(market, chain, long_only)
    with pytest.raises(StrategyError, match="has no leg"):
        rolled(pos, Leg(chain[0], -1), Leg(chain[1], -1))
    crossed = rolled(pos, pos.legs[1], Leg(Contract("SPXW", EXPIRY, 4850.0, "C"), -1))
    assert (crossed.id, crossed.quantity, crossed.strategy) == ("pos", 3, StrategyType.CUSTOM)
    market.delta[market.index[chain[2]]] = np.nan
    with pytest.raises(StrategyError, match="no delta for 5050 C"):
        roll_target(market, chain, pos)


# --- wings and protection ---


def test_sim_wings_make_an_iron_condor(sim_market):
    market, chain = sim_market
    pos = strangle(market, chain, "s1", NOW, quantity=2)
    wing_legs = wings(market, chain, pos, wing_delta=0.05)
    lp, lc = wing_legs
    (sp, sc), liq = pos.legs, LiquidityFilter()
    assert (lp.ratio, lc.ratio) == (1, 1)
    assert lp.contract.strike < sp.contract.strike and lc.contract.strike > sc.contract.strike
    for wing, k in ((lp, sp.contract), (lc, sc.contract)):
        beyond = [c for c in chain if c.right is k.right
                  and (c.strike > k.strike if k.is_call else c.strike < k.strike)]  # fmt: skip
        rows = market.rows(beyond)
        gap = np.where(liq.passes(market, rows), np.abs(np.abs(market.delta[rows]) - 0.05), np.inf)
        assert wing.contract == beyond[int(np.argmin(gap))]
    condor = protected(pos, wing_legs)
    assert condor.strategy is StrategyType.IRON_CONDOR
    assert condor.legs == (lp, sp, sc, lc)
    assert (condor.id, condor.quantity, condor.opened_ts_ns) == ("s1", 2, NOW)
    with pytest.raises(StrategyError, match="already has wings"):
        wings(market, chain, condor)


def test_wings_match_the_short_ratio_and_cover_only_naked_legs():
    market, chain = hand_market([
        (4800.0, "P", -0.03), (4850.0, "P", -0.05), (4900.0, "P", -0.12), (5100.0, "C", 0.12),
        (5150.0, "C", 0.06), (5200.0, "C", 0.02),
    ])  # fmt: skip
    pos = short((market, chain), put=4900.0, call=5100.0, ratio=-3)
    assert [(w.contract.strike, w.ratio) for w in wings(market, chain, pos)] == [
        (4850.0, 3), (5150.0, 3)
    ]  # fmt: skip
    half = Position("h", StrategyType.CUSTOM, (*pos.legs, Leg(chain[0], 3)), 1, NOW)
    only_call = wings(market, chain, half)
    assert [w.contract.strike for w in only_call] == [5150.0]
    assert protected(half, only_call).strategy is StrategyType.IRON_CONDOR
    with pytest.raises(StrategyError, match="no iron condor"):
        protected(pos, only_call)  # one wing is not a condor
    requote(market, chain[4], 1.0, 2.0)  # the 5150 C goes wide: the next beyond it wins
    assert [w.contract.strike for w in wings(market, chain, half)] == [5200.0]
    requote(market, chain[5], 0.0, 0.05)
    with pytest.raises(StrategyError, match=r"no call wing beyond 5100 C.*nearest: 5150 C"):
        wings(market, chain, half)
    with pytest.raises(ValueError, match="wing_delta"):
        wings(market, chain, pos, wing_delta=0.5)


# --- units to close ---


@pytest.mark.parametrize(
    ("quantity", "fraction", "expected"),
    [(1, 0.5, 1), (1, 0.01, 1), (2, 0.5, 1), (3, 0.5, 2), (5, 0.5, 3), (4, 0.25, 1),
     (10, 0.25, 3), (10, 1.0, 10), (10, 0.01, 1), (7, 0.999, 7), (100, 0.333, 33)],
)  # fmt: skip
def test_units_to_close(quantity, fraction, expected):
    assert units_to_close(quantity, fraction) == expected


@pytest.mark.parametrize(
    ("quantity", "fraction"),
    [(0, 0.5), (-1, 0.5), (True, 0.5), (2.0, 0.5), (3, 0.0), (3, -0.5), (3, 1.01), (3, math.nan)],
)
def test_units_to_close_rejects_bad_inputs(quantity, fraction):
    with pytest.raises(ValueError, match=r"quantity|fraction"):
        units_to_close(quantity, fraction)


@given(
    st.integers(min_value=1, max_value=100_000),
    st.floats(min_value=0.0, max_value=1.0, exclude_min=True),
)
def test_units_to_close_stays_in_bounds_and_near_the_fraction(quantity, fraction):
    n = units_to_close(quantity, fraction)
    assert 1 <= n <= quantity
    assert abs(n - quantity * fraction) <= 0.5 + 1e-6 or n == 1


def test_otm_pct_and_premium_pick_the_grids_strike_for_each_side():
    """The grid's other rules (``select_short``): out of the money, quoted on both sides, the
    strike nearest spot x (1 -/+ X%), or the mid nearest $X."""
    rows = [(k, r, 0.0) for k in (4940.0, 4950.0, 4960.0, 5040.0, 5050.0, 5060.0) for r in "PC"]
    market, chain = hand_market(rows, spot=5000.0)
    for c in chain:  # the mid falls with the distance from spot: 5.00 at 40 points, 1.00 at 60
        d = abs(c.strike - 5000.0)
        requote(market, c, 5.0 - (d - 40) / 5 - 0.02, 5.0 - (d - 40) / 5 + 0.02)
    pos = short_strangle(market, chain, "o", NOW, rule=("otm_pct", 1.0))
    assert [leg.contract.strike for leg in pos.legs] == [4950.0, 5050.0]  # 1% of 5000 out
    assert pos.note == "short 1% OTM strangle"
    pos = short_strangle(market, chain, "p", NOW, rule=("premium", 1.2))
    assert [leg.contract.strike for leg in pos.legs] == [4940.0, 5060.0]  # mid 1.00 nearest
    assert pos.note == "short $1.20-premium strangle"
    # in the money (a 5040 put, a 4960 call) never counts, nor a one-sided quote
    puts = [c for c in chain if not c.is_call]
    assert nearest_otm(market, puts, "otm_pct", 0.0).strike == 4960.0
    requote(market, next(c for c in puts if c.strike == 4960.0), 0.0, 5.0)
    assert nearest_otm(market, puts, "otm_pct", 0.0).strike == 4950.0
    with pytest.raises(StrategyError, match="out-of-the-money"):
        nearest_otm(market, [c for c in puts if c.strike >= 4960.0], "otm_pct", 1.0)
    with pytest.raises(StrategyError, match="unknown strike rule"):
        nearest_otm(market, puts, "P95", 95.0)
    # the grid's P-band: the first strike beyond spot x (1 + LO) for a put, (1 + HI) a call
    calls = [c for c in chain if c.is_call]
    assert nearest_otm(market, puts, "band", -0.0095, 0.0095).strike == 4950.0  # <= 4952.5
    assert nearest_otm(market, calls, "band", -0.0095, 0.0095).strike == 5050.0  # >= 5047.5
    pos = short_strangle(market, chain, "b", NOW, rule=("band", -0.0095, 0.0095))
    assert pos.note == "short strangle beyond the move band -0.95%/+0.95%"

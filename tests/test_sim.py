import asyncio
from datetime import date, datetime

import numpy as np
import pytest

from kit.adapters.sim.feed import ScriptStep, SimFeed
from kit.adapters.sim.market import MarketSim, SimConfig
from kit.core.clock import NEW_YORK, SimClock, expiry_time, to_ns
from kit.core.model import Quote, Right, Trade, UnderlyingTick

OPEN = datetime(2024, 1, 19, 9, 30, tzinfo=NEW_YORK)


def at(h: int, m: int = 0, day: int = 19) -> datetime:
    return datetime(2024, 1, day, h, m, tzinfo=NEW_YORK)


async def run_feed(feed: SimFeed, clock: SimClock, until: datetime) -> list:
    events: list = []

    async def consume() -> None:
        async for ev in feed:
            events.append(ev)

    task = asyncio.create_task(consume())
    await feed.start()
    await clock.run_until(until)
    await feed.close()
    await task
    return events


def test_same_seed_same_market_and_different_seed_differs():
    a, b, c = (MarketSim(OPEN, SimConfig(seed=s)) for s in (7, 7, 8))
    for m in (a, b, c):
        m.advance_to(to_ns(at(11)))
    contracts = a.chain("SPXW")[:50]
    assert a.spot("SPX") == b.spot("SPX") != c.spot("SPX")
    assert a.quotes(contracts) == b.quotes(contracts)


def test_chains_are_listed_like_the_real_ones():
    m = MarketSim(at(10))
    spxw = {c.expiry for c in m.chain("SPXW")}
    assert date(2024, 1, 19) in spxw  # 0DTE
    assert min(spxw) == date(2024, 1, 19)
    quarter_ends = [date(2024, 3, 28), date(2024, 6, 28), date(2024, 9, 30), date(2024, 12, 31)]
    assert sorted(spxw) == [date(2024, 1, d) for d in (19, 22, 23, 24, 25)] + quarter_ends
    monthly = sorted({c.expiry for c in m.chain("SPX")})
    assert monthly[:2] == [date(2024, 2, 16), date(2024, 3, 15)]  # third Fridays; Jan's settled
    assert len(monthly) == 12 and monthly[-1] == date(2025, 1, 17)  # a year of monthlies
    assert expiry_time(m.chain("SPX")[0]).astimezone(NEW_YORK).hour == 9  # AM settlement
    btc = sorted({c.expiry for c in m.chain("BTC")})
    assert btc == [date(2024, 1, 20), date(2024, 1, 21), date(2024, 1, 22)]  # 12:00 UTC passed
    for root, step in (("SPXW", 5), ("SPY", 1), ("NDX", 100), ("BTC", 500)):
        strikes = np.array([c.strike for c in m.chain(root)])
        assert np.all(np.mod(strikes, step) == 0), root
    spy = np.array([c.strike for c in m.chain("SPY")])
    assert 0.8 * 500 < np.median(spy) < 1.2 * 500  # SPY is SPX / 10


def test_open_interest_peaks_near_spot_and_on_round_strikes():
    m = MarketSim(at(10))
    # the core strikes (one grid step apart): a far-tier strike collects its missing neighbours'
    puts = [c for c in m.chain("SPX", core=True)
            if c.expiry == date(2024, 2, 16) and c.right is Right.PUT]  # fmt: skip
    oi = m.open_interest(puts)
    strikes = np.array([c.strike for c in puts])
    assert (oi >= 0).all() and oi.sum() > 0
    assert abs(strikes[np.argmax(oi)] - 5000) < 600
    by_strike = dict(zip(strikes, oi, strict=True))
    round_vs_neighbours = [by_strike[k] / ((by_strike[k - 25] + by_strike[k + 25]) / 2)
                           for k in strikes if k % 250 == 0 and abs(k - 5000) <= 750]  # fmt: skip
    assert len(round_vs_neighbours) >= 5
    assert np.mean(round_vs_neighbours) > 1.6


def test_the_simulator_is_reproducible_across_processes():
    import subprocess
    import sys

    code = (
        "from datetime import datetime; from kit.core.clock import NEW_YORK; "
        "from kit.adapters.sim.market import MarketSim; "
        "m = MarketSim(datetime(2024, 1, 19, 10, tzinfo=NEW_YORK)); "
        "print(m.open_interest(m.chain('SPX')).sum(), m.quotes(m.chain('SPXW')[:50])[7])"
    )
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": str(seed), "PATH": ""}, check=True).stdout
            for seed in (1, 2)}  # fmt: skip
    assert len(outs) == 1


def test_surface_has_put_skew_and_no_static_arbitrage():
    m = MarketSim(at(10))
    F = m.spot("SPX")
    T = 30 / 365
    iv_put_wing, iv_atm, iv_call_wing = m.implied_vol("SPX", [0.93 * F, F, 1.07 * F], T)
    assert iv_put_wing > iv_atm > iv_call_wing
    for expiry in sorted({c.expiry for c in m.chain("SPXW")}):
        for right in Right:
            chain = sorted((c for c in m.chain("SPXW") if c.expiry == expiry and c.right is right),
                           key=lambda c: c.strike)  # fmt: skip
            mid = m.quote_arrays(chain)[4]
            # strikes are tiered (the grid near spot, coarser far out): divided differences
            slope = np.diff(mid) / np.diff([c.strike for c in chain])
            assert (slope <= 1e-9).all() if right is Right.CALL else (slope >= -1e-9).all()
            assert (np.diff(slope) >= -1e-9).all(), "butterflies must not be negative"


def test_quotes_are_valid_and_spreads_widen_out_of_the_money_and_into_the_close():
    m = MarketSim(at(10))
    zero_dte = sorted((c for c in m.chain("SPXW") if c.expiry == date(2024, 1, 19)),
                      key=lambda c: c.strike)  # fmt: skip
    bid, ask, _, as_, mid, _, alive = m.quote_arrays(zero_dte)
    assert alive.all()
    assert (bid <= ask).all() and (bid >= 0).all() and (as_ > 0).all()
    rel = (ask - bid) / mid
    atm = np.argmin([abs(c.strike - m.spot("SPX")) for c in zero_dte])
    assert rel[0] > 3 * rel[atm]  # far OTM put: much wider relative spread
    k = zero_dte[atm]
    midday = (m.quote_arrays([k])[1] - m.quote_arrays([k])[0])[0]
    m.advance_to(to_ns(at(15, 57)))
    late_bid, late_ask, *_ = m.quote_arrays([k])
    late_mid = (late_bid + late_ask)[0] / 2
    assert (late_ask - late_bid)[0] / late_mid > midday / mid[atm]


async def test_scripted_drop_moves_spx_and_widens_spreads():
    clock = SimClock(at(10))
    feed = SimFeed(clock, script=[ScriptStep(60, "drop", "SPX", 1.5, 300)])
    atm = min((c for c in feed.market.chain("SPXW") if c.expiry == date(2024, 1, 19)),
              key=lambda c: abs(c.strike - 5000))  # fmt: skip
    await feed.subscribe(["SPX", atm])
    events = await run_feed(feed, clock, at(10, 7))
    spx = {e.ts_ns: e.price for e in events if isinstance(e, UnderlyingTick)}
    before = spx[to_ns(at(10, 1))]
    after = spx[to_ns(at(10, 6))]
    assert after / before - 1 < -0.01
    quotes = [e for e in events if isinstance(e, Quote)]
    spread = lambda q: (q.ask - q.bid) / ((q.ask + q.bid) / 2)  # noqa: E731
    early = np.mean([spread(q) for q in quotes if q.ts_ns < to_ns(at(10, 1))])
    late = np.mean([spread(q) for q in quotes if q.ts_ns > to_ns(at(10, 5))])
    assert late > 1.5 * early


async def test_pause_script_silences_the_feed_while_the_market_goes_on():
    clock = SimClock(at(10))
    feed = SimFeed(clock, script=[ScriptStep(60, "pause", size=30)])
    await feed.subscribe(["SPX", *feed.market.chain("SPXW")[:5]])
    events = await run_feed(feed, clock, at(10, 3))
    ts = [e.ts_ns for e in events if isinstance(e, Quote | UnderlyingTick)]
    start, end = to_ns(at(10, 1)), to_ns(at(10, 1)) + 30 * 10**9
    assert not [t for t in ts if start <= t < end]
    assert [t for t in ts if t >= end]
    assert feed.market.steps == 180


async def test_stream_matches_history_and_trades_add_up_to_volume():
    clock = SimClock(at(10))
    feed = SimFeed(clock)
    contracts = feed.market.chain("SPXW")[100:130]
    await feed.subscribe(contracts)
    events = await run_feed(feed, clock, at(10, 30))
    c = contracts[3]
    streamed = [e for e in events if isinstance(e, Quote) and e.contract == c]
    assert streamed == feed.market.quote_history(c, streamed[0].ts_ns, clock.now_ns())
    traded = dict.fromkeys(contracts, 0.0)
    for e in events:
        if isinstance(e, Trade):
            traded[e.contract] += e.size
    assert sum(traded.values()) > 0
    np.testing.assert_array_equal(feed.market.volume(contracts), [traded[k] for k in contracts])


async def test_unknown_subscriptions_are_rejected_not_fatal():
    clock = SimClock(at(10))
    feed = SimFeed(clock)
    bogus = feed.market.chain("SPXW")[0].__class__("SPXW", date(2030, 1, 18), 5000, "C")
    await feed.subscribe([bogus, "DOGE", "SPX"])
    assert feed.stats.rejected == {"unknown_contract": 1, "unknown_symbol": 1}
    events = await run_feed(feed, clock, at(10, 0, 19).replace(second=5))
    assert any(isinstance(e, UnderlyingTick) for e in events)


def test_vix_moves_against_the_index_most_days():
    m = MarketSim(OPEN, SimConfig(seed=3, step_s=60.0))
    closes = []
    for day in range(1, 60):
        m.advance_to(to_ns(OPEN) + day * 86400 * 10**9)
        closes.append((m.spot("SPX"), m.spot("VIX")))
    spx, vix = np.array(closes).T
    moved = (np.diff(spx) != 0) & (np.diff(vix) != 0)
    opposite = np.sign(np.diff(spx)[moved]) != np.sign(np.diff(vix)[moved])
    assert moved.sum() > 30
    assert opposite.mean() > 0.65
    assert vix.min() > 8
    assert vix.max() < 60


def test_shock_on_an_unknown_symbol_is_an_error():
    from kit.adapters.sim.market import Shock

    with pytest.raises(ValueError, match="unknown underlying"):
        MarketSim(OPEN).shock(Shock("XYZ", 0, 1, log_return=-0.01))


def test_the_path_is_the_same_however_the_market_is_advanced():
    """A desk stepping second by second, a restart replaying to now and an export jumping to
    15:00 see the same market to the last bit (random numbers come in blocks keyed by step)."""
    cfg = SimConfig(seed=4, step_s=5.0)
    a, b = MarketSim(OPEN, cfg), MarketSim(OPEN, cfg)
    end = to_ns(at(11, 0, day=22))  # across the weekend
    a.advance_to(end)
    rng = np.random.default_rng(0)
    while b.now_ns < end:
        b.advance_to(min(end, b.now_ns + int(rng.integers(1, 700)) * b.step_ns))
    assert a.steps == b.steps
    for sym in ("SPX", "NDX", "BTC", "VIX"):
        assert [a.spot(sym, i) for i in range(0, a.steps, 997)] == [
            b.spot(sym, i) for i in range(0, b.steps, 997)
        ]
    spx_friday_close = a.spot("SPX", a.step_index(to_ns(at(16, 0))))
    assert a.spot("SPX", a.step_index(to_ns(at(9, 30, day=22)))) != spx_friday_close  # the gap
    assert a.spot("SPX", a.step_index(to_ns(at(12, 0, day=20)))) == spx_friday_close  # Saturday

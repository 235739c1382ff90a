"""Chain shape: the statistics measured on the real CBOE chains, and the simulator held to them.

The bands (:data:`kit.signals.shape.BANDS`) come from the real files in ``../shared/data/``; the
simulated SPX chain at 15:00 on a calm day must sit inside every band on most days, and its GEX
must change sign with the volatility regime (calm: positive with the zero-gamma flip below
spot; stressed: negative), computed by :func:`kit.signals.gex.gex_levels` as for a real file.
"""

from __future__ import annotations

import itertools
from datetime import date, time
from pathlib import Path

import pytest

from kit.adapters.sim.chains import is_quarter_end
from kit.adapters.sim.export import market_at, simulated_chain
from kit.adapters.sim.market import SimConfig
from kit.signals.chains import read_cboe
from kit.signals.shape import BANDS, outside, shape_stats

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPX_FILE = DATA / "spx_quotedata_2023-09-14.csv"
DAYS = (date(2024, 3, 12), date(2024, 6, 5), date(2024, 9, 18), date(2023, 9, 14))


@pytest.fixture(scope="module")
def real_spx() -> dict[str, float]:
    return shape_stats(read_cboe(SPX_FILE))


def test_real_spx_chain_measures_as_its_readme_says(real_spx):
    s = real_spx
    assert -0.76 < s["strike_lo"] < -0.70 and 0.25 < s["strike_hi"] < 0.32  # -75% .. +30%
    assert s["atm_iv_1w"] < s["atm_iv_1m"] < s["atm_iv_3m"] < s["atm_iv_1y"]  # calm: rising
    assert s["skew_1w"] < s["skew_1m"] < s["skew_3m"] < s["skew_1y"]  # skew grows with tenor
    assert 0.01 < s["spread_atm_near"] < 0.03 and 0.1 <= s["spread_atm_near_usd"] <= 1.0
    assert s["spread_atm_near"] < s["spread_d25_near"] < s["spread_d10_near"]
    assert 3 < s["oi_put_call_below"] < 13 and 1.3 < s["oi_call_put_above"] < 5
    assert s["oi_near_daily_share"] < 0.27 and s["oi_put_far_share"] > 0.3
    assert s["gex_bn"] > 0 and -0.05 < s["zero_gamma_vs_spot"] < 0  # calm: flip below spot
    assert outside(s) == []  # the bands hold the file they were set from


def test_real_ndx_chain_on_a_stressed_day_is_inverted_and_short_gamma():
    s = shape_stats(read_cboe(DATA / "ndx_quotedata_2022-02-04.csv"))
    assert s["atm_iv_1w"] > s["atm_iv_1m"] > s["atm_iv_1y"]  # inverted term structure
    assert s["gex_bn"] < 0 and s["zero_gamma_vs_spot"] > 0


def test_quarter_ends_are_the_last_session_of_the_quarter():
    assert is_quarter_end(date(2023, 9, 29)) and is_quarter_end(date(2024, 3, 28))  # Good Friday
    assert not is_quarter_end(date(2023, 9, 28)) and not is_quarter_end(date(2023, 10, 31))


@pytest.fixture(scope="module")
def calm_days() -> dict[date, dict[str, float]]:
    cfg = SimConfig(vol_regime="calm")
    return {d: shape_stats(simulated_chain("SPX", d, time(15), config=cfg)) for d in DAYS}


def test_simulated_spx_sits_inside_the_real_bands_on_most_days(calm_days):
    misses = {d: outside(s) for d, s in calm_days.items()}
    assert sum(not m for m in misses.values()) >= len(DAYS) - 1, misses
    # and never far off: each statistic inside its band on at least 3 of the 4 days
    for name in BANDS:
        assert sum(name not in " ".join(m) for m in misses.values()) >= 3, (name, misses)


def test_calm_days_are_long_gamma_with_the_flip_below_spot(calm_days):
    for d, s in calm_days.items():
        assert s["gex_bn"] > 0, d
        assert -0.08 < s["zero_gamma_vs_spot"] < 0, d
        assert s["gex_bn"] < 60  # the order of a real SPX chain (16 bn), not 5-9x it


def test_stressed_days_are_short_gamma():
    cfg = SimConfig(vol_regime="stressed")
    for d in DAYS[:3]:
        s = shape_stats(simulated_chain("SPX", d, time(15), config=cfg))
        assert s["gex_bn"] < 0, d
        assert s["atm_iv_1w"] > s["atm_iv_1y"], d  # stressed: the term structure inverts


def test_the_desk_streams_only_the_core_strikes():
    """Far wings are listed (open interest, GEX, exports) but not what the desk subscribes to:
    the feed's per-tick set stays the +/- 4 sd core."""
    m = market_at("SPX", date(2024, 3, 12), time(10))
    zero_dte = [c for c in m.chain("SPXW") if c.expiry == date(2024, 3, 12)]
    core = [c for c in m.chain("SPXW", core=True) if c.expiry == date(2024, 3, 12)]
    strikes = sorted({c.strike for c in core})
    assert min(c.strike for c in zero_dte) < 0.3 * 5000 < strikes[0]
    assert len(core) < 0.6 * len(zero_dte)
    assert all(b - a == 5 for a, b in itertools.pairwise(strikes))  # the 5-pt grid
    assert strikes[0] < 0.985 * 5000 and strikes[-1] > 1.015 * 5000

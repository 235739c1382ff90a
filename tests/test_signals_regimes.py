"""IV rank and percentile, VIX and gamma regimes, regime-change events, the correlation break."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kit.core.model import Severity
from kit.signals import (
    GammaRegime,
    RegimeTracker,
    VixRegimeConfig,
    correlation_breaks,
    gamma_regime,
    is_correlation_break,
    iv_percentile,
    iv_rank,
    regime_changes,
    vix_regime,
    vix_regimes,
)

NAN = float("nan")


def test_iv_rank_and_percentile_definitions() -> None:
    year = [15.0] * 250 + [60.0, 10.0]
    # rank: (20 - 10) / (60 - 10); percentile: 251 of 252 days were below 20
    assert iv_rank(year, 20.0) == pytest.approx(20.0)
    assert iv_percentile(year, 20.0) == pytest.approx(251 / 252 * 100)
    assert iv_rank(year, 70.0) == 100.0 and iv_rank(year, 5.0) == 0.0  # clipped
    assert iv_percentile(year, 10.0) == 0.0  # strictly below
    assert np.isnan(iv_rank([15.0] * 10, 15.0)) and np.isnan(iv_rank([], 15.0))
    assert np.isnan(iv_percentile([NAN, NAN], 15.0)) and np.isnan(iv_rank(year, NAN))


def test_the_window_is_the_last_52_weeks() -> None:
    old_spike = [90.0] + [15.0] * 100 + list(np.linspace(10, 30, 252))
    assert iv_rank(old_spike, 20.0) == pytest.approx(50.0)  # the spike is 353 sessions ago
    assert iv_rank(old_spike, 20.0, window=None) == pytest.approx(12.5)
    assert iv_percentile(old_spike, 20.0, window=None) > iv_percentile(old_spike, 20.0)


@given(st.lists(st.floats(5, 90), min_size=2, max_size=300), st.floats(5, 90))
def test_rank_and_percentile_bounds(history, current) -> None:
    r, p = iv_rank(history, current), iv_percentile(history, current)
    assert np.isnan(r) or 0 <= r <= 100
    assert 0 <= p <= 100
    assert iv_percentile(history, max(history) + 1) == 100.0


def test_absolute_vix_bands() -> None:
    got = [vix_regime(v) for v in (11.9, 12.0, 15.99, 16.0, 21.9, 22.0, 29.9, 30.0, 80.0)]
    assert got == ["very_low", "low", "low", "medium", "medium", "high", "high", "extreme",
                   "extreme"]  # fmt: skip
    assert vix_regime(NAN) is None
    bands = ((20.0, "calm"), (float("inf"), "stressed"))
    assert vix_regime(19.0, bands) == "calm" and vix_regime(25.0, bands) == "stressed"


def test_vix_regimes_by_trailing_percentile() -> None:
    cfg = VixRegimeConfig(window_days=100, min_history=50)
    base = list(np.linspace(13.0, 23.0, 100))  # a year of calm-ish VIX
    series = [*base, 13.5, 16.0, 18.0, 20.5, 22.9, 45.0, 10.0, NAN]
    out = vix_regimes(series, cfg)
    assert out[:50] == [vix_regime(v) for v in base[:50]]  # too little history: absolute bands
    # percentiles among the previous 100 closes: 5%, 30%, 50%, 75%, 99%
    assert out[100:105] == ["very_low", "medium", "medium", "high", "extreme"]
    assert out[105] == "extreme" and out[106] == "very_low"  # absolute bounds still hold
    assert out[107] is None
    assert vix_regimes(series, VixRegimeConfig(method="absolute")) == [vix_regime(v)
                                                                       for v in series]  # fmt: skip
    with pytest.raises(ValueError, match="method"):
        vix_regimes(series, VixRegimeConfig(method="vibes"))  # type: ignore[arg-type]


def test_gamma_regime() -> None:
    assert gamma_regime(5000.0, 4900.0) is GammaRegime.LOW_VOL
    assert gamma_regime(5000.0, 5000.0) is GammaRegime.LOW_VOL
    assert gamma_regime(4890.0, 4900.0) is GammaRegime.HIGH_VOL
    assert gamma_regime(4890.0, 4900.0, vix_change_pct=25.0) is GammaRegime.CRASH
    assert gamma_regime(4890.0, 4900.0, vix=36.0) is GammaRegime.CRASH
    assert gamma_regime(5000.0, 4900.0, vix=50.0, vix_change_pct=40.0) is GammaRegime.LOW_VOL
    assert gamma_regime(5000.0, None, total_gex=-1e9) is GammaRegime.HIGH_VOL
    assert gamma_regime(5000.0, None, total_gex=1e9) is GammaRegime.LOW_VOL
    assert gamma_regime(5000.0, None) is GammaRegime.UNKNOWN


def test_regime_change_events_and_alerts() -> None:
    ts = [1, 2, 3, 4, 5, 6]
    regimes = ["LOW_VOL", "LOW_VOL", None, "HIGH_VOL", "CRASH", "LOW_VOL"]
    changes = regime_changes(ts, regimes, "gamma")
    assert [(c.ts_ns, c.previous, c.current) for c in changes] == [
        (4, "LOW_VOL", "HIGH_VOL"), (5, "HIGH_VOL", "CRASH"), (6, "CRASH", "LOW_VOL")
    ]  # fmt: skip
    alerts = [c.alert() for c in changes]
    assert [a.severity for a in alerts] == [Severity.WARNING, Severity.CRITICAL, Severity.INFO]
    assert all(a.rule == "regime_change" and a.key == "gamma" for a in alerts)
    assert alerts[0].inputs == {"previous": "LOW_VOL", "current": "HIGH_VOL"}
    assert regime_changes([], [], "vix") == []

    tracker = RegimeTracker()
    assert tracker.update(1, "vix", "low") is None  # the first reading is no change
    assert tracker.update(2, "vix", "low") is None and tracker.update(3, "vix", None) is None
    change = tracker.update(4, "vix", "extreme", {"vix": 41.0})
    assert change is not None and (change.previous, change.current) == ("low", "extreme")
    assert change.alert().severity is Severity.CRITICAL and change.alert().inputs["vix"] == 41.0
    assert tracker.update(5, "gamma", "HIGH_VOL") is None  # kinds are tracked apart


def test_correlation_break_detector() -> None:
    assert is_correlation_break(-0.3, -2.0, 0.25, 1.0) is True
    assert is_correlation_break(-0.3, 4.0, 0.25, 1.0) is False  # VIX up: the normal relation
    assert is_correlation_break(-0.2, -2.0, 0.25, 1.0) is False  # index barely down
    assert is_correlation_break(NAN, -2.0, 0.25, 1.0) is False
    got = is_correlation_break(np.array([-0.3, -0.3, 0.5]), np.array([-1.0, -0.9, -3.0]), 0.25,
                               1.0)  # fmt: skip
    assert got.tolist() == [True, False, False]


def test_correlation_breaks_over_series() -> None:
    index = np.array([100.0, 100.0, 99.0, 98.0, 98.5, 99.5])
    vix = np.array([20.0, 20.0, 19.5, 19.0, 21.0, 18.0])
    # two steps back: -1% with VIX -2.5%, -2% with VIX -5%, then -0.5%, then up
    assert correlation_breaks(index, vix, 2, 1.0, 2.0).tolist() == [False, False, True, True,
                                                                    False, False]  # fmt: skip
    assert correlation_breaks(index, vix, 10, 1.0, 2.0).tolist() == [False] * 6
    with pytest.raises(ValueError, match="aligned"):
        correlation_breaks(index, vix[:-1], 2, 1.0, 2.0)
    with pytest.raises(ValueError, match="window"):
        correlation_breaks(index, vix, 0, 1.0, 2.0)

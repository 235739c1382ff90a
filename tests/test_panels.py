"""Monitor panels on snapshot-shaped documents: what the Greek gauges say for a 0DTE book."""

from __future__ import annotations

import pytest

from kit.ui.panels import Greeks, decay_left


def position(time_left_s: float, put_mark: float = 1.5, call_mark: float = 2.5) -> dict:
    legs = [{"strike": 4950.0, "is_call": False, "qty": -2.0, "multiplier": 100.0,
             "mark": put_mark},
            {"strike": 5050.0, "is_call": True, "qty": -2.0, "multiplier": 100.0,
             "mark": call_mark}]  # fmt: skip
    return {"id": "S", "underlying": "SPX", "time_left_s": time_left_s, "legs": legs,
            "theta_per_day": 3704.0, "vega_per_point": -50.0, "beta_delta_spy": 3.0,
            "delta_unit": 0.01, "gamma_unit": 0.02}  # fmt: skip


SNAP = {"spots": {"SPX": {"last": 5000.0}}, "rules": {}, "totals": {}}


def test_a_0dte_position_shows_the_decay_left_not_a_daily_rate() -> None:
    # both legs out of the money: all 1.50 + 2.50 of extrinsic is still to be earned, x2 x100
    assert decay_left(position(3 * 3600), 5000.0) == pytest.approx(800.0)
    # the put in the money by 60: its intrinsic is not decay
    assert decay_left(position(3600, put_mark=61.0), 4890.0) == pytest.approx(
        -2 * 100 * (60 - 61.0) - 2 * 100 * (0 - 2.5)
    )
    g = Greeks()
    g.update(SNAP, position(3 * 3600))
    assert g.theta.spec.title == "Θ $ to expiry" and g.theta.value == pytest.approx(800.0)


def test_a_longer_position_keeps_theta_per_day() -> None:
    assert decay_left(position(3 * 86_400), 5000.0) is None
    g = Greeks()
    g.update(SNAP, position(3 * 86_400))
    assert g.theta.spec.title == "Θ $/day" and g.theta.value == 3704.0
    assert decay_left(position(3600) | {"legs": [{"mark": None}]}, 5000.0) is None


def test_a_symbol_the_feed_does_not_have_says_so() -> None:
    from kit.ui.panels import Metrics

    m = Metrics()
    snap = {"spots": {"SPX": {"last": 5000.0, "change": 1.0, "change_pct": 0.02},
                      "VIX": {"last": 14.0, "change": 0.0, "change_pct": 0.0}}}  # fmt: skip
    m.update(snap, None, "NDX")
    assert "no NDX on this service (it streams SPX, VIX)" in m.text.value
    m.update(snap, None, "SPX")
    assert "symbol-missing" not in m.text.value and "5,000.00" in m.text.value


def test_the_alert_log_keeps_cleared_alerts_and_marks_closed_positions() -> None:
    from kit.ui.panels import AlertsFeed

    feed = AlertsFeed(lambda seq: None)
    log = [
        {"seq": 7, "ts_ns": 1_710_252_000_000_000_000, "severity": "WARNING",
         "rule": "profit_target", "message": "P&L 52% of the net credit: close",
         "position_id": "demo-1", "acked": True},
        {"seq": 8, "ts_ns": 1_710_252_060_000_000_000, "severity": "INFO", "rule": "entry",
         "message": "entry passed", "position_id": "demo-2", "acked": False},
    ]  # fmt: skip
    feed.update([])  # nothing active any more
    feed.update_log(log, {"demo-2"})
    text = feed.log.value
    assert text.index("entry passed") < text.index("P&amp;L 52%")  # newest first
    assert "demo-1 (closed)" in text and "demo-2 (closed)" not in text
    assert "close ✓" in text  # acknowledged


def test_delta_and_gamma_gauges_read_the_rules_sigma_units() -> None:
    g = Greeks()
    g.update({**SNAP, "rules": {"delta_band": 0.75, "gamma_warn": 0.5}},
             position(3 * 86_400) | {"delta_1s": 0.8, "gamma_1s": 0.3})  # fmt: skip
    assert g.delta.value == 0.8 and g.gamma.value == 0.3
    assert g.delta.spec.title == "Δ after 1σ" and g.delta.spec.warn == 0.75
    g.update(SNAP, position(3 * 86_400) | {"delta_1s": float("nan"), "gamma_1s": None})
    assert g.delta.value is None and g.gamma.value is None  # no IV yet: no needle, not NaN

"""Risk rule settings: defaults from kit/risk/rules.toml, strict overrides."""

from __future__ import annotations

import pytest

from kit.core.config import ConfigError
from kit.core.model import Severity
from kit.risk.rules import RULE_IDS, load_rules


def test_defaults_are_the_documented_seed_values():
    r = load_rules()
    assert [lv.at for lv in r.delta.levels] == [0.50, 0.75, 1.25]  # sigmas from delta-neutral
    assert [lv.action for lv in r.delta.levels] == ["", "roll_untested", "close_all"]
    assert [lv.at for lv in r.gamma.levels] == [0.50, 0.60]  # delta change for a 1-sigma move
    assert [lv.action for lv in r.profit_target.levels] == ["", "close_half", "close_all"]
    assert r.stop_loss.levels[0].at == 200 and r.strike_breach.levels[0].at == 0.2
    assert (r.trailing_stop.arm_pct, r.trailing_stop.tighten_from_pct) == (40, 50)
    assert (r.time_stop.minutes_to_close, r.time_stop.min_profit_pct) == (30, 10)
    assert r.gamma.levels[1].profitable_only and r.gamma.levels[1].action == "reduce_25"
    assert (r.rapid_move.move_pct, r.rapid_move.window_s) == (1.0, 300)
    assert r.liquidity.max_spread_pct == 10 and r.feed_stale.after_s == 30
    assert (r.entry.max_spread_pct, r.entry.min_open_interest) == (2, 100)
    assert (r.entry.max_abs_delta, r.entry.min_iv_rank) == (0.05, 30)
    assert not r.leg_delta.enabled and r.leg_delta.levels[0].at == 0.30  # a leg's own |delta|
    assert r.trailing_stop.locks == ()  # no fixed tiers by default
    assert set(RULE_IDS) == {"entry", "delta", "profit_target", "trailing_stop", "stop_loss",
                             "strike_breach", "leg_delta", "time_stop", "gamma", "rapid_move",
                             "liquidity", "feed_stale", "correlation_break",
                             "limits"}  # fmt: skip


def test_a_user_file_overrides_what_it_names_and_keeps_the_rest(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('[stop_loss]\nlevels = [{ at = 150, severity = "critical", action = "close_all" }]'
                 "\n[feed_stale]\nafter_s = 10\n")  # fmt: skip
    r = load_rules(f)
    assert r.stop_loss.levels[0].at == 150 and r.stop_loss.levels[0].severity is Severity.CRITICAL
    assert r.feed_stale.after_s == 10
    assert r.delta == load_rules().delta
    # a time stop may close losers too (a backtest's exit_time): its P&L floor may be < 0
    stop = load_rules(overrides={"time_stop": {"min_profit_pct": -50.0}}).time_stop
    assert stop.min_profit_pct == -50.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"detla": {}}, "unknown rule 'detla'"),
        ({"delta": {"levls": []}}, "delta: unknown key 'levls'"),
        ({"feed_stale": {"after_s": "30"}}, "feed_stale.after_s: expected a number"),
        ({"feed_stale": {"after_s": True}}, "feed_stale.after_s: expected a number"),
        ({"delta": {"levels": []}}, "delta.levels: expected a non-empty list"),
        ({"delta": {"levels": [{"at": 0.1}]}}, "delta.levels[0]: missing key 'severity'"),
        ({"delta": {"levels": [{"at": 0.1, "severity": "LOUD"}]}}, "unknown severity 'LOUD'"),
        ({"time_stop": {"action": "sell_everything"}}, "unknown action 'sell_everything'"),
        ({"rapid_move": {"watch": "SPX"}}, "rapid_move.watch: expected a list of strings"),
        ({"limits": 5}, "[limits] must be a table"),
        ({"leg_delta": {"levels": [{"at": 30, "severity": "WARNING"}]}}, "(0.30, not 30)"),
        ({"leg_delta": {"levels": [{"at": 1.0, "severity": "WARNING"}]}}, "between 0 and 1"),
        ({"trailing_stop": {"locks": [{"at": 20, "lock": 20}]}}, "a lock below its level"),
        ({"trailing_stop": {"locks": [{"at": 20}]}}, "missing key 'lock'"),
        ({"trailing_stop": {"locks": {"at": 20, "lock": 5}}}, "expected a list of locks"),
    ],
)
def test_broken_settings_are_named_errors(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_rules(overrides=overrides)
    assert message in str(err.value)


def test_unreadable_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_rules(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[delta\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_rules(bad)

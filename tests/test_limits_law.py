"""Risk limits are engine law: remote settings may tighten them, never loosen or disable them
beyond the rules the engine started with, and every threshold is finite and in range.

A real Desk, PaperBroker and OrderManager (the order manager tests' ``Env``) and the real
``Commands``; hypothesis sends every settings shape the rules schema allows."""

from __future__ import annotations

import asyncio
import contextlib
import math
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_order_manager import Env, strangle

from kit.app.commands import CommandError, Commands
from kit.core.config import ConfigError
from kit.execution.broker import OrderRejectedError
from kit.execution.intents import open_intent
from kit.risk.limits import loosened, tightest
from kit.risk.rules import Level, Rules, load_rules

FILE_LIMIT = 10  # kit/risk/rules.toml: max_position_size


async def _no_chain(root: str, dte: int) -> list:
    return []


def _values(hint: Any, key: str) -> st.SearchStrategy[Any]:
    """Any value a settings frame could carry for one key, sane or not."""
    number = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0, -1, 1, 5, 9, 10, 11, 500, 1e12, -0.0]),
    )
    if hint is float:
        return number
    if hint is bool:
        return st.booleans()
    if hint is str:
        return st.sampled_from(["close_all", "close_half", "freeze", "", "SPX", "bogus"])
    if typing.get_origin(hint) is tuple and typing.get_args(hint)[0] is str:
        return st.lists(st.sampled_from(["SPX", "NDX", "VIX"]), max_size=3)
    level = st.fixed_dictionaries(
        {"at": number, "severity": st.sampled_from(["INFO", "WARNING", "CRITICAL", "LOUD"])},
        optional={"action": st.sampled_from(["close_all", "reduce_25", "nope"]),
                  "profitable_only": st.booleans()},
    )  # fmt: skip
    return st.lists(level, max_size=3)


def _table(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    hints = typing.get_type_hints(cls, localns={"Level": Level})
    keys = {f.name: _values(hints[f.name], f.name) for f in fields(cls)}
    return st.dictionaries(st.sampled_from(sorted(keys)), st.none(), max_size=len(keys)).flatmap(
        lambda chosen: st.fixed_dictionaries({k: keys[k] for k in chosen})
    )


RULE_HINTS = typing.get_type_hints(Rules)
SETTINGS = st.dictionaries(
    st.sampled_from(sorted(RULE_HINTS)), st.none(), min_size=1, max_size=4
).flatmap(lambda rules: st.fixed_dictionaries({r: _table(RULE_HINTS[r]) for r in rules}))
# the attacks worth always trying, next to whatever hypothesis draws
ATTACKS = [
    {"limits": {"enabled": False}},
    {"limits": {"max_position_size": 500}},
    {"limits": {"max_position_size": math.nan}},
    {"limits": {"max_position_size": math.inf}},
    {"limits": {"max_position_size": -1}},
    {"limits": {"max_position_size": 5}},
    {"limits": {"max_position_size": 8}},  # looser than 5, still inside the file's 10
    {"limits": {"daily_loss_limit": 1e12, "max_total_risk": 1e12}},
]


async def _attack(frames: list[dict[str, Any]]) -> None:
    env = Env()
    env.strangle_quotes()
    commands = Commands(env.desk, env.manager, _no_chain)
    try:
        for rules in frames:
            # refused with a reason is fine; accepted, the limits must still be within the law
            with contextlib.suppress(CommandError):
                await commands.run({"cmd": "settings", "rules": rules}, "attacker")
            limits = tightest(env.desk.rules.limits, env.desk.limit_ceiling)
            assert limits.enabled and limits.max_position_size <= FILE_LIMIT
            assert not loosened(env.desk.rules.limits, env.desk.limit_ceiling)
        for lots in (FILE_LIMIT + 1, 500):
            with pytest.raises(OrderRejectedError, match=f"size {lots} > the position limit"):
                env.manager.submit(open_intent(strangle(env, f"S{lots}", lots), f"s{lots}", "big"))
        assert await env.broker.orders() == []
    finally:
        await env.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(SETTINGS, st.sampled_from(ATTACKS)), min_size=1, max_size=5))
def test_no_settings_frame_lets_an_order_exceed_the_files_limits(frames) -> None:
    asyncio.run(_attack(frames))


async def test_each_attack_is_refused_with_its_reason() -> None:
    env = Env()
    commands = Commands(env.desk, env.manager, _no_chain)
    try:
        refusals = {}
        for rules in ATTACKS[:5]:
            with pytest.raises(CommandError) as info:
                await commands.run({"cmd": "settings", "rules": rules}, "attacker")
            refusals[str(rules)] = str(info.value)
        assert "cannot be switched off" in refusals[str(ATTACKS[0])]
        assert "500 is looser than the 10 the engine started with" in refusals[str(ATTACKS[1])]
        assert "needs a restart with a new rules file" in refusals[str(ATTACKS[1])]
        assert "limits.max_position_size: must be a finite number" in refusals[str(ATTACKS[2])]
        assert "limits.max_position_size: must be > 0" in refusals[str(ATTACKS[4])]
        # tightening is allowed, and loosening back up to the file's limit too
        await commands.run({"cmd": "settings", "rules": ATTACKS[5]}, "trader")
        assert env.desk.rules.limits.max_position_size == 5
        await commands.run({"cmd": "settings", "rules": ATTACKS[6]}, "trader")
        assert env.desk.rules.limits.max_position_size == 8
    finally:
        await env.close()


async def test_rules_swapped_in_process_cannot_loosen_the_limits_either() -> None:
    env = Env()
    env.strangle_quotes()
    try:
        env.desk.rules = load_rules(overrides={"limits": {"enabled": False}})
        with pytest.raises(OrderRejectedError, match="size 11 > the position limit 10"):
            env.manager.submit(open_intent(strangle(env, "S1", 11), "s", "big"))
    finally:
        await env.close()


def test_tightest_takes_the_smaller_of_each_threshold() -> None:
    file = load_rules().limits
    tighter = load_rules(overrides={"limits": {"max_open_positions": 3}}).limits
    off = load_rules(overrides={"limits": {"enabled": False}}).limits
    both = tightest(tighter, file)
    assert (both.max_open_positions, both.max_position_size) == (3, file.max_position_size)
    assert tightest(off, file) == file
    assert tightest(off, off) == off  # a file that starts with limits off stays off
    assert loosened(off, off) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"limits": {"max_position_size": math.nan}}, "limits.max_position_size: must be a finite"),
        ({"limits": {"daily_loss_limit": math.inf}}, "limits.daily_loss_limit: must be a finite"),
        ({"limits": {"max_total_risk": 0}}, "limits.max_total_risk: must be > 0"),
        ({"rapid_move": {"window_s": 0}}, "rapid_move.window_s: must be > 0"),
        ({"feed_stale": {"after_s": -5}}, "feed_stale.after_s: must be > 0"),
        ({"time_stop": {"minutes_to_close": -5}}, "time_stop.minutes_to_close: must be >= 0"),
        ({"entry": {"min_iv_rank": 150}}, "entry.min_iv_rank: a rank is 0-100"),
        ({"stop_loss": {"levels": [{"at": -200, "severity": "CRITICAL"}]}},
         r"stop_loss.levels\[0\].at: must be >= 0"),
    ],
)  # fmt: skip
def test_thresholds_are_finite_and_in_range(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_rules(overrides=overrides)


def test_a_strike_breach_level_may_sit_in_the_money() -> None:
    rules = load_rules(overrides={"strike_breach": {"levels": [
        {"at": -0.5, "severity": "CRITICAL"}, {"at": 0.2, "severity": "WARNING"}]}})  # fmt: skip
    assert [lv.at for lv in rules.strike_breach.levels] == [-0.5, 0.2]


def test_a_rules_path_that_is_not_a_toml_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"rules file .*: is a directory"):
        load_rules(tmp_path)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1.toml: not UTF-8 text"):
        load_rules(bad)

"""Risk rule settings: frozen records built from ``kit/risk/rules.toml`` plus the user's overrides.

Rules are data so a trader changes a threshold in a file, not in code. Loading is strict: an
unknown table or key, or a value of the wrong type, is a :class:`~kit.core.config.ConfigError` that
names it, because a typo in a risk limit must never silently fall back to a default.
"""

from __future__ import annotations

import math
import tomllib
import typing
from dataclasses import MISSING, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from kit.core.config import ConfigError
from kit.core.model import ActionKind, Severity

ROLL_UNTESTED = "roll_untested"  # resolved per position to roll_call / roll_put


@dataclass(frozen=True)
class Level:
    at: float
    severity: Severity
    action: str = ""
    profitable_only: bool = False


@dataclass(frozen=True)
class LevelRule:
    levels: tuple[Level, ...]
    enabled: bool = True


@dataclass(frozen=True)
class EntryRule:
    max_spread_pct: float
    max_spread: float  # dollars: a market this tight passes whatever its % (cheap options)
    min_open_interest: float
    max_abs_delta: float
    min_iv_rank: float
    enabled: bool = True


@dataclass(frozen=True)
class Lock:
    """A fixed trailing tier (the research grid's ``trailing = "AT:LOCK"``): once the peak
    profit reached ``at`` % of the credit, the stop sits at ``lock`` % for good."""

    at: float
    lock: float


@dataclass(frozen=True)
class TrailingStopRule:
    arm_pct: float
    tighten_from_pct: float
    trail_pct: float
    action: str
    enabled: bool = True
    locks: tuple[Lock, ...] = ()  # fixed tiers beside the breakeven stop and the trail


@dataclass(frozen=True)
class TimeStopRule:
    minutes_to_close: float
    min_profit_pct: float
    only_expiring_today: bool
    action: str
    enabled: bool = True


@dataclass(frozen=True)
class RapidMoveRule:
    move_pct: float
    window_s: float
    watch: tuple[str, ...] = ()  # underlyings watched even without positions on them
    enabled: bool = True


@dataclass(frozen=True)
class LiquidityRule:
    max_spread_pct: float
    enabled: bool = True


@dataclass(frozen=True)
class FeedStaleRule:
    after_s: float
    enabled: bool = True


@dataclass(frozen=True)
class CorrelationBreakRule:
    index: str
    vol_index: str
    window_s: float
    index_down_pct: float
    vol_down_pct: float
    enabled: bool = True


@dataclass(frozen=True)
class LimitsRule:
    max_position_size: float
    max_open_positions: float
    max_total_risk: float
    daily_loss_limit: float
    enabled: bool = True


@dataclass(frozen=True)
class Rules:
    """The whole rule set; one field per rule id."""

    entry: EntryRule
    delta: LevelRule
    profit_target: LevelRule
    trailing_stop: TrailingStopRule
    stop_loss: LevelRule
    strike_breach: LevelRule
    leg_delta: LevelRule
    time_stop: TimeStopRule
    gamma: LevelRule
    rapid_move: RapidMoveRule
    liquidity: LiquidityRule
    feed_stale: FeedStaleRule
    correlation_break: CorrelationBreakRule
    limits: LimitsRule

    @property
    def window_s(self) -> float:
        """Price history the market must keep for the window rules."""
        return max(self.rapid_move.window_s, self.correlation_break.window_s)


RULE_IDS = tuple(f.name for f in fields(Rules))
_ACTIONS = {a.value for a in ActionKind} | {ROLL_UNTESTED}


# Thresholds that must be > 0: a zero limit, window or move would refuse or fire on everything.
_POSITIVE = ("limits.", "window_s", "after_s", "move_pct", "max_spread_pct")
_PERCENTILE = ("min_iv_rank",)  # 0-100
# The delta and gamma levels are in 1-sigma units (kit.risk.tenor): sigmas from delta-neutral
# (a short strike reached ~1.2) and the delta change per unit for a 1-sigma move (a straddle
# 0.8). Above this a level hardly fires; what it catches is a percentage typed for 0.60 (60).
SIGMA_LEVEL_MAX = 3.0
_SIGMA_LEVELS = ("delta.levels[", "gamma.levels[")


def _number(where: str, value: Any) -> float:
    """A finite threshold in its key's range: ``nan`` compares False with everything, so a
    ``nan`` limit would silently disable the check it sets."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise ConfigError(f"{where}: must be a finite number, got {value!r}")
    if where.startswith("strike_breach."):  # a distance to the strike: <= 0 is in the money
        return x
    if where == "time_stop.min_profit_pct":  # below 0 the time stop closes losers too
        return x
    if where.startswith("leg_delta.levels[") and where.endswith(".at") and not 0 < x < 1:
        raise ConfigError(f"{where}: an option's |delta|, between 0 and 1 (0.30, not 30), "
                          f"got {value!r}")  # fmt: skip
    if where.startswith(_SIGMA_LEVELS) and where.endswith(".at") and not 0 < x <= SIGMA_LEVEL_MAX:
        raise ConfigError(f"{where}: a level in 1-sigma units, > 0 and <= "
                          f"{SIGMA_LEVEL_MAX:g} (0.60, not 60), got {value!r}")  # fmt: skip
    if any(k in where for k in _POSITIVE) and x <= 0:
        raise ConfigError(f"{where}: must be > 0, got {value!r}")
    if x < 0:
        raise ConfigError(f"{where}: must be >= 0, got {value!r}")
    if any(where.endswith(k) for k in _PERCENTILE) and x > 100:
        raise ConfigError(f"{where}: a rank is 0-100, got {value!r}")
    return x


def _value(where: str, hint: Any, value: Any) -> Any:
    """Check one TOML value against a field's type hint and convert it."""
    if hint is float:
        return _number(where, value)
    if hint is bool or hint is str:
        if not isinstance(value, hint):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        if where.endswith(".action") and value and value not in _ACTIONS:
            raise ConfigError(f"{where}: unknown action {value!r} (one of {sorted(_ACTIONS)})")
        return value
    if hint is Severity:
        try:
            return Severity(str(value).upper())
        except ValueError:
            raise ConfigError(f"{where}: unknown severity {value!r}") from None
    if hint == tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list) or (item is Level and not value):
            raise ConfigError(f"{where}: expected a {'non-empty ' * (item is Level)}list of "
                              f"{item.__name__.lower()}s")  # fmt: skip
        items = [_build(f"{where}[{i}]", item, v) for i, v in enumerate(value)]
        for i, x in enumerate(items):
            if item is Lock and not 0 <= x.lock < x.at:
                raise ConfigError(f"{where}[{i}]: a lock below its level (0 <= lock < at), "
                                  f"got at {x.at:g}, lock {x.lock:g}")  # fmt: skip
        return tuple(sorted(items, key=lambda x: x.at))
    raise ConfigError(f"{where}: unsupported setting type {hint!r}")  # pragma: no cover


def _build(where: str, cls: type, table: Any) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    hints = typing.get_type_hints(cls, localns={"Level": Level, "Lock": Lock,
                                                 "Severity": Severity})  # fmt: skip
    known = {f.name for f in fields(cls)}
    if unknown := sorted(set(table) - known):
        known_keys = ", ".join(sorted(known))
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {known_keys})")
    missing = [f.name for f in fields(cls) if f.name not in table and f.default is MISSING]
    if missing:
        raise ConfigError(f"{where}: missing key {missing[0]!r}")
    return cls(**{k: _value(f"{where}.{k}", hints[k], v) for k, v in table.items()})


def _defaults() -> dict[str, Any]:
    return tomllib.loads(resources.files("kit.risk").joinpath("rules.toml").read_text())


def load_rules(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Rules:
    """The default rules, updated table by table from ``path`` and then ``overrides``."""
    merged = _defaults()
    layers: list[tuple[str, dict[str, Any]]] = []
    if path is not None:
        try:
            layers.append((str(path), tomllib.loads(Path(path).read_text())))
        except FileNotFoundError:
            raise ConfigError(f"rules file {path}: not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"rules file {path}: {exc}") from None
        except IsADirectoryError:
            raise ConfigError(f"rules file {path}: is a directory, not a TOML file") from None
        except PermissionError:
            raise ConfigError(f"rules file {path}: permission denied") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"rules file {path}: not UTF-8 text ({exc.reason})") from None
        except OSError as exc:
            raise ConfigError(f"rules file {path}: {exc.strerror or exc}") from None
    if overrides:
        layers.append(("overrides", overrides))
    for source, layer in layers:
        for rule, table in layer.items():
            if rule not in RULE_IDS:
                raise ConfigError(f"{source}: unknown rule {rule!r} (rules: {', '.join(RULE_IDS)})")
            if not isinstance(table, dict):
                raise ConfigError(f"{source}: [{rule}] must be a table")
            merged[rule] = {**merged[rule], **table}
    hints = typing.get_type_hints(Rules)
    return Rules(**{rule: _build(rule, hints[rule], merged[rule]) for rule in RULE_IDS})


def rules_table(rules: Rules) -> dict[str, Any]:
    """``rules`` as plain TOML/JSON tables: ``load_rules(overrides=rules_table(r)) == r``. The
    store keeps the rules a recorded day ran under this way, so ``kit validate`` replays it
    with the same rules."""
    from dataclasses import asdict

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        return v.value if isinstance(v, Severity) else v

    return {name: plain(asdict(getattr(rules, name))) for name in RULE_IDS}

"""The grid: a TOML file whose every axis is a list, expanded into one row per configuration.

Why a product of lists: a researcher asks "which entry time x strike rule x exit works", and a
product makes every combination explicit and reproducible from one small file. Each config gets a
stable ``config_id`` (its position in the product) and a structure key: configs that differ only
in exits, filters, costs or sizing share the same entered structure, so a day prices each
structure once and evaluates all their exits together (see :mod:`kit.research.grid.engine`).

Every value is checked here, so a bad grid is one clear error naming the axis and the value,
before any worker starts.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any

import numpy as np

from kit.core.model import Right, StrategyType
from kit.signals.regimes import VIX_REGIMES


class GridError(ValueError):
    """A grid file that cannot be run; the message names the axis and the value."""


@dataclass(frozen=True)
class LegSpec:
    """One leg of a structure: its right, +1 long / -1 short, and whether its strike is the
    short strike chosen by the strike rule or a wing ``wings`` points beyond it."""

    right: Right
    ratio: int
    wing: bool


_P, _C = Right.PUT, Right.CALL
# The one leg description every structure shares (strike order: low to high).
STRUCTURES: dict[str, tuple[tuple[LegSpec, ...], StrategyType]] = {
    "short_strangle": ((LegSpec(_P, -1, False), LegSpec(_C, -1, False)), StrategyType.STRANGLE),
    "iron_condor": (
        (
            LegSpec(_P, 1, True),
            LegSpec(_P, -1, False),
            LegSpec(_C, -1, False),
            LegSpec(_C, 1, True),
        ),
        StrategyType.IRON_CONDOR,
    ),
    "put_credit_spread": ((LegSpec(_P, 1, True), LegSpec(_P, -1, False)), StrategyType.VERTICAL),
    "call_credit_spread": ((LegSpec(_C, -1, False), LegSpec(_C, 1, True)), StrategyType.VERTICAL),
}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TRENDS = ("up", "down", "sideways")
STRIKE_RULE = re.compile(r"^(?:(delta|otm_pct|premium):(\d+(?:\.\d+)?)|P(\d{2}(?:\.\d+)?))$")

# axis name -> default (a one-element list); order = column order of the results table
AXES: dict[str, list[Any]] = {
    "strategy": ["iron_condor"],
    "entry_time": ["10:00"],
    "dte": [0],
    "strikes": ["delta:0.10"],
    "wings": [25.0],
    "min_credit": [0.0],
    "profit_target_pct": [50.0],
    "stop_mult": [1.0],
    "trailing": ["none"],
    "exit_time": ["none"],
    "exit_dte": ["none"],
    "exit_delta": ["none"],
    "vix_regime": ["any"],
    "iv_rank": ["any"],
    "trend": ["any"],
    "weekdays": ["any"],
    "costs": ["default"],
    "sizing": ["contracts:1"],
}
STRUCTURE_AXES = ("strategy", "entry_time", "dte", "strikes", "wings")


@dataclass(frozen=True)
class Settings:
    """The grid's scalars (``[settings]`` table): not axes, the same for every config."""

    underlying: str = "SPX"
    capital: float = 100_000.0  # dollars: CAGR, drawdown % and %-of-capital sizing
    margin_move_pct: float = 10.0  # margin = worst expiry loss within +/- this spot move
    band_lookback: int = 252  # sessions of past moves behind a P-band strike
    band_min_samples: int = 20  # fewer past moves: the P-band rule does not trade
    trend_days: int = 20  # closes averaged by the trend rule
    trend_band_pct: float = 1.0  # previous close this % above / below that mean: up / down
    roots: tuple[str, ...] = ()  # option roots to trade (e.g. ["SPX"] for AM monthlies); () = all


@dataclass
class Grid:
    """The expanded grid: ``rows`` (one dict of axis values per config, in product order) and
    the cost models the ``costs`` axis names (``{"name": {...CostModel fields}}``)."""

    settings: Settings
    rows: list[dict[str, Any]]
    cost_models: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def structure_keys(self) -> list[tuple]:
        """The distinct entered structures, in first-seen order."""
        return list(dict.fromkeys(tuple(r[a] for a in STRUCTURE_AXES) for r in self.rows))


def minute_of(text: str, axis: str) -> int:
    """``"HH:MM"`` -> minutes after midnight (New York time)."""
    try:
        t = time.fromisoformat(str(text))
    except ValueError:
        raise GridError(f"{axis}: not a time (HH:MM): {text!r}") from None
    return t.hour * 60 + t.minute


def _none(v: Any) -> bool:
    return isinstance(v, str) and v.strip().lower() in ("none", "off", "")


def _number(axis: str, v: Any, *, lo: float = 0.0, allow_none: bool = False) -> float:
    if allow_none and _none(v):
        return math.nan
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < lo:
        raise GridError(f"{axis}: expected a number >= {lo:g}{' or none' if allow_none else ''}, "
                        f"got {v!r}")  # fmt: skip
    return float(v)


def parse_strike_rule(text: str) -> tuple[str, float]:
    """``delta:0.10`` / ``otm_pct:1.5`` / ``premium:1.00`` / ``P95`` -> (kind, value)."""
    m = STRIKE_RULE.match(str(text).strip())
    if not m:
        raise GridError(f"strikes: expected delta:X, otm_pct:X, premium:X or P90-P99.9, "
                        f"got {text!r}")  # fmt: skip
    kind, value = (m.group(1), float(m.group(2))) if m.group(1) else ("band", float(m.group(3)))
    if kind == "delta" and not 0 < value < 0.5:
        raise GridError(f"strikes: delta must be in (0, 0.5), got {text!r}")
    if kind == "band" and not 50 < value < 100:
        raise GridError(f"strikes: a percentile band must be in (50, 100), got {text!r}")
    if kind in ("otm_pct", "premium") and value <= 0:
        raise GridError(f"strikes: {kind} must be positive, got {text!r}")
    return kind, value


def parse_trailing(text: str) -> tuple[tuple[float, float], ...]:
    """``"none"`` or ``"50:25,80:60"``: once profit reaches 50% of the credit, exit if it falls
    back to 25%; from 80%, exit at 60%. Returns ((trigger_pct, lock_pct), ...)."""
    if _none(text):
        return ()
    tiers = []
    for part in str(text).split(","):
        try:
            trig, lock = (float(x) for x in part.split(":"))
        except ValueError:
            msg = f"trailing: expected none or TRIGGER:LOCK[,...], got {text!r}"
            raise GridError(msg) from None
        if not (0 < trig <= 100 and 0 <= lock < trig):
            raise GridError(f"trailing: need 0 <= lock < trigger <= 100, got {part!r}")
        tiers.append((trig, lock))
    return tuple(tiers)


def parse_sizing(text: str) -> tuple[str, float]:
    """``contracts:N`` (fixed) or ``risk_pct:P`` (P% of starting capital per trade, divided by
    the structure's margin per contract, rounded down)."""
    kind, _, value = str(text).partition(":")
    try:
        v = float(value)
    except ValueError:
        v = -1.0
    if kind == "contracts" and v >= 1 and v == int(v):
        return kind, v
    if kind == "risk_pct" and 0 < v <= 100:
        return kind, v
    raise GridError(f"sizing: expected contracts:N (N >= 1) or risk_pct:P (0 < P <= 100), "
                    f"got {text!r}")  # fmt: skip


def parse_set(axis: str, text: Any, allowed: tuple[str, ...]) -> frozenset[str] | None:
    """``"any"`` -> None, else a comma list of allowed names."""
    if str(text).strip().lower() == "any":
        return None
    names = frozenset(x.strip().lower() for x in str(text).split(","))
    bad = sorted(names - set(allowed))
    if bad:
        raise GridError(f"{axis}: unknown {bad} in {text!r}; choose from any, {', '.join(allowed)}")
    return names


def parse_range(text: Any) -> tuple[float, float] | None:
    """IV rank filter: ``"any"`` or ``"LO-HI"`` (0-100, inclusive)."""
    if str(text).strip().lower() == "any":
        return None
    try:
        lo, hi = (float(x) for x in str(text).split("-"))
    except ValueError:
        raise GridError(f"iv_rank: expected any or LO-HI (0-100), got {text!r}") from None
    if not 0 <= lo <= hi <= 100:
        raise GridError(f"iv_rank: need 0 <= LO <= HI <= 100, got {text!r}")
    return lo, hi


def _check(axis: str, v: Any, cost_models: dict[str, Any]) -> Any:
    """Validate one axis value; returns it normalised (numbers as float, 'none' as 'none')."""
    if axis == "strategy":
        if v not in STRUCTURES:
            raise GridError(f"strategy: unknown {v!r}; choose from {', '.join(STRUCTURES)}")
        return v
    if axis in ("entry_time", "exit_time"):
        if axis == "exit_time" and _none(v):
            return "none"
        minute_of(v, axis)
        return str(v)
    if axis in ("dte", "exit_dte"):
        if axis == "exit_dte" and _none(v):
            return "none"
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 60:
            raise GridError(f"{axis}: expected whole calendar days 0-60, got {v!r}")
        return v
    if axis == "strikes":
        parse_strike_rule(v)
        return str(v).strip()
    if axis in ("wings", "min_credit"):
        return _number(axis, v)
    if axis in ("profit_target_pct", "stop_mult", "exit_delta"):
        x = _number(axis, v, allow_none=True)
        if axis == "profit_target_pct" and not (math.isnan(x) or 0 < x <= 100):
            raise GridError(f"profit_target_pct: expected 0 < pct <= 100 or none, got {v!r}")
        if axis == "exit_delta" and not (math.isnan(x) or 0 < x < 1):
            raise GridError(f"exit_delta: expected 0 < |delta| < 1 or none, got {v!r}")
        if axis == "stop_mult" and x == 0:
            raise GridError("stop_mult: 0 would stop every trade at once; use none for no stop")
        return "none" if math.isnan(x) else x
    if axis == "trailing":
        return "none" if not parse_trailing(v) else str(v)
    if axis == "vix_regime":
        parse_set(axis, v, VIX_REGIMES)
        return str(v)
    if axis == "trend":
        parse_set(axis, v, TRENDS)
        return str(v)
    if axis == "weekdays":
        parse_set(axis, v, WEEKDAYS)
        return str(v)
    if axis == "iv_rank":
        parse_range(v)
        return str(v)
    if axis == "costs":
        if v not in cost_models and v not in ("default", "zero"):
            raise GridError(f"costs: unknown cost model {v!r}; define [costs.{v}] or use "
                            f"default or zero")  # fmt: skip
        return v
    if axis == "sizing":
        parse_sizing(v)
        return str(v)
    raise GridError(f"unknown axis {axis!r}")  # pragma: no cover (filtered by the caller)


def parse_grid(data: dict[str, Any]) -> Grid:
    """A grid from a parsed TOML document: ``[settings]``, ``[grid]`` (the axes), optional
    ``[costs.NAME]`` tables (CostModel fields)."""
    unknown = set(data) - {"settings", "grid", "costs"}
    if unknown:
        raise GridError(f"unknown table(s) {sorted(unknown)}: expected settings, grid, costs")
    raw_settings = data.get("settings", {})
    names = set(Settings.__dataclass_fields__)
    if bad := sorted(set(raw_settings) - names):
        raise GridError(f"settings: unknown key(s) {bad}; known: {sorted(names)}")
    if "roots" in raw_settings:
        roots = raw_settings["roots"]
        if not isinstance(roots, list) or not all(isinstance(r, str) and r for r in roots):
            raise GridError(f"settings: roots must be a list of option roots, got {roots!r}")
        raw_settings = {**raw_settings, "roots": tuple(roots)}
    try:
        settings = Settings(**raw_settings)
    except TypeError as exc:
        raise GridError(f"settings: {exc}") from None
    for name in ("capital", "margin_move_pct", "band_lookback", "band_min_samples", "trend_days"):
        v = getattr(settings, name)
        whole = name in ("band_lookback", "band_min_samples", "trend_days")
        if isinstance(v, bool) or not isinstance(v, int if whole else int | float) or not v > 0:
            kind = "whole number" if whole else "number"
            raise GridError(f"settings: {name} must be a positive {kind}, got {v!r}")
    if not (isinstance(settings.trend_band_pct, int | float) and settings.trend_band_pct >= 0):
        raise GridError(f"settings: trend_band_pct must be >= 0, got {settings.trend_band_pct!r}")
    cost_models = dict(data.get("costs", {}))
    axes = data.get("grid", {})
    if bad := sorted(set(axes) - set(AXES)):
        raise GridError(f"grid: unknown axis {bad}; known axes: {', '.join(AXES)}")
    values: dict[str, list[Any]] = {}
    for axis, default in AXES.items():
        given = axes.get(axis, default)
        if not isinstance(given, list) or not given:
            raise GridError(f"{axis}: every axis is a non-empty list, got {given!r}")
        values[axis] = list(dict.fromkeys(_check(axis, v, cost_models) for v in given))
    rows = [dict(zip(AXES, combo, strict=True)) for combo in itertools.product(*values.values())]
    for i, r in enumerate(rows):
        r["config_id"] = i
    return Grid(settings, rows, cost_models)


def load_grid(path: str | Path) -> Grid:
    """Read and expand a grid TOML file; GridError (one line) on anything wrong."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GridError(f"no grid file {p}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise GridError(f"{p}: not a TOML grid ({exc})") from None
    return parse_grid(data)


def columns(grid: Grid) -> dict[str, np.ndarray]:
    """The numeric view of every config the engine evaluates with (NaN = rule off)."""
    rows = grid.rows

    def num(axis: str) -> np.ndarray:
        return np.array([math.nan if r[axis] == "none" else float(r[axis]) for r in rows])

    return {
        "profit_target_pct": num("profit_target_pct"),
        "stop_mult": num("stop_mult"),
        "exit_delta": num("exit_delta"),
        "min_credit": num("min_credit"),
        "exit_dte": num("exit_dte"),
        "exit_minute": np.array([math.nan if r["exit_time"] == "none"
                                 else minute_of(r["exit_time"], "exit_time") for r in rows]),
    }  # fmt: skip

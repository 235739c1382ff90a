"""The grid compiled for the workers: per-config arrays and the distinct structures they enter.

A :class:`Plan` is what every shard receives (pickled once per task): small NumPy arrays, one
element per config, plus the list of distinct entered structures. Filters, cost models, sizing
rules and trailing stops are stored once per distinct value with an index per config, so a
session evaluates each distinct value once and gathers by index.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import Any

import numpy as np

from kit.execution.costs import DEFAULT_COSTS, CostModel
from kit.research.grid.spec import (
    STRUCTURE_AXES,
    STRUCTURES,
    TRENDS,
    WEEKDAYS,
    Grid,
    GridError,
    LegSpec,
    Settings,
    columns,
    minute_of,
    parse_range,
    parse_set,
    parse_sizing,
    parse_strike_rule,
    parse_trailing,
)
from kit.signals.regimes import VIX_REGIMES

ZERO_COSTS = CostModel(
    commission_per_contract=0.0,
    exchange_fees={},
    slippage_frac={1: 0.0},
    low_premium_fees={},
    unknown_root_fee=0.0,
)


@dataclass(frozen=True)
class Structure:
    """One entered structure: what to sell, when and at which strikes."""

    strategy: str
    legs: tuple[LegSpec, ...]
    entry_minute: int
    dte: int
    rule: tuple[str, float]  # parse_strike_rule
    wings: float

    @property
    def sides(self) -> tuple[bool, ...]:
        """is_call of each short leg."""
        return tuple(leg.right.value == "C" for leg in self.legs if leg.ratio < 0)


@dataclass
class Plan:
    settings: Settings
    structures: list[Structure]
    struct: np.ndarray  # per config: index into structures
    num: dict[str, np.ndarray]  # per config numbers (spec.columns)
    trailing: list[tuple[tuple[float, float], ...]]
    trail: np.ndarray
    cost_fields: list[dict[str, Any]]  # CostModel fields (its mappings do not pickle)
    cost: np.ndarray
    sizing: list[tuple[str, float]]
    size: np.ndarray
    vix_sets: list[frozenset[str] | None]
    vix: np.ndarray
    ivr_ranges: list[tuple[float, float] | None]
    ivr: np.ndarray
    trend_sets: list[frozenset[str] | None]
    trend: np.ndarray
    day_sets: list[frozenset[str] | None]
    weekday: np.ndarray

    @cached_property
    def costs(self) -> list[CostModel]:
        """The cost models, rebuilt where the plan is used (workers unpickle the fields)."""
        return [CostModel(**f) for f in self.cost_fields]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "costs"}

    @property
    def n_configs(self) -> int:
        return len(self.struct)

    def band_keys(self) -> set[tuple[int, int, float]]:
        return {(s.entry_minute, s.dte, s.rule[1]) for s in self.structures if s.rule[0] == "band"}

    def max_dte(self) -> int:
        return max(s.dte for s in self.structures)


def _indexed(values: list[Any], parse) -> tuple[list[Any], np.ndarray]:
    """Distinct parsed values and each config's index into them."""
    keys = list(dict.fromkeys(values))
    where = {k: i for i, k in enumerate(keys)}
    return [parse(k) for k in keys], np.array([where[v] for v in values], dtype=np.int64)


def cost_model(name: str, tables: dict[str, dict[str, Any]]) -> CostModel:
    """``default`` (:data:`kit.execution.costs.DEFAULT_COSTS`), ``zero``, or a ``[costs.NAME]``
    table of :class:`CostModel` fields over the defaults (slippage_frac keys are leg counts)."""
    if name in tables:
        fields = dict(tables[name])
        if "slippage_frac" in fields:
            fields["slippage_frac"] = {int(k): v for k, v in fields["slippage_frac"].items()}
        try:
            return replace(DEFAULT_COSTS, **fields)
        except (TypeError, ValueError) as exc:
            raise GridError(f"costs.{name}: {exc}") from None
    return ZERO_COSTS if name == "zero" else DEFAULT_COSTS


def cost_fields(model: CostModel) -> dict[str, Any]:
    """A CostModel's fields as plain dicts (picklable for process pools and Dask)."""
    return {f.name: (dict(v) if isinstance(v := getattr(model, f.name), Mapping) else v)
            for f in fields(model)}  # fmt: skip


def compile_grid(grid: Grid) -> Plan:
    rows = grid.rows
    keys = grid.structure_keys()
    structures = []
    for strategy, entry, dte, rule, wings in keys:
        legs, _ = STRUCTURES[strategy]
        structures.append(Structure(strategy, legs, minute_of(entry, "entry_time"), int(dte),
                                    parse_strike_rule(rule), float(wings)))  # fmt: skip
    where = {k: i for i, k in enumerate(keys)}
    struct = np.array([where[tuple(r[a] for a in STRUCTURE_AXES)] for r in rows], dtype=np.int64)
    col = lambda axis: [r[axis] for r in rows]  # noqa: E731
    trailing, trail = _indexed(col("trailing"), parse_trailing)
    costs, cost = _indexed(col("costs"), lambda n: cost_fields(cost_model(n, grid.cost_models)))
    sizing, size = _indexed(col("sizing"), parse_sizing)
    vix_sets, vix = _indexed(col("vix_regime"), lambda v: parse_set("vix_regime", v, VIX_REGIMES))
    ivr_ranges, ivr = _indexed(col("iv_rank"), parse_range)
    trend_sets, trend = _indexed(col("trend"), lambda v: parse_set("trend", v, TRENDS))
    day_sets, weekday = _indexed(col("weekdays"), lambda v: parse_set("weekdays", v, WEEKDAYS))
    return Plan(grid.settings, structures, struct, columns(grid), trailing, trail, costs, cost,
                sizing, size, vix_sets, vix, ivr_ranges, ivr, trend_sets, trend, day_sets,
                weekday)  # fmt: skip

"""How the paper venue behaves: latency, slippage, fees and what happens beyond the shown size.

Its own module so the venue (:mod:`kit.adapters.paper.broker`) stays about orders and states;
:class:`PaperConfig` is re-exported there, where callers import it from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from kit.execution.costs import DEFAULT_COSTS, CostModel, fees_per_contract

DepthModel = Literal["impact", "cancel", "rest"]
DEPTH_MODELS: tuple[str, ...] = ("impact", "cancel", "rest")


@dataclass(frozen=True)
class PaperConfig:
    """How the paper venue behaves. Money is in dollars, prices in the option's price units.

    Fees per contract are :func:`kit.execution.costs.fees_per_contract`: ``commission_per_contract``
    (the broker's) plus the exchange, clearing and regulatory fees of the option's root
    (``exchange_fees`` overrides the defaults of :data:`~kit.execution.costs.DEFAULT_COSTS`
    root by root; a root it names loses its default premium tier). ``commission_by_root``
    replaces the whole per-contract charge for a root, e.g. ``{"SPXW": 0.66}``.

    ``depth`` says what a marketable order larger than the shown size gets (only with
    ``fill_quoted_size_only``):

    * ``"impact"`` (default): the shown size at the touch, the rest from hidden levels one tick
      worse each (:func:`kit.execution.costs.tick_size`), each as large as the shown size, at
      most ``depth_levels`` levels past the touch; never past a limit. What the levels cannot
      fill keeps working (a limit rests at its limit).
    * ``"cancel"``: the shown size at the touch and the rest is cancelled, as IBKR's paper
      account does with a marketable order larger than the displayed size.
    * ``"rest"``: the shown size at the touch; the rest keeps working and takes the size of
      later quotes (the behaviour before depth existed).

    ``starting_cash`` applies to a new account only: a restored account keeps its own.
    """

    latency_ms: float = 50.0  # an order, cancel or replace takes effect this long after sending
    slippage_per_contract: float = 0.0  # price units worse than the touch for taking fills
    commission_per_contract: float = 0.65
    commission_by_root: Mapping[str, float] = field(default_factory=dict)
    exchange_fees: Mapping[str, float] | None = None  # None: the defaults in kit.execution.costs
    fill_quoted_size_only: bool = True  # fills take at most the quoted size, used up per quote
    depth: DepthModel = "impact"
    depth_levels: int = 10  # hidden levels past the touch the impact model may take
    starting_cash: float = 100_000.0
    state_key: str = "paper_broker"

    def __post_init__(self) -> None:
        numbers = {
            "latency_ms": self.latency_ms,
            "slippage_per_contract": self.slippage_per_contract,
            "commission_per_contract": self.commission_per_contract,
            **{f"commission_by_root[{k}]": v for k, v in self.commission_by_root.items()},
        }
        for name, value in numbers.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: must be a finite non-negative number, got {value!r}")
        if self.depth not in DEPTH_MODELS:
            raise ValueError(f"depth: one of {', '.join(DEPTH_MODELS)}, got {self.depth!r}")
        if not (isinstance(self.depth_levels, int) and self.depth_levels >= 0):
            raise ValueError(f"depth_levels: a whole number >= 0, got {self.depth_levels!r}")
        self.costs  # noqa: B018 - build once so bad exchange_fees fail here, not at a fill

    @cached_property
    def costs(self) -> CostModel:
        """The :class:`~kit.execution.costs.CostModel` this venue charges."""
        if self.exchange_fees is None:
            return dataclasses.replace(
                DEFAULT_COSTS, commission_per_contract=self.commission_per_contract
            )
        fees = {**DEFAULT_COSTS.exchange_fees, **self.exchange_fees}
        tiers = {k: v for k, v in DEFAULT_COSTS.low_premium_fees.items()
                 if k not in self.exchange_fees}  # fmt: skip
        return dataclasses.replace(
            DEFAULT_COSTS,
            commission_per_contract=self.commission_per_contract,
            exchange_fees=fees,
            low_premium_fees=tiers,
        )

    def commission(self, root: str, quantity: float, price: float) -> float:
        """Dollars charged for ``quantity`` contracts of ``root`` filled at ``price``, to the
        cent: the root override if any, else :func:`~kit.execution.costs.fees_per_contract`."""
        rate = self.commission_by_root.get(root)
        if rate is None:
            rate = fees_per_contract(root, self.costs, premium=price)
        return round(quantity * rate, 2)

"""The cost model: fees by option root (SPX/SPXW differ from SPY), premium tiers, overrides,
and slippage by number of legs, scalar and vectorised."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from kit.execution.costs import (
    DEFAULT_COSTS,
    CostModel,
    exchange_fee,
    fees_per_contract,
    slippage,
    slippage_fraction,
)


def test_spx_pays_cboe_fee_spy_does_not() -> None:
    spx, spxw, spy = (fees_per_contract(r) for r in ("SPX", "SPXW", "SPY"))
    assert spx == spxw
    # Cboe's SPX customer fee ($0.45) is the whole difference from SPY
    assert spx - spy == pytest.approx(0.45)
    # SPY pays commission + OCC clearing + ORF only
    assert spy == pytest.approx(0.65 + 0.025 + 0.02815)


def test_premium_tier_cheaper_below_one_dollar() -> None:
    assert exchange_fee("SPXW", premium=0.95) == pytest.approx(0.36 + 0.025 + 0.02815)
    assert exchange_fee("SPXW", premium=1.00) == pytest.approx(0.45 + 0.025 + 0.02815)
    assert exchange_fee("SPXW") == exchange_fee("SPXW", premium=5.0)  # unknown premium: high tier
    assert exchange_fee("SPY", premium=0.10) == exchange_fee("SPY")  # no tier for SPY


def test_unknown_root_pays_pass_through_and_overrides_apply() -> None:
    assert exchange_fee("ABCD") == DEFAULT_COSTS.unknown_root_fee
    mine = dataclasses.replace(
        DEFAULT_COSTS,
        commission_per_contract=0.25,
        exchange_fees={**DEFAULT_COSTS.exchange_fees, "NDX": 0.80},
    )
    assert fees_per_contract("NDX", mine) == pytest.approx(1.05)
    assert fees_per_contract("NDX") == pytest.approx(0.65 + 0.05315)


def test_bad_model_values_are_refused() -> None:
    with pytest.raises(ValueError, match=r"exchange_fees\[SPX\]"):
        CostModel(exchange_fees={"SPX": math.nan})
    with pytest.raises(ValueError, match="commission_per_contract"):
        CostModel(commission_per_contract=-1)
    with pytest.raises(ValueError, match="leg counts"):
        CostModel(slippage_frac={0: 0.2})


def test_slippage_falls_with_legs_and_vectorises() -> None:
    fracs = [slippage_fraction(n) for n in (1, 2, 3, 4)]
    assert fracs == sorted(fracs, reverse=True) and fracs[0] < 0.5  # inside the touch
    assert slippage(0.20, 1) == pytest.approx(0.05)
    assert isinstance(slippage(0.20, 2), float)
    spreads = np.array([0.10, 0.40, np.nan])
    out = slippage(spreads, 4)
    assert out.shape == (3,) and np.isnan(out[2])
    assert out[:2] == pytest.approx(spreads[:2] * 0.075)
    assert slippage_fraction(6) == slippage_fraction(4)  # beyond the table: largest entry


def test_slippage_bad_input() -> None:
    with pytest.raises(ValueError, match="n_legs"):
        slippage(0.1, 0)
    with pytest.raises(ValueError, match="crossed"):
        slippage(np.array([0.1, -0.05]), 1)

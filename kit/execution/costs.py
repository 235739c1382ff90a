"""Trading costs a result must carry: per-contract fees by option root, and slippage by legs.

Pure functions of a :class:`CostModel`, shared by the paper broker (its commission schedule) and
by backtests (vectorised over arrays of spreads), so paper and backtest results pay the same.

Fees (``fees_per_contract``) are everything charged per contract traded, in dollars:

* the broker's commission (``commission_per_contract``, IBKR's $0.65 fixed-rate default), plus
* the exchange's customer transaction fee for the option root, plus
* the pass-through clearing and regulatory fees every listed option pays: the OCC clearing fee,
  $0.025/contract since 2025-02-14 (OCC rule filing, 90 FR 10544), and the options regulatory
  fees (ORF) of all US options exchanges, $0.02815/contract as IBKR passed them through on
  2025-03-03 (IBKR "Options Regulatory Fee" page).

Exchange customer fees ($/contract, Cboe Options fees schedule effective 2024-11-01, customer
capacity, fee codes CS/CT/CC/CR/CD): SPX and SPXW $0.45 when the premium is at least $1.00 and
$0.36 below; XSP $0.07 (Cboe charges it from 10 contracts a leg; smaller orders are free, which
this flat rate ignores — conservative); RUT family $0.18; ETF options (SPY, QQQ, IWM) $0.00 for
customer orders under 100 contracts. NDX/NDXP trade on Nasdaq PHLX: its customer NDX fee could
not be confirmed from a dated source here, so the defaults charge clearing and regulatory fees
only for them — override ``exchange_fees`` with your statement's figure.

Every value is a *default*, overridable with :func:`dataclasses.replace` on :data:`DEFAULT_COSTS`
(fee schedules change several times a year; brokers add their own pass-throughs).

Slippage (``slippage``) is the price paid beyond the mid per leg, in the option's price units:
``slippage_frac[n_legs] x spread``. A fraction of 0.5 is the touch. Multi-leg orders trade on the
complex order book, where market makers quote the package inside the sum of the legs' spreads,
so the per-leg fraction falls with the number of legs. The defaults (1 leg 0.25, 2 legs 0.15,
3 legs 0.10, 4 legs 0.075) are the desk's assumptions, not a measurement; override them from
your own fills.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

OCC_CLEARING = 0.025  # $/contract, OCC schedule of fees from 2025-02-14 (90 FR 10544)
ORF_TOTAL = 0.02815  # $/contract, sum of all US options exchanges' ORF, as of 2025-03-03
PASS_THROUGH = OCC_CLEARING + ORF_TOTAL  # paid on every contract, bought or sold

# Cboe Options customer transaction fees, fees schedule effective 2024-11-01 ($/contract).
CBOE_SPX_FEE = 0.45  # premium >= $1.00 (fee code CT); SPXW is SPX for fees
CBOE_SPX_FEE_LOW = 0.36  # premium < $1.00 (fee code CS)
CBOE_XSP_FEE = 0.07  # >= 10 contracts (fee code CC)
CBOE_RUT_FEE = 0.18  # RUT family (fee code CR)
LOW_PREMIUM = 1.00  # the premium below which SPX/SPXW pay the low fee


def _frozen(d: Mapping) -> Mapping:
    return MappingProxyType(dict(d))


_EXCHANGE_FEES = {
    "SPX": CBOE_SPX_FEE + PASS_THROUGH,
    "SPXW": CBOE_SPX_FEE + PASS_THROUGH,
    "XSP": CBOE_XSP_FEE + PASS_THROUGH,
    "RUT": CBOE_RUT_FEE + PASS_THROUGH,
    "RUTW": CBOE_RUT_FEE + PASS_THROUGH,
    "NDX": PASS_THROUGH,  # PHLX's NDX fee not included (see the module docstring)
    "NDXP": PASS_THROUGH,
    "SPY": PASS_THROUGH,
    "QQQ": PASS_THROUGH,
    "IWM": PASS_THROUGH,
}
_LOW_PREMIUM_FEES = {
    "SPX": (LOW_PREMIUM, CBOE_SPX_FEE_LOW + PASS_THROUGH),
    "SPXW": (LOW_PREMIUM, CBOE_SPX_FEE_LOW + PASS_THROUGH),
}
_SLIPPAGE_FRAC = {1: 0.25, 2: 0.15, 3: 0.10, 4: 0.075}


@dataclass(frozen=True)
class CostModel:
    """What trading costs: commission and fees per contract, and slippage by number of legs.

    ``exchange_fees`` maps an option root to the dollars per contract charged on top of the
    commission (exchange fee + clearing + regulatory) at the standard premium tier;
    ``low_premium_fees`` maps a root with a premium-tiered fee to ``(threshold, fee)``, the
    total charged instead when the premium is below ``threshold``. ``unknown_root_fee`` is
    charged for a root in neither table (the clearing and regulatory fees every option pays).
    ``slippage_frac`` maps a number of legs to the fraction of each leg's quoted spread paid
    beyond the mid; an order with more legs than the largest key uses the largest key's.
    """

    commission_per_contract: float = 0.65
    exchange_fees: Mapping[str, float] = field(default_factory=lambda: _frozen(_EXCHANGE_FEES))
    slippage_frac: Mapping[int, float] = field(default_factory=lambda: _frozen(_SLIPPAGE_FRAC))
    low_premium_fees: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: _frozen(_LOW_PREMIUM_FEES)
    )
    unknown_root_fee: float = PASS_THROUGH

    def __post_init__(self) -> None:
        numbers = {
            "commission_per_contract": self.commission_per_contract,
            "unknown_root_fee": self.unknown_root_fee,
            **{f"exchange_fees[{k}]": v for k, v in self.exchange_fees.items()},
            **{f"low_premium_fees[{k}]": v[1] for k, v in self.low_premium_fees.items()},
            **{f"slippage_frac[{k}]": v for k, v in self.slippage_frac.items()},
        }
        for name, value in numbers.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: must be a finite non-negative number, got {value!r}")
        if not self.slippage_frac or any(
            not isinstance(k, int) or k < 1 for k in self.slippage_frac
        ):
            raise ValueError("slippage_frac: needs keys that are leg counts >= 1")


DEFAULT_COSTS = CostModel()


def exchange_fee(
    root: str, model: CostModel = DEFAULT_COSTS, premium: float | None = None
) -> float:
    """Dollars per contract charged on top of the commission for ``root`` (exchange, clearing,
    regulatory). ``premium`` (the option's price) picks the tier where the fee depends on it;
    None charges the standard (higher) tier, so a cost is never understated for lack of it."""
    tier = model.low_premium_fees.get(root)
    if tier is not None and premium is not None and premium < tier[0]:
        return tier[1]
    return model.exchange_fees.get(root, model.unknown_root_fee)


def fees_per_contract(
    root: str, model: CostModel = DEFAULT_COSTS, premium: float | None = None
) -> float:
    """Everything charged per contract traded, in dollars: the broker's commission plus
    :func:`exchange_fee`. Charged on buys and sells alike (a round trip pays it twice)."""
    return model.commission_per_contract + exchange_fee(root, model, premium)


def slippage_fraction(n_legs: int, model: CostModel = DEFAULT_COSTS) -> float:
    """The fraction of each leg's spread paid beyond the mid for an order of ``n_legs`` legs:
    the exact entry, else the one for the largest leg count below ``n_legs``."""
    if not isinstance(n_legs, int | np.integer) or n_legs < 1:
        raise ValueError(f"n_legs: must be a whole number >= 1, got {n_legs!r}")
    keys = [k for k in model.slippage_frac if k <= n_legs]
    if not keys:  # only larger leg counts are configured: use the smallest
        keys = [min(model.slippage_frac)]
    return float(model.slippage_frac[max(keys)])


@overload
def slippage(spread: float, n_legs: int, model: CostModel = ...) -> float: ...
@overload
def slippage(spread: NDArray, n_legs: int, model: CostModel = ...) -> NDArray: ...


def slippage(spread: ArrayLike, n_legs: int, model: CostModel = DEFAULT_COSTS):  # type: ignore[misc]
    """Price units paid beyond the mid on each leg: ``slippage_fraction(n_legs) x spread``.

    ``spread`` (ask - bid, per leg) is a number or an array (vectorised: one call for a whole
    backtest grid); a float in gives a float out. A buy fills at ``mid + slippage``, a sell at
    ``mid - slippage``. NaN spreads stay NaN (no quote, no price); a negative spread (crossed
    quote) is an error in the data, so it raises rather than paying the trader for it."""
    frac = slippage_fraction(n_legs, model)
    arr = np.asarray(spread, dtype=float)
    if np.any(arr < 0):
        raise ValueError("slippage: a spread is negative (crossed quote)")
    out = arr * frac
    return float(out) if out.ndim == 0 else out


PENNY_ROOTS = frozenset({"SPY", "QQQ", "IWM"})  # quoted in $0.01 at every price


def tick_size(root: str, price: float) -> float:
    """The minimum price increment of an option on ``root`` at ``price``: $0.01 for the
    all-penny ETF classes (SPY, QQQ, IWM), otherwise the index-option rule of $0.05 below $3
    and $0.10 from $3 (SPX, SPXW, NDX, NDXP, RUT). Used to space the paper broker's hidden
    depth levels, so an order walking the book moves by whole ticks."""
    if root in PENNY_ROOTS:
        return 0.01
    return 0.05 if price < 3.0 else 0.10

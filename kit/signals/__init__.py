"""Market signals: dealer positioning (GEX, zero gamma, walls, vanna/charm, max pain, pinning),
regimes (VIX, gamma, correlation break) and IV rank / percentile.

- :mod:`kit.signals.chains`: option chains as one polars table (simulator, quotes/ThetaData,
  CBOE's quotedata.csv);
- :mod:`kit.signals.config`: GEX conventions (:class:`GexConfig`, ``PUBLIC``);
- :mod:`kit.signals.gex`: gamma exposure, the profile over spot, zero-gamma crossings, walls;
- :mod:`kit.signals.flows`: vanna/charm flows into expiry, max pain, pinning;
- :mod:`kit.signals.regimes`: IV rank/percentile, VIX and gamma regimes, regime-change events,
  the correlation-break detector;
- :mod:`kit.signals.history`: GEX levels through a replayed session;
- :mod:`kit.signals.lab`: the Signal Lab notebook's widgets.

The regime functions are imported eagerly (the desk and the risk rules use them); the chain and
exposure modules load on first use, so starting a desk does not pay for polars (~0.13 s).
"""

from __future__ import annotations

import importlib
from typing import Any

from kit.signals.regimes import (
    IV_WINDOW_DAYS,
    VIX_BANDS,
    VIX_REGIMES,
    GammaRegime,
    GammaRegimeConfig,
    RegimeChange,
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

_LAZY_MODULES = {
    "kit.signals.chains": ("CHAIN_SCHEMA", "Chain", "chain_from_quotes", "make_frame",
                           "read_cboe", "sim_chain", "thetadata_chain", "years_to_expiry"),
    "kit.signals.config": ("COMPAT", "DESK", "PUBLIC", "GexConfig", "calls_long_puts_short",
                           "dealers_short_all"),
    "kit.signals.gex": ("GammaKernel", "GexLevels", "GexProfile", "aggregate", "exposures",
                        "gex_levels", "is_monthly", "profile_reference", "walls",
                        "zero_crossings"),
    "kit.signals.flows": ("PinConfig", "PinSignal", "expiry_flows", "max_pain", "pinning"),
    "kit.signals.history": ("sim_day_levels",),
}  # fmt: skip
_LAZY = {name: module for module, names in _LAZY_MODULES.items() for name in names}

__all__ = [
    "IV_WINDOW_DAYS", "VIX_BANDS", "VIX_REGIMES", "GammaRegime", "GammaRegimeConfig",
    "RegimeChange", "RegimeTracker", "VixRegimeConfig", "correlation_breaks", "gamma_regime",
    "is_correlation_break", "iv_percentile", "iv_rank", "regime_changes", "vix_regime",
    "vix_regimes", *_LAZY,
]  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kit.signals' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

"""Regimes and the volatility signals the risk rules and entry checks read.

- IV rank and IV percentile over a 52-week (252-session) window;
- VIX regimes: absolute bands, or by the VIX's trailing percentile;
- the gamma regime: spot against the zero-gamma level, a crash state when the VIX spikes while
  dealers are short gamma;
- regime-change events, as alerts for the alert system;
- the correlation break: the index and its volatility index falling together, which the
  ``correlation_break`` risk rule uses to block new short-vol entries.

Pure NumPy, no polars: the desk imports this on start-up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from kit.core.model import Alert, Severity

IV_WINDOW_DAYS = 252  # 52 weeks of sessions


def _window(history: ArrayLike, window: int | None) -> NDArray[np.float64]:
    h = np.asarray(history, dtype=float).ravel()
    h = h[-window:] if window else h
    return h[np.isfinite(h)]


def iv_rank(history: ArrayLike, current: float, window: int | None = IV_WINDOW_DAYS) -> float:
    """Where ``current`` sits between the window's low (0) and high (100); NaN without range.

    ``(current - min) / (max - min) x 100`` over the last ``window`` observations of
    ``history`` (daily IVs or VIX closes; None: all of it). Rank (not percentile) is what premium
    sellers quote: 30 means IV is 30% of the way from its one-year low to its high. ``current``
    outside the range is clipped to 0 or 100.
    """
    h = _window(history, window)
    if h.size == 0 or not np.isfinite(current):
        return float("nan")
    lo, hi = float(h.min()), float(h.max())
    if hi <= lo:
        return float("nan")
    return float(np.clip((current - lo) / (hi - lo) * 100, 0.0, 100.0))


def iv_percentile(history: ArrayLike, current: float, window: int | None = IV_WINDOW_DAYS) -> float:
    """The share (%) of the window's observations strictly below ``current``; NaN when empty.

    Unlike rank, one spike in the year does not compress it: IV at 20 with a year mostly at 15
    and one day at 60 has rank 11 but percentile near 100.
    """
    h = _window(history, window)
    if h.size == 0 or not np.isfinite(current):
        return float("nan")
    return float(np.count_nonzero(h < current) / h.size * 100)


# --- VIX regimes ---

VIX_BANDS: tuple[tuple[float, str], ...] = (
    (12.0, "very_low"), (16.0, "low"), (22.0, "medium"), (30.0, "high"), (float("inf"), "extreme"),
)  # fmt: skip
VIX_REGIMES = tuple(name for _, name in VIX_BANDS)


def vix_regime(vix: float, bands: tuple[tuple[float, str], ...] = VIX_BANDS) -> str | None:
    """The absolute VIX band ``vix`` falls in (the first whose upper bound exceeds it), None
    when unknown. The defaults follow common desk usage: below 12 very low, 12–16 low, 16–22
    medium, 22–30 high, 30 and above extreme."""
    if not np.isfinite(vix):
        return None
    return next(name for upper, name in bands if vix < upper)


@dataclass(frozen=True)
class VixRegimeConfig:
    """VIX regimes by trailing percentile (default) or by absolute bands.

    ``percentile``: the VIX's percentile among the previous ``window_days`` closes (as
    :func:`iv_percentile`) cut at ``percentile_edges`` into very_low / low / medium / high /
    extreme. Absolute levels still bound it: at or above ``extreme_at`` the regime is extreme
    whatever the last year looked like, below ``very_low_below`` it is very low; and with fewer
    than ``min_history`` closes the absolute ``bands`` decide.
    """

    method: Literal["percentile", "absolute"] = "percentile"
    window_days: int = IV_WINDOW_DAYS
    percentile_edges: tuple[float, float, float, float] = (10.0, 30.0, 70.0, 90.0)
    bands: tuple[tuple[float, str], ...] = VIX_BANDS
    extreme_at: float = 40.0
    very_low_below: float = 11.0
    min_history: int = 60


def vix_regimes(vix: ArrayLike, cfg: VixRegimeConfig = VixRegimeConfig()) -> list[str | None]:
    """The regime of each close in a daily VIX series (None where it is NaN)."""
    v = np.asarray(vix, dtype=float).ravel()
    absolute = [vix_regime(x, cfg.bands) for x in v]
    if cfg.method == "absolute":
        return absolute
    if cfg.method != "percentile":
        raise ValueError(f"method must be 'percentile' or 'absolute', got {cfg.method!r}")
    out: list[str | None] = []
    for i, x in enumerate(v):
        prior = v[max(0, i - cfg.window_days) : i]
        prior = prior[np.isfinite(prior)]
        if not np.isfinite(x) or prior.size < cfg.min_history:
            out.append(absolute[i])
        elif x >= cfg.extreme_at:
            out.append("extreme")
        elif x < cfg.very_low_below:
            out.append("very_low")
        else:
            pct = np.count_nonzero(prior < x) / prior.size * 100
            out.append(VIX_REGIMES[int(np.searchsorted(cfg.percentile_edges, pct, "right"))])
    return out


# --- gamma regime ---


class GammaRegime(StrEnum):
    LOW_VOL = "LOW_VOL"  # dealers long gamma: hedging sells rallies and buys dips
    HIGH_VOL = "HIGH_VOL"  # spot below zero gamma: hedging chases the move
    CRASH = "CRASH"  # short gamma while the VIX spikes
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class GammaRegimeConfig:
    vix_spike_pct: float = 20.0  # VIX rise (%) over the caller's window that counts as a spike
    vix_crash_level: float = 35.0  # or a VIX at/above this, with negative gamma


def gamma_regime(
    spot: float,
    zero_gamma: float | None,
    *,
    total_gex: float = float("nan"),
    vix: float = float("nan"),
    vix_change_pct: float = float("nan"),
    cfg: GammaRegimeConfig = GammaRegimeConfig(),
) -> GammaRegime:
    """Spot below the zero-gamma level is HIGH_VOL, at or above it LOW_VOL; without a zero-gamma
    level the sign of ``total_gex`` decides. Negative gamma plus a VIX spike (a rise of
    ``vix_spike_pct`` or a level of ``vix_crash_level``) is CRASH."""
    if zero_gamma is not None and np.isfinite(zero_gamma):
        negative = spot < zero_gamma
    elif np.isfinite(total_gex) and total_gex != 0:
        negative = total_gex < 0
    else:
        return GammaRegime.UNKNOWN
    if not negative:
        return GammaRegime.LOW_VOL
    spike = vix_change_pct >= cfg.vix_spike_pct or vix >= cfg.vix_crash_level  # NaN: False
    return GammaRegime.CRASH if spike else GammaRegime.HIGH_VOL


# --- regime-change events ---

_SEVERITY = {"extreme": Severity.CRITICAL, GammaRegime.CRASH: Severity.CRITICAL,
             "high": Severity.WARNING, GammaRegime.HIGH_VOL: Severity.WARNING}  # fmt: skip


@dataclass(frozen=True)
class RegimeChange:
    """A regime (``kind``: "vix", "gamma", ...) moved from ``previous`` to ``current``."""

    ts_ns: int
    kind: str
    previous: str | None
    current: str | None
    inputs: Mapping[str, Any] = field(default_factory=dict)

    def alert(self) -> Alert:
        """As an alert for :meth:`kit.engine.alerts.AlertManager.notify` (an event, not a held
        condition): CRITICAL into extreme/CRASH, WARNING into high/HIGH_VOL, else INFO."""
        severity = _SEVERITY.get(self.current or "", Severity.INFO)
        msg = f"{self.kind} regime {self.previous} → {self.current}"
        inputs = {"previous": self.previous, "current": self.current, **self.inputs}
        return Alert(self.ts_ns, severity, "regime_change", msg, None, inputs, key=self.kind)


def regime_changes(
    ts_ns: Sequence[int], regimes: Sequence[str | None], kind: str
) -> list[RegimeChange]:
    """Every change in a regime series (the first observation is not a change; an unknown
    regime, None, neither starts nor ends one)."""
    out, last = [], None
    for ts, regime in zip(ts_ns, regimes, strict=True):
        if regime is None:
            continue
        if last is not None and regime != last:
            out.append(RegimeChange(int(ts), kind, str(last), str(regime)))
        last = regime
    return out


class RegimeTracker:
    """Live edge detection: feed the latest regime per kind, get a change when it moves."""

    def __init__(self) -> None:
        self.current: dict[str, str] = {}

    def update(self, ts_ns: int, kind: str, regime: str | None,
               inputs: Mapping[str, Any] | None = None) -> RegimeChange | None:  # fmt: skip
        if regime is None:
            return None
        last = self.current.get(kind)
        self.current[kind] = str(regime)
        if last is None or last == regime:
            return None
        return RegimeChange(ts_ns, kind, last, str(regime), dict(inputs or {}))


# --- correlation break ---


def is_correlation_break(
    index_return_pct: ArrayLike,
    vol_return_pct: ArrayLike,
    index_down_pct: float,
    vol_down_pct: float,
) -> bool | NDArray[np.bool_]:
    """The index fell at least ``index_down_pct`` % while its volatility index also fell at
    least ``vol_down_pct`` % over the same window. Normally the VIX rises when the index falls;
    both falling means the hedge relationship broke (vol being sold into a decline), so new
    short-vol entries wait. Unknown (NaN) returns never break. Element-wise over arrays."""
    with np.errstate(invalid="ignore"):
        hit = np.logical_and(np.asarray(index_return_pct) <= -index_down_pct,
                             np.asarray(vol_return_pct) <= -vol_down_pct)  # fmt: skip
    return bool(hit) if hit.ndim == 0 else hit


def correlation_breaks(
    index: ArrayLike, vol: ArrayLike, window: int, index_down_pct: float, vol_down_pct: float
) -> NDArray[np.bool_]:
    """:func:`is_correlation_break` over aligned price series, returns taken ``window``
    observations back (False where the window is not full yet)."""
    x, v = np.asarray(index, dtype=float), np.asarray(vol, dtype=float)
    if x.shape != v.shape or x.ndim != 1:
        raise ValueError("index and vol must be aligned 1-D series")
    if window < 1:
        raise ValueError(f"window must be at least 1 observation, got {window}")
    out = np.zeros(x.size, dtype=bool)
    if x.size > window:
        ri = (x[window:] / x[:-window] - 1) * 100
        rv = (v[window:] / v[:-window] - 1) * 100
        out[window:] = is_correlation_break(ri, rv, index_down_pct, vol_down_pct)
    return out

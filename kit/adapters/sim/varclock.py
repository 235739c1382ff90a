"""The simulator's one time basis: a variance clock shared by spot dynamics and option pricing.

Annualised variance is spread over "variance years" of 252 average trading days. A US session
carries ``1 - overnight_share`` of a day's variance, evenly per trading minute (an early-close
session therefore carries less); the closed stretch before a session carries ``overnight_share``
plus ``weekend_share`` per extra calendar day (weekends, holidays), and it is realised as a gap at
the session's open. So ``tau(t)`` (variance years since 2000) is flat while the market is closed,
jumps at each open, and grows linearly through the session.

The spot path takes ``tau(t_j) - tau(t_{j-1})`` of variance in each step, and an option is priced
on ``tau(expiry) - tau(now)``: implied and realised variance are measured on the same clock, which
is what makes a 0DTE straddle price the move the path actually makes (before this clock, options
were priced on calendar time while spot moved on trading time: 0DTE implied about half the move).
Crypto trades around the clock: its clock is calendar time (365 x 24 hours a year).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

import numpy as np

from kit.core.clock import NS_PER_S, _us_sessions, to_ns

DAYS_PER_YEAR = 252
SESSION_NS = 390 * 60 * NS_PER_S  # a full session's length: the per-minute rate's unit
CRYPTO_YEAR_NS = 365 * 86400 * NS_PER_S


@dataclass(frozen=True)
class VarianceClock:
    """Where a trading day's variance falls. Defaults: 20% overnight (US index futures carry
    about a fifth of close-to-close variance outside the session), +10% per extra closed day."""

    overnight_share: float = 0.2
    weekend_share: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.overnight_share < 1.0 or self.weekend_share < 0.0:
            raise ValueError(
                f"overnight_share must be in [0, 1) and weekend_share >= 0, got "
                f"{self.overnight_share}, {self.weekend_share}"
            )

    @property
    def rate_per_ns(self) -> float:
        """Variance years per nanosecond of session."""
        return (1.0 - self.overnight_share) / DAYS_PER_YEAR / SESSION_NS

    def tau(self, ts_ns: np.ndarray | int) -> np.ndarray:
        """Variance years at ``ts_ns`` (any shape) on the US clock."""
        opens, closes, cum = _table(self.overnight_share, self.weekend_share)
        t = np.asarray(ts_ns, dtype=np.int64)
        i = np.searchsorted(opens, t, side="right") - 1
        j = np.maximum(i, 0)
        inside = (np.minimum(t, closes[j]) - opens[j]).astype(np.float64)
        return np.where(i >= 0, cum[j] + self.rate_per_ns * np.maximum(inside, 0.0), 0.0)

    def session_open(self, ts_ns: np.ndarray | int) -> np.ndarray:
        """Whether a US session is in progress at each ``ts_ns`` (open <= t < close)."""
        opens, closes, _ = _table(self.overnight_share, self.weekend_share)
        t = np.asarray(ts_ns, dtype=np.int64)
        i = np.searchsorted(opens, t, side="right") - 1
        return (i >= 0) & (t < closes[np.maximum(i, 0)])


def crypto_tau(ts_ns: np.ndarray | int) -> np.ndarray:
    """Calendar years on the around-the-clock crypto clock."""
    return np.asarray(ts_ns, dtype=np.float64) / CRYPTO_YEAR_NS


@cache
def _table(overnight: float, weekend: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Session opens, closes (ns) and the variance years accumulated at each open (gap
    included), built once per clock from the exchange calendar."""
    days, sessions = _us_sessions()
    opens = np.array([to_ns(sessions[d].open) for d in days], dtype=np.int64)
    closes = np.array([to_ns(sessions[d].close) for d in days], dtype=np.int64)
    rate = (1.0 - overnight) / DAYS_PER_YEAR / SESSION_NS
    gaps_days = np.array([(b - a).days for a, b in itertools.pairwise(days)])
    gaps = (overnight + weekend * (gaps_days - 1)) / DAYS_PER_YEAR
    session_var = rate * (closes - opens).astype(np.float64)
    cum = np.concatenate([[0.0], np.cumsum(session_var[:-1] + gaps)])
    return opens, closes, cum

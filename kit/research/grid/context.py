"""What is known about a session before its first trade: regime, IV rank, trend, move bands.

Everything here for session ``i`` reads sessions ``< i`` plus session ``i``'s first snapshot
(the open) only, so a filter or a strike rule can never see the day it trades (no look-ahead;
``tests/test_grid_honesty.py`` proves it by rewriting the future).

Rules (constants below, documented in the README):

* **VIX regime**: :func:`kit.signals.regimes.vix_regimes` (the desk's rule: the VIX's percentile
  among the previous 252 closes, absolute bands until 60 closes exist) applied to the session's
  *opening* VIX after the previous closes.
* **IV rank**: :func:`kit.signals.regimes.iv_rank` of the opening VIX within the previous 252
  closing VIX values (the VIX is the S&P 500's 30-day implied vol); NaN before
  ``IV_RANK_MIN_DAYS`` closes, and a config with an IV rank filter then does not trade.
* **Trend**: the previous close against the mean of the last ``trend_days`` closes (that close
  included; default 20): above by more than ``trend_band_pct`` % (default 1) is ``up``, below
  by more is ``down``, otherwise ``sideways``; unknown (no trade for a config with a trend
  filter) before ``trend_days`` closes.
* **Move bands** (strike rule ``P95`` ...): the underlying's simple returns over the same
  horizon (from the entry time on a past session to the close of the session ``dte`` calendar
  days later, the first on or after), over the last ``band_lookback`` past sessions whose
  horizon closed before today; the put goes beyond the (100 - P)th percentile, the call beyond
  the Pth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np

from kit.research.grid.data import DaySummary
from kit.signals.regimes import IV_WINDOW_DAYS, VixRegimeConfig, iv_rank, vix_regimes

TREND_DAYS = 20
TREND_BAND_PCT = 1.0
IV_RANK_MIN_DAYS = 20
NO_SNAPSHOT = -1


@dataclass
class DayContext:
    """A session's pre-trade facts (see the module docstring for each rule)."""

    day: date
    weekday: str  # mon .. sun
    vix_regime: str | None
    iv_rank: float
    trend: str | None
    # (entry minute, dte, percentile) -> (low return, high return); absent = too little history
    bands: dict[tuple[int, int, float], tuple[float, float]] = field(default_factory=dict)
    ahead: list[date] = field(default_factory=list)  # the sessions after it, for multi-day holds


def spot_at(summary: DaySummary, minute: int) -> float:
    """Spot at the first snapshot at or after ``minute`` (NaN if the session ended before)."""
    i = int(np.searchsorted(summary.minute, minute, side="left"))
    return float(summary.spot[i]) if i < len(summary.minute) else float("nan")


def trend_of(
    closes: np.ndarray, days: int = TREND_DAYS, band_pct: float = TREND_BAND_PCT
) -> str | None:
    """The trend rule on past closes (oldest first)."""
    if len(closes) < days or not np.isfinite(closes[-days:]).all():
        return None
    last, mean = closes[-1], float(np.mean(closes[-days:]))
    move = (last / mean - 1) * 100
    if move > band_pct:
        return "up"
    return "down" if move < -band_pct else "sideways"


def _horizon_end(days: list[date], i: int, dte: int) -> int | None:
    """Index of the first session on or after ``days[i] + dte`` calendar days."""
    target = days[i] + timedelta(days=dte)
    j = i
    while j < len(days) and days[j] < target:
        j += 1
    return j if j < len(days) else None


def horizon_returns(
    summaries: list[DaySummary], minute: int, dte: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each session j: the return from spot at ``minute`` to the close of the first session
    on or after j + ``dte`` calendar days, and that session's index (a large number if none)."""
    days = [s.day for s in summaries]
    n = len(days)
    ret, end = np.full(n, np.nan), np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    for j in range(n):
        k = _horizon_end(days, j, dte)
        if k is None:
            continue
        start, close = spot_at(summaries[j], minute), float(summaries[k].spot[-1])
        end[j] = k
        if np.isfinite(start) and np.isfinite(close) and start > 0:
            ret[j] = close / start - 1
    return ret, end


def band_returns(ret: np.ndarray, end: np.ndarray, i: int, lookback: int) -> np.ndarray:
    """The last ``lookback`` horizon returns that had closed before session ``i`` opened
    (``end`` rises with the start session, so they are a prefix)."""
    m = int(np.searchsorted(end, i, side="left"))
    r = ret[max(0, m - lookback) : m]
    return r[np.isfinite(r)]


def contexts(
    summaries: list[DaySummary],
    band_keys: set[tuple[int, int, float]],
    *,
    lookback: int = 252,
    min_samples: int = 20,
    ahead: int = 0,
    trend_days: int = TREND_DAYS,
    trend_band_pct: float = TREND_BAND_PCT,
) -> list[DayContext]:
    """One context per session (``summaries`` oldest first); ``band_keys`` are the
    (entry minute, dte, percentile) the grid's band rules ask for; ``ahead``: how many later
    sessions each context lists for multi-day holds."""
    closes_vix = np.array([s.vix[-1] if len(s.vix) else np.nan for s in summaries])
    closes = np.array([s.spot[-1] if len(s.spot) else np.nan for s in summaries])
    cfg = VixRegimeConfig()
    horizons = {(m, d): horizon_returns(summaries, m, d) for m, d, _ in band_keys}
    out = []
    for i, s in enumerate(summaries):
        open_vix = float(s.vix[0]) if len(s.vix) else float("nan")
        prior = closes_vix[max(0, i - cfg.window_days) : i]
        regime = vix_regimes(np.append(prior, open_vix), cfg)[-1]
        window = closes_vix[max(0, i - IV_WINDOW_DAYS) : i]
        finite = window[np.isfinite(window)]
        rank = iv_rank(finite, open_vix) if finite.size >= IV_RANK_MIN_DAYS else float("nan")
        bands = {}
        for minute, dte, pct in band_keys:
            r = band_returns(*horizons[(minute, dte)], i, lookback)
            if r.size >= min_samples:
                bands[(minute, dte, pct)] = (
                    float(np.quantile(r, 1 - pct / 100)),
                    float(np.quantile(r, pct / 100)),
                )
        out.append(DayContext(
            day=s.day,
            weekday=s.day.strftime("%a").lower(),
            vix_regime=regime,
            iv_rank=rank,
            trend=trend_of(closes[:i], trend_days, trend_band_pct),
            bands=bands,
            ahead=[x.day for x in summaries[i + 1 : i + 1 + ahead]],
        ))  # fmt: skip
    return out

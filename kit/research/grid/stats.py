"""Statistics per configuration, vectorised over all configs at once.

A grid has ~1,000 configs and ~250,000 trades: a loop per config would cost more than the
backtest. Per-trade statistics work on trades sorted by config (segment sums with
``np.add.reduceat``); per-session ones on a dense (configs x sessions) matrix of daily P&L.

Units and formulas (the README's "Backtest grid" section is the reference):

* ``win_rate`` % of trades with P&L > 0; ``avg_win`` / ``avg_loss`` mean $ of those / of the
  others (``avg_loss`` <= 0); ``total_pnl`` / ``avg_pnl`` $ net of fees and slippage.
* ``roi`` % return on risk: total P&L / sum of each trade's max loss; ``rom`` % the same on
  margin; ``capture_rate`` % total P&L / total premium collected.
* Daily P&L: each trade's P&L on its exit session, 0 on sessions without one; equity = capital +
  cumulative P&L (no compounding, so shards by day add up). ``cagr`` % = (equity_end /
  capital)^(252 / sessions) - 1; ``max_dd`` $ and ``max_dd_pct`` % the deepest fall from a
  running peak (the start included); ``mar`` = cagr / max_dd_pct.
* ``sharpe`` = mean / std (ddof 1) of daily P&L / capital x sqrt(252); ``sortino`` = mean /
  sqrt(mean(min(r, 0)^2)) x sqrt(252) (risk-free rate 0).
* ``profit_factor`` = gross wins / gross losses (inf without a loss); ``max_losing_streak``
  consecutive losing trades; ``var_95`` $ the loss at the 5th percentile of trade P&L (linear
  interpolation, as ``np.quantile``), ``cvar_95`` $ the mean loss at or beyond it.
* ``composite_score`` in (-100, 100): ``100 x confidence x (0.4 S + 0.3 M + 0.3 P)`` with
  S = tanh(sortino / 3), M = tanh(mar / 10), P = tanh((profit_factor - 1) / 2) (NaN counts
  0, an infinite profit factor or MAR counts 1) and confidence = min(1, trades / 30):
  downside-aware return, return per drawdown and edge per trade, each squashed so none
  dominates and the order is kept, discounted when there are too few trades to trust them.
"""

from __future__ import annotations

import numpy as np

SESSIONS_PER_YEAR = 252
MIN_TRADES_FULL_CONFIDENCE = 30
STAT_COLUMNS = ("sessions", "trades", "win_rate", "avg_win", "avg_loss", "total_pnl", "avg_pnl",
                "roi", "rom", "cagr", "max_dd", "max_dd_pct", "mar", "sharpe", "sortino",
                "profit_factor", "capture_rate", "max_losing_streak", "var_95", "cvar_95",
                "composite_score")  # fmt: skip


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / np.where(b != 0, b, 1), np.nan)


def _segments(group: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each group's run in ``group`` (sorted ascending)."""
    starts = np.searchsorted(group, np.arange(n), side="left")
    ends = np.searchsorted(group, np.arange(n), side="right")
    return starts, ends - starts


def _segsum(x: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    csum = np.concatenate([[0.0], np.cumsum(x, dtype=float)])
    return csum[starts + counts] - csum[starts]


def _quantile_sorted(v: np.ndarray, starts: np.ndarray, counts: np.ndarray, q: float):
    """np.quantile (linear) of each segment of ``v`` (each segment sorted ascending)."""
    pos = q * np.maximum(counts - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(counts - 1, 0))
    safe = lambda i: v[np.minimum(starts + i, len(v) - 1)] if len(v) else np.zeros(len(i))  # noqa: E731
    out = safe(lo) + (pos - lo) * (safe(hi) - safe(lo))
    return np.where(counts > 0, out, np.nan)


def _streaks(loss: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """Longest run of True in ``loss`` within each group (trades in order within a group): the
    run at i is i minus the last break before it (a non-loss, or the slot before a group's
    first trade)."""
    out = np.zeros(n)
    if not len(loss):
        return out
    idx = np.arange(len(loss))
    new_group = np.r_[True, group[1:] != group[:-1]]
    brk = np.where(~loss, idx, np.where(new_group, idx - 1, -1))
    run = np.where(loss, idx - np.maximum.accumulate(brk), 0)
    np.maximum.at(out, group, run)
    return out


def statistics(
    group: np.ndarray,
    order_key: np.ndarray,
    pnl: np.ndarray,
    max_loss: np.ndarray,
    margin: np.ndarray,
    premium: np.ndarray,
    session: np.ndarray,
    n_groups: int,
    n_sessions: int,
    capital: float,
) -> dict[str, np.ndarray]:
    """Every statistic of :data:`STAT_COLUMNS` for ``n_groups`` groups of trades.

    ``group`` is each trade's group (0..n_groups-1), ``order_key`` its entry time (streaks go in
    that order), ``session`` the index (0..n_sessions-1) of its exit session among the sessions
    the group is measured over."""
    order = np.lexsort((order_key, group))
    g, p = group[order], pnl[order]
    starts, counts = _segments(g, n_groups)
    n = counts.astype(float)
    win = p > 0
    wins, losses = _segsum(win, starts, counts), n - _segsum(win, starts, counts)
    gross_win = _segsum(np.where(win, p, 0.0), starts, counts)
    gross_loss = -_segsum(np.where(win, 0.0, p), starts, counts)
    total = _segsum(p, starts, counts)
    daily = np.zeros((n_groups, max(n_sessions, 1)))
    np.add.at(daily, (group, session), pnl)
    daily = daily[:, :n_sessions]
    equity = capital + np.cumsum(daily, axis=1)
    peak = np.maximum.accumulate(np.concatenate([np.full((n_groups, 1), capital), equity],
                                                axis=1), axis=1)[:, 1:]  # fmt: skip
    dd = peak - equity
    max_dd = dd.max(axis=1, initial=0.0)
    max_dd_pct = (dd / peak).max(axis=1, initial=0.0) * 100
    end = equity[:, -1] if n_sessions else np.full(n_groups, capital)
    years = n_sessions / SESSIONS_PER_YEAR
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        cagr = np.where(end > 0, (end / capital) ** (1 / years) - 1, -1.0) * 100 if years else \
            np.full(n_groups, np.nan)  # fmt: skip
        r = daily / capital
        std = r.std(axis=1, ddof=1) if n_sessions > 1 else np.full(n_groups, np.nan)
        mean = r.mean(axis=1) if n_sessions else np.full(n_groups, np.nan)
        down = np.sqrt((np.minimum(r, 0.0) ** 2).mean(axis=1)) if n_sessions else mean
        sharpe = _div(mean, std) * np.sqrt(SESSIONS_PER_YEAR)
        sortino = _div(mean, down) * np.sqrt(SESSIONS_PER_YEAR)
        pf = np.where(
            gross_loss > 0, _div(gross_win, gross_loss), np.where(gross_win > 0, np.inf, np.nan)
        )
    # VaR / CVaR: sort P&L within each group
    by_pnl = np.lexsort((pnl, group))
    sp = pnl[by_pnl]
    q05 = _quantile_sorted(sp, starts, counts, 0.05)
    tail = sp <= np.repeat(q05, counts)
    cvar = _div(_segsum(np.where(tail, sp, 0.0), starts, counts), _segsum(tail, starts, counts))
    mar = _div(cagr, max_dd_pct)
    score = (0.4 * np.tanh(np.nan_to_num(sortino) / 3)
             + 0.3 * np.tanh(np.nan_to_num(mar, posinf=1e9, neginf=-1e9) / 10)
             + 0.3 * np.tanh(np.nan_to_num(pf - 1, posinf=1e9) / 2))  # fmt: skip
    confidence = np.minimum(1.0, n / MIN_TRADES_FULL_CONFIDENCE)
    return {
        "sessions": np.full(n_groups, n_sessions),
        "trades": counts,
        "win_rate": _div(wins, n) * 100,
        "avg_win": _div(gross_win, wins),
        "avg_loss": _div(-gross_loss, losses),
        "total_pnl": total,
        "avg_pnl": _div(total, n),
        "roi": _div(total, _segsum(max_loss[order], starts, counts)) * 100,
        "rom": _div(total, _segsum(margin[order], starts, counts)) * 100,
        "cagr": cagr,
        "max_dd": max_dd,
        "max_dd_pct": max_dd_pct,
        "mar": mar,
        "sharpe": sharpe,
        "sortino": sortino,
        "profit_factor": pf,
        "capture_rate": _div(total, _segsum(premium[order], starts, counts)) * 100,
        "max_losing_streak": _streaks(p <= 0, g, n_groups),
        "var_95": -q05,
        "cvar_95": -cvar,
        "composite_score": np.where(counts > 0, 100 * confidence * score, np.nan),
    }

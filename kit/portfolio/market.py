"""Market state: the latest quote, mark, implied vol and Greeks of every tracked contract.

Everything lives in columnar NumPy arrays indexed by a contract's row, so a quote is an O(1)
write and Greeks for any set of rows are one vectorised call into :mod:`kit.core.pricing`. The Desk
recomputes the rows of open positions' legs after every batch of events and the whole chain on
its heartbeat (see :meth:`MarketState.refresh`).

The liquidity guard lives here because it decides what a mark is: a quote whose bid/ask spread is
wider than ``max_spread_pct`` of its mid (and wider than ``max_spread`` in price: a one- or
two-tick market is as tight as a cheap option gets) is recorded but not used as a mark; the last
good mark is kept and the row is flagged ``wide`` until a tight quote returns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from kit.core.clock import NS_PER_S, expiry_time, to_ns
from kit.core.model import Contract, Greeks, ModelError, Quote, UnderlyingTick
from kit.core.pricing import GreekArrays, greeks, implied_vol_near
from kit.portfolio.refresh_jit import iv_and_greeks, scatter_kernel

YEAR_NS = 365 * 24 * 3600 * NS_PER_S


@dataclass(frozen=True)
class MarketConfig:
    """Inputs of the desk's own pricing, and the liquidity guard."""

    max_spread_pct: float = 10.0  # a wider quote is not a mark (liquidity guard) ...
    max_spread: float = 0.10  # ... unless it is at most this wide (a $0.30 option quoted 0.25/0.35)
    rate: float = 0.045  # continuously compounded risk-free rate
    rates: Mapping[str, float] = field(default_factory=lambda: {"BTC": 0.0, "ETH": 0.0})
    dividend_yields: Mapping[str, float] = field(
        default_factory=lambda: {"SPX": 0.013, "SPY": 0.013, "NDX": 0.007}
    )
    windows_s: tuple[float, ...] = (300.0,)  # price windows kept per underlying (window rules)
    capacity: int = 256  # initial rows; arrays double when full

    def with_windows(self, windows: Iterable[float]) -> MarketConfig:
        """This config, also keeping the price windows ``windows`` (the ones the rules need)."""
        return replace(self, windows_s=tuple(sorted({*self.windows_s, *windows})))


class RollingWindow:
    """Prices of the last ``window_ns``: first, max and min in O(1) amortised per push.

    Monotonic deques (a max-deque and a min-deque) make "did it move 1% within 5 minutes" a
    constant-time question on every tick instead of a scan of the window.
    """

    __slots__ = ("_all", "_max", "_min", "window_ns")

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self._all: deque[tuple[int, float]] = deque()
        self._max: deque[tuple[int, float]] = deque()
        self._min: deque[tuple[int, float]] = deque()

    def push(self, ts_ns: int, price: float) -> None:
        item = (ts_ns, price)
        self._all.append(item)
        while self._max and self._max[-1][1] <= price:
            self._max.pop()
        self._max.append(item)
        while self._min and self._min[-1][1] >= price:
            self._min.pop()
        self._min.append(item)
        self.trim(ts_ns)

    def trim(self, now_ns: int) -> None:
        start = now_ns - self.window_ns
        for dq in (self._all, self._max, self._min):
            while dq and dq[0][0] < start:
                dq.popleft()

    @property
    def first(self) -> float:
        return self._all[0][1] if self._all else float("nan")

    @property
    def high(self) -> float:
        return self._max[0][1] if self._max else float("nan")

    @property
    def low(self) -> float:
        return self._min[0][1] if self._min else float("nan")

    def __len__(self) -> int:
        return len(self._all)


_FLOAT_COLUMNS = (
    "bid", "ask", "bid_size", "ask_size", "mark", "strike", "multiplier", "expiry_ns", "rate",
    "div_yield", "open_interest", "iv", "model_price", "delta", "gamma", "theta_per_day",
    "vega_per_point", "vanna_per_point", "charm_per_day",
)  # fmt: skip
_INT_COLUMNS = ("quote_ts", "mark_ts", "und")
_BOOL_COLUMNS = ("is_call", "wide", "fresh")  # fresh: quoted since its last refresh
# a vendor's own Greeks (IBKR, tastytrade), kept beside the desk's to show where they differ
_FLOAT_COLUMNS = (*_FLOAT_COLUMNS, "vendor_delta", "vendor_iv", "vendor_gamma", "vendor_theta",
                  "vendor_vega")  # fmt: skip
_INT_COLUMNS = (*_INT_COLUMNS, "vendor_ts")


class MarketState:
    """Columnar state of every tracked contract and the spot of every underlying."""

    def __init__(self, config: MarketConfig | None = None) -> None:
        self.config = cfg = config or MarketConfig()
        self.index: dict[Contract, int] = {}
        self.contracts: list[Contract] = []
        self.size = 0
        n = max(cfg.capacity, 1)
        for name in _FLOAT_COLUMNS:
            setattr(self, name, np.full(n, np.nan))
        for name in _INT_COLUMNS:
            setattr(self, name, np.zeros(n, dtype=np.int64))
        for name in _BOOL_COLUMNS:
            setattr(self, name, np.zeros(n, dtype=bool))
        self.underlyings: dict[str, int] = {}
        self.spot = np.full(8, np.nan)
        self.spot_ts = np.zeros(8, dtype=np.int64)
        self.windows: dict[float, list[RollingWindow]] = {w: [] for w in cfg.windows_s}
        self._tight = cfg.max_spread + 1e-9  # float noise: 0.35 - 0.25 > 0.10
        self.last_event_ns = 0  # newest event of any kind: the feed-outage rule watches it
        self.vendor_source: dict[int, str] = {}  # row -> who sent its vendor Greeks
        self._rows_memo: tuple[tuple | None, tuple] = (None, ())  # refresh(): last rows' statics

    # --- rows ---

    def _grow(self) -> None:
        for name in (*_FLOAT_COLUMNS, *_INT_COLUMNS, *_BOOL_COLUMNS):
            old = getattr(self, name)
            new = (
                np.full(2 * len(old), np.nan)
                if old.dtype == np.float64
                else np.zeros(2 * len(old), dtype=old.dtype)
            )
            new[: len(old)] = old
            setattr(self, name, new)

    def underlying_row(self, symbol: str) -> int:
        """Row of an underlying in ``spot``; created on first use."""
        u = self.underlyings.get(symbol)
        if u is None:
            u = self.underlyings[symbol] = len(self.underlyings)
            if u >= len(self.spot):
                self.spot = np.concatenate([self.spot, np.full(len(self.spot), np.nan)])
                self.spot_ts = np.concatenate([self.spot_ts, np.zeros_like(self.spot_ts)])
            for w, rows in self.windows.items():
                rows.append(RollingWindow(int(w * NS_PER_S)))
        return u

    def track(self, contract: Contract) -> int:
        """Row of ``contract``, adding it (with its static attributes) on first sight."""
        i = self.index.get(contract)
        if i is not None:
            return i
        if self.size == len(self.bid):
            self._grow()
        i = self.size
        self.size += 1
        self.index[contract] = i
        self.contracts.append(contract)
        und = contract.underlying
        self.strike[i] = contract.strike
        self.is_call[i] = contract.is_call
        self.multiplier[i] = contract.multiplier
        self.expiry_ns[i] = to_ns(expiry_time(contract))
        self.rate[i] = self.config.rates.get(und, self.config.rate)
        self.div_yield[i] = self.config.dividend_yields.get(und, 0.0)
        self.und[i] = self.underlying_row(und)
        return i

    def track_all(self, contracts: Iterable[Contract]) -> NDArray[np.int64]:
        return np.fromiter((self.track(c) for c in contracts), dtype=np.int64)

    def rows(self, contracts: Sequence[Contract]) -> NDArray[np.int64]:
        return np.fromiter((self.index[c] for c in contracts), dtype=np.int64, count=len(contracts))

    def set_open_interest(self, contracts: Sequence[Contract], values: Sequence[float]) -> None:
        self.open_interest[self.track_all(contracts)] = np.asarray(values, dtype=float)

    # --- the per-tick path: O(1) ---

    def on_quote(self, q: Quote) -> int:
        """Record a quote; returns its row. A wide quote keeps the previous mark (flagged)."""
        i = self.index.get(q.contract)
        if i is None:
            i = self.track(q.contract)
        self.bid[i] = q.bid
        self.ask[i] = q.ask
        self.bid_size[i] = q.bid_size
        self.ask_size[i] = q.ask_size
        self.quote_ts[i] = q.ts_ns
        mid = 0.5 * (q.bid + q.ask)
        width = q.ask - q.bid
        # no bid and an ask of a tick or two (0.00 / 0.05) is the market of a worthless option,
        # not a missing one: its mid is the mark (held, it kept a short leg's last bid-side
        # mark and froze the position's automation until the close)
        if (
            q.bid >= 0
            and q.ask > 0
            and (width <= self.config.max_spread_pct * 0.01 * mid or width <= self._tight)
        ):
            self.mark[i] = mid
            self.fresh[i] = True
            self.mark_ts[i] = q.ts_ns
            self.wide[i] = False
        else:
            self.wide[i] = True
        if q.ts_ns > self.last_event_ns:
            self.last_event_ns = q.ts_ns
        return i

    def on_vendor_greeks(self, g: Greeks) -> int:
        """Keep a vendor's Greeks of one contract beside the desk's own (which it never
        replaces: the desk prices from marks); returns the row. ``source`` must name the vendor."""
        if g.source == "desk":
            raise ModelError("desk Greeks are computed here, not fed")
        i = self.index.get(g.contract)
        if i is None:
            i = self.track(g.contract)
        self.vendor_delta[i] = g.delta
        self.vendor_iv[i] = g.iv
        self.vendor_gamma[i] = g.gamma
        self.vendor_theta[i] = g.theta_per_day
        self.vendor_vega[i] = g.vega_per_point
        self.vendor_ts[i] = g.ts_ns
        self.vendor_source[i] = g.source
        return i

    def on_underlying(self, tick: UnderlyingTick) -> int:
        """Record an underlying price; returns its row in ``spot``."""
        u = self.underlyings.get(tick.symbol)
        if u is None:
            u = self.underlying_row(tick.symbol)
        self.spot[u] = tick.price
        self.spot_ts[u] = tick.ts_ns
        for rows in self.windows.values():
            rows[u].push(tick.ts_ns, tick.price)
        if tick.ts_ns > self.last_event_ns:
            self.last_event_ns = tick.ts_ns
        return u

    def tradable(self, row: int, buy: bool) -> bool:
        """Whether a leg can trade on its quote now: bought, an ask is enough (the bid may be
        0, a worthless option's 0.00 / 0.05 market, from which a short is bought back); sold,
        only into a bid. NaN, or no quote, is never tradable."""
        bid, ask = self.bid[row], self.ask[row]
        return bool(ask > 0 and (bid >= 0 if buy else bid > 0))

    def spot_of(self, symbol: str) -> float:
        u = self.underlyings.get(symbol)
        return float(self.spot[u]) if u is not None else float("nan")

    def _window(self, symbol: str, window_s: float, now_ns: int) -> RollingWindow | None:
        u = self.underlyings.get(symbol)
        if u is None:
            return None
        if window_s not in self.windows:
            raise KeyError(f"no {window_s} s price window (kept: {sorted(self.windows)})")
        w = self.windows[window_s][u]
        w.trim(now_ns)
        return w if len(w) else None

    def move_pct(self, symbol: str, window_s: float, now_ns: int) -> tuple[float, float]:
        """Largest rise and largest fall (both >= 0, in %) of ``symbol`` to now in the window."""
        w = self._window(symbol, window_s, now_ns)
        if w is None:
            return 0.0, 0.0
        s = float(self.spot[self.underlyings[symbol]])
        return max(0.0, (s / w.low - 1) * 100), max(0.0, (1 - s / w.high) * 100)

    def window_return_pct(self, symbol: str, window_s: float, now_ns: int) -> float:
        """Return (%) from the oldest price in the window to the latest; NaN when unknown."""
        w = self._window(symbol, window_s, now_ns)
        if w is None:
            return float("nan")
        return (float(self.spot[self.underlyings[symbol]]) / w.first - 1) * 100

    # --- vectorised Greeks ---

    def refresh(self, rows: NDArray[np.int64] | None, now_ns: int) -> None:
        """Recompute IV and Greeks of ``rows`` from marks and spots; None means every row with a
        new mark since its last refresh (an unquoted row's old mark says nothing new).

        Rows without a mark or a spot keep NaN. A mark the model cannot invert (below intrinsic
        after the spot moved first) keeps the row's previous IV, so Greeks stay usable.
        """
        key = (rows.dtype.num, rows.tobytes()) if isinstance(rows, np.ndarray) else None
        if key is not None and self._rows_memo[0] == key:  # the desk's open legs, tick after tick
            idx, und, K, r, q, expiry, is_call = self._rows_memo[1]
        else:
            if rows is None:
                idx = np.flatnonzero(self.fresh[: self.size])
            else:  # np.unique sorts (~12 us a tick); a mask gives the same sorted unique rows
                mask = np.zeros(self.size, dtype=bool)
                mask[rows] = True
                idx = np.flatnonzero(mask)
            # a row's static columns never change once tracked: kept with its rows
            static = (idx, self.und[idx], self.strike[idx], self.rate[idx], self.div_yield[idx],
                      self.expiry_ns[idx], self.is_call[idx])  # fmt: skip
            idx, und, K, r, q, expiry, is_call = static
            if key is not None:
                self._rows_memo = (key, static)
        if idx.size == 0:
            return
        S = self.spot[und]
        T = np.maximum(expiry - now_ns, 0) / YEAR_NS
        mark, prev = self.mark[idx], self.iv[idx]
        fast = iv_and_greeks(mark, S, K, T, r, q, is_call, prev)  # compiled, a few rows
        if fast is None:
            iv = implied_vol_near(mark, S, K, T, r, q, is_call, prev)
            iv = np.where(np.isfinite(iv), iv, prev)
            g = greeks(S, K, T, r, q, iv, is_call)
        elif (write := scatter_kernel()) is not None:  # one call instead of 12 NumPy ones
            write(idx, fast[0], fast[1], S, self.iv, self.model_price, self.delta, self.gamma,
                  self.theta_per_day, self.vega_per_point, self.vanna_per_point,
                  self.charm_per_day, self.fresh)  # fmt: skip
            return
        else:
            iv, g = fast[0], GreekArrays(*fast[1])
        self.iv[idx] = iv
        self.model_price[idx] = g.price
        self.delta[idx] = g.delta
        self.gamma[idx] = g.gamma
        self.theta_per_day[idx] = g.theta_per_day
        self.vega_per_point[idx] = g.vega_per_point
        self.vanna_per_point[idx] = g.vanna_per_point
        self.charm_per_day[idx] = g.charm_per_day
        self.fresh[idx[np.isfinite(S)]] = False  # without a spot, price it when one arrives

    def years_to_expiry(self, rows: NDArray[np.int64], now_ns: int) -> NDArray[np.float64]:
        return np.maximum(self.expiry_ns[rows] - now_ns, 0) / YEAR_NS

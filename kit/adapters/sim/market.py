"""The simulated market: seeded, deterministic, and real enough for the risk engine.

Underlyings follow Heston stochastic volatility with jumps (spot/vol correlation negative for
indices, so the VIX-like index moves against the index most days). The implied-vol surface is the
Heston expected average variance for the term structure times a skewed smile in standardised
moneyness. Chains are listed like the real ones: SPXW dailies (0DTE included, PM-settled), SPX
AM-settled monthlies, SPY dailies, NDX monthlies and NDXP dailies, and BTC/ETH Delta Exchange-style
daily expiries at 12:00 UTC.

Only the underlying path is stateful. A quote is a pure function of (the stored path, the step,
the contract): sizes and trade arrivals come from a counter-based hash instead of a stateful RNG.
So any historical quote can be recomputed exactly, which is how the emulators answer REST history
requests with precisely what they streamed.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from kit.adapters.sim.chains import DEFAULT_CHAINS, YEAR_NS, ChainSpec, Listing, expiries, mix
from kit.adapters.sim.chains import open_interest as listed_open_interest
from kit.adapters.sim.chains import strikes as listed_strikes
from kit.core.clock import NEW_YORK, NS_PER_S, session_at, to_ns
from kit.core.model import Contract, Quote, Trade, UnderlyingTick
from kit.core.pricing import greeks

US_TRADING_YEAR_S = 252 * 6.5 * 3600


@dataclass(frozen=True)
class UnderlyingSpec:
    symbol: str
    spot: float
    vol: float  # initial instantaneous volatility
    long_vol: float  # long-run volatility (Heston theta = long_vol**2)
    kappa: float = 4.0
    vol_of_var: float = 0.6
    rho: float = -0.75
    jumps_per_year: float = 3.0
    jump_mean: float = -0.02
    jump_std: float = 0.02
    rate: float = 0.045
    div_yield: float = 0.013
    skew: float = -0.25  # smile slope per unit standardised moneyness (25-delta put ~ +19%)
    smile: float = 0.02
    crypto: bool = False


DEFAULT_UNDERLYINGS: tuple[UnderlyingSpec, ...] = (
    UnderlyingSpec("SPX", 5000.0, 0.15, 0.18),
    UnderlyingSpec("NDX", 18000.0, 0.19, 0.22, rho=-0.7, div_yield=0.007),
    UnderlyingSpec("BTC", 90000.0, 0.55, 0.60, kappa=2.0, vol_of_var=1.0, rho=-0.15,
                   jumps_per_year=6.0, jump_mean=0.0, jump_std=0.05, rate=0.0, div_yield=0.0,
                   skew=-0.05, smile=0.06, crypto=True),
    UnderlyingSpec("ETH", 3000.0, 0.70, 0.75, kappa=2.0, vol_of_var=1.1, rho=-0.15,
                   jumps_per_year=6.0, jump_mean=0.0, jump_std=0.06, rate=0.0, div_yield=0.0,
                   skew=-0.05, smile=0.06, crypto=True),
)  # fmt: skip

CORRELATED = {"NDX": ("SPX", 0.9), "ETH": ("BTC", 0.8)}  # Brownian correlation to a leader
DERIVED = ("SPY", "VIX")  # SPY = SPX / 10; VIX = 30-day implied vol of SPX


@dataclass(frozen=True)
class SimConfig:
    seed: int = 0
    step_s: float = 1.0
    underlyings: tuple[UnderlyingSpec, ...] = DEFAULT_UNDERLYINGS
    chains: tuple[ChainSpec, ...] = DEFAULT_CHAINS
    variance_premium: float = 1.15  # implied variance / physical variance (VIX above realised)
    trades_per_step: float = 0.01  # chance a listed contract prints in a step (liquid ones)


@dataclass
class Shock:
    """A scripted overlay on one underlying: extra drift and/or variance over a window."""

    symbol: str
    start_ns: int
    end_ns: int
    log_return: float = 0.0  # total extra log-return spread over the window
    vol_points: float = 0.0  # instantaneous vol rises by this many points over the window


class _Path:
    """The simulated path in preallocated arrays that double when full: every read is a view,
    so pricing a step costs the same at 9:31 as at 15:59 (a list turned into an array per call
    made a simulated day quadratic)."""

    def __init__(self, ts: int, spot: np.ndarray, var: np.ndarray, us_open: bool) -> None:
        cap = 4096
        self.n = 0
        self._ts = np.empty(cap, dtype=np.int64)
        self._spot = np.empty((cap, len(spot)))
        self._var = np.empty((cap, len(var)))
        self._open = np.empty(cap, dtype=bool)
        self.append(ts, spot, var, us_open)

    def append(self, ts: int, spot: np.ndarray, var: np.ndarray, us_open: bool) -> None:
        if self.n == len(self._ts):
            self._ts, self._spot, self._var, self._open = (
                np.concatenate([a, np.empty_like(a)])
                for a in (self._ts, self._spot, self._var, self._open)
            )
        i = self.n
        self._ts[i], self._spot[i], self._var[i], self._open[i] = ts, spot, var, us_open
        self.n = i + 1

    @property
    def ts(self) -> np.ndarray:
        return self._ts[: self.n]

    @property
    def spot(self) -> np.ndarray:
        return self._spot[: self.n]

    @property
    def var(self) -> np.ndarray:
        return self._var[: self.n]

    @property
    def us_open(self) -> np.ndarray:
        return self._open[: self.n]


class MarketSim:
    """The market's state and its evolution; no I/O and no clock of its own (callers advance it)."""

    def __init__(self, start: datetime, config: SimConfig | None = None) -> None:
        self.config = cfg = config or SimConfig()
        self.specs = {u.symbol: u for u in cfg.underlyings}
        self.symbols = [u.symbol for u in cfg.underlyings]
        self._rng = np.random.default_rng(cfg.seed)
        self.step_ns = int(cfg.step_s * NS_PER_S)
        self._path = _Path(
            to_ns(start) // self.step_ns * self.step_ns,
            np.array([u.spot for u in cfg.underlyings]),
            np.array([u.vol**2 for u in cfg.underlyings]),
            session_at(start) is not None,
        )
        arr = lambda f: np.array([f(u) for u in cfg.underlyings])  # noqa: E731
        self._theta, self._kappa = arr(lambda u: u.long_vol**2), arr(lambda u: u.kappa)
        self._xi, self._rho = arr(lambda u: u.vol_of_var), arr(lambda u: u.rho)
        self._crypto = arr(lambda u: u.crypto)
        self._jump = np.array(
            [[u.jumps_per_year, u.jump_mean, u.jump_std] for u in cfg.underlyings]
        )
        self._lead = np.array([self.symbols.index(CORRELATED[s][0]) if s in CORRELATED else i
                               for i, s in enumerate(self.symbols)])  # fmt: skip
        self._lead_corr = np.array([CORRELATED.get(s, (s, 0.0))[1] for s in self.symbols])
        self._dt = np.where(
            self._crypto, cfg.step_s / (365 * 86400), cfg.step_s / US_TRADING_YEAR_S
        )
        self.shocks: list[Shock] = []
        self.listing = Listing()
        self._listed: set[tuple[str, object]] = set()
        self._list_chains()

    # --- time and path ---

    @property
    def now_ns(self) -> int:
        return int(self._path.ts[-1])

    @property
    def steps(self) -> int:
        return self._path.n - 1

    def step_index(self, ts_ns: int) -> int:
        """The last step at or before ``ts_ns`` (clamped to the path)."""
        i = (ts_ns - int(self._path.ts[0])) // self.step_ns
        return int(min(max(i, 0), self.steps))

    def step_time(self, i: int) -> int:
        return int(self._path.ts[i])

    def advance_to(self, ts_ns: int) -> int:
        """Evolve in fixed steps up to ``ts_ns``; returns how many steps were taken."""
        taken = 0
        while self.now_ns + self.step_ns <= ts_ns:
            self._step()
            taken += 1
        return taken

    def _step(self) -> None:
        t = self.now_ns + self.step_ns
        us_open = session_at(datetime.fromtimestamp(t / NS_PER_S, tz=NEW_YORK)) is not None
        moving = self._crypto | us_open
        dt, n = self._dt, len(self.symbols)
        z = self._rng.standard_normal((2, n))
        c = self._lead_corr
        z_spot = c * z[0][self._lead] + np.sqrt(1 - c * c) * z[0]
        z_var = self._rho * z_spot + np.sqrt(1 - self._rho**2) * z[1]
        jumps = self._rng.random(n) < self._jump[:, 0] * dt
        jump_size = np.where(jumps, self._rng.normal(self._jump[:, 1], self._jump[:, 2]), 0.0)
        spot0, var0 = self._path.spot[-1], self._path.var[-1]
        v = np.maximum(var0, 1e-6)
        log_ret = -0.5 * v * dt + np.sqrt(v * dt) * z_spot + jump_size
        v_new = v + self._kappa * (self._theta - v) * dt + self._xi * np.sqrt(v * dt) * z_var
        self._apply_shocks(t, log_ret, v_new, var0)
        spot = np.where(moving, spot0 * np.exp(log_ret), spot0)
        var = np.where(moving, np.clip(v_new, 0.0025, 9.0), var0)
        self._path.append(t, spot, var, us_open)
        if self._path.n % 600 == 0:  # list new expiries as days roll (cheap check)
            self._list_chains()

    def _apply_shocks(self, t: int, log_ret: np.ndarray, v: np.ndarray, var0: np.ndarray) -> None:
        for s in self.shocks:
            if s.start_ns < t <= s.end_ns:
                i = self.symbols.index(s.symbol)
                n_steps = max(1, (s.end_ns - s.start_ns) // self.step_ns)
                log_ret[i] += s.log_return / n_steps
                # the leverage effect: the Heston variance response to that return, E[dv | dS]
                v[i] = max(v[i] + self._rho[i] * self._xi[i] * s.log_return / n_steps, 1e-6)
                if s.vol_points:
                    target = (math.sqrt(var0[i]) + s.vol_points / 100 / n_steps) ** 2
                    v[i] = max(v[i], target)

    def shock(self, shock: Shock) -> None:
        if shock.symbol not in self.specs:
            raise ValueError(f"unknown underlying {shock.symbol!r}; have {self.symbols}")
        self.shocks.append(shock)

    def spot(self, symbol: str, step: int | None = None) -> float:
        """Last price of an underlying, SPY (SPX / 10) or VIX, at ``step`` (default: now)."""
        i = self.steps if step is None else step
        if symbol == "SPY":
            return round(float(self._path.spot[i, self.symbols.index("SPX")]) / 10, 2)
        if symbol == "VIX":
            return round(100 * float(self.atm_vol("SPX", 30 / 365, i)), 2)
        return float(self._path.spot[i, self.symbols.index(symbol)])

    def atm_vol(self, symbol: str, T: np.ndarray | float, step: int | None = None):
        """At-the-money implied vol: Heston expected average variance (with a risk premium)."""
        k = self.symbols.index(symbol)
        var = self._path.var[self.steps if step is None else step, k]
        return self._atm(k, np.asarray(T, dtype=float), var)

    def implied_vol(self, symbol: str, K, T, step: int | None = None) -> np.ndarray:
        """The surface at one step, for strikes ``K`` and years to expiry ``T``."""
        i = self.steps if step is None else step
        k = self.symbols.index(symbol)
        K, T = np.broadcast_arrays(np.asarray(K, dtype=float), np.asarray(T, dtype=float))
        return self._surface(k, K, T, self._path.spot[i, k], self._path.var[i, k])

    def iv_history(self, symbol: str, days: int = 252) -> np.ndarray:
        """Daily 30-day ATM implied vol (in vol points, like the VIX) for the ``days`` sessions
        before the start, ending at today's level: the input of IV rank.

        A daily Heston variance path from its own seeded stream, run from the long-run level and
        then shifted so its last value meets the live path's variance.
        """
        k = self.symbols.index(symbol)
        rng = np.random.default_rng([self.config.seed, zlib.crc32(symbol.encode())])
        dt = 1 / 252
        var = np.empty(days)
        v = self._theta[k]
        for i in range(days):
            v = max(v + self._kappa[k] * (self._theta[k] - v) * dt
                    + self._xi[k] * math.sqrt(v * dt) * rng.standard_normal(), 0.0025)  # fmt: skip
            var[i] = v
        var = np.maximum(var + (self._path.var[0, k] - var[-1]), 0.0025)
        return 100 * self._atm(k, np.asarray(30 / 365), var)

    def _atm(self, k: int, T: np.ndarray, var: np.ndarray | float) -> np.ndarray:
        prem = self.config.variance_premium
        theta, v = self._theta[k] * prem, var * prem
        kt = np.maximum(self._kappa[k] * np.maximum(T, 1e-8), 1e-9)
        return np.sqrt(theta + (v - theta) * (1 - np.exp(-kt)) / kt)

    def _surface(self, k: int, K, T, spot, var) -> np.ndarray:
        """ATM term structure times a skewed smile in standardised moneyness, saturating at
        +/-2.5 units so 0DTE wings stay plausible (about 2x ATM on the put side)."""
        u = self.specs[self.symbols[k]]
        Tm = np.maximum(T, 1e-8)
        atm = self._atm(k, Tm, var)
        m = np.log(K / (spot * np.exp((u.rate - u.div_yield) * Tm))) / (atm * np.sqrt(Tm))
        mt = 2.5 * np.tanh(m / 2.5)
        return atm * np.exp(u.skew * mt + u.smile * mt * mt)

    # --- listing ---

    def _list_chains(self) -> None:
        now = self.now_ns
        for spec in self.config.chains:
            k = self.symbols.index(spec.underlying)
            u = self.specs[spec.underlying]
            spot = float(self._path.spot[-1, k]) * spec.spot_ratio
            for expiry in expiries(spec, now):
                if (spec.root, expiry) in self._listed:
                    continue
                self._listed.add((spec.root, expiry))
                contracts, exp_ns = listed_strikes(
                    spec, expiry, spot, lambda T, s=spec: float(self.atm_vol(s.underlying, T)), now
                )
                self.listing.add(
                    (c, spec, exp_ns, k, u.rate, u.div_yield, listed_open_interest(c, spec, spot))
                    for c in contracts
                )

    def chain(self, root: str | None = None, *, alive: bool = True) -> list[Contract]:
        """Listed contracts (of one root), optionally only those not yet expired."""
        L, now = self.listing, self.now_ns
        return [c for c, e in zip(L.contracts, L.expiry_ns, strict=True)
                if (root is None or c.root == root) and (not alive or e > now)]  # fmt: skip

    def is_listed(self, contract: Contract) -> bool:
        return contract in self.listing.index

    def open_interest(self, contracts: Sequence[Contract]) -> np.ndarray:
        return self.listing.open_interest[self._indices(contracts)]

    def _indices(self, contracts: Iterable[Contract]) -> np.ndarray:
        try:
            return np.fromiter((self.listing.index[c] for c in contracts), dtype=np.int64)
        except KeyError as exc:
            raise KeyError(
                f"unknown contract {exc.args[0]!r}: not listed by the simulator"
            ) from None

    # --- quotes ---

    def quote_arrays(self, contracts: Sequence[Contract], steps: np.ndarray | int | None = None):
        """bid, ask, bid_size, ask_size, mid, iv, alive for contracts at steps (broadcast)."""
        L, path = self.listing, self._path
        st, idx = np.broadcast_arrays(
            np.asarray(self.steps if steps is None else steps, dtype=np.int64),
            self._indices(contracts),
        )
        und, ratio, tick = L.und[idx], L.ratio[idx], L.tick[idx]
        spot_und = path.spot[st, und]
        T = (L.expiry_ns[idx] - path.ts[st]) / YEAR_NS
        iv = np.empty(idx.shape)
        for k in np.unique(und):
            sel = und == k  # SPY prices off the SPX surface at strike / ratio
            iv[sel] = self._surface(k, L.strike[idx][sel] / ratio[sel], T[sel], spot_und[sel],
                                    path.var[st[sel], k])  # fmt: skip
        g = greeks(spot_und * ratio, L.strike[idx], np.maximum(T, 0.0), L.rate[idx],
                   L.div_yield[idx], iv, L.is_call[idx])  # fmt: skip
        mid = g.price
        # spreads: wider out of the money, in fast moves and into the close
        tick = np.where((mid > 3) & (tick >= 0.05), 2 * tick, tick)
        frac = 0.012 + 0.05 * np.exp(-np.abs(g.delta) / 0.05)
        lookback = np.maximum(st - int(300 / self.config.step_s), 0)
        frac *= 1 + 4 * np.minimum(1.0, np.abs(np.log(spot_und / path.spot[lookback, und])) / 0.01)
        to_close_s = (L.expiry_ns[idx] - path.ts[st]) / NS_PER_S
        frac *= np.where(to_close_s < 300, 2.0, np.where(to_close_s < 900, 1.5, 1.0))
        half = np.maximum(frac * mid, 0.5 * tick)
        bid = np.round(np.maximum(np.floor((mid - half) / tick + 1e-9) * tick, 0.0), 4)
        ask = np.round(np.maximum(np.ceil((mid + half) / tick - 1e-9) * tick, tick), 4)
        bid_size = np.where(bid > 0, 1 + np.floor(mix(idx, st, 1) * 50), 0).astype(float)
        ask_size = 1 + np.floor(mix(idx, st, 2) * 50)
        return bid, ask, bid_size, ask_size, mid, iv, T > 0

    def _moving(self, idx: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Quotes update only while the underlying trades (US sessions; crypto always)."""
        return self.listing.crypto[idx] | self._path.us_open[steps]

    def quotes(self, contracts: Sequence[Contract], step: int | None = None) -> list[Quote]:
        """Quotes at a step (default now), skipping expired contracts."""
        st = self.steps if step is None else step
        bid, ask, bs, as_, _, _, alive = self.quote_arrays(contracts, st)
        ts = self.step_time(st)
        return [Quote(c, float(bid[j]), float(ask[j]), float(bs[j]), float(as_[j]), ts)
                for j, c in enumerate(contracts) if alive[j]]  # fmt: skip

    def quote_history(self, contract: Contract, start_ns: int, end_ns: int) -> list[Quote]:
        """Every quote change of ``contract`` with start_ns <= ts <= end_ns, as streamed."""
        first = self.step_index(start_ns)
        if self.step_time(first) < start_ns:
            first += 1
        last = self.step_index(end_ns)
        if last < first:
            return []
        steps = np.arange(max(first - 1, 0), last + 1)
        bid, ask, bs, as_, _, _, alive = (a.ravel() for a in self.quote_arrays([contract], steps))
        changed = np.ones(len(steps), dtype=bool)
        changed[1:] = (
            (bid[1:] != bid[:-1])
            | (ask[1:] != ask[:-1])
            | (bs[1:] != bs[:-1])
            | (as_[1:] != as_[:-1])
        )
        if first > 0:
            changed[0] = False  # the step before the window only anchors the comparison
        moving = self._moving(self._indices([contract]), steps)
        keep = np.flatnonzero(changed & alive & (steps >= first) & moving)
        ts = self._path.ts
        return [Quote(contract, float(bid[j]), float(ask[j]), float(bs[j]), float(as_[j]),
                      int(ts[steps[j]])) for j in keep]  # fmt: skip

    def quote_updates(
        self, contracts: Sequence[Contract], step: int, last: np.ndarray | None
    ) -> tuple[list[Quote], np.ndarray]:
        """Quotes that changed at ``step`` versus ``last`` (the previous step's arrays, or None),
        and the arrays to pass as ``last`` next step. The same rule as :meth:`quote_history`, so
        what a feed streamed is exactly what history returns."""
        bid, ask, bs, as_, _, _, alive = self.quote_arrays(contracts, step)
        now = np.stack([bid, ask, bs, as_])
        changed = (
            np.ones(len(contracts), dtype=bool)
            if last is None or last.shape != now.shape
            else (now != last).any(axis=0)
        )
        emit = changed & alive & self._moving(self._indices(contracts), np.int64(step))
        ts = self.step_time(step)
        quotes = [Quote(contracts[j], float(bid[j]), float(ask[j]), float(bs[j]), float(as_[j]), ts)
                  for j in np.flatnonzero(emit)]  # fmt: skip
        return quotes, now

    def _trade_sizes(self, idx: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Size printed by each contract at each step (0 = no trade), while it trades."""
        hit = (mix(idx, steps, 3) < self.config.trades_per_step) & self._moving(idx, steps)
        return np.where(hit, 1 + np.floor(mix(idx, steps, 5) * 10), 0.0)

    def trades(self, contracts: Sequence[Contract], step: int | None = None) -> list[Trade]:
        """Prints at the bid or the ask, at a reproducible random subset of contracts."""
        st = self.steps if step is None else step
        idx = self._indices(contracts)
        size = self._trade_sizes(idx, np.int64(st))
        hit = np.flatnonzero(size)
        if not hit.size:
            return []
        sel = [contracts[j] for j in hit]
        bid, ask, _, _, _, _, alive = self.quote_arrays(sel, st)
        px = np.where((mix(idx[hit], st, 4) < 0.5) | (bid <= 0), ask, bid)
        ts = self.step_time(st)
        return [Trade(c, float(px[j]), float(size[hit[j]]), ts)
                for j, c in enumerate(sel) if alive[j]]  # fmt: skip

    def volume(self, contracts: Sequence[Contract], step: int | None = None) -> np.ndarray:
        """Contracts traded so far in the step's day (New York date): exactly the sum of the
        prints :meth:`trades` reports. O(steps in the day x contracts): for snapshots and
        analytics, not the tick path."""
        st = self.steps if step is None else step
        day = datetime.fromtimestamp(self.step_time(st) / NS_PER_S, tz=NEW_YORK).date()
        midnight = to_ns(datetime(day.year, day.month, day.day, tzinfo=NEW_YORK))
        first = self.step_index(midnight) + (self.step_time(self.step_index(midnight)) < midnight)
        idx = self._indices(contracts)
        total = np.zeros(len(idx))
        for chunk in np.array_split(
            np.arange(min(first, st), st + 1), max(1, (st - first) // 2000)
        ):
            grid_idx, grid_st = np.meshgrid(idx, chunk, indexing="ij")
            total += self._trade_sizes(grid_idx, grid_st).sum(axis=1)
        return total

    def ticks(self, symbols: Iterable[str], step: int | None = None) -> list[UnderlyingTick]:
        st = self.steps if step is None else step
        return [UnderlyingTick(s, self.spot(s, st), self.step_time(st)) for s in symbols]

    def us_market_open(self, step: int | None = None) -> bool:
        return bool(self._path.us_open[self.steps if step is None else step])

"""The simulated market: seeded, deterministic, and real enough for the risk engine.

Underlyings follow Heston stochastic volatility with jumps (spot/vol correlation negative for
indices, so the VIX-like index moves against the index most days), stepped on the variance clock
of :mod:`kit.adapters.sim.varclock`: the same clock prices the options, so implied variance is
``variance_premium`` x the variance the path will realise on average. The implied-vol surface is
the Heston expected average variance for the term structure (times the premium) and a skewed
smile in standardised moneyness whose slope grows with tenor. Quotes carry the vendors'
convention: IV per calendar year to the real settlement (``iv_cal = sqrt(total variance /
calendar years)``), so a 0DTE quoted at 10:00 shows the high IV a real one does. Chains are
listed like the real ones (:mod:`kit.adapters.sim.chains`): SPXW dailies (0DTE included,
PM-settled) and quarter-ends, SPX AM-settled monthlies a year out, SPY dailies, NDX monthlies and
NDXP dailies, and BTC/ETH Delta Exchange-style daily expiries at 12:00 UTC.

Only the underlying path is stateful. A quote is a pure function of (the stored path, the step,
the contract): sizes and trade arrivals come from a counter-based hash instead of a stateful RNG.
So any historical quote can be recomputed exactly, which is how the emulators answer REST history
requests with precisely what they streamed.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import numpy as np

from kit.adapters.sim.chains import DEFAULT_CHAINS, YEAR_NS, ChainSpec, Listing, expiries, mix
from kit.adapters.sim.chains import open_interest as listed_open_interest
from kit.adapters.sim.chains import strikes as listed_strikes
from kit.adapters.sim.paths import Path, Shock, block_steps, draws, dynamics, evolve, shock_overlays
from kit.adapters.sim.quoting import spread
from kit.adapters.sim.varclock import VarianceClock, crypto_tau
from kit.core.clock import NEW_YORK, NS_PER_S, session_at, to_ns
from kit.core.model import Contract, Quote, Trade, UnderlyingTick
from kit.core.pricing import greeks

CHUNK = 512  # steps computed ahead at once
VIX_NS = 30 * 86400 * NS_PER_S  # the VIX: 30 calendar days of implied variance
REGIMES = {"calm": 0.6, "normal": 1.0, "stressed": 2.0}  # x the spec's initial vol
OI_SHIFT = 0.8  # open interest sits OI_SHIFT x (vol - long-run vol) above spot (a fall's trace)
OI_SHIFT_RANGE = (-0.04, 0.06)


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
    skew: float = -0.35  # long-dated smile slope per unit standardised moneyness
    smile: float = 0.02
    crypto: bool = False
    skew_floor: float = 0.17  # the slope at T -> 0, as a fraction of ``skew``
    skew_tenor: float = 0.1  # variance years at which the slope is halfway up from its floor

    def skew_at(self, T: np.ndarray) -> np.ndarray:
        """Smile slope at ``T`` variance years: shallow for dailies, steeper with tenor (real
        SPX 25-delta put minus call: about 1 vol point at a week, 3 at a month, 7 at a year)."""
        grow = T / (T + self.skew_tenor)
        return self.skew * (self.skew_floor + (1 - self.skew_floor) * grow)


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
    variance_premium: float = 1.2  # implied variance / expected realised variance (VRP)
    trades_per_step: float = 0.01  # chance a listed contract prints in a step (liquid ones)
    vol_regime: str = "normal"  # calm | normal | stressed: the initial vol (REGIMES x spec.vol)
    clock: VarianceClock = field(default_factory=VarianceClock)  # where a day's variance falls

    def __post_init__(self) -> None:
        if self.vol_regime not in REGIMES:
            raise ValueError(f"vol_regime must be one of {', '.join(REGIMES)}, "
                             f"got {self.vol_regime!r}")  # fmt: skip
        if not self.variance_premium > 0 or not self.step_s > 0:
            raise ValueError("variance_premium and step_s must be positive")


class MarketSim:
    """The market's state and its evolution; no I/O and no clock of its own (callers advance it)."""

    def __init__(self, start: datetime, config: SimConfig | None = None) -> None:
        self.config = cfg = config or SimConfig()
        self.specs = {u.symbol: u for u in cfg.underlyings}
        self.symbols = [u.symbol for u in cfg.underlyings]
        self.step_ns = int(cfg.step_s * NS_PER_S)
        self.clock = cfg.clock
        start_ns = to_ns(start) // self.step_ns * self.step_ns
        scale = REGIMES[cfg.vol_regime]
        self.dynamics = dynamics(cfg.underlyings, CORRELATED)
        self._theta, self._kappa = self.dynamics.theta, self.dynamics.kappa
        self._xi, self._rho = self.dynamics.xi, self.dynamics.rho
        self._crypto = np.array([u.crypto for u in cfg.underlyings])
        self._path = Path(
            start_ns,
            np.array([u.spot for u in cfg.underlyings]),
            np.array([min((scale * u.vol) ** 2, 9.0) for u in cfg.underlyings]),
            session_at(start) is not None,
            self._tau_at(start_ns),
        )
        self._draws: tuple[int, np.ndarray] | None = None
        self._bs = block_steps(len(self.symbols))  # steps per block of random numbers
        self._ahead: tuple[np.ndarray, ...] | None = None  # steps computed, not yet reached
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
        """Evolve in fixed steps up to ``ts_ns``; returns how many steps were taken. A long
        advance (a whole day to export a chain at 15:00) runs in vectorised blocks."""
        total = max(0, (ts_ns - self.now_ns) // self.step_ns)
        before, done = self.steps, 0
        while done < total:
            done += self._advance(int(total - done))
        if self.steps // 600 != before // 600:
            self._list_chains()  # list new expiries as days roll (every 600 steps: cheap)
        return int(total)

    def _tau_at(self, ts: np.ndarray | int) -> np.ndarray:
        """Variance years at ``ts`` for every underlying (n,) or (m, n)."""
        t = np.asarray(ts, dtype=np.int64)
        us, cr = self.clock.tau(t), crypto_tau(t)
        return np.where(self._crypto, cr[..., None], us[..., None])

    def _block(self, first: int, m: int) -> np.ndarray:
        """The random numbers of steps first..first+m-1 (inside one block)."""
        b = first // self._bs
        if self._draws is None or self._draws[0] != b:
            self._draws = (b, draws(self.config.seed, b, len(self.symbols)))
        j = first % self._bs
        return self._draws[1][j : j + m]

    def _advance(self, m: int) -> int:
        """Append up to m steps; returns how many. Steps are computed ahead in chunks that end
        at fixed step numbers (multiples of CHUNK and of the random-number block) and revealed
        as time reaches them: a feed advancing one step per tick pays for a vectorised chunk
        once, not for the NumPy call overhead every tick, and the path is the same to the last
        bit however a caller chunks its advances."""
        if self._ahead is None:
            first = self.steps + 1
            end = min((first // CHUNK + 1) * CHUNK, (first // self._bs + 1) * self._bs)
            ts = self.now_ns + self.step_ns * np.arange(1, end - first + 1, dtype=np.int64)
            us_open = self.clock.session_open(ts)
            tau = self._tau_at(ts)
            dvar = np.diff(np.concatenate([self._path.tau[-1:], tau]), axis=0)
            dvar = np.where(self._crypto | us_open[:, None], dvar, 0.0)
            overlays = shock_overlays(self.shocks, self.symbols, ts, self.step_ns, self.dynamics)
            spot, var = evolve(self.dynamics, self._path.spot[-1], self._path.var[-1], dvar,
                               self._block(first, end - first), *overlays)  # fmt: skip
            self._ahead = (ts, spot, var, us_open, tau)
        k = min(m, len(self._ahead[0]))
        self._path.extend(*(a[:k] for a in self._ahead))
        self._ahead = tuple(a[k:] for a in self._ahead) if len(self._ahead[0]) > k else None
        return k

    def shock(self, shock: Shock) -> None:
        if shock.symbol not in self.specs:
            raise ValueError(f"unknown underlying {shock.symbol!r}; have {self.symbols}")
        self.shocks.append(shock)
        self._ahead = None  # recomputed with the shock (the same random numbers)

    def spot(self, symbol: str, step: int | None = None) -> float:
        """Last price of an underlying, SPY (SPX / 10) or VIX, at ``step`` (default: now)."""
        i = self.steps if step is None else step
        if symbol == "SPY":
            return round(float(self._path.spot[i, self.symbols.index("SPX")]) / 10, 2)
        if symbol == "VIX":
            return round(100 * float(self.calendar_atm_vol("SPX", VIX_NS, i)), 2)
        return float(self._path.spot[i, self.symbols.index(symbol)])

    def calendar_atm_vol(self, symbol: str, horizon_ns: int, step: int | None = None) -> float:
        """ATM implied vol quoted per calendar year over the next ``horizon_ns`` (the VIX is
        SPX's at 30 days): the variance the clock puts in that window, annualised by its
        calendar length."""
        i = self.steps if step is None else step
        k = self.symbols.index(symbol)
        t = int(self._path.ts[i])
        T = float((self._tau_at(t + horizon_ns) - self._tau_at(t))[k])
        cal = horizon_ns / YEAR_NS
        return float(self.atm_vol(symbol, T, i)) * math.sqrt(T / cal)

    def atm_vol(self, symbol: str, T: np.ndarray | float, step: int | None = None):
        """At-the-money implied vol for ``T`` variance years (the simulator's clock, see
        :mod:`kit.adapters.sim.varclock`): Heston expected average variance x the premium."""
        k = self.symbols.index(symbol)
        var = self._path.var[self.steps if step is None else step, k]
        return self._atm(k, np.asarray(T, dtype=float), var)

    def implied_vol(self, symbol: str, K, T, step: int | None = None) -> np.ndarray:
        """The surface at one step, for strikes ``K`` and ``T`` variance years to expiry."""
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
        t0 = int(self._path.ts[0])
        T = float((self._tau_at(t0 + VIX_NS) - self._tau_at(t0))[k])
        return 100 * self._atm(k, np.asarray(T), var) * math.sqrt(T / (VIX_NS / YEAR_NS))

    def _atm(self, k: int, T: np.ndarray, var: np.ndarray | float) -> np.ndarray:
        """sqrt(premium x expected realised variance per variance year over ``T``): the Heston
        average variance plus the jumps' (rate x (mean^2 + std^2)), which the path realises."""
        prem = self.config.variance_premium
        rate, mu, sd = self.dynamics.jump[k]
        jumps = rate * (mu * mu + sd * sd)
        theta, v = self._theta[k], var
        kt = np.maximum(self._kappa[k] * np.maximum(T, 1e-8), 1e-9)
        return np.sqrt(prem * (theta + (v - theta) * (1 - np.exp(-kt)) / kt + jumps))

    def variance(self, symbol: str, step: int | None = None) -> float:
        """The instantaneous (physical) variance of ``symbol`` at ``step`` (default: now): the
        state to carry into the next day's simulation."""
        return float(self._path.var[self.steps if step is None else step,
                                    self.symbols.index(symbol)])  # fmt: skip

    def _surface(self, k: int, K, T, spot, var, T_cal=None) -> np.ndarray:
        """ATM term structure times a skewed smile in standardised moneyness (its slope growing
        with tenor), saturating at +/-2.5 units so 0DTE wings stay plausible. ``T``: variance
        years; ``T_cal``: calendar years for the forward's carry (default ``T``)."""
        u = self.specs[self.symbols[k]]
        Tm = np.maximum(T, 1e-8)
        carry = Tm if T_cal is None else T_cal
        atm = self._atm(k, Tm, var)
        m = np.log(K / (spot * np.exp((u.rate - u.div_yield) * carry))) / (atm * np.sqrt(Tm))
        mt = 2.5 * np.tanh(m / 2.5)
        return atm * np.exp(u.skew_at(Tm) * mt + u.smile * mt * mt)

    # --- listing ---

    def _list_chains(self) -> None:
        now = self.now_ns
        for spec in self.config.chains:
            k = self.symbols.index(spec.underlying)
            u = self.specs[spec.underlying]
            spot = float(self._path.spot[-1, k]) * spec.spot_ratio
            vol = math.sqrt(float(self._path.var[-1, k]))
            shift = min(max(OI_SHIFT * (vol - u.long_vol), OI_SHIFT_RANGE[0]), OI_SHIFT_RANGE[1])
            for expiry in expiries(spec, now):
                if (spec.root, expiry) in self._listed:
                    continue
                self._listed.add((spec.root, expiry))
                contracts, exp_ns, core = listed_strikes(
                    spec, expiry, spot, lambda T, s=spec: float(self.atm_vol(s.underlying, T)), now
                )
                years = max((exp_ns - now) / YEAR_NS, 1 / 365 / 24)
                oi = listed_open_interest(contracts, spec, spot * math.exp(shift), years)
                tau = float(self._tau_at(exp_ns)[k])
                self.listing.add((c, spec, exp_ns, k, u.rate, u.div_yield, oi[j], core[j], tau)
                                 for j, c in enumerate(contracts))  # fmt: skip

    def chain(
        self, root: str | None = None, *, alive: bool = True, core: bool = False
    ) -> list[Contract]:
        """Listed contracts (of one root), optionally only those not yet expired, optionally
        only the core strikes (+/- 4 sd on the root's grid: what a desk quotes; the far wings
        are listed for open interest and exports)."""
        L, now = self.listing, self.now_ns
        keep = np.ones(len(L.contracts), dtype=bool)
        if alive:
            keep &= L.expiry_ns > now
        if core:
            keep &= L.core
        cs = L.contracts
        return [cs[j] for j in np.flatnonzero(keep) if root is None or cs[j].root == root]

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

    def quote_arrays(self, contracts: Sequence[Contract], steps: np.ndarray | int | None = None,
                     path: Any = None):  # fmt: skip
        """bid, ask, bid_size, ask_size, mid, iv, alive for contracts at steps (broadcast);
        ``path``: the arrays to read (default the revealed path; :meth:`quote_block`'s)."""
        L, path = self.listing, path or self._path
        st, idx = np.broadcast_arrays(
            np.asarray(self.steps if steps is None else steps, dtype=np.int64),
            self._indices(contracts),
        )
        und, ratio, tick = L.und[idx], L.ratio[idx], L.tick[idx]
        spot_und = path.spot[st, und]
        T = (L.expiry_ns[idx] - path.ts[st]) / YEAR_NS
        Tv = np.maximum(L.expiry_tau[idx] - path.tau[st, und], 0.0)  # variance years
        iv = np.empty(idx.shape)
        for k in np.unique(und):
            sel = und == k  # SPY prices off the SPX surface at strike / ratio
            iv[sel] = self._surface(k, L.strike[idx][sel] / ratio[sel], Tv[sel], spot_und[sel],
                                    path.var[st[sel], k], T[sel])  # fmt: skip
        iv = np.where(T > 0, iv * np.sqrt(Tv / np.where(T > 0, T, 1.0)), iv)  # per calendar year
        g = greeks(spot_und * ratio, L.strike[idx], np.maximum(T, 0.0), L.rate[idx],
                   L.div_yield[idx], iv, L.is_call[idx])  # fmt: skip
        mid = np.maximum(g.price, 0.0)  # no -1e-15 prices far out of the money
        to_close_s = (L.expiry_ns[idx] - path.ts[st]) / NS_PER_S
        intrinsic = np.maximum(np.where(L.is_call[idx], 1, -1) * (spot_und * ratio - L.strike[idx]),
                               0.0)  # fmt: skip
        before = path.spot[np.maximum(st - int(300 / self.config.step_s), 0), und]
        bid, ask = spread(mid, g.delta, tick, to_close_s, np.abs(np.log(spot_und / before)),
                          intrinsic)  # fmt: skip
        bid_size = np.where(bid > 0, 1 + np.floor(mix(idx, st, 1) * 50), 0).astype(float)
        ask_size = 1 + np.floor(mix(idx, st, 2) * 50)
        return bid, ask, bid_size, ask_size, mid, iv, T > 0

    def quote_block(self, contracts: Sequence[Contract], first: int, every: int):
        """(steps, arrays): :meth:`quote_arrays` at steps ``first, first + every, ...`` up to
        the end of the chunk computed ahead (:meth:`_advance`), as (m, n) arrays in one call.
        A conflated feed prices its next batches at once and releases each at its time;
        nothing ahead of now is visible to anyone else (chain source, path accessors)."""
        if self._ahead is None:
            self._advance(0)  # compute the next chunk, reveal nothing
        p, ahead, full = self._path, self._ahead, self._path
        if ahead is not None:
            full = SimpleNamespace(**{k: np.concatenate([getattr(p, k), ahead[i]])
                                      for i, k in ((0, "ts"), (1, "spot"), (2, "var"),
                                                   (4, "tau"))})  # fmt: skip
        steps = np.arange(first, len(full.ts), max(every, 1), dtype=np.int64)
        return steps, self.quote_arrays(contracts, steps[:, None], path=full)

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
        self, contracts: Sequence[Contract], step: int, last: np.ndarray | None,
        arrays: tuple | None = None,
    ) -> tuple[list[Quote], np.ndarray]:  # fmt: skip
        """Quotes that changed at ``step`` versus ``last`` (the previous step's arrays, or None),
        and the arrays to pass as ``last`` next step. The same rule as :meth:`quote_history`, so
        what a feed streamed is exactly what history returns. ``arrays``: this step's
        :meth:`quote_arrays`, already computed (a row of :meth:`quote_block`)."""
        bid, ask, bs, as_, _, _, alive = arrays or self.quote_arrays(contracts, step)
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

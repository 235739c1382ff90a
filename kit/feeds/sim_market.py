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
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np

from kit.clock import (
    NEW_YORK,
    NS_PER_S,
    delta_expiry,
    expiry_time,
    next_session,
    session_at,
    to_ns,
    us_session,
)
from kit.model import Contract, Quote, Right, Trade, UnderlyingTick
from kit.pricing import greeks

YEAR_NS = 365 * 24 * 3600 * NS_PER_S
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


@dataclass(frozen=True)
class ChainSpec:
    """How one option root is listed: which expiries, which strikes."""

    root: str
    underlying: str
    kind: str  # "daily" (US sessions), "monthly" (third Fridays), "crypto" (12:00 UTC daily)
    expiries: int
    strike_step: float
    min_width: float = 0.015  # strikes cover at least +/- this fraction of spot
    max_width: float = 0.20
    tick: float = 0.05  # below $3; twice this above (CBOE index option ticks)
    spot_ratio: float = 1.0  # SPY = SPX / 10


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

DEFAULT_CHAINS: tuple[ChainSpec, ...] = (
    ChainSpec("SPXW", "SPX", "daily", 5, 5.0),
    ChainSpec("SPX", "SPX", "monthly", 2, 25.0),
    ChainSpec("SPY", "SPX", "daily", 5, 1.0, tick=0.01, spot_ratio=0.1),
    ChainSpec("NDXP", "NDX", "daily", 3, 25.0),
    ChainSpec("NDX", "NDX", "monthly", 2, 100.0),
    ChainSpec("BTC", "BTC", "crypto", 3, 500.0, max_width=0.3, tick=0.5),
    ChainSpec("ETH", "ETH", "crypto", 3, 25.0, max_width=0.3, tick=0.1),
)

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


def _mix(*parts: np.ndarray | int) -> np.ndarray:
    """splitmix64 of the combined inputs: a reproducible uniform in [0, 1) per element."""
    x = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for p in parts:
            x = (x ^ np.asarray(p, dtype=np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
            x ^= x >> np.uint64(31)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass
class _Listing:
    contracts: list[Contract] = field(default_factory=list)
    index: dict[Contract, int] = field(default_factory=dict)
    strike: np.ndarray = field(default_factory=lambda: np.zeros(0))
    expiry_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    is_call: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    und: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    spec: list[ChainSpec] = field(default_factory=list)
    open_interest: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


class MarketSim:
    """The market's state and its evolution; no I/O and no clock of its own (callers advance it)."""

    def __init__(self, start: datetime, config: SimConfig | None = None) -> None:
        self.config = cfg = config or SimConfig()
        self.specs = {u.symbol: u for u in cfg.underlyings}
        self.symbols = [u.symbol for u in cfg.underlyings]
        n = len(self.symbols)
        self._rng = np.random.default_rng(cfg.seed)
        self.step_ns = int(cfg.step_s * NS_PER_S)
        t0 = to_ns(start) // self.step_ns * self.step_ns
        # path: one row per step; columns follow self.symbols
        self._ts: list[int] = [t0]
        self._spot: list[np.ndarray] = [np.array([u.spot for u in cfg.underlyings])]
        self._var: list[np.ndarray] = [np.array([u.vol**2 for u in cfg.underlyings])]
        self._us_open: list[bool] = [session_at(start) is not None]  # did US underlyings move
        self._theta = np.array([u.long_vol**2 for u in cfg.underlyings])
        self._kappa = np.array([u.kappa for u in cfg.underlyings])
        self._xi = np.array([u.vol_of_var for u in cfg.underlyings])
        self._rho = np.array([u.rho for u in cfg.underlyings])
        self._crypto = np.array([u.crypto for u in cfg.underlyings])
        self._lead = np.array([self.symbols.index(CORRELATED[s][0]) if s in CORRELATED else i
                               for i, s in enumerate(self.symbols)])  # fmt: skip
        self._lead_corr = np.array([CORRELATED.get(s, (s, 0.0))[1] for s in self.symbols])
        self._jump = np.array([[u.jumps_per_year, u.jump_mean, u.jump_std]
                               for u in cfg.underlyings])  # fmt: skip
        self.shocks: list[Shock] = []
        self._listing = _Listing()
        self._listed_days: set[tuple[str, date]] = set()
        self._n = n
        self._list_chains()

    # --- time and path ---

    @property
    def now_ns(self) -> int:
        return self._ts[-1]

    @property
    def steps(self) -> int:
        return len(self._ts) - 1

    def step_index(self, ts_ns: int) -> int:
        """The last step at or before ``ts_ns`` (clamped to the path)."""
        i = (ts_ns - self._ts[0]) // self.step_ns
        return int(min(max(i, 0), self.steps))

    def step_time(self, i: int) -> int:
        return self._ts[i]

    def advance_to(self, ts_ns: int) -> int:
        """Evolve in fixed steps up to ``ts_ns``; returns how many steps were taken."""
        taken = 0
        while self._ts[-1] + self.step_ns <= ts_ns:
            self._step()
            taken += 1
        return taken

    def _step(self) -> None:
        t = self._ts[-1] + self.step_ns
        when = datetime.fromtimestamp(t / NS_PER_S, tz=NEW_YORK)
        us_open = session_at(when) is not None
        moving = self._crypto | us_open
        dt = np.where(self._crypto, self.config.step_s / (365 * 86400),
                      self.config.step_s / US_TRADING_YEAR_S)  # fmt: skip
        z = self._rng.standard_normal((2, self._n))
        lead = z[0][self._lead]
        c = self._lead_corr
        z_spot = c * lead + np.sqrt(1 - c * c) * z[0]
        z_var = self._rho * z_spot + np.sqrt(1 - self._rho**2) * z[1]
        jumps = self._rng.random(self._n) < self._jump[:, 0] * dt
        jump_size = np.where(jumps, self._rng.normal(self._jump[:, 1], self._jump[:, 2]), 0.0)
        v = np.maximum(self._var[-1], 1e-6)
        log_ret = -0.5 * v * dt + np.sqrt(v * dt) * z_spot + jump_size
        v_new = v + self._kappa * (self._theta - v) * dt + self._xi * np.sqrt(v * dt) * z_var
        log_ret, v_new = self._apply_shocks(t, log_ret, v_new)
        spot = np.where(moving, self._spot[-1] * np.exp(log_ret), self._spot[-1])
        var = np.where(moving, np.clip(v_new, 0.0025, 9.0), self._var[-1])
        self._ts.append(t)
        self._spot.append(spot)
        self._var.append(var)
        self._us_open.append(us_open)
        if len(self._ts) % 600 == 0:  # list new expiries as days roll (cheap check)
            self._list_chains()

    def _apply_shocks(self, t: int, log_ret: np.ndarray, v: np.ndarray):
        for s in self.shocks:
            if s.start_ns < t <= s.end_ns:
                i = self.symbols.index(s.symbol)
                n_steps = max(1, (s.end_ns - s.start_ns) // self.step_ns)
                log_ret[i] += s.log_return / n_steps
                if s.vol_points:
                    sig0 = math.sqrt(self._var[-1][i])
                    target = (sig0 + s.vol_points / 100 / n_steps) ** 2
                    v[i] = max(v[i], target)
        return log_ret, v

    def shock(self, shock: Shock) -> None:
        if shock.symbol not in self.specs:
            raise ValueError(f"unknown underlying {shock.symbol!r}; have {self.symbols}")
        self.shocks.append(shock)

    def spot(self, symbol: str, step: int | None = None) -> float:
        """Last price of an underlying, SPY (SPX / 10) or VIX, at ``step`` (default: now)."""
        i = self.steps if step is None else step
        if symbol == "SPY":
            return round(float(self._spot[i][self.symbols.index("SPX")]) / 10, 2)
        if symbol == "VIX":
            return round(100 * float(self.atm_vol("SPX", 30 / 365, i)), 2)
        return float(self._spot[i][self.symbols.index(symbol)])

    def atm_vol(self, symbol: str, T: np.ndarray | float, step: int | None = None):
        """At-the-money implied vol: Heston expected average variance (with a risk premium)."""
        k = self.symbols.index(symbol)
        return self._atm(
            k, np.asarray(T, dtype=float), self._var[self.steps if step is None else step][k]
        )

    def implied_vol(self, symbol: str, K, T, step: int | None = None) -> np.ndarray:
        """The surface at one step, for strikes ``K`` and years to expiry ``T``."""
        i = self.steps if step is None else step
        k = self.symbols.index(symbol)
        K, T = np.broadcast_arrays(np.asarray(K, dtype=float), np.asarray(T, dtype=float))
        return self._surface(k, K, T, self._spot[i][k], self._var[i][k])

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
        now = self._ts[-1]
        new: list[tuple[Contract, ChainSpec, int]] = []
        for spec in self.config.chains:
            for expiry in self._expiries(spec, now):
                if (spec.root, expiry) in self._listed_days:
                    continue
                self._listed_days.add((spec.root, expiry))
                new.extend(self._strikes(spec, expiry, now))
        if not new:
            return
        L = self._listing
        for c, spec, _ in new:
            L.index[c] = len(L.contracts)
            L.contracts.append(c)
            L.spec.append(spec)
        u = self.symbols
        L.strike = np.concatenate([L.strike, [c.strike for c, _, _ in new]])
        L.expiry_ns = np.concatenate([L.expiry_ns, [e for _, _, e in new]]).astype(np.int64)
        L.is_call = np.concatenate([L.is_call, [c.is_call for c, _, _ in new]]).astype(bool)
        L.und = np.concatenate([L.und, [u.index(s.underlying) for _, s, _ in new]]).astype(np.int64)
        L.open_interest = np.concatenate([L.open_interest, self._open_interest(new)])

    def _expiries(self, spec: ChainSpec, now_ns: int) -> list[date]:
        now = datetime.fromtimestamp(now_ns / NS_PER_S, tz=NEW_YORK)
        out: list[date] = []
        if spec.kind == "crypto":
            day = now.astimezone(delta_expiry(now.date()).tzinfo).date()
            while len(out) < spec.expiries:
                if to_ns(delta_expiry(day)) > now_ns:
                    out.append(day)
                day += timedelta(days=1)
        elif spec.kind == "daily":
            day = now.date()
            while len(out) < spec.expiries:
                s = next_session(day)
                if to_ns(s.close) > now_ns:
                    out.append(s.day)
                day = s.day + timedelta(days=1)
        else:  # monthly: third Friday (Thursday when Friday is a holiday)
            y, m = now.year, now.month
            while len(out) < spec.expiries:
                first = date(y, m, 1)
                friday = first + timedelta(days=(4 - first.weekday()) % 7 + 14)
                day = friday if us_session(friday) else friday - timedelta(days=1)
                if to_ns(us_session(day).open) > now_ns:
                    out.append(day)
                y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out

    def _strikes(self, spec: ChainSpec, expiry: date, now_ns: int):
        i = self.symbols.index(spec.underlying)
        S = float(self._spot[-1][i]) * spec.spot_ratio
        probe = Contract(spec.root, expiry, spec.strike_step, Right.CALL)
        exp_ns = to_ns(expiry_time(probe))
        T = max((exp_ns - now_ns) / YEAR_NS, 1 / 365 / 24)
        sd = float(self.atm_vol(spec.underlying, T)) * math.sqrt(T)
        width = min(spec.max_width, max(spec.min_width, 4 * sd))
        lo = math.ceil(S * (1 - width) / spec.strike_step)
        hi = math.floor(S * (1 + width) / spec.strike_step)
        return [
            (Contract(spec.root, expiry, k * spec.strike_step, right), spec, exp_ns)
            for k in range(max(lo, 1), hi + 1)
            for right in (Right.PUT, Right.CALL)
        ]

    def _open_interest(self, new: list[tuple[Contract, ChainSpec, int]]) -> np.ndarray:
        """Bell-shaped around spot, heavier on round strikes and puts, reproducible per contract."""
        out = np.empty(len(new), dtype=np.int64)
        for j, (c, spec, _) in enumerate(new):
            S = self.spot(spec.underlying) * spec.spot_ratio
            m = math.log(c.strike / S) / 0.08
            base = 5000 * math.exp(-0.5 * m * m) * (1.6 if not c.is_call else 1.0)
            if (c.strike / spec.strike_step) % 10 == 0:
                base *= 2.5
            # a stable per-contract draw (Python's hash() of a str changes per process)
            noise = _mix(zlib.crc32(f"{c.root}{c.expiry:%Y%m%d}{c.right}{c.strike_milli}".encode()))
            out[j] = int(base * (0.5 + float(noise)))
        return out

    def chain(self, root: str | None = None, *, alive: bool = True) -> list[Contract]:
        """Listed contracts (of one root), optionally only those not yet expired."""
        L = self._listing
        now = self._ts[-1]
        return [c for c, e in zip(L.contracts, L.expiry_ns, strict=True)
                if (root is None or c.root == root) and (not alive or e > now)]  # fmt: skip

    def is_listed(self, contract: Contract) -> bool:
        return contract in self._listing.index

    def open_interest(self, contracts: Sequence[Contract]) -> np.ndarray:
        return self._listing.open_interest[self._indices(contracts)]

    def _indices(self, contracts: Iterable[Contract]) -> np.ndarray:
        try:
            return np.fromiter((self._listing.index[c] for c in contracts), dtype=np.int64)
        except KeyError as exc:
            raise KeyError(
                f"unknown contract {exc.args[0]!r}: not listed by the simulator"
            ) from None

    # --- quotes ---

    def quote_arrays(self, contracts: Sequence[Contract], steps: np.ndarray | int | None = None):
        """bid, ask, bid_size, ask_size, mid, iv arrays for contracts at steps (broadcast)."""
        L = self._listing
        idx = self._indices(contracts)
        st = np.asarray(self.steps if steps is None else steps, dtype=np.int64)
        st, idx = np.broadcast_arrays(st, idx)
        spot_path = np.asarray(self._spot)
        var_path = np.asarray(self._var)
        ts = np.asarray(self._ts, dtype=np.int64)[st]
        und = L.und[idx]
        ratio = np.array([L.spec[j].spot_ratio for j in idx.ravel()]).reshape(idx.shape)
        S = spot_path[st, und] * ratio
        T = (L.expiry_ns[idx] - ts) / YEAR_NS
        alive = T > 0
        r = np.array([self.specs[self.symbols[k]].rate for k in und.ravel()]).reshape(und.shape)
        q = np.array([self.specs[self.symbols[k]].div_yield for k in und.ravel()]).reshape(
            und.shape
        )
        iv = np.empty(idx.shape)
        for k in np.unique(und):
            sel = und == k  # SPY uses the SPX surface at strike / ratio
            K_und = L.strike[idx][sel] / ratio[sel]
            iv[sel] = self._surface(k, K_und, T[sel], spot_path[st[sel], k], var_path[st[sel], k])
        g = greeks(S, L.strike[idx], np.maximum(T, 0.0), r, q, iv, L.is_call[idx])
        mid = g.price
        # spreads: wider out of the money, in fast moves and into the close
        tick = np.array([L.spec[j].tick for j in idx.ravel()]).reshape(idx.shape)
        tick = np.where((mid > 3) & (tick >= 0.05), 2 * tick, tick)
        frac = 0.012 + 0.05 * np.exp(-np.abs(g.delta) / 0.05)
        lookback = np.maximum(st - int(300 / self.config.step_s), 0)
        move = np.abs(np.log(spot_path[st, und] / spot_path[lookback, und]))
        frac *= 1 + 4 * np.minimum(1.0, move / 0.01)
        to_close = (L.expiry_ns[idx] - ts) / NS_PER_S
        frac *= np.where(to_close < 300, 2.0, np.where(to_close < 900, 1.5, 1.0))
        half = np.maximum(frac * mid, 0.5 * tick)
        bid = np.floor((mid - half) / tick + 1e-9) * tick
        ask = np.ceil((mid + half) / tick - 1e-9) * tick
        bid = np.round(np.maximum(bid, 0.0), 4)
        ask = np.round(np.maximum(ask, tick), 4)
        bid_size = np.where(bid > 0, 1 + np.floor(_mix(idx, st, 1) * 50), 0).astype(float)
        ask_size = 1 + np.floor(_mix(idx, st, 2) * 50)
        return bid, ask, bid_size, ask_size, mid, iv, alive

    def quotes(self, contracts: Sequence[Contract], step: int | None = None) -> list[Quote]:
        """Current quotes (skipping expired contracts)."""
        st = self.steps if step is None else step
        bid, ask, bs, as_, _, _, alive = self.quote_arrays(contracts, st)
        ts = self._ts[st]
        return [Quote(c, float(bid[j]), float(ask[j]), float(bs[j]), float(as_[j]), ts)
                for j, c in enumerate(contracts) if alive[j]]  # fmt: skip

    def quote_history(self, contract: Contract, start_ns: int, end_ns: int) -> list[Quote]:
        """Every quote change of ``contract`` with start_ns <= ts <= end_ns, as streamed."""
        first = max(self.step_index(start_ns), 0)
        if self._ts[first] < start_ns:
            first += 1
        last = self.step_index(end_ns)
        if last < first:
            return []
        steps = np.arange(max(first - 1, 0), last + 1)
        bid, ask, bs, as_, _, _, alive = self.quote_arrays([contract], steps)
        bid, ask, bs, as_, alive = (a.ravel() for a in (bid, ask, bs, as_, alive))
        changed = np.ones(len(steps), dtype=bool)
        changed[1:] = (
            (bid[1:] != bid[:-1])
            | (ask[1:] != ask[:-1])
            | (bs[1:] != bs[:-1])
            | (as_[1:] != as_[:-1])
        )
        if first > 0:
            changed[0] = False  # the step before the window only anchors the comparison
        keep = np.flatnonzero(changed & alive & (steps >= first) & self._moving([contract], steps))
        return [Quote(contract, float(bid[j]), float(ask[j]), float(bs[j]), float(as_[j]),
                      self._ts[steps[j]]) for j in keep]  # fmt: skip

    def _moving(self, contracts: Sequence[Contract], steps: np.ndarray) -> np.ndarray:
        """Quotes update only while the underlying trades (US sessions; crypto always)."""
        crypto = np.array([c.is_crypto for c in contracts])
        us_open = np.asarray(self._us_open)[steps]
        return crypto | us_open

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
        emit = changed & alive & self._moving(contracts, np.full(len(contracts), step))
        ts = self._ts[step]
        quotes = [Quote(contracts[j], float(bid[j]), float(ask[j]), float(bs[j]), float(as_[j]), ts)
                  for j in np.flatnonzero(emit)]  # fmt: skip
        return quotes, now

    def _trade_sizes(self, idx: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Size printed by each contract at each step (0 = no trade); pure function of both."""
        hit = _mix(idx, steps, 3) < self.config.trades_per_step
        return np.where(hit, 1 + np.floor(_mix(idx, steps, 5) * 10), 0.0)

    def trades(self, contracts: Sequence[Contract], step: int | None = None) -> list[Trade]:
        """Prints at the bid or the ask, at a reproducible random subset of contracts."""
        st = self.steps if step is None else step
        idx = self._indices(contracts)
        size = self._trade_sizes(idx, np.int64(st)) * self._moving(contracts, np.full(len(idx), st))
        if not size.any():
            return []
        hit = np.flatnonzero(size)
        sel = [contracts[j] for j in hit]
        bid, ask, _, _, _, _, alive = self.quote_arrays(sel, st)
        buy = _mix(idx[hit], st, 4) < 0.5
        px = np.where(buy | (bid <= 0), ask, bid)
        return [Trade(c, float(px[j]), float(size[hit[j]]), self._ts[st])
                for j, c in enumerate(sel) if alive[j]]  # fmt: skip

    def volume(self, contracts: Sequence[Contract], step: int | None = None) -> np.ndarray:
        """Contracts traded so far in the step's day (New York date), exactly the sum of the
        prints :meth:`trades` reports. Costs O(steps in the day x contracts): for snapshots and
        analytics, not the tick path."""
        st = self.steps if step is None else step
        day = datetime.fromtimestamp(self._ts[st] / NS_PER_S, tz=NEW_YORK).date()
        midnight = to_ns(datetime(day.year, day.month, day.day, tzinfo=NEW_YORK))
        first = self.step_index(midnight) + (self._ts[self.step_index(midnight)] < midnight)
        steps = np.arange(min(first, st), st + 1)
        idx = self._indices(contracts)
        total = np.zeros(len(idx))
        for chunk in np.array_split(steps, max(1, len(steps) // 2000)):
            grid_idx, grid_st = np.meshgrid(idx, chunk, indexing="ij")
            moving = (
                np.asarray(self._us_open)[grid_st]
                | np.array([c.is_crypto for c in contracts])[:, None]
            )
            total += (self._trade_sizes(grid_idx, grid_st) * moving).sum(axis=1)
        return total

    def ticks(self, symbols: Iterable[str], step: int | None = None) -> list[UnderlyingTick]:
        st = self.steps if step is None else step
        return [UnderlyingTick(s, self.spot(s, st), self._ts[st]) for s in symbols]

    def us_market_open(self, step: int | None = None) -> bool:
        return self._us_open[self.steps if step is None else step]

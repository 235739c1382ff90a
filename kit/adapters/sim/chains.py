"""What the simulated market lists: expiries, strikes and open interest per option root.

SPXW/SPY/NDXP dailies (0DTE included) expire at the session close, SPXW quarter-ends at the close,
SPX/NDX monthlies on the third Friday's opening prints (Thursday when Friday is a holiday), BTC/ETH
daily at 12:00 UTC. Strikes come in tiers, like the real chains: the root's grid within +/- 4
standard deviations of the expiry (the *core*, what the desk quotes and trades), five grid steps
further out, and twenty steps out to the root's far range (SPX: -75% / +30% of spot, as listed).
Open interest is a smooth density in moneyness per side (puts below spot and far out, calls
above), weighted by expiry type (monthlies and quarterlies heavy, plain dailies light); numbers
fitted to the real CBOE chains in ``../shared/data/`` (README "Simulated market").
:class:`Listing` keeps every listed contract with its attributes as NumPy arrays, so pricing a
set of contracts is array indexing, not Python loops.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np

from kit.core.clock import (
    NEW_YORK,
    NS_PER_S,
    delta_expiry,
    expiry_time,
    next_session,
    previous_session,
    to_ns,
    us_session,
)
from kit.core.model import Contract, Right

YEAR_NS = 365 * 24 * 3600 * NS_PER_S
OI_SPX = 30000.0  # contracts per unit of expiry weight: ~10M SPX contracts, calm GEX ~ real (16 bn)
OI_NDX = 1000.0  # NDX options: about 1/100 of SPX open interest (real: 106k vs 20.4M contracts)


@dataclass(frozen=True)
class ChainSpec:
    """How one option root is listed: which expiries, which strikes."""

    root: str
    underlying: str
    kind: str  # "daily" (US sessions), "monthly" (third Fridays), "quarterly" (quarter-end
    # sessions, PM-settled), "crypto" (12:00 UTC daily)
    expiries: int
    strike_step: float
    min_width: float = 0.015  # core strikes cover at least +/- this fraction of spot
    max_width: float = 0.20
    tick: float = 0.05  # below $3; twice this above (CBOE index option ticks)
    spot_ratio: float = 1.0  # SPY = SPX / 10
    far_down: float = 0.0  # coarse strikes down to spot x (1 - far_down) (0: core only)
    far_up: float = 0.0  # and up to spot x (1 + far_up)
    oi_scale: float = 0.0  # open interest: contracts per unit of expiry weight (0: none)


DEFAULT_CHAINS: tuple[ChainSpec, ...] = (
    ChainSpec("SPXW", "SPX", "daily", 5, 5.0, far_down=0.75, far_up=0.30, oi_scale=OI_SPX),
    ChainSpec("SPXW", "SPX", "quarterly", 4, 5.0, far_down=0.80, far_up=0.30, oi_scale=OI_SPX),
    ChainSpec("SPX", "SPX", "monthly", 12, 25.0, far_down=0.90, far_up=0.50, oi_scale=OI_SPX),
    ChainSpec("SPY", "SPX", "daily", 5, 1.0, tick=0.01, spot_ratio=0.1, far_down=0.18,
              far_up=0.13, oi_scale=5 * OI_SPX),
    ChainSpec("NDXP", "NDX", "daily", 3, 25.0, far_down=0.30, far_up=0.30, oi_scale=OI_NDX),
    ChainSpec("NDX", "NDX", "monthly", 12, 100.0, far_down=0.50, far_up=0.40, oi_scale=OI_NDX),
    ChainSpec("BTC", "BTC", "crypto", 3, 500.0, max_width=0.3, tick=0.5, oi_scale=4000.0),
    ChainSpec("ETH", "ETH", "crypto", 3, 25.0, max_width=0.3, tick=0.1, oi_scale=4000.0),
)  # fmt: skip


def mix(*parts: np.ndarray | int) -> np.ndarray:
    """splitmix64 of the combined inputs: a reproducible uniform in [0, 1) per element."""
    x = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for p in parts:
            x = (x ^ np.asarray(p, dtype=np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
            x ^= x >> np.uint64(31)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def expiries(spec: ChainSpec, now_ns: int) -> list[date]:
    """The next ``spec.expiries`` expiry dates still trading at ``now_ns``."""
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
    elif spec.kind == "quarterly":
        y, m = now.year, (now.month - 1) // 3 * 3 + 3
        while len(out) < spec.expiries:
            last = date(y + m // 12, m % 12 + 1, 1) - timedelta(days=1)
            day = previous_session(last).day
            if to_ns(us_session(day).close) > now_ns:
                out.append(day)
            y, m = (y + 1, 3) if m == 12 else (y, m + 3)
    else:
        y, m = now.year, now.month
        while len(out) < spec.expiries:
            first = date(y, m, 1)
            friday = first + timedelta(days=(4 - first.weekday()) % 7 + 14)
            day = friday if us_session(friday) else friday - timedelta(days=1)
            if to_ns(us_session(day).open) > now_ns:
                out.append(day)
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _grid(step: float, lo: float, hi: float) -> np.ndarray:
    return np.arange(max(1, math.ceil(lo / step)), math.floor(hi / step) + 1) * step


def strike_grid(spec: ChainSpec, spot: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Sorted strikes of one expiry and which are core: the grid within +/- ``width`` of spot,
    then 5 grid steps out to 2.5 x that width, then 20 steps out to the far range."""
    core = _grid(spec.strike_step, spot * (1 - width), spot * (1 + width))
    if spec.far_down <= 0 and spec.far_up <= 0:
        return core, np.ones(core.size, dtype=bool)
    lo, hi = spot * (1 - spec.far_down), spot * (1 + spec.far_up)
    mid_w = 2.5 * max(width, 0.04)
    coarse = _grid(5 * spec.strike_step, max(lo, spot * (1 - mid_w)), min(hi, spot * (1 + mid_w)))
    far = _grid(20 * spec.strike_step, lo, hi)
    every = np.union1d(np.union1d(core, coarse), far)
    return every, np.isin(every, core)


def strikes(
    spec: ChainSpec, expiry: date, spot: float, atm_vol: Callable[[float], float], now_ns: int
) -> tuple[list[Contract], int, np.ndarray]:
    """Contracts (puts and calls) listed for one expiry, its expiry time in ns, and which
    contracts are core (quoted to the desk)."""
    exp_ns = to_ns(expiry_time(Contract(spec.root, expiry, spec.strike_step, Right.CALL)))
    T = max((exp_ns - now_ns) / YEAR_NS, 1 / 365 / 24)
    width = min(spec.max_width, max(spec.min_width, 4 * atm_vol(T) * math.sqrt(T)))
    grid, core = strike_grid(spec, spot, width)
    contracts = [Contract(spec.root, expiry, float(k), right)
                 for k in grid for right in (Right.PUT, Right.CALL)]  # fmt: skip
    return contracts, exp_ns, np.repeat(core, 2)


def is_quarter_end(day: date) -> bool:
    """The last session of March, June, September or December (SPXW quarterly expiries)."""
    if day.month % 3:
        return False
    last = date(day.year + day.month // 12, day.month % 12 + 1, 1) - timedelta(days=1)
    return previous_session(last).day == day


def expiry_weight(spec: ChainSpec, expiry: date, years: float) -> float:
    """Relative open interest of one expiry: AM monthlies heavy (and decaying with tenor, the
    quarter months and December heavier), quarter- and month-end dailies next, Fridays, then
    plain dailies; the proportions of the real SPX chain of 2023-09-14."""
    quarter_end = is_quarter_end(expiry)
    if spec.kind == "monthly":
        q = 3.0 if expiry.month == 12 else 2.0 if expiry.month % 3 == 0 else 1.0
        return 40.0 * (math.exp(-years / 0.2) + 0.08) * q
    if quarter_end:
        return 12.0 * math.exp(-years / 0.5)
    if next_session(expiry + timedelta(days=1)).day.month != expiry.month:
        return 8.0
    return 8.0 if expiry.weekday() == 4 else 4.0


def _normal(x: np.ndarray, mu: float, sd: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))


def open_interest(
    contracts: list[Contract], spec: ChainSpec, anchor: float, years: float
) -> np.ndarray:
    """Open interest of one expiry's contracts (sorted by strike, puts and calls), positioned
    around ``anchor`` (the level where it was built: above spot after a fall, so the put mass
    sits near the money on stressed days).

    Per side a mixture of normals in log-moneyness with a tenor-scaled width: puts near (-1 sd)
    and far (-2.8 sd) out of the money, calls mostly above spot, puts twice the calls in total;
    each strike carries the density over its share of the grid (coarse strikes collect their
    neighbours'), round strikes 2.5x, and a reproducible per-contract factor in [0.5, 1.5) (a
    CRC of the symbol: Python's hash() of a str changes from process to process)."""
    K = np.array([c.strike for c in contracts])
    call = np.array([c.is_call for c in contracts])
    s = max(0.2 * math.sqrt(years), 0.035)
    x = np.log(K / anchor)
    put_d = 0.67 * (
        0.54 * _normal(x, -1.0 * s, 0.9 * s)
        + 0.38 * _normal(x, -2.8 * s, 1.8 * s)
        + 0.08 * _normal(x, 0.6 * s, 1.2 * s)
    )
    call_d = 0.33 * (0.8 * _normal(x, 0.7 * s, 0.9 * s) + 0.2 * _normal(x, -1.0 * s, 1.0 * s))
    strikes_ = np.unique(K)
    span = np.gradient(np.log(strikes_)) if strikes_.size > 1 else np.ones(1)
    dx = span[np.searchsorted(strikes_, K)]
    base = spec.oi_scale * expiry_weight(spec, contracts[0].expiry, years)
    oi = base * np.where(call, call_d, put_d) * dx
    oi *= np.where(np.isclose(np.mod(K / spec.strike_step, 10), 0), 2.5, 1.0)
    keys = (f"{c.root}{c.expiry:%Y%m%d}{c.right}{c.strike_milli}".encode() for c in contracts)
    noise = mix(np.fromiter((zlib.crc32(k) for k in keys), dtype=np.uint64, count=len(K)))
    return np.floor(oi * (0.5 + noise)).astype(np.int64)


@dataclass
class Listing:
    """Every contract ever listed, with per-contract attributes as parallel arrays."""

    contracts: list[Contract] = field(default_factory=list)
    index: dict[Contract, int] = field(default_factory=dict)
    strike: np.ndarray = field(default_factory=lambda: np.zeros(0))
    expiry_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    is_call: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    crypto: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    und: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ratio: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tick: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rate: np.ndarray = field(default_factory=lambda: np.zeros(0))
    div_yield: np.ndarray = field(default_factory=lambda: np.zeros(0))
    open_interest: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    core: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    expiry_tau: np.ndarray = field(default_factory=lambda: np.zeros(0))  # variance years

    def add(self, rows: Iterable[tuple]) -> None:
        """Append (contract, spec, expiry_ns, underlying index, rate, yield, open interest, core,
        expiry on the variance clock)."""
        rows = [r for r in rows if r[0] not in self.index]
        if not rows:
            return
        for c, *_ in rows:
            self.index[c] = len(self.contracts)
            self.contracts.append(c)
        cols = list(zip(*rows, strict=True))
        specs = cols[1]

        def grow(current: np.ndarray, values: Iterable, dtype: type) -> np.ndarray:
            return np.concatenate([current, np.fromiter(values, dtype=dtype)])

        self.strike = grow(self.strike, (c.strike for c in cols[0]), np.float64)
        self.is_call = grow(self.is_call, (c.is_call for c in cols[0]), np.bool_)
        self.crypto = grow(self.crypto, (c.is_crypto for c in cols[0]), np.bool_)
        self.expiry_ns = grow(self.expiry_ns, cols[2], np.int64)
        self.und = grow(self.und, cols[3], np.int64)
        self.rate = grow(self.rate, cols[4], np.float64)
        self.div_yield = grow(self.div_yield, cols[5], np.float64)
        self.open_interest = grow(self.open_interest, cols[6], np.int64)
        self.core = grow(self.core, cols[7], np.bool_)
        self.expiry_tau = grow(self.expiry_tau, cols[8], np.float64)
        self.ratio = grow(self.ratio, (s.spot_ratio for s in specs), np.float64)
        self.tick = grow(self.tick, (s.tick for s in specs), np.float64)

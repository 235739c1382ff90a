"""What the simulated market lists: expiries and strikes per option root, like the exchanges.

SPXW/SPY/NDXP dailies (0DTE included) expire at the session close, SPX/NDX monthlies on the third
Friday's opening prints (Thursday when Friday is a holiday), BTC/ETH daily at 12:00 UTC. Strikes
cover +/- 4 standard deviations of the expiry (within per-root bounds) on the root's grid.
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
    to_ns,
    us_session,
)
from kit.core.model import Contract, Right

YEAR_NS = 365 * 24 * 3600 * NS_PER_S


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


DEFAULT_CHAINS: tuple[ChainSpec, ...] = (
    ChainSpec("SPXW", "SPX", "daily", 5, 5.0),
    ChainSpec("SPX", "SPX", "monthly", 2, 25.0),
    ChainSpec("SPY", "SPX", "daily", 5, 1.0, tick=0.01, spot_ratio=0.1),
    ChainSpec("NDXP", "NDX", "daily", 3, 25.0),
    ChainSpec("NDX", "NDX", "monthly", 2, 100.0),
    ChainSpec("BTC", "BTC", "crypto", 3, 500.0, max_width=0.3, tick=0.5),
    ChainSpec("ETH", "ETH", "crypto", 3, 25.0, max_width=0.3, tick=0.1),
)


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


def strikes(
    spec: ChainSpec, expiry: date, spot: float, atm_vol: Callable[[float], float], now_ns: int
) -> tuple[list[Contract], int]:
    """Contracts (puts and calls) listed for one expiry, and its expiry time in ns."""
    exp_ns = to_ns(expiry_time(Contract(spec.root, expiry, spec.strike_step, Right.CALL)))
    T = max((exp_ns - now_ns) / YEAR_NS, 1 / 365 / 24)
    width = min(spec.max_width, max(spec.min_width, 4 * atm_vol(T) * math.sqrt(T)))
    lo = max(1, math.ceil(spot * (1 - width) / spec.strike_step))
    hi = math.floor(spot * (1 + width) / spec.strike_step)
    contracts = [Contract(spec.root, expiry, k * spec.strike_step, right)
                 for k in range(lo, hi + 1) for right in (Right.PUT, Right.CALL)]  # fmt: skip
    return contracts, exp_ns


def open_interest(contract: Contract, spec: ChainSpec, spot: float) -> int:
    """Bell-shaped around spot, heavier on puts and round strikes, reproducible per contract
    (a CRC of the symbol: Python's hash() of a str changes from process to process)."""
    m = math.log(contract.strike / spot) / 0.08
    base = 5000 * math.exp(-0.5 * m * m) * (1.0 if contract.is_call else 1.6)
    if (contract.strike / spec.strike_step) % 10 == 0:
        base *= 2.5
    key = f"{contract.root}{contract.expiry:%Y%m%d}{contract.right}{contract.strike_milli}"
    return int(base * (0.5 + float(mix(zlib.crc32(key.encode())))))


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

    def add(self, rows: Iterable[tuple[Contract, ChainSpec, int, int, float, float, int]]) -> None:
        """Append (contract, spec, expiry_ns, underlying index, rate, yield, open interest)."""
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
        self.ratio = grow(self.ratio, (s.spot_ratio for s in specs), np.float64)
        self.tick = grow(self.tick, (s.tick for s in specs), np.float64)

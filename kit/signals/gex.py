"""Gamma exposure (GEX): by contract, strike and expiry, the profile over spot, zero gamma, walls.

Per contract, ``GEX = sign x gamma x open interest x multiplier x S^2 x 0.01``: the dollars of
underlying the option's holders' counterparties (dealers, by the sign model) must trade to stay
hedged when spot moves 1%. The default sign model is the usual one: dealers long calls (+1) and
short puts (-1); :data:`SignModel` lets research swap it. Positive total GEX means hedging
dampens moves; below the zero-gamma level it amplifies them.

Conventions are explicit in :class:`GexConfig`: rates, the time basis, 0DTE handling, and whether
gamma at spot comes from each contract's IV (default: CBOE rounds gamma to 4 decimals, which
zeroes many far out-of-the-money SPX gammas) or from the vendor's column. :data:`PUBLIC` matches
the popular public scripts (r = q = 0, business days / 262, 60 levels in 0.8-1.2 x spot, linear
interpolation, the first crossing), which is how published gamma-flip figures are computed.

The profile is the hot path (a full chain over 200 levels); :class:`GammaKernel` computes it from
per-contract coefficients with one matrix product, and :func:`profile_reference` is the slow,
obvious version (one :func:`kit.core.pricing.greeks` call per level) it is tested against.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

import numpy as np
import polars as pl
from numpy.typing import ArrayLike
from scipy.optimize import brentq

from kit.core.clock import NEW_YORK, next_session, us_session
from kit.core.pricing import greeks
from kit.signals.chains import Chain, years_to_expiry
from kit.signals.config import DESK, F64, GexConfig

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def is_monthly(day: date) -> bool:
    """A standard monthly expiry: the third Friday, or the Thursday before it when that Friday
    is an exchange holiday (Good Friday)."""
    if day.weekday() == 4 and 15 <= day.day <= 21:
        return True
    friday = day + timedelta(days=1)
    return day.weekday() == 3 and 15 <= friday.day <= 21 and us_session(friday) is None


# --- time to expiry under the configured conventions ---


def sessions_to_expiry(expiries: ArrayLike, asof: datetime) -> np.ndarray:
    """Per expiry date, the sessions still to trade through the expiry's own: counted from the
    first session whose open is after ``asof`` (a download on the weekend, after the close or
    during a session starts at the next one), holidays excluded, 0 when none is left. The desk's
    business-day count: Monday's expiry from a Saturday download has one session, not zero."""
    days = np.asarray(expiries, dtype="datetime64[D]")
    if days.size == 0:
        return np.zeros(0)
    start = next_session(asof.astimezone(NEW_YORK).date())
    while start.open <= asof:
        start = next_session(start.day + timedelta(days=1))
    last = max(days.max().astype(date), start.day)
    sessions = [start.day + timedelta(days=i) for i in range((last - start.day).days + 1)]
    sessions = np.array([d for d in sessions if us_session(d) is not None], dtype="datetime64[D]")
    return np.searchsorted(sessions, days, side="right").astype(float)


def expiry_years(frame: pl.DataFrame, asof: datetime, cfg: GexConfig) -> tuple[F64, F64]:
    """(years to expiry, 0-day mask) for each row under ``cfg``'s time basis and day count,
    before the ``zero_dte`` rule. A 0-day row expires on the as-of date or, counting business
    days, has a count of 0 without having expired before the as-of date."""
    today = np.datetime64(asof.astimezone(NEW_YORK).date())
    expiry = frame["expiry"].to_numpy().astype("datetime64[D]")
    if cfg.time_basis == "business_days" and cfg.day_count == "next_session":
        years = sessions_to_expiry(expiry, asof) / cfg.days_per_year
    else:
        years = years_to_expiry(frame, asof, cfg.time_basis, days_per_year=cfg.days_per_year)
    day0 = expiry == today
    if cfg.time_basis == "business_days":
        day0 |= (years == 0) & (expiry >= today)
    return years, day0


# --- per contract ---


def exposures(chain: Chain, cfg: GexConfig = DESK) -> pl.DataFrame:
    """One row per contract that carries exposure (T > 0 after the ``zero_dte`` rule, see
    :class:`~kit.signals.config.GexConfig`) with its Greeks and dollar exposures at spot S:

    - ``gex``: sign x gamma x OI x multiplier x S^2 x 0.01, $ of underlying per 1% move;
    - ``vanna_exposure``: sign x vanna x OI x multiplier x S x 0.01, $ delta per vol point;
    - ``charm_exposure``: sign x charm x OI x multiplier x S x (one day in years), $ delta per day
      (the delta drift as a day passes with spot and IV unchanged);
    - ``dollar_delta``: sign x delta x OI x multiplier x S, $.

    A contract without a usable IV (null, non-positive) has zero Greeks: it carries nothing.
    """
    f = chain.frame
    years, day0 = expiry_years(f, chain.asof, cfg)
    if cfg.zero_dte == "one-day":
        years = np.where(day0, 1.0 / cfg.days_per_year, years)
    sign = np.broadcast_to(np.asarray(cfg.sign(chain), dtype=float), (f.height,))
    keep = years > 0
    if cfg.zero_dte == "drop":
        keep &= ~day0
    f = f.with_columns(pl.Series("years", years), pl.Series("sign", sign)).filter(keep)
    S = chain.spot
    K, T = f["strike"].to_numpy(), f["years"].to_numpy()
    iv = f["iv"].fill_null(np.nan).to_numpy()
    g = greeks(S, K, T, cfg.r, cfg.q, iv, f["is_call"].to_numpy())
    vendor = f["gamma_vendor"].fill_null(0.0).to_numpy()
    gamma, vanna, charm, delta = (np.nan_to_num(np.asarray(x, dtype=float)) for x in
                                  (g.gamma if cfg.gamma_source == "iv" else vendor, g.vanna,
                                   g.charm, g.delta))  # fmt: skip
    weight = (f["sign"] * f["open_interest"].fill_null(0.0) * f["multiplier"]).to_numpy()
    return f.with_columns(
        pl.Series("weight", weight),
        pl.Series("gamma", gamma),
        pl.Series("gex", weight * gamma * S * S * 0.01),
        pl.Series("vanna_exposure", weight * vanna * S * 0.01),
        pl.Series("charm_exposure", weight * charm * cfg.years_per_day * S),
        pl.Series("dollar_delta", weight * delta * S),
    )


def aggregate(ex: pl.DataFrame, by: Literal["strike", "expiry"]) -> pl.DataFrame:
    """Exposures summed by strike or by expiry (all roots together), sorted: call and put GEX
    apart and together, vanna and charm exposure, dollar delta, call and put open interest."""
    call, put = pl.col("is_call"), ~pl.col("is_call")
    return (
        ex.group_by(by)
        .agg(
            pl.col("gex").filter(call).sum().alias("call_gex"),
            pl.col("gex").filter(put).sum().alias("put_gex"),
            pl.col("gex").sum(),
            pl.col("vanna_exposure").sum(),
            pl.col("charm_exposure").sum(),
            pl.col("dollar_delta").sum(),
            pl.col("open_interest").filter(call).sum().alias("call_oi"),
            pl.col("open_interest").filter(put).sum().alias("put_oi"),
        )
        .sort(by)
    )


def walls(by_strike: pl.DataFrame) -> tuple[float | None, float | None]:
    """(call wall, put wall): the strikes with the largest call and put gamma exposure (in
    absolute value, so any sign model works); None when a side has none."""
    out: list[float | None] = []
    for col in ("call_gex", "put_gex"):
        v = np.abs(by_strike[col].to_numpy())
        out.append(float(by_strike["strike"][int(v.argmax())]) if v.size and v.max() > 0 else None)
    return out[0], out[1]


# --- the profile over spot ---


class GammaKernel:
    """GEX at many spot levels for fixed contracts, from per-contract coefficients.

    With u = ln(L / S), d1(L) = a u + b where a = 1 / (sigma sqrt T) and
    b = (ln(S / K) + (r - q + sigma^2 / 2) T) a, and gamma x L^2 = L e^(-qT) phi(d1) a, so
    ``GEX(L) = 0.01 L sum_i c_i exp(-d1_i^2 / 2)`` with c_i = w_i e^(-q T_i) a_i / sqrt(2 pi).
    One (levels x 2) @ (2 x contracts) product gives d1 / sqrt(2) for every pair; square, negate
    and exp run in place on a reused buffer, and a matrix product with the weight columns sums.
    Levels go in blocks sized so the buffer stays in cache. Contracts whose d1 stays beyond
    +/-38.7 over the whole grid are skipped: their exp underflows to exactly 0 anyway.

    ``weights`` (contracts x columns) are sign x OI x multiplier, one column per variant (all
    expiries, ex next expiry, ...). Holds a buffer: use one kernel per thread.
    """

    # 1 MiB of float64 per block, half of a 2 MiB L2: measured 2.86 ms for 10k x 200 against
    # 4.0 ms with 64 KiB blocks (too few levels per call) and 2.9 ms unblocked
    BLOCK_ELEMENTS = 1 << 17

    def __init__(
        self,
        strike: ArrayLike,
        years: ArrayLike,
        iv: ArrayLike,
        weights: ArrayLike,
        *,
        spot: float,
        r: float = 0.0,
        q: float = 0.0,
    ) -> None:
        K, T, sig = (np.asarray(x, dtype=float) for x in (strike, years, iv))
        W = np.asarray(weights, dtype=float)
        W = W[:, None] if W.ndim == 1 else W
        with np.errstate(invalid="ignore"):
            ok = (np.isfinite(K) & (K > 0) & np.isfinite(T) & (T > 0) & np.isfinite(sig)
                  & (sig > 0) & (W != 0).any(axis=1) & np.isfinite(W).all(axis=1))  # fmt: skip
        K, T, sig, W = K[ok], T[ok], sig[ok], W[ok]
        a = 1.0 / (sig * np.sqrt(T))
        b = (np.log(spot / K) + (r - q + 0.5 * sig * sig) * T) * a
        self.spot, self.columns, self.size = float(spot), W.shape[1], int(ok.sum())
        self._ab = np.sqrt(0.5) * np.stack([a, b])  # rows: a / sqrt 2, b / sqrt 2
        self._coef = W * (np.exp(-q * T) * a * _INV_SQRT_2PI)[:, None]
        self._buf = np.empty(0)

    def __call__(self, levels: ArrayLike) -> F64:
        """GEX ($ per 1% move) at each level: shape (levels, columns)."""
        L = np.asarray(levels, dtype=float).ravel()
        out = np.zeros((L.size, self.columns))
        if L.size == 0 or self.size == 0:
            return out
        u = np.log(L / self.spot)
        ab, coef = self._ab, self._coef
        far = (ab[0] * u.min() + ab[1] > 27.4) | (ab[0] * u.max() + ab[1] < -27.4)  # d1^2/2 > 750
        if far.any():
            ab, coef = ab[:, ~far], coef[~far]
        n = ab.shape[1]
        if n == 0:
            return out
        U = np.stack([u, np.ones_like(u)], axis=1)
        rows = max(1, self.BLOCK_ELEMENTS // n)
        if self._buf.size < rows * n:
            self._buf = np.empty(rows * n)
        for i in range(0, L.size, rows):
            Ub = U[i : i + rows]
            B = self._buf[: len(Ub) * n].reshape(len(Ub), n)
            np.matmul(Ub, ab, out=B)
            np.square(B, out=B)
            np.negative(B, out=B)
            np.exp(B, out=B)
            np.matmul(B, coef, out=out[i : i + rows])
        out *= (0.01 * L)[:, None]
        return out


def profile_reference(
    levels: ArrayLike,
    strike: ArrayLike,
    years: ArrayLike,
    iv: ArrayLike,
    weights: ArrayLike,
    *,
    r: float = 0.0,
    q: float = 0.0,
) -> F64:
    """The obvious GEX profile: the desk's Black-Scholes gamma of every contract at each level,
    times weight x L^2 x 0.01 (NaN gamma, from a missing IV, counts 0). Slow; the reference
    :class:`GammaKernel` is checked against."""
    W = np.asarray(weights, dtype=float)
    W = W[:, None] if W.ndim == 1 else W
    L = np.asarray(levels, dtype=float).ravel()
    out = np.empty((L.size, W.shape[1]))
    for i, level in enumerate(L):
        gamma = np.nan_to_num(greeks(level, strike, years, r, q, iv, True).gamma)
        out[i] = gamma @ W * level * level * 0.01
    return out


NOISE = 1e-10  # |net| below this fraction of the gross (|weights|) exposure at a level is 0


def net_of_noise(net: F64, gross: F64) -> F64:
    """``net`` with values that are rounding noise set to 0: where calls and puts cancel exactly
    (same strike, IV and open interest), summation order alone would decide the sign."""
    return np.where(np.abs(net) <= NOISE * gross, 0.0, net)


def zero_crossings(
    levels: F64, values: F64, *, refine: Literal["root", "linear"] = "root",
    f: Callable[[float], float] | None = None,
) -> F64:  # fmt: skip
    """Every level where ``values`` changes sign, ascending.

    Between two grid points of opposite sign the crossing is refined with Brent's method on ``f``
    (the exact profile) or interpolated linearly (also when ``f`` at the two points disagrees
    with the grid's signs); when exact zeros sit between them, the first such grid point is the
    crossing. Touching zero without changing sign is not a crossing.
    """
    nz = np.flatnonzero(np.sign(values))
    out = []
    for lo, hi in itertools.pairwise(nz):
        x0, x1, y0, y1 = levels[lo], levels[hi], values[lo], values[hi]
        if np.sign(y0) == np.sign(y1):
            continue
        if hi > lo + 1:
            out.append(float(levels[lo + 1]))
        elif refine == "root" and f is not None and f(x0) * f(x1) < 0:
            out.append(float(brentq(f, x0, x1, xtol=1e-9)))
        else:
            out.append(float(x1 - (x1 - x0) * y1 / (y1 - y0)))
    return np.array(out)


@dataclass(frozen=True, eq=False)
class GexProfile:
    """Total GEX ($ per 1% move) at each spot level, with every expiry, without the next one
    and without the next monthly; crossings of each curve."""

    levels: F64
    total: F64
    ex_next: F64
    ex_monthly: F64
    crossings: F64
    crossings_ex_next: F64
    crossings_ex_monthly: F64


def _pick(crossings: F64, spot: float, how: str) -> float | None:
    if crossings.size == 0:
        return None
    return float(crossings[0] if how == "first" else crossings[np.abs(crossings - spot).argmin()])


@dataclass(frozen=True, eq=False)
class GexLevels:
    """Everything the GEX of one chain says. Money in $ of underlying (per 1% move for GEX, per
    vol point for vanna, per day for charm); levels in index points."""

    underlying: str
    spot: float
    asof: datetime
    total_gex: float
    zero_gamma: float | None
    crossings: tuple[float, ...]
    call_wall: float | None
    put_wall: float | None
    zero_gamma_ex_next: float | None
    zero_gamma_ex_monthly: float | None
    next_expiry: date | None
    next_monthly: date | None
    vanna_exposure: float
    charm_exposure: float
    contracts: int
    config: GexConfig
    profile: GexProfile
    by_strike: pl.DataFrame
    by_expiry: pl.DataFrame
    exposures: pl.DataFrame = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no frames; NaN becomes None)."""

        def num(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else float(x)

        return {
            "underlying": self.underlying, "spot": self.spot, "asof": self.asof.isoformat(),
            "total_gex": num(self.total_gex), "zero_gamma": num(self.zero_gamma),
            "crossings": [float(c) for c in self.crossings], "call_wall": num(self.call_wall),
            "put_wall": num(self.put_wall), "zero_gamma_ex_next": num(self.zero_gamma_ex_next),
            "zero_gamma_ex_monthly": num(self.zero_gamma_ex_monthly),
            "next_expiry": self.next_expiry.isoformat() if self.next_expiry else None,
            "next_monthly": self.next_monthly.isoformat() if self.next_monthly else None,
            "vanna_exposure": num(self.vanna_exposure),
            "charm_exposure": num(self.charm_exposure), "contracts": self.contracts,
            "units": {"total_gex": "$ per 1% move", "vanna_exposure": "$ delta per vol point",
                      "charm_exposure": "$ delta per day"},
            "conventions": self.config.describe(),
            "total_gex_conventions": self.config.total_gex_conventions(),
        }  # fmt: skip


def gex_levels(chain: Chain, cfg: GexConfig = DESK) -> GexLevels:
    """GEX totals, by strike and expiry, the profile over ``cfg.n_levels`` spot levels and its
    zero-gamma crossings (all expiries, ex next expiry, ex next monthly), and the walls."""
    ex = exposures(chain, cfg)
    by_strike, by_expiry = aggregate(ex, "strike"), aggregate(ex, "expiry")
    expiries = by_expiry["expiry"].to_list()
    next_expiry = expiries[0] if expiries else None
    next_monthly = next((d for d in expiries if is_monthly(d)), None)
    day = ex["expiry"].to_numpy()
    w = ex["weight"].to_numpy()
    variants = np.stack([w, w * (day != np.datetime64(next_expiry or date.min)),
                         w * (day != np.datetime64(next_monthly or date.min))], axis=1)  # fmt: skip
    kernel = GammaKernel(ex["strike"], ex["years"], ex["iv"].fill_null(np.nan),
                         np.hstack([variants, np.abs(variants)]), spot=chain.spot, r=cfg.r,
                         q=cfg.q)  # fmt: skip

    def net(levels: F64) -> F64:  # (levels, 3): net of noise, from (net, gross) column pairs
        v = kernel(levels)
        return net_of_noise(v[:, :3], v[:, 3:])

    lo, hi = cfg.level_range
    levels = np.linspace(lo * chain.spot, hi * chain.spot, cfg.n_levels)
    values = net(levels)
    cross = [
        zero_crossings(levels, values[:, j], refine=cfg.refine,
                       f=lambda x, j=j: float(net(np.array([x]))[0, j]))
        for j in range(3)
    ]  # fmt: skip
    profile = GexProfile(levels, values[:, 0], values[:, 1], values[:, 2], *cross)
    call_wall, put_wall = walls(by_strike)
    return GexLevels(
        underlying=chain.underlying, spot=chain.spot, asof=chain.asof,
        total_gex=float(ex["gex"].sum()), zero_gamma=_pick(cross[0], chain.spot, cfg.zero_gamma),
        crossings=tuple(cross[0].tolist()), call_wall=call_wall, put_wall=put_wall,
        zero_gamma_ex_next=_pick(cross[1], chain.spot, cfg.zero_gamma),
        zero_gamma_ex_monthly=_pick(cross[2], chain.spot, cfg.zero_gamma),
        next_expiry=next_expiry, next_monthly=next_monthly,
        vanna_exposure=float(ex["vanna_exposure"].sum()),
        charm_exposure=float(ex["charm_exposure"].sum()), contracts=ex.height, config=cfg,
        profile=profile, by_strike=by_strike, by_expiry=by_expiry, exposures=ex,
    )  # fmt: skip

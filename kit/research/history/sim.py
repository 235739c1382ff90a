"""The simulator as a history source: seeded, one session per :class:`MarketSim`, priced as one
array over (snapshots x contracts).

Each session runs its own simulator from one interval before the open to the close, with the
day's seed derived from the build's seed and the date, and the underlying's spot and variance
carried from the previous session's close (kept in that day's file metadata). The simulator's
variance clock realises the closed hours (overnight, weekends, holidays) as a gap at the opening
step, so each session opens away from the last close as a real one does. Because the carried
state is read back from disk, a build resumed after a kill, or extended later, writes exactly
the days an uninterrupted build would have written.

Quotes, IV and sizes are the simulator's (:meth:`MarketSim.quote_arrays`); Greeks are
:func:`kit.core.pricing.greeks` at the simulator's IV, the desk's own pricing. Volume is the
running day total of the simulator's prints, which arrive with its configured chance per step:
at one-minute steps that is thin, a relative liquidity signal rather than a calibrated one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from kit.adapters.sim.chains import DEFAULT_CHAINS, YEAR_NS, ChainSpec
from kit.adapters.sim.market import DEFAULT_UNDERLYINGS, MarketSim, SimConfig, UnderlyingSpec
from kit.core.clock import Session, next_session, to_ns
from kit.core.pricing import greeks
from kit.research.history.band import Band, roots_of

SPOT_SYMBOL = {"SPX": "SPX", "NDX": "NDX", "SPY": "SPY"}
# the simulated underlyings each history needs (VIX is SPX's 30-day vol, NDX leans on SPX)
NEEDS = {"SPX": ("SPX",), "SPY": ("SPX",), "NDX": ("SPX", "NDX")}


@dataclass(frozen=True)
class SimHistory:
    """A simulated history's options: the seed, snapshot interval and the band kept."""

    underlying: str = "SPX"
    seed: int = 0
    interval_s: int = 60
    band: Band = field(default_factory=Band)

    def __post_init__(self) -> None:
        roots_of(self.underlying)  # raises BandError for an unknown underlying

    @property
    def signature(self) -> dict[str, Any]:
        b = self.band
        return {"source": "sim", "seed": self.seed, "interval_s": self.interval_s,
                "band": [b.max_dte, b.strike_pct, b.daily_dte, b.far_strike_pct]}  # fmt: skip

    def day_seed(self, day: date) -> int:
        """Independent, reproducible stream per (seed, day)."""
        return int(np.random.SeedSequence([self.seed, day.toordinal()]).generate_state(1)[0])

    def chains(self, day: date) -> tuple[ChainSpec, ...]:
        """The underlying's listed roots, with enough expiries to reach ``max_dte``."""
        horizon = day + timedelta(days=self.band.max_dte)
        n_daily, d = 0, day
        while (s := next_session(d)).day <= horizon:
            n_daily, d = n_daily + 1, s.day + timedelta(days=1)
        n_monthly = math.ceil((self.band.max_dte + 1) / 28) + 1
        roots = roots_of(self.underlying)
        counts = {"daily": n_daily, "monthly": n_monthly}  # others (quarterly): no more either
        return tuple(
            self._narrow(c, counts.get(c.kind, min(c.expiries, n_monthly)))
            for c in DEFAULT_CHAINS
            if c.root in roots
        )

    def _narrow(self, spec: ChainSpec, n_expiries: int) -> ChainSpec:
        """``spec`` listing no strike the band would drop anyway (its far tiers, if the
        simulator lists any, and the core beyond the band): listing is a Python loop."""
        width = self.band.strike_pct
        changes: dict[str, Any] = {"expiries": max(1, n_expiries),
                                   "max_width": min(spec.max_width, width),
                                   "min_width": min(spec.min_width, width)}  # fmt: skip
        names = {f.name for f in fields(spec)}
        changes.update({k: 0.0 for k in ("far_down", "far_up") if k in names})
        return replace(spec, **changes)

    def underlyings(self, state: dict[str, list[float]] | None) -> tuple[UnderlyingSpec, ...]:
        """The simulator's specs, starting from the previous close's (spot, variance)."""
        specs = [u for u in DEFAULT_UNDERLYINGS if u.symbol in NEEDS[self.underlying]]
        if state:
            specs = [replace(u, spot=state[u.symbol][0], vol=math.sqrt(state[u.symbol][1]))
                     if u.symbol in state else u for u in specs]  # fmt: skip
        return tuple(specs)

    def make_day(
        self, session: Session, previous: dict[str, Any] | None
    ) -> tuple[pl.DataFrame, dict[str, Any]]:
        """One session's snapshots and the closing state to carry to the next session."""
        state = (previous or {}).get("state")
        cfg = SimConfig(
            seed=self.day_seed(session.day),
            step_s=float(self.interval_s),
            underlyings=self.underlyings(state),
            chains=self.chains(session.day),
        )
        # one step before the open: the simulator realises the closed hours' variance as a gap
        # at the opening step, so the day opens away from the carried close as real ones do
        m = MarketSim(session.open - timedelta(seconds=self.interval_s), cfg)
        m.advance_to(to_ns(session.close))
        frame = price_day(m, self, session)
        end = {s: [m.spot(s), m.variance(s)] for s in m.symbols}
        return frame, {"state": end}


def price_day(m: MarketSim, h: SimHistory, session: Session) -> pl.DataFrame:
    """Every snapshot of the session for the band's contracts, as one array computation."""
    steps = np.arange(1, m.steps + 1)  # step 0 is the minute before the open
    ts = np.array([m.step_time(i) for i in steps], dtype=np.int64)
    sym = SPOT_SYMBOL[h.underlying]
    spot_open = m.spot(sym, int(steps[0]))
    roots = roots_of(h.underlying)
    listed = [c for c in m.chain(None, alive=False) if c.root in roots]
    contracts = h.band.select(listed, session.day, spot_open)
    if not contracts:
        return pl.DataFrame()
    L = m.listing
    idx = np.fromiter((L.index[c] for c in contracts), dtype=np.int64, count=len(contracts))
    bid, ask, _, _, _, iv, _ = m.quote_arrays(contracts, steps[:, None])
    # the underlying each contract prices off, per step (SPY's ratio applied below)
    und_spot = np.array([[m.spot(s, i) for s in m.symbols] for i in steps])
    S = und_spot[:, L.und[idx]] * L.ratio[idx]
    T = (L.expiry_ns[idx][None, :] - ts[:, None]) / YEAR_NS
    iv = np.where(T > 0, iv, np.nan)
    g = greeks(S, L.strike[idx], np.maximum(T, 0.0), L.rate[idx], L.div_yield[idx],
               np.nan_to_num(iv), L.is_call[idx])  # fmt: skip
    volume = day_volume(m, contracts, steps)
    keep = T >= 0  # a contract stops at its expiry snapshot (settlement at intrinsic)
    si, ci = np.nonzero(keep)
    spot = np.array([m.spot(sym, i) for i in steps])
    vix = np.array([m.spot("VIX", i) for i in steps])
    return pl.DataFrame(
        {
            "ts": pl.Series(ts[si] // 1000).cast(pl.Datetime("us", "UTC")),
            "underlying": h.underlying,
            "root": pl.Series([c.root for c in contracts])[ci],
            "expiry": pl.Series([c.expiry for c in contracts])[ci],
            "strike": L.strike[idx][ci],
            "right": pl.Series(["C" if c.is_call else "P" for c in contracts])[ci],
            "bid": bid[si, ci],
            "ask": ask[si, ci],
            "iv": iv[si, ci],
            "delta": g.delta[si, ci],
            "gamma": g.gamma[si, ci],
            "theta": g.theta_per_day[si, ci],
            "vega": g.vega_per_point[si, ci],
            "oi": m.open_interest(contracts)[ci],
            "volume": volume[si, ci],
            "spot": spot[si],
            "vix": vix[si],
        }
    ).with_columns(pl.col("iv").fill_nan(None))


def day_volume(m: MarketSim, contracts: list, steps: np.ndarray) -> np.ndarray:
    """Contracts traded in the day before each step: the running sum of the simulator's prints
    (exactly what :meth:`MarketSim.trades` reports step by step), as the ThetaData builder
    counts the bars that ended by the snapshot."""
    pos = {c: j for j, c in enumerate(contracts)}
    per_step = np.zeros((len(steps), len(contracts)), dtype=np.int64)
    for row, step in enumerate(steps):
        for t in m.trades(contracts, int(step)):
            per_step[row, pos[t.contract]] += int(t.size)
    return np.cumsum(per_step, axis=0) - per_step

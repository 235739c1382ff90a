"""The simulated path: Heston stochastic variance with jumps, stepped on the variance clock.

:func:`evolve` is pure and vectorised over underlyings (or over many independent paths of one
underlying, which is how the implied-versus-realised test runs thousands of days in a second):
only the variance recursion loops over steps, returns are computed for the whole block at once.
Random numbers come in fixed blocks of :data:`BLOCK` steps seeded by (seed, block number), so
the path is the same however the caller chunks its advances (one step per tick, or a whole day
at once to export a chain at 15:00).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

BLOCK = 4096  # steps per block of random numbers (fewer with many paths: see block_steps)
MIN_VAR, MAX_VAR = 0.0025, 9.0  # 5% to 300% vol


@dataclass(frozen=True)
class Dynamics:
    """Per-path parameters, arrays of shape (n,)."""

    theta: np.ndarray  # long-run variance
    kappa: np.ndarray
    xi: np.ndarray  # vol of variance
    rho: np.ndarray  # spot/variance correlation
    jump: np.ndarray  # (n, 3): jumps per variance year, mean, std of the log jump
    lead: np.ndarray  # index of the path each one is correlated to (itself: none)
    lead_corr: np.ndarray


def dynamics(underlyings: Sequence[Any], correlated: Mapping[str, tuple[str, float]]) -> Dynamics:
    """The path parameters of these underlyings (``UnderlyingSpec``s); ``correlated`` maps a
    symbol to the leader its Brownian motion is correlated with (NDX to SPX), when listed."""
    symbols = [u.symbol for u in underlyings]
    arr = lambda f: np.array([f(u) for u in underlyings], dtype=float)  # noqa: E731
    lead = {s: correlated[s] for s in symbols if correlated.get(s, ("",))[0] in symbols}
    return Dynamics(
        theta=arr(lambda u: u.long_vol**2), kappa=arr(lambda u: u.kappa),
        xi=arr(lambda u: u.vol_of_var), rho=arr(lambda u: u.rho),
        jump=np.array([[u.jumps_per_year, u.jump_mean, u.jump_std] for u in underlyings]),
        lead=np.array([symbols.index(lead[s][0]) if s in lead else i
                       for i, s in enumerate(symbols)]),
        lead_corr=np.array([lead[s][1] if s in lead else 0.0 for s in symbols]),
    )  # fmt: skip


def block_steps(n: int) -> int:
    """Steps per block for ``n`` paths: 4096 for the market's handful of underlyings, fewer for
    thousands of test paths (a block stays under ~8 MB)."""
    return int(min(BLOCK, max(64, 2**18 // max(n, 1))))


def draws(seed: int, block: int, n: int) -> np.ndarray:
    """The random numbers of one block: (block_steps(n), 4, n) = spot normal, variance normal,
    jump uniform, jump normal."""
    rng = np.random.default_rng([seed, block, 0x5EED])
    out = rng.standard_normal((block_steps(n), 4, n))
    out[:, 2] = rng.random((block_steps(n), n))
    return out


def evolve(
    d: Dynamics,
    spot0: np.ndarray,
    var0: np.ndarray,
    dvar: np.ndarray,
    z: np.ndarray,
    shock_ret: np.ndarray | None = None,
    shock_var: np.ndarray | None = None,
    vol_up: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Spot and variance after each of ``m`` steps, shapes (m, n).

    ``dvar`` (m, n): variance years each step takes (0 = the path does not move; the open's
    step carries the overnight gap). ``z`` (m, 4, n): see :func:`draws`. Optional scripted
    overlays (m, n): extra log return, extra variance, and vol points per step the
    instantaneous vol must at least rise by (a vol spike).
    """
    m, n = dvar.shape
    c = d.lead_corr
    z_spot = c * z[:, 0, d.lead] + np.sqrt(1 - c * c) * z[:, 0]
    z_var = d.rho * z_spot + np.sqrt(1 - d.rho**2) * z[:, 1]
    moving = dvar > 0
    noise = d.xi * np.sqrt(dvar) * z_var
    extra = np.zeros((m, n)) if shock_var is None else shock_var
    drift = d.kappa * dvar
    var = np.empty((m, n))
    v = np.asarray(var0, dtype=float).copy()
    prev = np.empty((m, n))
    for j in range(m):  # the one sequential part: variance feeds back into itself
        prev[j] = vp = np.maximum(v, 1e-6)
        new = vp + drift[j] * (d.theta - vp) + noise[j] * np.sqrt(vp) + extra[j]
        if vol_up is not None and vol_up[j].any():
            new = np.maximum(new, (np.sqrt(vp) + vol_up[j]) ** 2)
        v = np.where(moving[j], np.clip(new, MIN_VAR, MAX_VAR), v)
        var[j] = v
    jumps = z[:, 2] < d.jump[:, 0] * dvar
    jump_size = np.where(jumps, d.jump[:, 1] + d.jump[:, 2] * z[:, 3], 0.0)
    log_ret = -0.5 * prev * dvar + np.sqrt(prev * dvar) * z_spot + jump_size
    if shock_ret is not None:
        log_ret = log_ret + shock_ret
    log_ret = np.where(moving, log_ret, 0.0)
    return spot0 * np.exp(np.cumsum(log_ret, axis=0)), var


@dataclass
class Shock:
    """A scripted overlay on one underlying: extra drift and/or variance over a window."""

    symbol: str
    start_ns: int
    end_ns: int
    log_return: float = 0.0  # total extra log-return spread over the window
    vol_points: float = 0.0  # instantaneous vol rises by this many points over the window


def shock_overlays(
    shocks: Sequence[Shock], symbols: Sequence[str], ts: np.ndarray, step_ns: int, d: Dynamics
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Scripted shocks over the steps at ``ts``, as :func:`evolve`'s overlays: extra log return,
    the leverage effect's variance response to it (E[dv | dS] under Heston) and the vol spike's
    per-step rise."""
    live = [s for s in shocks if s.start_ns < ts[-1] and s.end_ns >= ts[0]]
    if not live:
        return None, None, None
    shape = (len(ts), len(symbols))
    ret, var, up = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for s in live:
        i = symbols.index(s.symbol)
        inside = (s.start_ns < ts) & (ts <= s.end_ns)
        n_steps = max(1, (s.end_ns - s.start_ns) // step_ns)
        ret[inside, i] += s.log_return / n_steps
        var[inside, i] += d.rho[i] * d.xi[i] * s.log_return / n_steps
        up[inside, i] += s.vol_points / 100 / n_steps
    return ret, var, (up if up.any() else None)


class Path:
    """The simulated path in preallocated arrays that double when full: every read is a view,
    so pricing a step costs the same at 9:31 as at 15:59 (a list turned into an array per call
    made a simulated day quadratic)."""

    def __init__(
        self, ts: int, spot: np.ndarray, var: np.ndarray, us_open: bool, tau: np.ndarray
    ) -> None:
        cap = 4096
        self.n = 0
        self._ts = np.empty(cap, dtype=np.int64)
        self._spot = np.empty((cap, len(spot)))
        self._var = np.empty((cap, len(var)))
        self._open = np.empty(cap, dtype=bool)
        self._tau = np.empty((cap, len(var)))
        self.extend(np.array([ts]), spot[None], var[None], np.array([us_open]), tau[None])

    def extend(
        self,
        ts: np.ndarray,
        spot: np.ndarray,
        var: np.ndarray,
        us_open: np.ndarray,
        tau: np.ndarray,
    ) -> None:
        """Append m steps: ts (m,), spot, var and variance-clock years (m, n), us_open (m,)."""
        m = len(ts)
        while self.n + m > len(self._ts):
            self._ts, self._spot, self._var, self._open, self._tau = (
                np.concatenate([a, np.empty_like(a)])
                for a in (self._ts, self._spot, self._var, self._open, self._tau)
            )
        s = slice(self.n, self.n + m)
        self._ts[s], self._spot[s], self._var[s], self._open[s] = ts, spot, var, us_open
        self._tau[s] = tau
        self.n += m

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

    @property
    def tau(self) -> np.ndarray:
        return self._tau[: self.n]

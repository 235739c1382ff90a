"""Which contracts and instants a history keeps: the same rule for every builder.

A year of every listed SPX contract at one-minute snapshots is hundreds of gigabytes; premium
sellers research a band of it. :class:`Band` keeps, per session, the expiries up to
``max_dte`` calendar days away -- every one up to ``daily_dte``, beyond that only Fridays (the
weeklies) and AM-settled monthlies -- and the strikes within ``strike_pct`` of the session's
opening spot, thinned beyond ``daily_dte`` to a round grid of about ``far_strike_pct`` of spot
(25 points on SPX at 5000, 50 on NDX, $2.50 on SPY: a 45-day delta ladder needs no 5-point
strikes). The band is fixed at
the open, so a contract is present at every snapshot of the day (no row appears or vanishes
as spot wanders).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from kit.core.clock import Session, next_session
from kit.core.model import Contract

# history underlying -> its option roots, by the simulator's and ThetaData's names (SPXW
# dailies, SPX AM monthlies, ...)
ROOTS: dict[str, tuple[str, ...]] = {
    "SPX": ("SPXW", "SPX"),
    "NDX": ("NDXP", "NDX"),
    "SPY": ("SPY",),
}
MONTHLY_ROOTS = frozenset({"SPX", "NDX"})  # AM-settled on the third Friday's opening prints


class BandError(ValueError):
    """Bad band or date arguments (one line, for the CLI)."""


@dataclass(frozen=True)
class Band:
    max_dte: int = 45  # calendar days from the session to the expiry
    strike_pct: float = 0.08  # strikes within +/- this fraction of the opening spot
    daily_dte: int = 7  # every expiry up to here; beyond, only Fridays and monthlies
    far_strike_pct: float = 0.005  # strike grid beyond daily_dte, of spot (0 = the listed grid)

    def __post_init__(self) -> None:
        if not 0 <= self.max_dte <= 3650:
            raise BandError(f"max DTE must be 0..3650 days, not {self.max_dte}")
        if not 0 < self.strike_pct <= 1:
            raise BandError(f"strike band must be in (0, 1] (0.08 = 8%), not {self.strike_pct}")
        if self.daily_dte < 0 or not 0 <= self.far_strike_pct < 1:
            raise BandError("daily DTE must not be negative, the far strike grid in [0, 1)")

    def keep_expiry(self, root: str, expiry: date, day: date) -> bool:
        dte = (expiry - day).days
        if not 0 <= dte <= self.max_dte:
            return False
        return dte <= self.daily_dte or expiry.weekday() == 4 or root in MONTHLY_ROOTS

    def mask(
        self,
        roots: Sequence[str],
        expiries: Sequence[date],
        strikes: np.ndarray,
        day: date,
        spot_open: float,
    ) -> np.ndarray:
        """Boolean mask over contracts given as parallel sequences (vectorised on strikes)."""
        strikes = np.asarray(strikes, dtype=float)
        keep = np.fromiter(
            (self.keep_expiry(r, e, day) for r, e in zip(roots, expiries, strict=True)),
            dtype=bool,
            count=len(strikes),
        )
        keep &= np.abs(strikes / spot_open - 1.0) <= self.strike_pct + 1e-12
        if self.far_strike_pct > 0:
            step = far_grid(self.far_strike_pct * spot_open)
            far = np.fromiter(((e - day).days > self.daily_dte for e in expiries), dtype=bool,
                              count=len(strikes))  # fmt: skip
            on_grid = np.isclose(np.remainder(strikes + 1e-9, step), 0, atol=1e-6)
            keep &= ~far | on_grid
        return keep

    def select(self, contracts: Sequence[Contract], day: date, spot_open: float) -> list[Contract]:
        roots = [c.root for c in contracts]
        expiries = [c.expiry for c in contracts]
        strikes = np.fromiter((c.strike for c in contracts), dtype=float, count=len(contracts))
        keep = self.mask(roots, expiries, strikes, day, spot_open)
        return [c for c, k in zip(contracts, keep, strict=True) if k]


NICE_STEPS = (0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)


def far_grid(points: float) -> float:
    """The largest round strike step not above ``points`` (the smallest one below 0.5)."""
    fitting = [s for s in NICE_STEPS if s <= points + 1e-9]
    return fitting[-1] if fitting else NICE_STEPS[0]


def roots_of(underlying: str) -> tuple[str, ...]:
    try:
        return ROOTS[underlying]
    except KeyError:
        raise BandError(
            f"unknown underlying {underlying!r}: histories cover {', '.join(ROOTS)}"
        ) from None


_INTERVAL = re.compile(r"^(\d+)(s|m|h)$")


def parse_interval(text: str) -> int:
    """``30s``, ``1m``, ``5m``, ``1h`` -> seconds (a divisor of an hour, at least 1 s)."""
    m = _INTERVAL.match(text.strip().lower())
    if not m:
        raise BandError(f"bad interval {text!r}: a number and s, m or h (1m, 5m, 30s)")
    seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
    if seconds <= 0 or 3600 % seconds:
        raise BandError(f"interval {text!r} must divide an hour (1s..1h)")
    return seconds


def sessions(date_from: date, date_to: date) -> list[Session]:
    """US sessions from ``date_from`` through ``date_to`` (weekends and holidays skipped)."""
    if date_to < date_from:
        raise BandError(f"--to {date_to} is before --from {date_from}")
    out: list[Session] = []
    try:
        day = date_from
        while day <= date_to:
            s = next_session(day)
            if s.day > date_to:
                break
            out.append(s)
            day = s.day + timedelta(days=1)
    except ValueError as exc:  # outside the exchange calendar
        raise BandError(str(exc)) from None
    return out


def snapshot_times(session: Session, interval_s: int) -> list[datetime]:
    """Open through close inclusive, every ``interval_s``: 391 one-minute snapshots on a full
    day (the close's snapshot carries the expiring contracts at settlement)."""
    n = int((session.close - session.open).total_seconds()) // interval_s
    return [session.open + timedelta(seconds=i * interval_s) for i in range(n + 1)]

"""Time is injected: every engine asks a :class:`Clock`, never ``time.time()``.

That single rule is what lets the same Desk run live, in a replay and in a backtest faster than
real time. This module holds the clocks and the market calendar: exchange sessions (holidays and
early closes from the NYSE calendar, which US equity and index options follow), settlement times
(SPX/NDX monthlies AM-settled at the open, SPXW/0DTE and equity options PM-settled at the close,
Delta Exchange crypto options daily at 17:30 IST) and time to close / time to expiry in years.

Time to expiry uses calendar minutes by default (``minutes / 525_600``); the trading-time basis
counts only session minutes (``/ (252 x 390)``), which is how many 0DTE desks measure the
remaining life of an option during the day.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from kit.core.model import Contract

NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
NS_PER_S = 1_000_000_000
MINUTES_PER_YEAR = 365 * 24 * 60
TRADING_MINUTES_PER_YEAR = 252 * 390
DELTA_EXPIRY_IST = (17, 30)  # Delta Exchange daily options expire at 17:30 India time
CALENDAR_START, CALENDAR_END = "2000-01-01", "2040-12-31"

Basis = Literal["calendar", "trading"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(when: datetime) -> int:
    """Exact integer nanoseconds since the epoch (``timestamp()`` is a float: ~200 ns off)."""
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when!r}: pass a timezone-aware time")
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


def from_ns(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


# --- clocks ---


@runtime_checkable
class Clock(Protocol):
    """What engines need from time: now, and a sleep that respects simulated time."""

    def now_ns(self) -> int: ...

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class LiveClock:
    """Wall-clock time (UTC)."""

    def now_ns(self) -> int:
        return time.time_ns()

    def now(self) -> datetime:
        return from_ns(time.time_ns())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class SimClock:
    """Simulated time that runs ``speed`` times faster than the wall, or only when advanced.

    ``speed=None`` (the default) is a stepped clock: time stands still until :meth:`advance` /
    :meth:`advance_to` moves it, and sleepers wake in deadline order as it passes them. A backtest
    drives it with :meth:`run_until`, which jumps from timer to timer, so a day of simulated
    trading takes as long as the work done in it. With ``speed=10`` the clock flows ten times
    faster than real time (a paced replay or demo); ``advance`` still jumps it forward.
    """

    def __init__(self, start: datetime, *, speed: float | None = None) -> None:
        if start.tzinfo is None:
            raise ValueError("SimClock start must be timezone-aware")
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        self._speed = speed
        self._base_ns = to_ns(start)
        self._wall_anchor = time.monotonic_ns()
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def speed(self) -> float | None:
        return self._speed

    def now_ns(self) -> int:
        if self._speed is None:
            return self._base_ns
        return self._base_ns + int((time.monotonic_ns() - self._wall_anchor) * self._speed)

    def now(self) -> datetime:
        return from_ns(self.now_ns())

    async def sleep(self, seconds: float) -> None:
        if self._speed is not None:
            await asyncio.sleep(max(0.0, seconds) / self._speed)
            return
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(
            self._sleepers, (self._base_ns + int(seconds * NS_PER_S), next(self._seq), fut)
        )
        await fut

    def next_deadline_ns(self) -> int | None:
        """When the earliest pending sleeper wakes (stepped mode), or None."""
        while self._sleepers and self._sleepers[0][2].done():  # cancelled sleepers
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not run backwards")
        self.advance_to_ns(self.now_ns() + int(seconds * NS_PER_S))

    def advance_to(self, when: datetime) -> None:
        self.advance_to_ns(to_ns(when))

    def advance_to_ns(self, target_ns: int) -> None:
        """Move time to ``target_ns`` and wake every sleeper whose deadline has passed."""
        now = self.now_ns()
        if target_ns < now:
            raise ValueError("time does not run backwards")
        self._base_ns += target_ns - now
        while self._sleepers and self._sleepers[0][0] <= target_ns:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def run_until(self, when: datetime) -> None:
        """Stepped mode: jump timer to timer up to ``when``, letting woken tasks run each time."""
        target = to_ns(when)
        while True:
            await _settle()
            nxt = self.next_deadline_ns()
            if nxt is None or nxt > target:
                break
            self.advance_to_ns(max(nxt, self.now_ns()))
        if target > self.now_ns():
            self.advance_to_ns(target)
        await _settle()


async def _settle(rounds: int = 5) -> None:
    """Yield to the loop a few times so tasks woken by a clock step can run to their next await."""
    for _ in range(rounds):
        await asyncio.sleep(0)


# --- sessions ---


@dataclass(frozen=True, slots=True)
class Session:
    """One trading day of US equity/index options, in UTC."""

    day: date
    open: datetime
    close: datetime

    @property
    def early_close(self) -> bool:
        return self.close.astimezone(NEW_YORK).hour < 16

    @property
    def minutes(self) -> float:
        return (self.close - self.open).total_seconds() / 60


@cache
def _us_sessions() -> tuple[list[date], dict[date, Session]]:
    """All NYSE sessions 2000-2040, built once (about 0.5 s) from exchange_calendars."""
    import exchange_calendars

    with warnings.catch_warnings():  # exchange_calendars still uses pandas APIs pandas 4 drops
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        cal = exchange_calendars.get_calendar("XNYS", start=CALENDAR_START, end=CALENDAR_END)
        sched = cal.schedule
    sessions = {
        day.date(): Session(day.date(), o.to_pydatetime(), c.to_pydatetime())
        for day, o, c in zip(sched.index, sched["open"], sched["close"], strict=True)
    }
    return sorted(sessions), sessions


def us_session(day: date) -> Session | None:
    """The session on ``day``, or None on weekends and exchange holidays."""
    days, sessions = _us_sessions()
    if not days[0] <= day <= days[-1]:
        raise ValueError(f"{day} is outside the calendar ({CALENDAR_START} to {CALENDAR_END})")
    return sessions.get(day)


def previous_session(day: date) -> Session:
    """The last session on or before ``day``."""
    days, sessions = _us_sessions()
    i = bisect.bisect_right(days, day) - 1
    if i < 0:
        raise ValueError(f"no session on or before {day}")
    return sessions[days[i]]


def sessions_before(day: date, n: int) -> list[date]:
    """The ``n`` session days before ``day``, oldest first (a daily history's dates)."""
    days, _ = _us_sessions()
    i = bisect.bisect_left(days, day)
    if i < n:
        raise ValueError(f"fewer than {n} sessions before {day}")
    return days[i - n : i]


def next_session(day: date) -> Session:
    """The first session on or after ``day``."""
    days, sessions = _us_sessions()
    i = bisect.bisect_left(days, day)
    if i >= len(days):
        raise ValueError(f"no session on or after {day}")
    return sessions[days[i]]


def session_at(when: datetime) -> Session | None:
    """The session in progress at ``when`` (open <= when < close), or None."""
    s = us_session(when.astimezone(NEW_YORK).date())
    return s if s is not None and s.open <= when < s.close else None


def delta_expiry(day: date) -> datetime:
    """Delta Exchange's daily settlement on ``day``: 17:30 India time (12:00 UTC)."""
    return datetime(day.year, day.month, day.day, *DELTA_EXPIRY_IST, tzinfo=KOLKATA).astimezone(UTC)


def time_to_close(when: datetime, *, crypto: bool = False) -> timedelta | None:
    """Time left in the session in progress; None when the US market is closed.

    Crypto never closes, so its "close" is the next daily expiry at 17:30 IST.
    """
    if crypto:
        expiry = delta_expiry(when.astimezone(KOLKATA).date())
        return (expiry if expiry > when else delta_expiry(expiry.date() + timedelta(days=1))) - when
    s = session_at(when)
    return None if s is None else s.close - when


# --- expiry ---


def expiry_time(contract: Contract) -> datetime:
    """When the contract stops trading and its settlement value is fixed, in UTC.

    AM-settled monthlies settle on the opening prints of the expiry day; PM-settled (SPXW, 0DTE,
    equity options) at the close, 13:00 ET on early-close days. An expiry date that is not a
    session (a listing moved by a holiday) falls back to the previous session.
    """
    if contract.is_crypto:
        return delta_expiry(contract.expiry)
    s = us_session(contract.expiry) or previous_session(contract.expiry)
    return s.open if contract.am_settled else s.close


def trading_minutes_between(start: datetime, end: datetime) -> float:
    """Session minutes between two instants (early closes and holidays counted)."""
    if end <= start:
        return 0.0
    days, sessions = _us_sessions()
    lo = bisect.bisect_left(days, start.astimezone(NEW_YORK).date())
    hi = bisect.bisect_right(days, end.astimezone(NEW_YORK).date())
    total = 0.0
    for d in days[lo:hi]:
        s = sessions[d]
        overlap = (min(s.close, end) - max(s.open, start)).total_seconds()
        if overlap > 0:
            total += overlap / 60
    return total


def time_to_expiry(contract: Contract, when: datetime, *, basis: Basis = "calendar") -> float:
    """Years from ``when`` to the contract's expiry (0 once expired).

    ``calendar``: calendar minutes / 525,600. ``trading``: session minutes / (252 x 390); crypto
    trades around the clock, so it always uses the calendar basis.
    """
    expiry = expiry_time(contract)
    if expiry <= when:
        return 0.0
    if basis == "calendar" or contract.is_crypto:
        return (expiry - when).total_seconds() / 60 / MINUTES_PER_YEAR
    if basis == "trading":
        return trading_minutes_between(when, expiry) / TRADING_MINUTES_PER_YEAR
    raise ValueError(f"basis must be 'calendar' or 'trading', got {basis!r}")

import asyncio
import time
from datetime import UTC, date, datetime, timedelta

import pytest

from kit.core.clock import (
    MINUTES_PER_YEAR,
    NEW_YORK,
    TRADING_MINUTES_PER_YEAR,
    LiveClock,
    SimClock,
    expiry_time,
    from_ns,
    next_session,
    previous_session,
    session_at,
    time_to_close,
    time_to_expiry,
    to_ns,
    trading_minutes_between,
    us_session,
)
from kit.core.model import Contract


def ny(*args) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


class TestSessions:
    @pytest.mark.parametrize(
        "day",
        [
            date(2024, 7, 4),
            date(2024, 3, 29),
            date(2024, 12, 25),
            date(2025, 1, 9),
            date(2024, 1, 20),
        ],
        ids=["independence", "good-friday", "christmas", "carter-mourning", "saturday"],
    )
    def test_closed_days(self, day):
        assert us_session(day) is None

    def test_regular_session_in_winter_and_summer_time(self):
        winter, summer = us_session(date(2024, 1, 19)), us_session(date(2024, 7, 19))
        assert (winter.open, winter.close) == (utc(2024, 1, 19, 14, 30), utc(2024, 1, 19, 21))
        assert (summer.open, summer.close) == (utc(2024, 7, 19, 13, 30), utc(2024, 7, 19, 20))
        assert not winter.early_close and winter.minutes == 390

    @pytest.mark.parametrize("day", [date(2024, 11, 29), date(2024, 12, 24), date(2024, 7, 3)])
    def test_early_close_at_13_new_york(self, day):
        s = us_session(day)
        assert s.early_close and s.close.astimezone(NEW_YORK).time().hour == 13
        assert s.minutes == 210

    def test_neighbouring_sessions_skip_holidays(self):
        assert previous_session(date(2024, 3, 29)).day == date(2024, 3, 28)
        assert next_session(date(2024, 3, 29)).day == date(2024, 4, 1)
        assert next_session(date(2024, 4, 1)).day == date(2024, 4, 1)

    def test_outside_the_calendar_is_an_error(self):
        with pytest.raises(ValueError, match="outside the calendar"):
            us_session(date(1990, 1, 2))


class TestTimeToClose:
    def test_early_close_day(self):
        assert time_to_close(ny(2024, 11, 29, 12, 30)) == timedelta(minutes=30)
        assert time_to_close(ny(2024, 11, 29, 13, 0)) is None  # closed at 13:00 sharp

    def test_closed_market(self):
        assert time_to_close(ny(2024, 7, 4, 11)) is None
        assert time_to_close(ny(2024, 1, 19, 9, 29)) is None
        assert session_at(ny(2024, 1, 19, 9, 30)).day == date(2024, 1, 19)

    def test_crypto_closes_at_the_daily_expiry(self):
        assert time_to_close(utc(2025, 1, 30, 11), crypto=True) == timedelta(hours=1)
        assert time_to_close(utc(2025, 1, 30, 12, 1), crypto=True) == timedelta(
            hours=23, minutes=59
        )


class TestExpiry:
    def test_am_and_pm_settlement(self):
        monthly = Contract("SPX", date(2024, 1, 19), 4700, "C")
        weekly = Contract("SPXW", date(2024, 1, 19), 4700, "C")
        spy = Contract("SPY", date(2024, 11, 29), 470, "P")
        assert expiry_time(monthly) == utc(2024, 1, 19, 14, 30)  # 09:30 ET opening prints
        assert expiry_time(weekly) == utc(2024, 1, 19, 21)  # 16:00 ET close
        assert expiry_time(spy) == utc(2024, 11, 29, 18)  # early close 13:00 ET
        assert expiry_time(Contract("BTC", date(2025, 1, 31), 90000, "C")) == utc(2025, 1, 31, 12)

    def test_expiry_on_a_holiday_uses_the_previous_session(self):
        c = Contract("SPY", date(2024, 3, 29), 500, "C")
        assert expiry_time(c) == us_session(date(2024, 3, 28)).close

    def test_zero_dte_afternoon(self):
        c = Contract("SPXW", date(2024, 1, 19), 4800, "P")
        at = ny(2024, 1, 19, 14, 30)
        assert time_to_expiry(c, at) == pytest.approx(90 / MINUTES_PER_YEAR, rel=1e-15)
        assert time_to_expiry(c, at, basis="trading") == pytest.approx(
            90 / TRADING_MINUTES_PER_YEAR, rel=1e-15
        )
        assert time_to_close(at) == timedelta(minutes=90)
        assert time_to_expiry(c, ny(2024, 1, 19, 16)) == 0.0
        assert time_to_expiry(c, ny(2024, 1, 19, 17)) == 0.0

    def test_across_the_dst_switch(self):
        # 2024-03-10: New York springs forward; Friday close to Monday close is 71 hours, not 72.
        c = Contract("SPXW", date(2024, 3, 11), 5100, "C")
        fri_close = ny(2024, 3, 8, 16)
        assert expiry_time(c) - fri_close == timedelta(hours=71)
        assert time_to_expiry(c, fri_close) == pytest.approx(71 * 60 / MINUTES_PER_YEAR, rel=1e-15)
        assert time_to_expiry(c, fri_close, basis="trading") == pytest.approx(
            390 / TRADING_MINUTES_PER_YEAR, rel=1e-15
        )

    def test_trading_minutes_count_early_closes_and_skip_holidays(self):
        # Wed 2024-11-27 (390) + Thu Thanksgiving (0) + Fri early close (210)
        assert trading_minutes_between(ny(2024, 11, 27, 9), ny(2024, 11, 29, 17)) == 600
        assert trading_minutes_between(ny(2024, 11, 27, 15), ny(2024, 11, 27, 14)) == 0

    def test_bad_basis(self):
        with pytest.raises(ValueError, match="basis"):
            time_to_expiry(
                Contract("SPY", date(2024, 3, 28), 500, "C"), ny(2024, 3, 27, 10), basis="business"
            )  # type: ignore[arg-type]


class TestClocks:
    def test_ns_conversion_is_exact(self):
        t = datetime(2024, 1, 19, 14, 30, 0, 123456, tzinfo=UTC)
        assert to_ns(t) == 1705674600_123456000 and from_ns(to_ns(t)) == t
        with pytest.raises(ValueError, match="naive"):
            to_ns(datetime(2024, 1, 19))

    def test_live_clock_tracks_the_wall(self):
        assert abs(LiveClock().now_ns() - time.time_ns()) < 1e9

    async def test_stepped_clock_wakes_sleepers_in_deadline_order(self):
        clock = SimClock(utc(2024, 1, 19, 15))
        woke: list[tuple[str, datetime]] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append((name, clock.now()))

        tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("b", 60), ("a", 5), ("c", 3600))]
        await asyncio.sleep(0)
        assert clock.next_deadline_ns() == to_ns(utc(2024, 1, 19, 15, 0, 5))
        await clock.run_until(utc(2024, 1, 19, 15, 30))
        assert woke == [("a", utc(2024, 1, 19, 15, 0, 5)), ("b", utc(2024, 1, 19, 15, 1))]
        assert clock.now() == utc(2024, 1, 19, 15, 30)
        clock.advance(1800)
        await asyncio.sleep(0)
        assert [n for n, _ in woke] == ["a", "b", "c"]
        await asyncio.gather(*tasks)

    async def test_a_simulated_day_runs_in_no_wall_time(self):
        clock = SimClock(ny(2024, 1, 19, 9, 30))
        ticks = 0

        async def every_second() -> None:
            nonlocal ticks
            while True:
                await clock.sleep(1)
                ticks += 1

        task = asyncio.create_task(every_second())
        started = time.monotonic()
        await clock.run_until(ny(2024, 1, 19, 9, 40))
        task.cancel()
        assert ticks == 600 and clock.now() == ny(2024, 1, 19, 9, 40)
        assert time.monotonic() - started < 30  # sanity only: nothing waited on the wall clock

    async def test_paced_clock_runs_faster_than_real_time(self):
        clock = SimClock(utc(2024, 1, 19, 15), speed=1000)
        t0 = clock.now_ns()
        await clock.sleep(50)  # 50 simulated seconds = 50 ms of wall time
        assert clock.now_ns() - t0 >= 50e9
        clock.advance(3600)
        assert clock.now() >= utc(2024, 1, 19, 16, 0, 50)

    def test_time_does_not_run_backwards(self):
        clock = SimClock(utc(2024, 1, 19, 15))
        with pytest.raises(ValueError, match="backwards"):
            clock.advance(-1)
        with pytest.raises(ValueError, match="backwards"):
            clock.advance_to(utc(2024, 1, 19, 14))
        with pytest.raises(ValueError, match="timezone-aware"):
            SimClock(datetime(2024, 1, 19))
        with pytest.raises(ValueError, match="speed"):
            SimClock(utc(2024, 1, 19), speed=0)

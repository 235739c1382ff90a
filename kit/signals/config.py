"""GEX conventions as data: rates, time basis, 0DTE handling, gamma source, the dealer sign
model, the spot grid and how zero gamma is picked. No polars or scipy here: the ``kit`` command
line builds its parser from :data:`COMPAT` without loading the computation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    import polars as pl

F64 = NDArray[np.float64]
TimeBasis = Literal["calendar", "trading", "business_days"]


class ChainLike(Protocol):
    """What a sign model reads of a chain (:class:`kit.signals.chains.Chain` is one): its
    frame, one row per contract. A protocol, so this module needs neither the chain module
    (which imports it) nor polars at run time."""

    @property
    def frame(self) -> pl.DataFrame: ...


SignModel = Callable[[ChainLike], ArrayLike]  # one weight per chain row: +1 dealers long, -1 short


def calls_long_puts_short(chain: ChainLike) -> F64:
    """Dealers long the calls (customers sell calls against stock) and short the puts
    (customers buy protection): the convention of the published GEX figures."""
    return np.where(chain.frame["is_call"].to_numpy(), 1.0, -1.0)


def dealers_short_all(chain: ChainLike) -> F64:
    """Dealers short every option (customers net long premium): all exposure negative."""
    return np.full(chain.frame.height, -1.0)


ZeroDte = Literal["keep", "drop", "one-day"]
DayCount = Literal["next_session", "asof_date"]
ZERO_DTE: tuple[str, ...] = ("keep", "drop", "one-day")
TIME_BASES: tuple[str, ...] = ("calendar", "trading", "business_days")
_CHOICES = {"time_basis": TIME_BASES, "zero_dte": ZERO_DTE,
            "day_count": ("next_session", "asof_date"), "gamma_source": ("iv", "vendor"),
            "refine": ("root", "linear"), "zero_gamma": ("nearest", "first")}  # fmt: skip


@dataclass(frozen=True)
class GexConfig:
    """How exposure is computed. Defaults are the desk's: calendar minutes to the real settlement
    time, 0DTE kept, gamma recomputed from IV, 200 levels, crossings refined by a root finder and
    the zero gamma nearest spot.

    ``zero_dte`` says what 0-day expiries count (those expiring on the as-of date, and under
    ``business_days`` any row whose business-day count is 0 without having expired before the
    as-of date): ``keep`` (their real time left; a count of 0 carries nothing), ``drop``, or
    ``one-day`` (1 / ``days_per_year`` years, as the common public scripts do so that same-day
    expiries are not lost).

    ``day_count`` (``business_days`` only) says where the count starts. ``next_session`` (the
    desk's): the sessions still to trade from the next session open after the as-of time through
    the expiry's own session, holidays excluded, so a download on the weekend or after the close
    gives the next session's expiry one day, not zero. ``asof_date``: weekdays from the as-of
    date (inclusive) to the expiry (exclusive), ``numpy.busday_count`` as the public scripts
    count, which gives Monday's expiry T = 0 from a weekend download.
    """

    r: float = 0.0  # continuous rate; GEX is barely sensitive to it
    q: float = 0.0  # continuous dividend yield
    time_basis: TimeBasis = "calendar"
    days_per_year: float = 262.0  # business days per year, for time_basis="business_days"
    zero_dte: ZeroDte = "keep"  # what 0-day expiries count (see the class docstring)
    day_count: DayCount = "next_session"  # business_days only: where the count starts
    gamma_source: Literal["iv", "vendor"] = "iv"  # gamma at spot; the profile always uses IV
    sign: SignModel = calls_long_puts_short
    n_levels: int = 200
    level_range: tuple[float, float] = (0.8, 1.2)  # profile grid, as fractions of spot
    refine: Literal["root", "linear"] = "root"  # crossings: Brent's method, or grid interpolation
    zero_gamma: Literal["nearest", "first"] = "nearest"  # which crossing is "the" zero gamma

    def __post_init__(self) -> None:
        lo, hi = self.level_range
        if not 0 < lo < 1 < hi:
            raise ValueError(
                f"level_range must bracket 1 (e.g. (0.8, 1.2)), got {self.level_range}"
            )
        if self.n_levels < 2:
            raise ValueError(f"n_levels must be at least 2, got {self.n_levels}")
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def years_per_day(self) -> float:
        """One day in the time basis: what charm "per day" means."""
        return {"calendar": 1 / 365, "trading": 1 / 252}.get(self.time_basis,
                                                            1 / self.days_per_year)  # fmt: skip

    def total_gex_conventions(self) -> dict[str, Any]:
        """What produced ``total_gex``, in words a reader can check: where gamma came from, the
        time basis and day count, what 0-day expiries counted, and the dealer sign model."""
        gamma = {"iv": "Black-Scholes gamma from each contract's IV",
                 "vendor": "the file's Gamma column (CBOE rounds it to 4 decimals)"}  # fmt: skip
        basis = {"calendar": "calendar minutes to the settlement time / 525,600",
                 "trading": "session minutes to the settlement time / (252 x 390)",
                 "business_days": f"business days / {self.days_per_year:g}"}  # fmt: skip
        count = {
            "next_session": "sessions from the next session open through the expiry's",
            "asof_date": "weekdays from the as-of date to the expiry (numpy.busday_count)",
        }
        zero = {"keep": "their real time left (a count of 0 carries nothing)",
                "drop": "dropped", "one-day": f"1/{self.days_per_year:g} year"}  # fmt: skip
        return {
            "gamma_source": self.gamma_source, "gamma": gamma[self.gamma_source],
            "time_basis": self.time_basis, "time": basis[self.time_basis],
            "day_count": count[self.day_count] if self.time_basis == "business_days" else None,
            "zero_dte": self.zero_dte, "zero_day_expiries": zero[self.zero_dte],
            "sign": self.sign.__name__, "r": self.r, "q": self.q,
        }  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {"r": self.r, "q": self.q, "time_basis": self.time_basis,
                "days_per_year": self.days_per_year, "zero_dte": self.zero_dte,
                "day_count": self.day_count,
                "gamma_source": self.gamma_source, "sign": self.sign.__name__,
                "n_levels": self.n_levels, "level_range": list(self.level_range),
                "refine": self.refine, "zero_gamma": self.zero_gamma}  # fmt: skip


DESK = GexConfig()
PUBLIC = GexConfig(time_basis="business_days", day_count="asof_date", zero_dte="drop", n_levels=60,
                   refine="linear", zero_gamma="first")  # fmt: skip
COMPAT: dict[str, GexConfig] = {"desk": DESK, "public": PUBLIC}

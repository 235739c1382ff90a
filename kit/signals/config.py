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


_CHOICES = {"time_basis": ("calendar", "trading", "business_days"), "zero_dte": ("keep", "drop"),
            "gamma_source": ("iv", "vendor"), "refine": ("root", "linear"),
            "zero_gamma": ("nearest", "first")}  # fmt: skip


@dataclass(frozen=True)
class GexConfig:
    """How exposure is computed. Defaults are the desk's: calendar minutes to the real settlement
    time, 0DTE kept, gamma recomputed from IV, 200 levels, crossings refined by a root finder and
    the zero gamma nearest spot."""

    r: float = 0.0  # continuous rate; GEX is barely sensitive to it
    q: float = 0.0  # continuous dividend yield
    time_basis: TimeBasis = "calendar"
    days_per_year: float = 262.0  # business days per year, for time_basis="business_days"
    zero_dte: Literal["keep", "drop"] = "keep"  # drop: contracts expiring on the as-of date
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

    def describe(self) -> dict[str, Any]:
        return {"r": self.r, "q": self.q, "time_basis": self.time_basis,
                "days_per_year": self.days_per_year, "zero_dte": self.zero_dte,
                "gamma_source": self.gamma_source, "sign": self.sign.__name__,
                "n_levels": self.n_levels, "level_range": list(self.level_range),
                "refine": self.refine, "zero_gamma": self.zero_gamma}  # fmt: skip


DESK = GexConfig()
PUBLIC = GexConfig(time_basis="business_days", n_levels=60, refine="linear", zero_gamma="first")
COMPAT: dict[str, GexConfig] = {"desk": DESK, "public": PUBLIC}

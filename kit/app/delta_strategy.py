"""The daily BTC/ETH short strangle's decisions, as pure functions (no clock, no I/O).

* :class:`TraderSettings`: every parameter, defaults matching the system it replaces, loaded
  from a preset (TOML) and validated with one-line errors naming the key.
* :func:`select_strangle`: the call and the put whose |delta| is inside ``[delta_min,
  delta_max]`` (default 0.10-0.15) and closest to the band's midpoint, among strikes that pass
  the liquidity filters (two-sided quote, spread at most ``max_spread_pct`` of the mid, open
  interest at least ``min_oi`` contracts).
* :func:`entry_prices`: the limit ladder of one leg: from the mid toward the natural price
  (the bid for a sale, the ask for a purchase) in ``entry_retries`` steps; after the last the
  trader sends a market order.
* :class:`ExitTracker`: the exits: max loss and max profit as % of the premium, the tiered
  trailing stop (profit >= ``trail_start_pct`` (40%): stop at breakeven; beyond
  ``trail_tight_pct`` (50%): stop ``trail_gap_pct`` below the best profit seen), the scheduled
  time and a manual force exit. Its :meth:`ExitTracker.status` is the 5-minute report.

Prices are USD per coin, as Delta quotes them; P&L in USD multiplies by the contract size.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from datetime import time
from pathlib import Path
from typing import Any

from kit.core.model import Contract

SETTLEMENT_IST = time(17, 30)  # Delta's daily options settle then


class SettingsError(ValueError):
    """A preset or parameter the trader cannot use; the message names it."""


@dataclass(frozen=True)
class TraderSettings:
    underlying: str = "BTC"
    quantity: int = 1  # contracts per leg
    delta_min: float = 0.10
    delta_max: float = 0.15
    max_spread_pct: float = 25.0  # of the mid
    min_oi: float = 0.0  # contracts
    window_start: str = "09:00"  # IST
    window_end: str = "17:30"  # IST
    expiry_days: int = 1  # next-day expiry
    entry_retries: int = 4  # limit steps from the mid to the natural price
    fill_wait_s: float = 10.0  # per limit step
    max_loss_pct: float = 100.0  # of the premium
    max_profit_pct: float = 80.0
    trail_start_pct: float = 40.0  # profit that arms the stop at breakeven
    trail_tight_pct: float = 50.0  # beyond it the stop trails the best profit
    trail_gap_pct: float = 10.0
    exit_time: str = "17:00"  # IST on the expiry day: the scheduled exit
    poll_s: float = 5.0  # monitoring period (WebSocket marks, REST fallback)
    status_every_s: float = 300.0  # status report period

    def __post_init__(self) -> None:
        if self.underlying not in ("BTC", "ETH"):
            raise SettingsError(f"underlying {self.underlying!r}: BTC or ETH")
        if not (isinstance(self.quantity, int) and self.quantity >= 1):
            raise SettingsError(f"quantity {self.quantity!r}: a whole number of contracts >= 1")
        if not 0 < self.delta_min < self.delta_max < 1:
            raise SettingsError(f"delta band [{self.delta_min}, {self.delta_max}]: need "
                                "0 < delta_min < delta_max < 1")  # fmt: skip
        for name in ("max_spread_pct", "min_oi", "fill_wait_s", "max_loss_pct", "max_profit_pct",
                     "trail_start_pct", "trail_tight_pct", "trail_gap_pct", "poll_s",
                     "status_every_s"):  # fmt: skip
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise SettingsError(f"{name} {v!r}: a non-negative number")
        if self.trail_tight_pct < self.trail_start_pct:
            raise SettingsError("trail_tight_pct must be at least trail_start_pct")
        if self.entry_retries < 1 or self.expiry_days < 0:
            raise SettingsError("entry_retries >= 1 and expiry_days >= 0")
        for name in ("window_start", "window_end", "exit_time"):
            clock_time(getattr(self, name), name)
        if clock_time(self.exit_time) >= SETTLEMENT_IST:
            raise SettingsError(f"exit_time {self.exit_time}: must be before the 17:30 IST "
                                "settlement (leave time for the buy-back)")  # fmt: skip

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> TraderSettings:
        """Defaults, then a TOML preset's keys, then ``overrides`` (None values ignored)."""
        data: dict[str, Any] = {}
        if path is not None:
            try:
                data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise SettingsError(f"preset {path}: {exc}") from None
        data |= {k: v for k, v in overrides.items() if v is not None}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"unknown setting(s) {', '.join(unknown)} (have "
                                f"{', '.join(sorted(known))})")  # fmt: skip
        try:
            return replace(cls(), **data)
        except TypeError as exc:
            raise SettingsError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def clock_time(text: str, name: str = "time") -> time:
    try:
        return time.fromisoformat(text)
    except (TypeError, ValueError):
        raise SettingsError(f"{name} {text!r}: HH:MM (India time)") from None


@dataclass(frozen=True)
class Candidate:
    """One option of the chain as the selection sees it."""

    contract: Contract
    symbol: str
    delta: float
    bid: float
    ask: float
    mark: float
    oi: float
    iv: float = math.nan

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2

    def liquid(self, s: TraderSettings) -> bool:
        if not (self.bid > 0 and self.ask >= self.bid):
            return False
        return (self.ask - self.bid) <= s.max_spread_pct / 100 * self.mid and self.oi >= s.min_oi


@dataclass(frozen=True)
class Strangle:
    call: Candidate
    put: Candidate

    @property
    def premium(self) -> float:
        """Credit per coin at the mids (what the first limit asks)."""
        return self.call.mid + self.put.mid

    def to_dict(self) -> dict[str, Any]:
        return {"call": self.call.symbol, "put": self.put.symbol,
                "call_delta": round(self.call.delta, 4), "put_delta": round(self.put.delta, 4),
                "call_mid": self.call.mid, "put_mid": self.put.mid,
                "premium": round(self.premium, 6), "expiry": self.call.contract.expiry.isoformat(),
                "contract_size": self.call.contract.multiplier}  # fmt: skip


def select_strangle(chain: list[Candidate], s: TraderSettings) -> tuple[Strangle | None, str]:
    """The strangle to sell, or None and why not."""
    mid = (s.delta_min + s.delta_max) / 2
    picks: dict[bool, Candidate] = {}
    for is_call in (True, False):
        side = [c for c in chain if c.contract.is_call is is_call]
        band = [c for c in side if s.delta_min <= abs(c.delta) <= s.delta_max]
        ok = [c for c in band if c.liquid(s)]
        if not ok:
            kind = "call" if is_call else "put"
            why = "no strike in the delta band" if not band else "none passes the liquidity filters"
            return None, f"{kind}: {why} ({len(side)} listed, {len(band)} in band)"
        picks[is_call] = min(ok, key=lambda c: (abs(abs(c.delta) - mid), -c.oi))
    return Strangle(picks[True], picks[False]), "ok"


def entry_prices(bid: float, ask: float, steps: int, *, sell: bool, tick: float) -> list[float]:
    """The limit ladder from the mid to the natural price, rounded to the tick (a sale rounds
    up, never below the bid; a purchase down, never above the ask)."""
    mid = (bid + ask) / 2
    natural = bid if sell else ask
    out = []
    for k in range(steps):
        p = mid + (natural - mid) * k / max(steps - 1, 1)
        p = math.ceil(p / tick - 1e-9) * tick if sell else math.floor(p / tick + 1e-9) * tick
        p = max(p, bid) if sell else min(p, ask)
        if p > 0 and (not out or p != out[-1]):
            out.append(round(p, 10))
    return out


@dataclass
class ExitTracker:
    """Exit decisions from the strangle's premium and its current cost to close (per coin)."""

    settings: TraderSettings
    premium: float
    best_profit_pct: float = 0.0
    stop_pct: float | None = None  # armed trailing stop, as a profit %

    def profit_pct(self, cost: float) -> float:
        return (self.premium - cost) / self.premium * 100 if self.premium > 0 else 0.0

    def update(self, cost: float, *, scheduled: bool = False, forced: bool = False) -> str | None:
        """The exit reason now, or None to hold. Ratchets the trailing stop first."""
        s, p = self.settings, self.profit_pct(cost)
        self.best_profit_pct = max(self.best_profit_pct, p)
        best = self.best_profit_pct
        if best >= s.trail_tight_pct:
            self.stop_pct = max(self.stop_pct or 0.0, best - s.trail_gap_pct, 0.0)
        elif best >= s.trail_start_pct:
            self.stop_pct = max(self.stop_pct or 0.0, 0.0)
        if forced:
            return "force_exit"
        if p <= -s.max_loss_pct:
            return "max_loss"
        if p >= s.max_profit_pct:
            return "max_profit"
        if self.stop_pct is not None and p <= self.stop_pct:
            return "trailing_stop"
        if scheduled:
            return "scheduled_exit"
        return None

    def status(self, cost: float, qty: int, size: float) -> dict[str, Any]:
        """Premium, P&L, the trailing level and the distance to each threshold (profit %)."""
        s, p = self.settings, self.profit_pct(cost)
        return {
            "premium": round(self.premium, 6), "cost_to_close": round(cost, 6),
            "pnl_usd": round((self.premium - cost) * qty * size, 4),
            "profit_pct": round(p, 2), "best_profit_pct": round(self.best_profit_pct, 2),
            "trailing_stop_pct": self.stop_pct,
            "to_max_profit_pct": round(s.max_profit_pct - p, 2),
            "to_max_loss_pct": round(p + s.max_loss_pct, 2),
            "to_trailing_stop_pct": None if self.stop_pct is None else round(p - self.stop_pct, 2),
            "to_trail_arm_pct": round(s.trail_start_pct - p, 2) if self.stop_pct is None else 0.0,
        }  # fmt: skip

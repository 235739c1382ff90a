"""``kit watch`` settings as data: a TOML file (``--config FILE``) over these defaults.

Why a file: the alert-only desk runs all day unattended, so its thresholds (what counts as a
good enough backtest, when entries are considered, how often it looks) must be reviewable and
versionable rather than buried in flags. Every key is checked strictly: an unknown key, a wrong
type or an out-of-range value is one :class:`WatchConfigError` line naming the key.

Exit thresholds (profit target, stop, time exit) and risk limits (positions, total risk) are
the desk's risk rules (``kit/risk/rules.py``, ``--rules FILE``): the watch does not keep a
second copy of them.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields, replace
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class WatchConfigError(ValueError):
    """A watch configuration that cannot be used; the message names the key."""


@dataclass(frozen=True)
class WatchConfig:
    """Defaults: a market-context pass and a position pass every minute, a scan every 5
    minutes, the top 5 opportunities, New York hours (09:30-16:00 trading, 09:45-14:30 entries)."""

    context_interval_s: float = 60.0
    scan_interval_s: float = 300.0
    positions_interval_s: float = 60.0
    top_n: int = 5
    min_score: float = 0.0  # composite score (-100..100)
    min_win_rate: float = 50.0  # %
    min_roi: float = 0.0  # %
    min_sharpe: float = 0.0  # annualised
    min_trades: int = 5  # a backtest with fewer trades than this is not evidence
    timezone: str = "America/New_York"
    trading_start: time = time(9, 30)
    trading_end: time = time(16, 0)
    entry_start: time = time(9, 45)
    entry_end: time = time(14, 30)
    alert_log: str = "data/watch/alerts.jsonl"  # rotated at alert_log_bytes, 3 files kept
    alert_log_bytes: int = 5_000_000
    state_file: str = "data/watch/state.json"  # the last pass, for --once --json and scripts
    # manual positions held to expiry get a `time_exit` alert from trading_start this many
    # calendar days before it (0DTE/1DTE entries keep the desk's time stop)
    time_exit_days: int = 1

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


_POSITIVE = ("context_interval_s", "scan_interval_s", "positions_interval_s", "alert_log_bytes",
             "time_exit_days")  # fmt: skip
_TIMES = ("trading_start", "trading_end", "entry_start", "entry_end")


def _value(name: str, kind: Any, raw: Any) -> Any:
    if name in _TIMES:
        if isinstance(raw, time):
            return raw
        try:
            return time.fromisoformat(str(raw))
        except ValueError:
            raise WatchConfigError(f"{name}: not a time (HH:MM): {raw!r}") from None
    if kind in ("float", float):
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise WatchConfigError(f"{name}: expected a finite number, got {raw!r}")
        return float(raw)
    if kind in ("int", int):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise WatchConfigError(f"{name}: expected a whole number, got {raw!r}")
        return raw
    if not isinstance(raw, str) or not raw:
        raise WatchConfigError(f"{name}: expected a non-empty string, got {raw!r}")
    return raw


def check(cfg: WatchConfig) -> WatchConfig:
    """Range checks shared by the file and the flags."""
    for name in _POSITIVE:
        if not getattr(cfg, name) > 0:
            raise WatchConfigError(f"{name}: must be positive, got {getattr(cfg, name)!r}")
    if cfg.top_n < 1:
        raise WatchConfigError(f"top_n: must be at least 1, got {cfg.top_n}")
    if not 0 <= cfg.min_win_rate <= 100:
        raise WatchConfigError(f"min_win_rate: a percentage 0-100, got {cfg.min_win_rate}")
    try:
        ZoneInfo(cfg.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise WatchConfigError(f"timezone: unknown zone {cfg.timezone!r}") from None
    for a, b in (("trading_start", "trading_end"), ("entry_start", "entry_end")):
        if not getattr(cfg, a) < getattr(cfg, b):
            raise WatchConfigError(f"{a} must be before {b}")
    return cfg


def parse_config(doc: dict[str, Any], base: WatchConfig | None = None) -> WatchConfig:
    """A ``[watch]`` table (or a flat document) over ``base``; strict."""
    table = doc.get("watch", doc)
    if not isinstance(table, dict):
        raise WatchConfigError("[watch]: expected a table")
    known = {f.name: f.type for f in fields(WatchConfig)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise WatchConfigError(f"unknown key {unknown[0]!r}; known: {', '.join(sorted(known))}")
    values = {k: _value(k, known[k], v) for k, v in table.items()}
    return check(replace(base or WatchConfig(), **values))


def load_config(path: str | Path | None) -> WatchConfig:
    """The file at ``path`` over the defaults (None: the defaults)."""
    if path is None:
        return WatchConfig()
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise WatchConfigError(f"--config {p}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise WatchConfigError(f"--config {p}: not TOML ({exc})") from None
    return parse_config(doc)

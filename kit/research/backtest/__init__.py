"""The event-driven backtest: one strategy (a grid row or a TOML config) through the real desk,
day by day, on the simulator, an options history or a recorded day. See :mod:`.runner`."""

from kit.research.backtest.config import BacktestConfig, ConfigError
from kit.research.backtest.runner import BacktestResult, DayResult, run_backtest, run_day

__all__ = ["BacktestConfig", "BacktestResult", "ConfigError", "DayResult", "run_backtest",
           "run_day"]  # fmt: skip

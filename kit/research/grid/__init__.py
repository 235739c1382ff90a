"""The vectorised backtest grid: strategies x entries x strikes x exits x filters x costs x
sizing over an options history, sharded by session (process pool or Dask), with statistics per
configuration, per VIX regime and per trend.

``run_grid(history, "grid.toml")`` -> :class:`~kit.research.grid.run.GridResult`;
``write_results(result, out)`` writes DuckDB and Parquet. Read the README's "Backtest grid".
"""

from kit.research.grid.run import GridResult, run_grid, summary, write_results
from kit.research.grid.spec import Grid, GridError, load_grid, parse_grid

__all__ = [
    "Grid",
    "GridError",
    "GridResult",
    "load_grid",
    "parse_grid",
    "run_grid",
    "summary",
    "write_results",
]

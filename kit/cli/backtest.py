"""``kit backtest grid``: run a backtest grid over an options history.

``kit backtest`` takes an action so that ``kit backtest run`` (one strategy, event by event) can
join ``grid`` later without changing how either is called.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kit.cli import args as args_


def add_backtest_parser(sub: Any) -> None:
    """Register ``backtest`` on the ``kit`` command's subparsers."""
    b = sub.add_parser("backtest", help="backtests over an options history (kit history build)")
    actions = b.add_subparsers(dest="action", required=True, metavar="ACTION")
    g = actions.add_parser("grid", help="every config of a TOML grid (the product of its axes) "
                           "over every session, with statistics per config, VIX regime and "
                           "trend")  # fmt: skip
    g.add_argument("--history", required=True, help="history directory (kit history build)")
    g.add_argument("--grid", required=True, help="grid TOML file (e.g. "
                   "data/grids/spx_0dte_condor.toml)")  # fmt: skip
    g.add_argument("--out", required=True, help="results directory: grid.duckdb and Parquet")
    where = g.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="local processes (default: all CPUs; "
                       "1 runs in this process)")  # fmt: skip
    where.add_argument("--dask", metavar="ADDR", help="a Dask scheduler (tcp://host:8786) "
                       "instead of local processes")  # fmt: skip
    g.add_argument("--from", dest="date_from", type=args_.day, help="first session (YYYY-MM-DD)")
    g.add_argument("--to", dest="date_to", type=args_.day, help="last session (YYYY-MM-DD)")
    g.add_argument("--csv", action="store_true", help="also write a flat grid_results.csv")
    g.add_argument("--progress", choices=["auto", "off"], default="auto",
                   help="progress bar (auto: rich in a terminal, none in a pipe)")  # fmt: skip
    g.add_argument("--json", action="store_true", help="print one JSON line")
    g.set_defaults(func=cmd_backtest_grid)


def cmd_backtest_grid(args: argparse.Namespace) -> int:
    # imported here: building the ``kit`` parser must not load polars for every command
    from kit.research.grid.run import ProgressBar, run_grid, summary, write_results

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    # rich draws on stdout: keep a piped --json line clean
    bar = ProgressBar("off" if args.json and not sys.stdout.isatty() else args.progress)
    try:  # GridError and HistoryError are ValueErrors: kit prints them as one line
        result = run_grid(args.history, args.grid, workers=args.workers, dask=args.dask,
                          date_from=args.date_from, date_to=args.date_to,
                          progress=bar)  # fmt: skip
    finally:
        bar.close()
    db = write_results(result, args.out, csv=args.csv)
    out = summary(result, db)
    if args.json:
        print(json.dumps(out))
    else:
        s = out["best_composite_score"]
        score = "no composite score yet: too few trades" if s is None else f"composite {s:.1f}"
        print(
            f"{out['configs']:,} configs x {out['days']} sessions ({out['first_day']} to "
            f"{out['last_day']}): {out['trades']:,} trades in {out['seconds']:.1f} s; best "
            f"config {out['best_config']} ({score}) -> {db}"
        )
    return 0

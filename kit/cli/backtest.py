"""``kit backtest grid`` (every config of a grid, fast, over an options history) and ``kit
backtest run`` (one config, event by event, through the real desk: the simulator or a history).
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
    r = actions.add_parser("run", help="one config through the real desk (rules, order manager, "
                           "paper broker) day by day: every decision, order and fill, then a "
                           "summary per day and in total with the grid's statistics")  # fmt: skip
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", type=int, metavar="CONFIG_ID", help="a config of grid "
                       "results (with --results)")  # fmt: skip
    which.add_argument("--config-file", type=args_.input_file, metavar="FILE", help="a TOML "
                       "config: the grid format with one value per axis")  # fmt: skip
    r.add_argument("--results", type=args_.input_dir, metavar="DIR",
                   help="grid results directory (kit backtest grid --out)")  # fmt: skip
    r.add_argument("--history", type=args_.input_dir, metavar="DIR", help="replay this options "
                   "history (kit history build); default: the simulator")  # fmt: skip
    r.add_argument("--from", dest="date_from", type=args_.day, required=True, help="first session")
    r.add_argument("--to", dest="date_to", type=args_.day, required=True, help="last session")
    r.add_argument("--seed", type=int, help="simulator seed of the first session (default 3; "
                   "session i of the range runs seed + i)")  # fmt: skip
    r.add_argument("--conflate", type=args_.positive, metavar="SECONDS", help="market data "
                   "batched per this many seconds (default: 15 on the simulator, 60 on a "
                   "history)")  # fmt: skip
    r.add_argument("--json", action="store_true", help="JSON lines (as kit run --jsonl), then "
                   "one per day and the total")  # fmt: skip
    r.set_defaults(func=cmd_backtest_run)


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


def cmd_backtest_run(args: argparse.Namespace) -> int:
    from kit.app.autopilot import AUTO_SEED
    from kit.research.backtest import BacktestConfig, run_backtest

    if args.config is not None:
        if args.results is None:
            raise ValueError("--config CONFIG_ID needs --results DIR (kit backtest grid --out)")
        cfg = BacktestConfig.from_results(args.results, args.config)
    else:
        cfg = BacktestConfig.from_toml(args.config_file)
    emit = _json_line if args.json else _text_line
    run_backtest(cfg, args.date_from, args.date_to, history=args.history,
                 seed=AUTO_SEED if args.seed is None else args.seed, conflate_s=args.conflate,
                 emit=emit)  # fmt: skip
    return 0


def _json_line(doc: dict[str, Any]) -> None:
    print(json.dumps(doc), flush=True)


def _text_line(doc: dict[str, Any]) -> None:
    """A record as one readable line; the day and total summaries as key=value lines."""
    kind = doc.get("kind")
    if kind in ("day", "backtest"):
        body = " ".join(f"{k}={v}" for k, v in doc.items() if k != "kind" and v is not None)
        print(f"{'DAY' if kind == 'day' else 'TOTAL'} {body}", flush=True)
    elif kind == "fill":
        print(f"{doc.get('ts', '')} fill: {doc.get('side')} {doc.get('qty'):g} "
              f"{doc.get('contract')} @ {doc.get('price')}", flush=True)  # fmt: skip
    elif kind == "order":
        limit = doc.get("limit_price")
        print(f"{doc.get('ts', '')} order {doc.get('client_id')}: {doc.get('status')} "
              f"{doc.get('side')} {doc.get('qty'):g}"
              + (f" limit {limit}" if limit is not None else ""), flush=True)  # fmt: skip
    elif kind == "decision":
        what = doc.get("message") or doc.get("reason") or doc.get("status") or ""
        extra = f" {doc.get('action')}" if doc.get("decision") == "action" else ""
        print(f"{doc.get('ts', '')} {kind}{extra}: {what}", flush=True)

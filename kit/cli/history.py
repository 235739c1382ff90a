"""``kit history build|info``: build an options history (chain snapshots as Hive-partitioned
Parquet) from the simulator, the ThetaData Terminal or the desk's store, and describe one."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kit.cli import args as args_

SOURCES = ("sim", "thetadata", "store")


def add_history_parser(sub: Any) -> None:
    """Register ``history`` on the ``kit`` command's subparsers."""
    h = sub.add_parser("history", help="options history: build chain snapshots as Parquet, "
                       "or describe a history directory")  # fmt: skip
    hs = h.add_subparsers(dest="action", required=True, metavar="ACTION")
    b = hs.add_parser("build", help="build sessions --from..--to (resumable: days on disk are "
                      "skipped)")  # fmt: skip
    b.add_argument(
        "--source",
        choices=SOURCES,
        required=True,
        help="sim (seeded simulator), "
        "thetadata (Terminal v3 history) or store (the desk's recorded ticks)",
    )
    b.add_argument("--underlying", default="SPX", help="SPX (SPXW + SPX roots), NDX or SPY")
    b.add_argument("--from", dest="date_from", type=args_.day, required=True, help="YYYY-MM-DD")
    b.add_argument("--to", dest="date_to", type=args_.day, required=True, help="YYYY-MM-DD")
    b.add_argument("--interval", default="1m", help="snapshot interval: 1m (default), 5m, 30s")
    b.add_argument("--out", required=True, help="history directory (created)")
    b.add_argument("--seed", type=int, default=0, help="sim: the seed (default 0)")
    b.add_argument("--max-dte", type=int, default=45, help="expiries up to N calendar days (45)")
    b.add_argument("--daily-dte", type=int, default=7, help="every expiry up to N days; beyond, "
                   "only Fridays and monthlies (7)")  # fmt: skip
    b.add_argument("--strike-pct", type=args_.positive, default=8.0,
                   help="strikes within +/- this %% of the opening spot (8)")  # fmt: skip
    b.add_argument("--far-strike-pct", type=float, default=0.5, help="beyond --daily-dte, "
                   "strikes on a round grid of about this %% of spot (0.5: 25 points on SPX; "
                   "0 = every listed strike)")  # fmt: skip
    b.add_argument("--db", help="store: the DuckDB file of recorded ticks (default: the desk's)")
    b.add_argument("--concurrency", type=int, default=2, help="thetadata: requests in flight "
                   "(your plan's limit: 2 Value, 4 Standard, 8 Pro; default 2)")  # fmt: skip
    b.add_argument(
        "--progress",
        choices=["auto", "off"],
        default="auto",
        help="progress bar (auto: rich in a terminal, tqdm in a notebook)",
    )
    b.add_argument("--json", action="store_true", help="print the build report as one JSON line")
    b.set_defaults(func=cmd_history_build)
    i = hs.add_parser("info", help="days, rows, size and gaps of a history directory")
    i.add_argument("dir", help="history directory")
    i.add_argument("--json", action="store_true", help="print one JSON object")
    i.set_defaults(func=cmd_history_info)


def cmd_history_build(args: argparse.Namespace) -> int:
    from kit.adapters.thetadata.config import ThetaDataError
    from kit.research.history.api import build_history
    from kit.research.history.band import Band

    band = Band(args.max_dte, args.strike_pct / 100.0, args.daily_dte, args.far_strike_pct / 100.0)
    try:
        report = build_history(
            args.source, args.out, args.underlying, args.date_from, args.date_to,
            interval=args.interval, band=band, seed=args.seed, db=args.db,
            concurrency=args.concurrency, progress=args.progress,
        )  # fmt: skip
    except ThetaDataError as exc:  # the Terminal refused or is down: not a bad argument
        print(f"kit history: error: {exc}", file=sys.stderr)
        return 1
    out = report.as_dict()
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['underlying']} {out['source']}: {out['built']} sessions built, "
              f"{out['skipped']} on disk, {out['rows']:,} rows, {out['bytes'] / 1e6:,.1f} MB in "
              f"{out['seconds']:.1f} s ({out['rows_per_s']:,} rows/s, "
              f"{out['mb_per_day']:.1f} MB/session) -> {args.out}")  # fmt: skip
        if out["empty"]:
            print(f"no data for: {', '.join(out['empty'])}")
    return 0


def cmd_history_info(args: argparse.Namespace) -> int:
    from kit.research.history.info import history_info

    info = history_info(args.dir)
    if args.json:
        print(json.dumps(info))
        return 0
    print(info["path"])
    for u, s in info["underlyings"].items():
        if not s["days"]:
            print(f"  {u}: no complete sessions")
            continue
        print(f"  {u} ({s['source']}, every {s['interval_s']} s): {s['days']} sessions "
              f"{s['first']}..{s['last']}, {s['rows']:,} rows, {s['bytes'] / 1e6:,.1f} MB "
              f"({s['mb_per_day']:.1f} MB/session)")  # fmt: skip
        missing, short = s["missing_sessions"], s["short_days"]
        print(f"    missing sessions: {', '.join(missing) if missing else 'none'}")
        if short:
            print("    short days: " + ", ".join(
                f"{d['date']} ({d['snapshots']}/{d['expected']})" for d in short))  # fmt: skip
    return 0

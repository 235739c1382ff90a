"""``kit sim chain``: the simulated option chain at an instant, as a CBOE quotedata.csv."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kit.cli import args as args_

UNDERLYINGS = ("SPX", "SPY", "NDX")
REGIMES = ("calm", "normal", "stressed")  # kit.adapters.sim.market.REGIMES (not imported here)


def add_sim_parser(sub: Any) -> None:
    """Register ``sim`` (with its ``chain`` action) on the ``kit`` command's subparsers."""
    s = sub.add_parser("sim", help="the simulated market: export a chain as a CBOE file")
    actions = s.add_subparsers(dest="sim_action", required=True, metavar="ACTION")
    c = actions.add_parser("chain", help="the simulated chain at an instant, written in CBOE "
                           "quotedata.csv format (reads like a real download)")  # fmt: skip
    c.add_argument("--underlying", required=True, choices=UNDERLYINGS, help="SPX, SPY or NDX")
    c.add_argument("--date", required=True, type=args_.day, help="a US session, YYYY-MM-DD")
    c.add_argument("--time", required=True, type=args_.clock_time,
                   help="New York time within the session, HH:MM")  # fmt: skip
    c.add_argument("--seed", type=int, default=None,
                   help="simulator seed (default: derived from the date, YYYYMMDD)")  # fmt: skip
    c.add_argument("--regime", choices=REGIMES, default="normal",
                   help="the volatility regime the day starts in (default normal): calm days "
                   "have positive GEX, stressed days negative")  # fmt: skip
    c.add_argument("--out", required=True, type=args_.output_file, help="the CSV file to write")
    c.set_defaults(func=cmd_sim_chain)


def cmd_sim_chain(args: argparse.Namespace) -> int:
    # imported here: building the ``kit`` parser must not load the simulator for every command
    from kit.adapters.sim.export import simulated_chain, write_cboe
    from kit.adapters.sim.market import SimConfig

    try:
        chain = simulated_chain(args.underlying, args.date, args.time, seed=args.seed,
                                config=SimConfig(vol_regime=args.regime))  # fmt: skip
    except ValueError as exc:
        print(f"kit sim chain: error: {exc}", file=sys.stderr)
        return 2
    write_cboe(chain, args.out)
    print(f"{args.out}: {chain.underlying} {chain.spot:,.2f} at {chain.asof.isoformat()}, "
          f"{chain.frame.height} contracts")  # fmt: skip
    return 0

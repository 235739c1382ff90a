"""``kit gex PATH``: gamma exposure, zero gamma and walls of a CBOE quotedata.csv."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

from kit.signals.config import COMPAT


def add_gex_parser(sub: Any) -> None:
    """Register ``gex`` on the ``kit`` command's subparsers."""
    s = sub.add_parser("gex", help="gamma exposure, zero gamma and walls of a CBOE quotedata.csv")
    s.add_argument("path", help="a CBOE delayed-quotes download (quotedata.csv)")
    s.add_argument("--compat", choices=sorted(COMPAT), default="desk",
                   help="conventions: desk (default: calendar minutes to settlement, 200 levels, "
                   "nearest crossing) or public (r = q = 0, business days / 262, 60 levels, "
                   "first crossing, linear interpolation)")  # fmt: skip
    s.add_argument("--gamma-source", choices=["iv", "vendor"],
                   help="gamma at spot from each IV (default) or CBOE's column")  # fmt: skip
    s.add_argument("--rate", type=float, help="continuous rate r (default 0)")
    s.add_argument("--div-yield", type=float, help="continuous dividend yield q (default 0)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_gex)


def cmd_gex(args: argparse.Namespace) -> int:
    # imported here: building the ``kit`` parser must not load polars and scipy for every command
    from kit.signals.chains import read_cboe
    from kit.signals.flows import max_pain
    from kit.signals.gex import gex_levels

    cfg = COMPAT[args.compat]
    overrides = {"gamma_source": args.gamma_source, "r": args.rate, "q": args.div_yield}
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    chain = read_cboe(args.path)
    levels = gex_levels(chain, cfg)
    out = levels.to_dict()
    pain = max_pain(chain).filter(expiry=levels.next_expiry)
    out["max_pain_next"] = float(pain["max_pain"][0]) if pain.height else None
    if args.json:
        print(json.dumps(out))
        return 0
    fmt = lambda x: "-" if x is None else f"{x:,.2f}"  # noqa: E731
    print(f"{out['underlying']} {fmt(out['spot'])} at {out['asof']} ({args.compat} conventions, "
          f"{out['contracts']} contracts)")  # fmt: skip
    print(f"total GEX      {out['total_gex'] / 1e9:,.3f} bn $ per 1% move")
    print(f"zero gamma     {fmt(out['zero_gamma'])}  (all crossings: "
          f"{', '.join(fmt(c) for c in out['crossings']) or 'none'})")  # fmt: skip
    print(f"  ex next      {fmt(out['zero_gamma_ex_next'])}  ({out['next_expiry']})")
    print(f"  ex monthly   {fmt(out['zero_gamma_ex_monthly'])}  ({out['next_monthly']})")
    print(f"call wall      {fmt(out['call_wall'])}")
    print(f"put wall       {fmt(out['put_wall'])}")
    print(f"max pain next  {fmt(out['max_pain_next'])}")
    print(f"vanna          {out['vanna_exposure'] / 1e6:,.1f} m $ delta per vol point")
    print(f"charm          {out['charm_exposure'] / 1e6:,.1f} m $ delta per day")
    return 0

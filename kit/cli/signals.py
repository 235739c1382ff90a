"""``kit gex PATH``: gamma exposure, zero gamma and walls of a CBOE quotedata.csv."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from typing import Any

from kit.signals.config import COMPAT, TIME_BASES, ZERO_DTE


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
    s.add_argument("--zero-dte", choices=ZERO_DTE,
                   help="0-day expiries: keep (desk default), drop (public default) or one-day "
                   "(count as 1/262 year, as the common public scripts do)")  # fmt: skip
    s.add_argument("--time-basis", choices=TIME_BASES,
                   help="time to expiry: calendar (desk default), trading or business_days "
                   "(public default); desk business days start at the next session")  # fmt: skip
    rates = s.add_mutually_exclusive_group()
    rates.add_argument("--rate", type=finite, help="continuous rate r as a decimal "
                       "(0.05 = 5%%; default 0)")  # fmt: skip
    rates.add_argument("--rate-pct", type=finite, help="the same in percent (5 = 5%%)")
    yields = s.add_mutually_exclusive_group()
    yields.add_argument("--div-yield", type=finite, help="continuous dividend yield q as a "
                        "decimal (default 0)")  # fmt: skip
    yields.add_argument("--div-yield-pct", type=finite, help="the same in percent")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_gex)


def finite(text: str) -> float:
    """A finite number: ``nan`` or ``inf`` as a rate would silently poison every gamma."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def _decimal(flag: str, decimal: float | None, percent: float | None) -> float | None:
    """The rate as a decimal. Above 1 it is almost surely a percentage typed as a decimal
    (``--rate 5`` would be 500%): it is used as given, with a warning naming the fix."""
    if percent is not None:
        return percent / 100.0
    if decimal is not None and abs(decimal) > 1.0:
        print(f"kit gex: warning: {flag} {decimal:g} is {decimal:.0%}; rates are decimals "
              f"(0.05 = 5%), or give {flag}-pct {decimal:g}", file=sys.stderr)  # fmt: skip
    return decimal


def cmd_gex(args: argparse.Namespace) -> int:
    # imported here: building the ``kit`` parser must not load polars and scipy for every command
    from kit.signals.chains import read_cboe
    from kit.signals.flows import max_pain
    from kit.signals.gex import gex_levels

    cfg = COMPAT[args.compat]
    r = _decimal("--rate", args.rate, args.rate_pct)
    q = _decimal("--div-yield", args.div_yield, args.div_yield_pct)
    overrides = {"gamma_source": args.gamma_source, "r": r, "q": q, "zero_dte": args.zero_dte,
                 "time_basis": args.time_basis}  # fmt: skip
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    chain = read_cboe(args.path)
    levels = gex_levels(chain, cfg)
    out = {"compat": args.compat, **levels.to_dict()}
    pain = max_pain(chain).filter(expiry=levels.next_expiry)
    out["max_pain_next"] = float(pain["max_pain"][0]) if pain.height else None
    if args.json:
        print(json.dumps(out))
        return 0
    fmt = lambda x: "-" if x is None else f"{x:,.2f}"  # noqa: E731
    print(f"{out['underlying']} {fmt(out['spot'])} at {out['asof']} ({args.compat} conventions, "
          f"{out['contracts']} contracts)")  # fmt: skip
    print(f"total GEX      {out['total_gex'] / 1e9:,.3f} bn $ per 1% move")
    how = out["total_gex_conventions"]
    count = f" ({how['day_count']})" if how["day_count"] else ""
    print(f"  from         gamma {how['gamma_source']}, {how['time']}{count}, "
          f"0-day expiries {how['zero_day_expiries']}")  # fmt: skip
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

"""A simulated 0DTE session with one strategy through the full desk: how long a backtest day takes.

Each session is ``kit backtest run``'s (:func:`kit.research.backtest.run_day`): the builder's
desk, rules, order manager and paper broker on a stepped clock, the simulator's 1 s path
conflated to 15 s batches, a short 0.10-delta SPXW strangle sold at 10:00 with a 50% target, a
2x stop and a 15:45 time exit, settled at the close. The issue's target: <= 3 s per session
(``kit run --feed sim --auto`` took 45-90 s).

``--baseline`` also runs one session at the live pace (every 1 s step, the whole chain quoted):
the figure the conflation is measured against (about a minute).

Prints one line per session, then one JSON line (``seconds_per_session``: the median wall time
over the sessions, the first, cold one also as ``first_session_s``; ``cpu_seconds_per_session``:
the same in this process's CPU time, which a loaded machine does not inflate; ``events_per_s``:
market events the desk processed per wall second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from datetime import date, timedelta

from kit.research.backtest import BacktestConfig, run_day
from kit.research.grid.spec import parse_grid

TARGET_S = 3.0
CONFIG = {"strategy": ["short_strangle"], "entry_time": ["10:00"], "dte": [0],
          "strikes": ["delta:0.10"], "profit_target_pct": [50.0], "stop_mult": [2.0],
          "exit_time": ["15:45"], "sizing": ["contracts:1"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument("--baseline", action="store_true", help="also one session at the live pace")
    a = p.parse_args(argv)
    cfg = BacktestConfig.from_grid(parse_grid({"grid": CONFIG}))
    day, results = date(2024, 3, 11), []
    while len(results) < a.sessions:
        r = asyncio.run(run_day(cfg, day, seed=3 + len(results)))
        results.append(r)
        print(f"{day}: {r.seconds:6.2f} s ({r.cpu_seconds:.2f} s CPU), {r.events:,} events, "
              f"{r.evaluations:,} evaluations, {len(r.trades)} trade(s), P&L {r.pnl:+.2f}",
              flush=True)  # fmt: skip
        day += timedelta(days=1 if day.weekday() < 4 else 3)
    secs = [r.seconds for r in results]
    per = statistics.median(secs)
    cpu = statistics.median(r.cpu_seconds for r in results)
    out = {"seconds_per_session": round(per, 3), "first_session_s": round(secs[0], 3),
           "cpu_seconds_per_session": round(cpu, 3),
           "events_per_s": round(sum(r.events for r in results) / sum(secs)),
           "evaluations_per_s": round(sum(r.evaluations for r in results) / sum(secs)),
           "sessions": len(results), "target_s": TARGET_S, "met": per <= TARGET_S}  # fmt: skip
    if a.baseline:
        base = asyncio.run(run_day(cfg, date(2024, 3, 11), seed=3, conflate_s=None,
                                   quote_chain=True))  # fmt: skip
        print(f"baseline (live pace): {base.seconds:.1f} s ({base.cpu_seconds:.1f} s CPU), "
              f"{base.events:,} events", flush=True)  # fmt: skip
        out["baseline_seconds_per_session"] = round(base.seconds, 3)
        out["baseline_cpu_seconds"] = round(base.cpu_seconds, 3)
        out["speedup"] = round(base.seconds / per, 1)
    print(f"median {per:.2f} s per session (target {TARGET_S:g} s): "
          f"{'met' if out['met'] else 'MISSED'}")  # fmt: skip
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

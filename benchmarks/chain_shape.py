"""Chain shape, real versus simulated: the side-by-side table of :mod:`kit.signals.shape`.

Measures every shape statistic on the real CBOE chains in ``../shared/data/`` (SPX and SPY
2023-09-14, NDX 2022-02-04) and on simulated SPX chains at 15:00 (median over ``--days`` sessions,
seed from the date) in each volatility regime, prints them with the band the tests hold the
simulator to, then the simulator's speed: one feed step (advance one second, quote one 0DTE
expiry's core strikes, prints) and one ``kit sim chain`` export. Last line: one JSON object.

``python benchmarks/chain_shape.py [--days 4]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time as wall
from datetime import date, time, timedelta
from pathlib import Path

from kit.adapters.sim.export import cboe_text, market_at, simulated_chain
from kit.adapters.sim.market import SimConfig
from kit.core.clock import next_session
from kit.signals.chains import read_cboe
from kit.signals.shape import BANDS, shape_stats

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL = {"SPX real": "spx_quotedata_2023-09-14.csv", "SPY real": "spy_quotedata_2023-09-14.csv",
        "NDX real": "ndx_quotedata_2022-02-04.csv"}  # fmt: skip


def sessions(n: int) -> list[date]:
    """``n`` sessions spread over 2024 (every ~9 weeks), so each is its own seeded market."""
    out, day = [], date(2024, 1, 10)
    while len(out) < n:
        out.append(next_session(day).day)
        day = out[-1] + timedelta(days=61)
    return out


def simulated(regime: str, days: list[date]) -> dict[str, float]:
    cfg = SimConfig(vol_regime=regime)
    rows = [shape_stats(simulated_chain("SPX", d, time(15), config=cfg)) for d in days]
    return {k: statistics.median(r[k] for r in rows if math.isfinite(r[k])) for k in rows[0]}


def feed_step_us(steps: int = 2000) -> float:
    """Microseconds per simulated second as the feed runs it for one subscribed 0DTE expiry."""
    m = market_at("SPX", date(2024, 3, 12), time(10))
    core = [c for c in m.chain("SPXW", core=True) if c.expiry == date(2024, 3, 12)]
    last, t0 = None, wall.perf_counter()
    for _ in range(steps):
        m.advance_to(m.now_ns + m.step_ns)
        _, last = m.quote_updates(core, m.steps, last)
        m.trades(core, m.steps)
    return (wall.perf_counter() - t0) / steps * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=4, help="simulated sessions per regime (4)")
    args = p.parse_args()
    cols = {name: shape_stats(read_cboe(DATA / f)) for name, f in REAL.items()}
    days = sessions(args.days)
    for regime in ("calm", "normal", "stressed"):
        cols[f"sim {regime}"] = simulated(regime, days)
    names = list(cols)
    print(f"{'statistic':<22}" + "".join(f"{n:>13}" for n in names) + f"{'band':>17}")
    for key in cols["SPX real"]:
        band = BANDS.get(key)
        cells = "".join(f"{cols[n][key]:>13.4f}" for n in names)
        print(f"{key:<22}{cells}{'' if band is None else f'{band[0]:>8.3g}..{band[1]:<7.3g}':>17}")
    t0 = wall.perf_counter()
    text = cboe_text(simulated_chain("SPX", date(2024, 3, 12), time(15)))
    export_s = wall.perf_counter() - t0
    step = feed_step_us()
    print(f"\nkit sim chain SPX 15:00: {export_s:.2f} s ({len(text) / 1e6:.1f} MB); "
          f"feed step (one 0DTE expiry's core strikes): {step:.0f} us")  # fmt: skip
    print(json.dumps({"benchmark": "chain_shape", "days": [d.isoformat() for d in days],
                      "export_s": round(export_s, 3), "feed_step_us": round(step, 1),
                      "stats": {n: {k: round(v, 5) for k, v in c.items()}
                                for n, c in cols.items()}}))  # fmt: skip


if __name__ == "__main__":
    main()

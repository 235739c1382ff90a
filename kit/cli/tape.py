"""``kit tape``: record every quote a feed adapter delivers, to compare with the vendor's history.

The adapter promises no hole and no duplicate (gaps are backfilled, out-of-window frames
refused); a tape is how a run checks that promise against ``/v3/option/history/quote``::

    kit tape --feed thetadata --underlying SPXW --strikes 5 --seconds 60 --out tape.parquet

It subscribes the ``--strikes`` strikes nearest the index price on the nearest listed expiry
(both rights), records for ``--seconds`` (wall clock) and writes a Parquet file with one row per
quote delivered: ``ts`` (UTC, ns), ``contract`` (OCC symbol), ``bid``, ``ask``, ``bid_size``,
``ask_size``. The summary line counts what the adapter went through; the exit code is 1 when a
gap was still unfilled at the end (those contracts' tapes have a hole the vendor can fill).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from kit.cli import args as args_


def add_tape_parser(sub: Any) -> None:
    s = sub.add_parser("tape", help="record every quote a feed delivers to a Parquet file")
    s.add_argument(
        "--feed",
        choices=["thetadata"],
        default="thetadata",
        help="the adapter (THETADATA_HOST / _REST_PORT / _WS_PORT locate the Terminal)",
    )
    s.add_argument("--underlying", default="SPXW", help="option root (SPXW, SPY, NDXP, ...)")
    s.add_argument(
        "--strikes",
        type=args_.count,
        default=5,
        help="strikes nearest the index price, both rights (default 5)",
    )
    s.add_argument("--seconds", type=args_.positive, required=True, help="how long to record")
    s.add_argument(
        "--out",
        type=args_.output_file,
        required=True,
        help="the Parquet file to write (its directory must exist)",
    )
    s.set_defaults(func=cmd_tape)  # fmt: skip


def cmd_tape(args: argparse.Namespace) -> int:
    summary = asyncio.run(record(args.underlying, args.strikes, args.seconds, args.out))
    print(json.dumps(summary))
    if summary["unfilled"]:
        print(f"kit tape: {len(summary['unfilled'])} contract(s) still have an unfilled gap: "
              + ", ".join(summary["unfilled"]), file=sys.stderr)  # fmt: skip
        return 1
    return 0


async def record(root: str, n_strikes: int, seconds: float, out: Path) -> dict[str, Any]:
    """Subscribe, record, write the Parquet file; returns the summary (counts, not quotes)."""
    from kit.adapters.thetadata.chains import ThetaDataChainSource
    from kit.adapters.thetadata.config import ThetaDataConfig, ThetaDataError
    from kit.adapters.thetadata.feed import ThetaDataFeed
    from kit.adapters.thetadata.rest import ThetaDataREST
    from kit.core.clock import SimClock, from_ns
    from kit.core.config import ConfigError
    from kit.core.model import ROOT_UNDERLYING, Contract, Quote

    td = ThetaDataConfig.from_env()
    index = ROOT_UNDERLYING.get(root, root)
    probe = ThetaDataREST(replace(td, retries=1))
    try:
        tick = await probe.index_price(index)
        clock = SimClock(from_ns(tick.ts_ns), speed=1.0) if tick else None  # vendor time
        expiries = await ThetaDataChainSource(probe, clock).expirations(root) if clock else []
        strikes = await probe.strikes(root, expiries[0]) if expiries else []
    except ThetaDataError as exc:
        raise ConfigError(f"cannot read {root} from the ThetaData Terminal at {td.host}:"
                          f"{td.rest_port} ({exc.name})") from None  # fmt: skip
    finally:
        await probe.aclose()
    if tick is None or clock is None:
        raise ConfigError(f"the ThetaData Terminal has no {index} price")
    if not strikes:
        raise ConfigError(f"the ThetaData Terminal lists no {root} expiry from today on")
    nearest = sorted(sorted(strikes, key=lambda k: abs(k - tick.price))[:n_strikes])
    contracts = [Contract(root, expiries[0], k, r) for k in nearest for r in ("P", "C")]
    feed = ThetaDataFeed(td, clock=clock)
    quotes: list[Quote] = []

    async def collect() -> None:
        async for ev in feed:
            if isinstance(ev, Quote):
                quotes.append(ev)

    await feed.subscribe(contracts)
    task = asyncio.create_task(collect())
    async with feed:
        await asyncio.sleep(seconds)
        unfilled = [str(k) for k in feed.gaps_pending]
    await task
    write_tape(quotes, out)
    s = feed.stats
    return {"out": str(out), "quotes": len(quotes), "contracts": len(contracts),
            "expiry": f"{expiries[0]:%Y-%m-%d}", "strikes": nearest,
            "reconnects": s.reconnects, "silences": s.silences, "backfilled": s.backfilled,
            "backfill_failures": s.backfill_failures, "gaps_lost": s.gaps_lost,
            "out_of_window": s.out_of_window, "malformed": s.malformed,
            "unfilled": unfilled}  # fmt: skip


def write_tape(quotes: list[Any], out: Path) -> None:
    """One row per quote, in delivery order; ``ts`` as a UTC nanosecond timestamp."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kit.core.symbology import to_occ

    table = pa.table({
        "ts": pa.array([q.ts_ns for q in quotes], pa.timestamp("ns", tz="UTC")),
        "contract": pa.array([to_occ(q.contract, padded=False) for q in quotes], pa.string()),
        "bid": pa.array([q.bid for q in quotes], pa.float64()),
        "ask": pa.array([q.ask for q in quotes], pa.float64()),
        "bid_size": pa.array([q.bid_size for q in quotes], pa.float64()),
        "ask_size": pa.array([q.ask_size for q in quotes], pa.float64()),
    })  # fmt: skip
    pq.write_table(table, out)

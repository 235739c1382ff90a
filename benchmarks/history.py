"""Options history build speed and size: the simulator builder at one-minute snapshots for the
default band (expiries to 45 DTE, strikes +/- 8%, dailies for a week then Fridays and monthlies)
and for 0DTE only, then a DuckDB scan of the result. Rows per second count the build (pricing,
Greeks, volume, Parquet write); MB per session is the file on disk (zstd).

``python benchmarks/history.py [SESSIONS]`` (default 5) prints a table and, last, one JSON line.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import date

import duckdb

from kit.research.history.band import Band, sessions
from kit.research.history.build import run_build
from kit.research.history.sim import SimHistory

START = date(2024, 3, 4)


def bench(name: str, band: Band, n: int) -> dict[str, object]:
    days = sessions(START, date(2024, 12, 31))[:n]
    h = SimHistory("SPX", seed=0, interval_s=60, band=band)
    with tempfile.TemporaryDirectory() as out:
        report = run_build(out, "SPX", days, h.make_day, h.signature, progress="off")
        t0 = time.perf_counter()
        rows = duckdb.sql(
            f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet', hive_partitioning=true) "
            "WHERE delta BETWEEN -0.12 AND -0.08"
        ).fetchall()[0][0]
        scan = time.perf_counter() - t0
    r = report.as_dict()
    per_day = report.seconds / max(len(report.built), 1)
    out = {"band": name, "sessions": len(report.built), "rows": r["rows"],
           "rows_per_session": r["rows"] // max(len(report.built), 1),
           "rows_per_s": r["rows_per_s"], "s_per_session": round(per_day, 3),
           "mb_per_session": r["mb_per_day"],
           "year_minutes": round(per_day * 252 / 60, 1),
           "year_gb": round(r["mb_per_day"] * 252 / 1000, 2),
           "duckdb_scan_s": round(scan, 3), "duckdb_hits": rows}  # fmt: skip
    print(f"{name:>10}: {out['rows_per_session']:>9,} rows/session  {out['rows_per_s']:>9,} "
          f"rows/s  {out['s_per_session']:>6.2f} s/session  {out['mb_per_session']:>6.2f} "
          f"MB/session  (a year: ~{out['year_minutes']} min, ~{out['year_gb']} GB)")  # fmt: skip
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    results = [bench("default", Band(), n), bench("0dte", Band(max_dte=0), n)]
    print(json.dumps({"benchmark": "history", "sessions": n, "results": results}))


if __name__ == "__main__":
    main()

"""Zero-gamma profile speed: the GEX of a full chain at every level of a spot grid.

A synthetic SPX-like chain (40 expiries from 1 day to 2 years, 125 strikes each, calls and puts:
10,000 contracts with a skewed smile and open interest on every one) on a 200-level grid, float64:

- ``GammaKernel`` (kit.signals.gex): per-contract coefficients, one matrix product, in-place
  ufuncs on a reused buffer; timed with and without building the coefficients;
- a naive NumPy version: the gamma formula broadcast over (levels x contracts);
- ``profile_reference``: the desk's own Black-Scholes gamma per level (the tests' reference).

Also the whole pipeline (``gex_levels``: exposures, by strike/expiry, three profiles, every
crossing refined) on that chain and on the NDX CBOE file when it is present. Prints a table and,
last, one JSON line. ``python benchmarks/signals.py [--contracts 10000] [--levels 200]``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from kit.signals import PUBLIC, Chain, GammaKernel, gex_levels, make_frame, read_cboe
from kit.signals.gex import profile_reference

REPO = Path(__file__).resolve().parents[1]
NDX_NAME = "ndx_quotedata_2022-02-04.csv"
NDX_PATHS = (REPO / "data" / NDX_NAME, REPO.parent / "shared" / "data" / NDX_NAME)
SPOT, R, Q = 5000.0, 0.045, 0.013


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time in ms of ``repeat`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def synthetic_chain(contracts: int, seed: int = 7) -> dict[str, np.ndarray]:
    """40 expiries, strikes over +/- max(5%, 3.5 sd) of spot, a put skew, lognormal OI."""
    rng = np.random.default_rng(seed)
    n_exp = 40
    per = max(1, contracts // (2 * n_exp))
    T = np.geomspace(1 / 365, 2.0, n_exp)
    atm = 0.14 + 0.04 * np.sqrt(T)
    K, years, iv = [], [], []
    for t, vol in zip(T, atm, strict=True):
        width = max(0.05, 3.5 * vol * math.sqrt(t))
        k = np.linspace(SPOT * (1 - width), SPOT * (1 + width), per)
        m = np.log(k / SPOT) / (vol * math.sqrt(t))
        smile = vol * np.exp(-0.25 * np.tanh(m / 2.5) * 2.5 + 0.02 * m * m)
        for _ in (True, False):
            K.append(k)
            years.append(np.full(per, t))
            iv.append(smile)
    K, years, iv = (np.concatenate(x) for x in (K, years, iv))
    is_call = np.tile(np.repeat([True, False], per), n_exp)
    oi = np.round(rng.lognormal(6.0, 1.2, K.size))
    sign = np.where(is_call, 1.0, -1.0)
    return {"strike": K, "years": years, "iv": iv, "is_call": is_call, "oi": oi,
            "weight": sign * oi * 100.0}  # fmt: skip


def naive_numpy(levels: np.ndarray, x: dict[str, np.ndarray]) -> np.ndarray:
    """The gamma formula broadcast over (levels x contracts), then a weighted sum."""
    L = levels[:, None]
    sst = x["iv"] * np.sqrt(x["years"])
    d1 = (np.log(L / x["strike"]) + (R - Q + 0.5 * x["iv"] ** 2) * x["years"]) / sst
    gamma = np.exp(-Q * x["years"]) * np.exp(-0.5 * d1 * d1) / (math.sqrt(2 * math.pi) * L * sst)
    return (gamma * x["weight"]).sum(axis=1) * levels**2 * 0.01


def as_chain(x: dict[str, np.ndarray]) -> Chain:
    """The synthetic arrays as a chain taken at 10:00 ET, expiries on the right dates."""
    asof = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)
    days = np.maximum(np.round(x["years"] * 365).astype(int), 1)
    expiry = [date(2024, 3, 4) + timedelta(days=int(d)) for d in days]
    frame = make_frame({"root": ["SPXW"] * len(expiry), "expiry": expiry,
                        "strike": np.round(x["strike"], 1), "is_call": x["is_call"],
                        "iv": x["iv"], "open_interest": x["oi"]})  # fmt: skip
    return Chain("SPX", SPOT, asof, frame, source="benchmark")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contracts", type=int, default=10_000)
    ap.add_argument("--levels", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()

    x = synthetic_chain(args.contracts)
    n = x["strike"].size
    levels = np.linspace(0.8 * SPOT, 1.2 * SPOT, args.levels)
    kernel = GammaKernel(x["strike"], x["years"], x["iv"], x["weight"], spot=SPOT, r=R, q=Q)

    def build_and_run() -> np.ndarray:
        k = GammaKernel(x["strike"], x["years"], x["iv"], x["weight"], spot=SPOT, r=R, q=Q)
        return k(levels)

    fast = kernel(levels)[:, 0]
    naive = naive_numpy(levels, x)
    ref_args = (levels, x["strike"], x["years"], x["iv"], x["weight"])
    reference = profile_reference(*ref_args, r=R, q=Q)[:, 0]
    gross = naive_numpy(levels, {**x, "weight": np.abs(x["weight"])})
    out: dict[str, float | int | str | None] = {
        "contracts": n,
        "levels": args.levels,
        "zero_gamma_ms_10k": median_ms(lambda: kernel(levels), args.repeat),
        "zero_gamma_with_build_ms": median_ms(build_and_run, args.repeat),
        "naive_numpy_ms": median_ms(lambda: naive_numpy(levels, x), max(5, args.repeat // 5)),
        "reference_pricing_ms": median_ms(lambda: profile_reference(*ref_args, r=R, q=Q), 3),
        "max_rel_diff_vs_naive": float(np.max(np.abs(fast - naive) / gross)),
        "max_rel_diff_vs_reference": float(np.max(np.abs(fast - reference) / gross)),
    }
    out["speedup_vs_naive"] = out["naive_numpy_ms"] / out["zero_gamma_ms_10k"]
    chain = as_chain(x)
    out["gex_levels_ms_10k"] = median_ms(lambda: gex_levels(chain), 10)
    ndx = next((p for p in NDX_PATHS if p.exists()), None)
    if ndx is not None:
        nd = read_cboe(ndx)
        out["ndx_read_ms"] = median_ms(lambda: read_cboe(ndx), 5)
        out["ndx_gex_levels_ms"] = median_ms(lambda: gex_levels(nd), 10)
        out["ndx_zero_gamma_public"] = gex_levels(nd, PUBLIC).zero_gamma
        out["ndx_contracts"] = len(nd)

    rows = [
        ("GammaKernel (coefficients built)", out["zero_gamma_ms_10k"]),
        ("GammaKernel incl. building them", out["zero_gamma_with_build_ms"]),
        ("naive NumPy broadcast", out["naive_numpy_ms"]),
        ("profile_reference (pricing.greeks)", out["reference_pricing_ms"]),
        ("gex_levels, whole pipeline", out["gex_levels_ms_10k"]),
    ]
    print(f"zero-gamma profile: {n:,} contracts x {args.levels} levels, float64 (median ms)")
    for name, ms in rows:
        print(f"  {name:<38} {ms:>9.2f} ms")
    print(f"  kernel target <= 10 ms; {out['speedup_vs_naive']:.1f}x the naive version; max "
          f"|fast - naive| / gross {out['max_rel_diff_vs_naive']:.1e}, vs reference "
          f"{out['max_rel_diff_vs_reference']:.1e} (target <= 1e-9)")  # fmt: skip
    if ndx is not None:
        print(f"NDX file ({out['ndx_contracts']:,} contracts): read {out['ndx_read_ms']:.1f} ms, "
              f"gex_levels {out['ndx_gex_levels_ms']:.1f} ms, public-compat zero gamma "
              f"{out['ndx_zero_gamma_public']:,.2f} (published 14,686)")  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()

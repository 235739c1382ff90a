"""Repeat a measurement until its median is stable, and compare code with its anchor in one process.

Absolute figures on a shared 2-core machine swing 2x with whatever else runs, so every live-path
benchmark runs its *anchor* (the least work any implementation must do: a bare loop, a bare Arrow
insert, a bare websockets client) in the same process, interleaved with the code under test. A
neighbour's load hits both sides of a pair alike, so the per-pair ratio holds where the absolute
figure does not. Runs repeat until the median of the ratios moves less than ``tol`` when the last
runs are left out; the spread (min..max of the runs) is printed beside it.

Not a benchmark itself (``make bench`` runs ``benchmarks/[!_]*.py``).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Stat:
    """One figure over several runs: its median and spread."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)

    @property
    def spread_pct(self) -> float:
        """(max - min) / median, in %: how much the machine moved the figure."""
        m = self.median
        return 100.0 * (self.hi - self.lo) / m if m else float("nan")

    def stable(self, tol: float, drop: int = 2) -> bool:
        """The median moves less than ``tol`` (relative) without the last ``drop`` runs."""
        if len(self.values) < 2 * drop + 1:
            return False
        m, prev = self.median, statistics.median(self.values[:-drop])
        return abs(m - prev) <= tol * abs(m)

    def show(self, fmt: str = ",.0f") -> str:
        return (
            f"{self.median:{fmt}} (spread {self.lo:{fmt}}..{self.hi:{fmt}}, "
            f"{self.spread_pct:.0f}%, {len(self.values)} runs)"
        )


def paired(
    code: Callable[[], float],
    anchor: Callable[[], float],
    *,
    higher_is_better: bool = True,
    min_runs: int = 5,
    max_runs: int = 15,
    tol: float = 0.03,
    budget_s: float = 120.0,
    code_first: bool = False,
) -> tuple[Stat, Stat, Stat]:
    """Run ``anchor`` and ``code`` alternately (each returns its figure) until the median of
    the per-pair ratio is stable; returns (code, anchor, ratio). The ratio is code / anchor for
    a rate (``higher_is_better``) and anchor / code for a latency, so 1.0 means "as fast as the
    anchor" either way and the targets read the same. ``code_first``: each pair runs the code
    first, for an anchor that repeats what the code just did (the same number of rows)."""
    c, a, r = Stat(), Stat(), Stat()
    t0 = time.perf_counter()
    while len(r.values) < max_runs:
        if code_first:
            c.values.append(code())
            a.values.append(anchor())
        else:
            a.values.append(anchor())
            c.values.append(code())
        x, y = c.values[-1], a.values[-1]
        r.values.append(x / y if higher_is_better else y / x)
        if len(r.values) >= min_runs and (r.stable(tol) or time.perf_counter() - t0 > budget_s):
            break
    return c, a, r


def repeat(
    fn: Callable[[], float], *, min_runs: int = 5, max_runs: int = 15, tol: float = 0.03
) -> Stat:
    """Run ``fn`` until the median of its figures is stable."""
    s = Stat()
    while len(s.values) < max_runs:
        s.values.append(fn())
        if len(s.values) >= min_runs and s.stable(tol):
            break
    return s


def load() -> str:
    """The machine's load, printed with every result (it moves the absolute figures)."""
    avg = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {avg}"


def verdict(name: str, ok: bool, detail: str) -> str:
    """One target line: met or MISS, with the figures that decide it."""
    return f"  target {name:<44} {'met ' if ok else 'MISS'}  {detail}"

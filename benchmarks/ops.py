"""What the metrics cost on the tick path: the desk benchmark's throughput (benchmarks/desk.py:
50 positions, quotes and SPX ticks through ``Desk.process`` in batches) with and without
:class:`kit.ops.metrics.DeskMetrics` attached, and the cost of one scrape.

Runs alternate (without, with, without, ...) so a neighbour's load hits both alike, timed in
process CPU seconds (a shared machine's scheduling is not ours); the median of the paired ratios
is the loss. That comparison is only as steady as the machine, so the direct cost is measured
too: the wrappers' added time per batch around a desk that does nothing, as a share of the
measured time per batch (``bound_pct``: the loss the metrics can cause, free of that noise).
Batch 1 is the worst case: every tick pays the timing of one ``process`` and one ``evaluate``.
Target: at most 5% throughput lost. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import json
import statistics
import time

from desk import build_desk, stream
from prometheus_client import generate_latest

from kit.ops.metrics import DeskMetrics

ROUNDS = 7


def run(batch: int, metrics: bool, n_events: int) -> float:
    desk, _, chain = build_desk(50)
    if metrics:
        DeskMetrics().watch_desk(desk)
    events = stream(chain, n_events)
    t0 = time.process_time()
    for i in range(0, n_events, batch):
        desk.process(events[i : i + batch])
    return n_events / (time.process_time() - t0)


class _Idle:
    """A desk that does nothing: what remains of its time is the wrappers' and the listener's."""

    def __init__(self) -> None:
        from kit.engine.hooks import DeskHooks

        self.hooks = DeskHooks()

    def process(self, events: object) -> list:
        return self.evaluate()

    def evaluate(self) -> list:
        return []


def wrapper_us(calls: int = 200_000) -> float:
    """Microseconds the metrics add to one ``process`` call (with its ``evaluate``)."""
    plain, timed = _Idle(), _Idle()
    DeskMetrics().watch_desk(timed)  # type: ignore[arg-type]
    cost = []
    for desk in (plain, timed):
        t0 = time.process_time()
        for _ in range(calls):
            desk.process(None)
        cost.append(time.process_time() - t0)
    return (cost[1] - cost[0]) / calls * 1e6


def scrape_ms(repeats: int = 200) -> float:
    desk, _, chain = build_desk(50)
    m = DeskMetrics()
    m.watch_desk(desk)
    desk.process(stream(chain, 1000))
    t0 = time.perf_counter()
    for _ in range(repeats):
        generate_latest(m.registry)
    return (time.perf_counter() - t0) / repeats * 1e3


def main() -> None:
    rows: dict[str, float] = {}
    rows["wrapper_us_per_batch"] = added = wrapper_us()
    for batch, n in ((1, 2_000), (64, 20_000)):
        off, on = [], []
        for _ in range(ROUNDS):
            off.append(run(batch, False, n))
            on.append(run(batch, True, n))
        base, with_m = statistics.median(off), statistics.median(on)
        rows[f"ticks_per_s_batch_{batch}_without"] = base
        rows[f"ticks_per_s_batch_{batch}_with_metrics"] = with_m
        ratios = [b / a for a, b in zip(off, on, strict=True)]
        rows[f"loss_pct_batch_{batch}"] = (1 - statistics.median(ratios)) * 100
        rows[f"bound_pct_batch_{batch}"] = added * 1e-6 / (batch / base) * 100
    rows["scrape_ms"] = scrape_ms()
    for k, v in rows.items():
        print(f"{k:36s} {v:14,.3f}")
    print(json.dumps({k: round(v, 3) for k, v in rows.items()}))


if __name__ == "__main__":
    main()

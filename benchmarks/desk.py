"""Desk throughput and latency: events -> market state -> book -> rules -> alerts, in process.

A book of 50 (and 500) short strangles and iron condors on one SPXW expiry, a stream of quotes
on their legs and on the rest of the chain plus SPX ticks, fed through ``Desk.process`` the way
the feed pump does: in batches of whatever arrived since the last evaluation. Throughput is
reported per batch size (1 = an idle desk evaluating after every tick; the pump's batch grows
with the arrival rate). Full re-evaluation is one ``Desk.evaluate`` (reprice the open legs,
revalue the book, run every rule). Tick-to-alert is one tick that crosses a threshold, from
``process`` to the emitted alert.

The anchor (issue 27) runs in the same process, interleaved with the desk, on the same ticks:
:class:`Bare`, the least any desk must do: write each quote into NumPy columns, then per batch
one warm-started IV and Greeks call over the open legs (the same :mod:`kit.core.pricing`
kernels), P&L per position and the profit-target test. ``*_ratio`` is desk / anchor for rates
and anchor / desk for latencies (1.0: no overhead over the anchor). Runs repeat until the median
ratio is stable; the spread is printed. Prints a table, every target met or missed and, last,
one JSON line (keys ``ticks_per_s_50``, ``eval_ms_500``, ``tick_to_alert_p99_ms``, kept).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from datetime import date, datetime
from pathlib import Path

import numpy as np

from kit.core.clock import NEW_YORK, SimClock
from kit.core.model import Contract, Fill, Leg, Position, Quote, Side, StrategyType, UnderlyingTick
from kit.core.pricing import greeks, implied_vol_near
from kit.engine.alerts import AlertConfig, AlertManager
from kit.engine.desk import Desk
from kit.risk.rules import load_rules

sys.path.insert(0, str(Path(__file__).parent))  # _stable, also when loaded by file path
from _stable import load, paired, verdict

EXPIRY = date(2024, 3, 15)
START = datetime(2024, 3, 12, 11, 0, tzinfo=NEW_YORK)
STRIKES = np.arange(4500.0, 5505.0, 5.0)


def _chain() -> list[Contract]:
    return [Contract("SPXW", EXPIRY, float(k), r) for k in STRIKES for r in ("P", "C")]


def _mid(c: Contract, spot: float) -> float:
    """A smooth, arbitrage-free-ish price: intrinsic plus time value decaying from the money."""
    intrinsic = max(spot - c.strike, 0.0) if c.is_call else max(c.strike - spot, 0.0)
    return round(intrinsic + 30.0 * np.exp(-abs(c.strike - spot) / 60.0) + 0.10, 2)


def _quote(c: Contract, spot: float, ts: int) -> Quote:
    mid = _mid(c, spot)
    half = max(0.05, 0.01 * mid)
    return Quote(c, round(mid - half, 2), round(mid + half, 2), 10, 10, ts)


def build_desk(n_positions: int) -> tuple[Desk, SimClock, list[Contract]]:
    clock = SimClock(START)
    alerts = AlertManager(clock, config=AlertConfig(cooldown_s=0))
    desk = Desk(clock, alerts=alerts, rules=load_rules())
    chain = _chain()
    now = clock.now_ns()
    desk.process([UnderlyingTick("SPX", 5000.0, now), UnderlyingTick("SPY", 500.0, now),
                  *(_quote(c, 5000.0, now) for c in chain)])  # fmt: skip
    rng = np.random.default_rng(0)
    for i in range(n_positions):
        width = int(rng.integers(10, 40)) * 5
        put, call = 5000.0 - width, 5000.0 + width
        legs = [Leg(Contract("SPXW", EXPIRY, put, "P"), -1),
                Leg(Contract("SPXW", EXPIRY, call, "C"), -1)]  # fmt: skip
        kind = StrategyType.STRANGLE
        if i % 2:
            kind = StrategyType.IRON_CONDOR
            legs += [Leg(Contract("SPXW", EXPIRY, put - 50, "P"), 1),
                     Leg(Contract("SPXW", EXPIRY, call + 50, "C"), 1)]  # fmt: skip
        pos = Position(f"P{i}", kind, tuple(legs), 1, now)
        fills = [Fill(f"P{i}-{j}", f"P{i}", leg.contract, Side.SELL if leg.ratio < 0 else Side.BUY,
                      1.0, _mid(leg.contract, 5000.0), now)
                 for j, leg in enumerate(legs)]  # fmt: skip
        desk.open_position(pos, fills)
    return desk, clock, chain


def stream(chain: list[Contract], n: int, seed: int = 1) -> list:
    """n events: SPX ticks (1 in 10) and quotes on random chain contracts, spot on a walk."""
    rng = np.random.default_rng(seed)
    spot = 5000.0 + np.cumsum(rng.normal(0, 0.3, n))
    pick = rng.integers(0, len(chain), n)
    ts0 = int(START.timestamp() * 1e9)
    out = []
    for i in range(n):
        ts = ts0 + i * 1_000_000
        if i % 10 == 0:
            out.append(UnderlyingTick("SPX", float(spot[i]), ts))
        else:
            out.append(_quote(chain[pick[i]], float(spot[i]), ts))
    return out


class Bare:
    """The anchor: the same ticks and book with nothing but the arithmetic.

    Quotes go into NumPy columns by a dict lookup, spots into one float; each batch then reprices
    the open legs (warm-started IV and Greeks with the desk's kernels), values every position
    and tests the first profit target (25% of credit). No validation, liquidity guard, book
    view, rules, de-duplication or records: what the desk adds over this is its overhead."""

    def __init__(self, desk: Desk) -> None:
        m, b = desk.market, desk.book
        self.index = dict(m.index)
        self.bid, self.ask, self.mark = m.bid.copy(), m.ask.copy(), m.mark.copy()
        self.spot = float(m.spot_of("SPX"))
        self.now = desk.clock.now_ns()
        live = b.leg_qty != 0
        self.rows, self.pos = b.leg_row[live], b.leg_pos[live]
        self.qty = b.leg_qty[live] * m.multiplier[self.rows]
        self.avg = b.leg_avg[live]
        self.credit = np.abs(np.bincount(self.pos, weights=-self.qty * self.avg))
        self.n = len(b.ids)
        self.K, self.is_call = m.strike[self.rows], m.is_call[self.rows]
        self.expiry, self.iv = m.expiry_ns[self.rows], m.iv[self.rows].copy()
        self.r, self.q = m.rate[self.rows], m.div_yield[self.rows]
        self.hit = np.zeros(self.n, dtype=bool)

    def process(self, events: list) -> list[int]:
        index, bid, ask, mark = self.index, self.bid, self.ask, self.mark
        for ev in events:
            if type(ev) is Quote:
                i = index[ev.contract]
                bid[i], ask[i] = ev.bid, ev.ask
                mark[i] = 0.5 * (ev.bid + ev.ask)
            else:
                self.spot = ev.price
            self.now = ev.ts_ns
        px = mark[self.rows]
        S = np.full(len(px), self.spot)
        T = (self.expiry - self.now) / (365 * 86_400e9)
        iv = implied_vol_near(px, S, self.K, T, self.r, self.q, self.is_call, self.iv)
        self.iv = np.where(np.isfinite(iv), iv, self.iv)
        greeks(S, self.K, T, self.r, self.q, self.iv, self.is_call)
        pnl = np.bincount(self.pos, weights=self.qty * (px - self.avg), minlength=self.n)
        hit = pnl >= 0.25 * self.credit
        new = np.flatnonzero(hit & ~self.hit)
        self.hit = hit
        return new.tolist()


def throughput(n_positions: int, batch: int, n_events: int = 60_000, bare: bool = False) -> float:
    desk, _, chain = build_desk(n_positions)
    events = stream(chain, n_events)
    proc = Bare(desk).process if bare else desk.process
    t0 = time.perf_counter()
    for i in range(0, n_events, batch):
        proc(events[i : i + batch])
    return n_events / (time.perf_counter() - t0)


def eval_ms(n_positions: int, repeats: int = 50) -> float:
    desk, clock, _ = build_desk(n_positions)
    times = []
    for _ in range(repeats):
        clock.advance(0.001)
        t0 = time.perf_counter()
        desk.evaluate()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def tick_to_alert(n_positions: int, repeats: int = 2000, bare: bool = False) -> tuple[float, float]:
    """A quote on position P0's short put that lifts its profit from 24.5% to 25.5% of credit
    (the first profit target), then one that takes it back: p50, p99 ms of the crossing ones."""
    desk, clock, _ = build_desk(n_positions)
    anchor = Bare(desk) if bare else None
    put = desk.book.positions["P0"].legs[0].contract
    call = desk.book.positions["P0"].legs[1].contract
    entry = _mid(put, 5000.0) + _mid(call, 5000.0)
    above, below = (entry * (1 - pct / 100) - _mid(call, 5000.0) for pct in (25.5, 24.5))
    proc = desk.process if anchor is None else anchor.process
    lat, fired = [], 0
    for i in range(repeats):
        clock.advance(0.001)
        mid = above if i % 2 == 0 else below
        q = Quote(put, round(mid * 0.99, 2), round(mid * 1.01, 2), 10, 10, clock.now_ns())
        t0 = time.perf_counter_ns()
        emitted = proc([q])
        dt = time.perf_counter_ns() - t0
        if i % 2 == 0:
            if anchor is None:
                fired += any(r.alert.rule == "profit_target" for r in emitted)
            else:
                fired += 0 in emitted
            lat.append(dt)
    if fired < len(lat):
        raise SystemExit(f"only {fired} of {len(lat)} crossing ticks raised the alert")
    return float(np.percentile(lat, 50) / 1e6), float(np.percentile(lat, 99) / 1e6)


TARGETS = {"tick_to_alert_p99_ms": 0.5, "ticks_per_s_50": 500_000.0, "eval_ms_500": 5.0}


def main() -> None:
    gc.freeze()  # as `kit run` does once started: start-up objects leave the collector's scans
    print(f"desk benchmark: {load()}")
    rows: dict[str, float] = {}
    for b in (1, 16, 64, 256):  # an evaluation per batch: fewer events where batches are small
        rows[f"ticks_per_s_50_batch_{b}"] = throughput(50, b, n_events=min(60_000, 400 * b))
    tp, tp_bare, tp_ratio = paired(
        lambda: throughput(50, 4096), lambda: throughput(50, 4096, bare=True)
    )
    rows["ticks_per_s_50_batch_4096"] = tp.median
    rows["ticks_per_s_500_batch_4096"] = throughput(500, 4096)
    rows["eval_ms_50"] = eval_ms(50)
    rows["eval_ms_500"] = eval_ms(500)
    p50s: dict[bool, list[float]] = {False: [], True: []}

    def alert_p99(bare: bool) -> float:
        p50, p99 = tick_to_alert(50, bare=bare)
        p50s[bare].append(p50)
        return p99

    lat, lat_bare, lat_ratio = paired(lambda: alert_p99(False), lambda: alert_p99(True),
                                      higher_is_better=False)  # fmt: skip
    rows["tick_to_alert_p50_ms"] = float(np.median(p50s[False]))
    rows["tick_to_alert_p99_ms"] = lat.median
    rows["ticks_per_s_50"] = rows["ticks_per_s_50_batch_4096"]
    rows["bare_ticks_per_s_50"] = tp_bare.median
    rows["ticks_per_s_50_ratio"] = tp_ratio.median
    rows["bare_tick_to_alert_p50_ms"] = float(np.median(p50s[True]))
    rows["bare_tick_to_alert_p99_ms"] = lat_bare.median
    rows["tick_to_alert_p99_ratio"] = lat_ratio.median
    rows["ticks_per_s_50_spread_pct"] = tp.spread_pct
    rows["tick_to_alert_p99_spread_pct"] = lat.spread_pct
    print("\nratios first (desk vs the bare loop, same process, same ticks):")
    print(f"  ticks/s, 50 positions, batches of 4096: desk/bare {tp_ratio.show('.3f')}")
    print(f"  tick-to-alert p99, 50 positions: bare/desk {lat_ratio.show('.3f')}")
    print("absolute (median, spread over the runs):")
    print(f"  desk ticks/s {tp.show()}")
    print(f"  bare ticks/s {tp_bare.show()}")
    print(f"  desk tick-to-alert p99 ms {lat.show('.3f')}")
    print(f"  bare tick-to-alert p99 ms {lat_bare.show('.3f')}")
    print()
    for k, v in rows.items():
        print(f"{k:32s} {v:14,.3f}")
    t = TARGETS
    print(verdict("tick-to-alert p99 < 0.5 ms (50 positions)",
                  lat.median < t["tick_to_alert_p99_ms"],
                  f"{lat.median:.3f} ms, ratio {lat_ratio.median:.2f}"))  # fmt: skip
    print(verdict("batched >= 500k ticks/s (50 positions)", tp.median >= t["ticks_per_s_50"],
                  f"{tp.median:,.0f}/s, ratio {tp_ratio.median:.2f}"))  # fmt: skip
    print(verdict("full evaluation, 500 positions < 5 ms", rows["eval_ms_500"] < t["eval_ms_500"],
                  f"{rows['eval_ms_500']:.3f} ms"))  # fmt: skip
    print(json.dumps({k: round(v, 4) for k, v in rows.items()}))


if __name__ == "__main__":
    main()

"""Desk throughput and latency: events -> market state -> book -> rules -> alerts, in process.

A book of 50 (and 500) short strangles and iron condors on one SPXW expiry, a stream of quotes
on their legs and on the rest of the chain plus SPX ticks, fed through ``Desk.process`` the way
the feed pump does: in batches of whatever arrived since the last evaluation. Throughput is
reported per batch size (1 = an idle desk evaluating after every tick; the pump's batch grows
with the arrival rate). Full re-evaluation is one ``Desk.evaluate`` (reprice the open legs,
revalue the book, run every rule). Tick-to-alert is one tick that crosses a threshold, from
``process`` to the emitted alert. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import json
import time
from datetime import date, datetime

import numpy as np

from kit.core.clock import NEW_YORK, SimClock
from kit.core.model import Contract, Fill, Leg, Position, Quote, Side, StrategyType, UnderlyingTick
from kit.engine.alerts import AlertConfig, AlertManager
from kit.engine.desk import Desk
from kit.risk.rules import load_rules

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


def throughput(n_positions: int, batch: int, n_events: int = 60_000) -> float:
    desk, _, chain = build_desk(n_positions)
    events = stream(chain, n_events)
    t0 = time.perf_counter()
    for i in range(0, n_events, batch):
        desk.process(events[i : i + batch])
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


def tick_to_alert(n_positions: int, repeats: int = 2000) -> tuple[float, float]:
    """A quote on position P0's short put that lifts its profit from 24.5% to 25.5% of credit
    (the first profit target), then one that takes it back: p50, p99 ms of the crossing ones."""
    desk, clock, _ = build_desk(n_positions)
    put = desk.book.positions["P0"].legs[0].contract
    call = desk.book.positions["P0"].legs[1].contract
    entry = _mid(put, 5000.0) + _mid(call, 5000.0)
    above, below = (entry * (1 - pct / 100) - _mid(call, 5000.0) for pct in (25.5, 24.5))
    lat, fired = [], 0
    for i in range(repeats):
        clock.advance(0.001)
        mid = above if i % 2 == 0 else below
        q = Quote(put, round(mid * 0.99, 2), round(mid * 1.01, 2), 10, 10, clock.now_ns())
        t0 = time.perf_counter_ns()
        emitted = desk.process([q])
        dt = time.perf_counter_ns() - t0
        if i % 2 == 0:
            fired += any(r.alert.rule == "profit_target" for r in emitted)
            lat.append(dt)
    if fired < len(lat):
        raise SystemExit(f"only {fired} of {len(lat)} crossing ticks raised the alert")
    return float(np.percentile(lat, 50) / 1e6), float(np.percentile(lat, 99) / 1e6)


def main() -> None:
    rows = {f"ticks_per_s_50_batch_{b}": throughput(50, b) for b in (1, 16, 64, 256, 4096)}
    rows["ticks_per_s_500_batch_4096"] = throughput(500, 4096)
    rows["eval_ms_50"] = eval_ms(50)
    rows["eval_ms_500"] = eval_ms(500)
    p50, p99 = tick_to_alert(50)
    rows["tick_to_alert_p50_ms"], rows["tick_to_alert_p99_ms"] = p50, p99
    rows["ticks_per_s_50"] = rows["ticks_per_s_50_batch_4096"]
    for k, v in rows.items():
        print(f"{k:32s} {v:14,.3f}")
    print(json.dumps({k: round(v, 4) for k, v in rows.items()}))


if __name__ == "__main__":
    main()

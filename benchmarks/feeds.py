"""Feed throughput and latency: emulator -> ThetaData adapter -> normalised events.

The emulator runs in its own process (the sender must not share the adapter's core) and blasts
valid QUOTE frames over the real WebSocket; the adapter decodes, validates, de-duplicates and
delivers them as Quote events in this process, on one core. Throughput is quotes delivered per
second with the sender flat out; latency is send -> event delivered (system-wide monotonic clock)
with the sender paced at a fixed rate. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import time
from datetime import datetime

import msgspec
import numpy as np

from kit.adapters.base import FeedConfig
from kit.adapters.thetadata.config import ThetaDataConfig
from kit.adapters.thetadata.feed import ThetaDataFeed
from kit.core.clock import NEW_YORK, SimClock
from kit.core.model import Contract, Quote

CONTRACT = Contract("SPXW", datetime(2024, 1, 19).date(), 99_995, "C")  # not listed: no sim noise
OPEN_MS = 34_200_000  # 09:30 New York in ms of day


def frames(n: int) -> list[bytes]:
    """n valid, distinct QUOTE frames, one millisecond apart."""
    c = {"security_type": "OPTION", "root": "SPXW", "expiration": 20240119, "strike": 99_995_000,
         "right": "C"}  # fmt: skip
    return [msgspec.json.encode({
        "header": {"type": "QUOTE", "status": "CONNECTED"}, "contract": c,
        "quote": {"ms_of_day": OPEN_MS + i, "bid_size": 10, "bid_exchange": 5,
                  "bid": 1.0 + (i % 100) / 100, "bid_condition": 50, "ask_size": 12,
                  "ask_exchange": 5, "ask": 1.1 + (i % 100) / 100, "ask_condition": 50,
                  "date": 20240119},
    }) for i in range(n)]  # fmt: skip


def sender(pipe) -> None:
    """Child process: a ThetaData emulator that blasts frames on command."""
    from kit.adapters.thetadata.emulator import ThetaDataEmulator

    async def main() -> None:
        clock = SimClock(datetime(2024, 1, 19, 10, tzinfo=NEW_YORK), speed=1.0)
        async with ThetaDataEmulator(clock=clock) as emu:
            pipe.send((emu.rest_port, emu.ws_port))
            loop = asyncio.get_running_loop()
            while True:
                cmd = await loop.run_in_executor(None, pipe.recv)
                if cmd[0] == "stop":
                    return
                _, n, rate = cmd
                payload = frames(n)
                while emu._conn is None:
                    await asyncio.sleep(0.01)
                pipe.send(await emu.blast(payload, rate))

    asyncio.run(main())


async def run(
    ports: tuple[int, int], pipe, n: int, rate: float | None
) -> tuple[list[int], list[int]]:
    """Connect the adapter, have the child send ``n`` frames, record delivery times."""
    rest_port, ws_port = ports
    feed = ThetaDataFeed(
        ThetaDataConfig(rest_port=rest_port, ws_port=ws_port),
        feed_config=FeedConfig(liveness_timeout_s=30.0),
    )
    await feed.subscribe([CONTRACT])
    received: list[int] = []
    async with feed:
        loop = asyncio.get_running_loop()
        pipe.send(("blast", n, rate))
        sent_future = loop.run_in_executor(None, pipe.recv)
        async for ev in feed:
            if isinstance(ev, Quote):
                received.append(time.monotonic_ns())
                if len(received) == n:
                    break
        sent = await sent_future
    return sent, received


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=300_000, help="frames for the throughput run")
    p.add_argument("--rate", type=float, default=5_000.0, help="quotes/s for the latency run")
    p.add_argument("--seconds", type=float, default=4.0, help="length of the latency run")
    args = p.parse_args()
    if args.n < 1000 or args.rate <= 0 or args.seconds <= 0:
        p.error("--n >= 1000, --rate > 0 and --seconds > 0 please")
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=sender, args=(child,), daemon=True)
    proc.start()
    ports = parent.recv()
    print(
        f"feeds benchmark: emulator (own process) -> ThetaData adapter, {args.n:,} quotes "
        f"flat out, then {args.rate:,.0f} quotes/s for {args.seconds:g}s"
    )
    try:
        sent, recv = asyncio.run(run(ports, parent, args.n, None))
        throughput = (len(recv) - 1) / ((recv[-1] - recv[0]) / 1e9)
        send_rate = (len(sent) - 1) / ((sent[-1] - sent[0]) / 1e9)
        n_lat = int(args.rate * args.seconds)
        sent, recv = asyncio.run(run(ports, parent, n_lat, args.rate))
        lat_ms = (np.array(recv) - np.array(sent)) / 1e6
    finally:
        parent.send(("stop",))
        proc.join(timeout=5)
    out = {
        "quotes_per_s": throughput,
        "sender_frames_per_s": send_rate,
        "latency_rate_per_s": args.rate,
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "max_ms": float(lat_ms.max()),
    }
    print(f"\n{'measure':<36} {'value':>14}")
    print(f"{'sustained quotes/s through adapter':<36} {throughput:>14,.0f}   (target >= 100,000)")
    print(f"{'sender frames/s (other process)':<36} {send_rate:>14,.0f}")
    at = f"at {args.rate:,.0f}/s"
    print(f"{'latency p50 ' + at:<36} {out['p50_ms']:>11.3f} ms")
    print(f"{'latency p99 ' + at:<36} {out['p99_ms']:>11.3f} ms   (target < 2 ms)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

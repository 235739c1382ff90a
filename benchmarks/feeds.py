"""Feed throughput and latency: emulator -> ThetaData adapter -> normalised events.

The emulator runs in its own process (the sender must not share the adapter's core) and blasts
valid QUOTE frames over the real WebSocket; the adapter decodes, validates, de-duplicates and
delivers them as Quote events in this process, on one core. Throughput is quotes delivered per
second with the sender flat out; latency is send -> event delivered (system-wide monotonic clock)
with the sender paced at a fixed rate.

The anchor (issue 27), in the same process and interleaved with the adapter's runs: a bare
``websockets`` client on the same emulator, receiving the same frames and decoding each with the
adapter's own msgspec decoder (``parsing.decode_frame``), nothing else. ``quotes_per_s_ratio`` is
adapter / bare, the median of the pairs, repeated until it is stable (spread printed).

Both sides can run close to the sender on two shared cores, where the socket ratio says
little about the adapter's own cost. ``in_process_ratio`` does: the decode alone / the
adapter's whole path from bytes to a delivered ``Quote``, per frame, in this process with no
socket. Prints a table, the targets met or missed and, last, one JSON line (keys
``quotes_per_s``, ``p99_ms`` kept).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import time
from datetime import datetime
from pathlib import Path

import msgspec
import numpy as np

from kit.adapters.base import FeedConfig
from kit.adapters.thetadata.config import ThetaDataConfig
from kit.adapters.thetadata.feed import ThetaDataFeed
from kit.adapters.thetadata.parsing import decode_frame
from kit.core.clock import NEW_YORK, SimClock
from kit.core.model import Contract, Quote

sys.path.insert(0, str(Path(__file__).parent))  # _stable, also when loaded by file path
from _stable import load, paired, verdict

CONTRACT = Contract("SPXW", datetime(2024, 1, 19).date(), 99_995, "C")  # not listed: no sim noise
OPEN_MS = 34_200_000  # 09:30 New York in ms of day
TARGETS = {"ratio": 0.80, "quotes_per_s": 150_000.0, "p99_ms": 1.0}


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
    # the frames are stamped 2024-01-19 from 09:30: a clock just after them keeps every one
    # inside the adapter's sane window (a live clock would refuse them all)
    feed = ThetaDataFeed(
        ThetaDataConfig(rest_port=rest_port, ws_port=ws_port),
        clock=SimClock(datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK), speed=1.0),
        feed_config=FeedConfig(liveness_timeout_s=30.0),
    )
    await feed.subscribe([CONTRACT])
    received: list[int] = []
    async with feed:
        loop = asyncio.get_running_loop()
        pipe.send(("blast", n, rate))
        sent_future = loop.run_in_executor(None, pipe.recv)
        async for ev in feed:  # consumed as the desk's pump does: one await, then a drain
            while ev is not None:
                if isinstance(ev, Quote):
                    received.append(time.monotonic_ns())
                ev = feed.get_nowait() if len(received) < n else None
            if len(received) == n:
                break
        sent = await sent_future
    return sent, received


async def run_bare(ports: tuple[int, int], pipe, n: int) -> tuple[list[int], list[int]]:
    """The anchor: a bare websockets client takes the same ``n`` frames and decodes each."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    url = f"ws://127.0.0.1:{ports[1]}/v1/events"
    received: list[int] = []
    while True:  # the adapter's connection may still be closing on the emulator's side
        async with connect(url, compression=None, max_size=2**20, ping_interval=None) as ws:
            loop = asyncio.get_running_loop()
            try:
                first = await asyncio.wait_for(ws.recv(), 0.2)
            except TimeoutError:
                first = None  # accepted, nothing sent yet
            except ConnectionClosed:
                await asyncio.sleep(0.05)
                continue
            pipe.send(("blast", n, None))
            sent_future = loop.run_in_executor(None, pipe.recv)
            if first is not None and decode_frame(first).header.type == "QUOTE":
                received.append(time.monotonic_ns())
            async for message in ws:
                if decode_frame(message).header.type == "QUOTE":
                    received.append(time.monotonic_ns())
                    if len(received) == n:
                        break
            return await sent_future, received


def in_process(n: int = 50_000, batch: int = 64) -> tuple[float, float]:
    """The adapter's own path without a socket or a sender: ns per frame from bytes to a
    delivered ``Quote`` (each frame through ``_on_frame`` as the live connection hands them
    over, drained every ``batch`` frames as the desk's pump drains), and ns per frame for the
    anchor's decode alone. Neither side waits on the other process, so this ratio is the one
    the sender cannot cap."""
    payload = frames(n)
    feed = ThetaDataFeed(
        ThetaDataConfig(rest_port=1, ws_port=1),  # never connected
        clock=SimClock(datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK), speed=1.0),
        feed_config=FeedConfig(liveness_timeout_s=30.0),
    )
    feed._conn = object()  # "connected": the silence check runs as it does live
    feed._last_frame_ns = feed.clock.now_ns()
    t0 = time.perf_counter_ns()
    got = 0
    on_frame = feed._on_frame
    for i in range(0, n, batch):
        for m in payload[i : i + batch]:
            on_frame(m)
        while (ev := feed.get_nowait()) is not None:
            got += type(ev) is Quote
    t1 = time.perf_counter_ns()
    for m in payload:
        if decode_frame(m).header.type == "QUOTE":
            pass
    t2 = time.perf_counter_ns()
    assert got == n, got
    return (t1 - t0) / n, (t2 - t1) / n


def rate_of(times: list[int]) -> float:
    return (len(times) - 1) / ((times[-1] - times[0]) / 1e9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200_000, help="frames per throughput run")
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
        f"flat out beside a bare websockets client, then {args.rate:,.0f} quotes/s for "
        f"{args.seconds:g}s; {load()}"
    )
    send_rates: list[float] = []

    def adapter() -> float:
        sent, recv = asyncio.run(run(ports, parent, args.n, None))
        send_rates.append(rate_of(sent))
        return rate_of(recv)

    def bare() -> float:
        return rate_of(asyncio.run(run_bare(ports, parent, args.n))[1])

    costs: list[tuple[float, float]] = []

    def decode() -> float:  # paired() runs the anchor first: one call measures both
        costs.append(in_process())
        return costs[-1][1]

    def path() -> float:
        return costs[-1][0]

    try:
        ns, ns_decode, path_ratio = paired(path, decode, higher_is_better=False, tol=0.03)
        tp, tp_bare, ratio = paired(adapter, bare, min_runs=5, max_runs=11, tol=0.03)
        throughput, send_rate = tp.median, float(np.median(send_rates))
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
        "bare_quotes_per_s": tp_bare.median,
        "quotes_per_s_ratio": ratio.median,
        "quotes_per_s_ratio_spread_pct": ratio.spread_pct,
        "ratio_runs": len(ratio.values),
        "in_process_ns_per_frame": ns.median,
        "in_process_decode_ns_per_frame": ns_decode.median,
        "in_process_ratio": path_ratio.median,
    }
    print("\nratio first (adapter vs a bare websockets client decoding the same frames):")
    print(f"  adapter / bare {ratio.show('.3f')}")
    print(f"  adapter quotes/s {tp.show()}")
    print(f"  bare quotes/s    {tp_bare.show()}")
    print("in process, no socket and no sender (decode alone / the adapter's path per frame):")
    print(f"  decode / path {path_ratio.show('.3f')}")
    print(f"  path ns/frame   {ns.show()}")
    print(f"  decode ns/frame {ns_decode.show()}")
    print(f"\n{'measure':<36} {'value':>14}")
    print(f"{'sustained quotes/s through adapter':<36} {throughput:>14,.0f}")
    print(f"{'sender frames/s (other process)':<36} {send_rate:>14,.0f}")
    at = f"at {args.rate:,.0f}/s"
    print(f"{'latency p50 ' + at:<36} {out['p50_ms']:>11.3f} ms")
    print(f"{'latency p99 ' + at:<36} {out['p99_ms']:>11.3f} ms\n")
    t = TARGETS
    print(verdict(f"adapter >= {t['ratio']:.0%} of bare websockets", ratio.median >= t["ratio"],
                  f"ratio {ratio.median:.3f}, {throughput:,.0f} quotes/s (quiet machine: "
                  f">= {t['quotes_per_s']:,.0f})"))  # fmt: skip
    print(verdict(f"p99 < {t['p99_ms']:g} ms at {args.rate:,.0f}/s", out["p99_ms"] < t["p99_ms"],
                  f"{out['p99_ms']:.3f} ms"))  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()

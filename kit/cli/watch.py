"""``kit watch``: the alert-only desk (market context, grid-driven opportunities, manual
positions' exits); it never constructs a broker. See :mod:`kit.app.watch`."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kit.cli.args import clock_time, count, port, positive


def _at(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not YYYY-MM-DDTHH:MM: {text!r}") from None


def add_watch_parser(sub: Any) -> None:
    """Register ``watch`` on the ``kit`` command's subparsers."""
    s = sub.add_parser("watch", help="alert-only mode: market context, grid opportunities and "
                       "manual positions' exits; never trades")  # fmt: skip
    s.add_argument("--underlying", choices=["SPX", "NDX"], default="SPX")
    s.add_argument("--trend", choices=["up", "down", "sideways", "auto"], default="auto",
                   help="the trend the scanner matches configs' trend filters against; auto: "
                   "only configs without a trend filter")  # fmt: skip
    s.add_argument("--grid", help="kit backtest grid --out directory (its results.parquet)")
    s.add_argument("--history", help="options history (kit history build) for --trend auto and "
                   "P-band strikes (default: DIR/history beside --grid, if there)")  # fmt: skip
    s.add_argument("--config", help="TOML with a [watch] table (README: Alert-only watch)")
    s.add_argument("--scan-interval", type=positive, help="seconds between scans (default 300)")
    s.add_argument("--top", type=count, help="opportunities alerted per scan (default 5)")
    s.add_argument("--feed", default="sim", help="sim (default) | replay:PATH | thetadata")
    s.add_argument("--rules", help="risk rules TOML: exits and limits (default: the desk's)")
    s.add_argument("--db", help="record alerts in this store (DuckDB path or postgresql:// URL)")
    s.add_argument("--file", type=Path, help="manual positions journal (default "
                   "KIT_MANUAL_POSITIONS or data/manual_positions.json)")  # fmt: skip
    s.add_argument("--at", type=_at, help="simulator: start at YYYY-MM-DDTHH:MM New York time")
    s.add_argument("--seed", type=int, help="simulator: the seeded market")
    s.add_argument("--speed", type=positive, default=1.0,
                   help="simulator: market seconds per wall second (default 1)")  # fmt: skip
    s.add_argument("--until", type=clock_time, help="stop at this New York time (HH:MM)")
    s.add_argument("--once", action="store_true", help="one context pass and one scan, then exit")
    s.add_argument("--json", action="store_true", help="with --once: print one JSON object")
    s.add_argument("--no-dashboard", action="store_true", help="do not start the Voila page")
    s.add_argument("--port", type=port, default=8868, help="dashboard port (default 8868)")
    s.add_argument("--service-port", type=port, default=8766, help="the loopback gateway the "
                   "page follows (default 8766; 0: any free port)")  # fmt: skip
    s.set_defaults(func=cmd_watch)


def _spec(args: argparse.Namespace) -> Any:
    from kit.app.watch import WatchSpec
    from kit.app.watch_config import check, load_config
    from kit.core.clock import NEW_YORK

    cfg = load_config(args.config)
    if args.scan_interval is not None:
        cfg = replace(cfg, scan_interval_s=args.scan_interval)
    if args.top is not None:
        cfg = replace(cfg, top_n=args.top)
    check(cfg)
    sim: dict[str, Any] = {}
    if args.at is not None:
        if args.feed != "sim":
            raise ValueError("--at picks a simulated time: use it with --feed sim")
        at = args.at if args.at.tzinfo else args.at.replace(tzinfo=NEW_YORK)
        at = at.astimezone(NEW_YORK)
        sim = {"day": at.date(), "start": at.time().replace(second=0, microsecond=0)}
    grid = args.grid
    if grid is None:  # out of the box: a simulated history's grid, built on first run
        from kit.app.build import DEFAULT_DAY
        from kit.app.watch_grid import ensure_grid

        before = sim.get(
            "day", DEFAULT_DAY if args.feed == "sim" else datetime.now(NEW_YORK).date()
        )
        grid = str(ensure_grid(args.underlying, before, progress="off" if args.json else "auto"))
    return WatchSpec(underlying=args.underlying, trend=args.trend, grid=grid, history=args.history,
                     config=cfg,
                     feed=args.feed, rules=args.rules, db=args.db, seed=args.seed,
                     speed=None if args.once else args.speed, manual=args.file,
                     **sim)  # fmt: skip


def _line(doc: dict[str, Any]) -> str:
    c = doc["context"]
    head = (f"{c.get('underlying')} {c.get('price') or 0:.2f} ({c.get('change_pct') or 0:+.2f}%)  "
            f"VIX {c.get('vix')} "
            f"{c.get('regime')}  IV rank {c.get('iv_rank') or 0:.0f}  "
            f"gamma {c.get('gamma_regime')}  "
            f"market {'open' if c.get('market_open') else 'closed'}")  # fmt: skip
    rows = [f"  #{o['config_id']} {o['strategy']} {o['expiry']} "
            + "/".join(f"{leg['strike']:g}" for leg in o["legs"])
            + f" credit {o['credit']:.2f} (nat {o['credit_natural']:.2f}) risk "
            f"${o['max_risk']:,.0f} win {o['win_rate'] or 0:.1f}% score {o['score'] or 0:.1f}"
            f"{'' if o['in_entry_window'] else ' (not in entry window)'}"
            for o in doc["opportunities"]]  # fmt: skip
    why = [f"  no opportunity: {r}" for r in doc["reasons"]]
    return "\n".join([head, *rows, *why])


def cmd_watch(args: argparse.Namespace) -> int:
    from kit.app.watch import Watch

    spec = _spec(args)
    if args.once:
        doc = asyncio.run(_once(Watch(spec)))
        print(json.dumps(doc, default=str) if args.json else _line(doc))
        return 0
    from kit.sinks.console import ConsoleSink

    watch = Watch(replace(spec, sinks=(ConsoleSink(),)))
    ports = None if args.no_dashboard else (args.port, args.service_port)
    asyncio.run(_forever(watch, args.until, ports))
    return 0


async def _once(watch: Any) -> dict[str, Any]:
    try:
        await watch.start()
        return await watch.once()
    finally:
        await watch.close()


async def _forever(watch: Any, until: Any, ports: tuple[int, int] | None) -> None:
    """Run the loops until ``until`` or Ctrl-C; with ``ports`` (page, gateway) the state is
    served on the gateway first and Voila started on the page, pointed at the gateway's real
    port; Voila stops before the watch (its kernels leave the gateway first)."""
    from kit.core.clock import NEW_YORK

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    voila = None
    try:
        await watch.start()
        if ports is not None:
            try:
                gateway = await watch.serve(ports[1])
            except OSError as exc:
                raise ValueError(f"--service-port {ports[1]}: cannot listen on 127.0.0.1 "
                                 f"({exc.strerror or exc})") from None  # fmt: skip
            voila = _dashboard(ports[0], f"ws://127.0.0.1:{gateway.port}")
        watch.start_loops()
        now = watch.clock.now().astimezone(NEW_YORK)
        print(f"kit watch: alert-only {watch.spec.underlying} on {watch.spec.feed} from "
              f"{now:%Y-%m-%d %H:%M} New York; no broker; Ctrl-C stops", flush=True)  # fmt: skip
        if until is None:
            await stop.wait()
            return
        end = now.replace(hour=until.hour, minute=until.minute, second=0, microsecond=0)
        while watch.clock.now() < end and not stop.is_set():
            left = (end - watch.clock.now()) / timedelta(seconds=1)
            speed = watch.clock.speed or 1.0
            await asyncio.wait([asyncio.ensure_future(stop.wait())], timeout=min(1.0, left / speed))
    finally:
        if voila is not None:
            voila.send_signal(signal.SIGINT)
            voila.wait(15)
        await watch.close()
        print("kit watch: stopped", flush=True)


def _dashboard(port_: int, url: str) -> subprocess.Popen:
    """Voila on notebooks/scanner.ipynb, its kernels attached to the watch's gateway at ``url``."""
    from kit.app.launch import voila

    proc = voila("notebooks/scanner.ipynb", port_, KIT_WATCH_URL=url)
    print(f"kit watch: dashboard http://127.0.0.1:{port_}/", flush=True)
    return proc

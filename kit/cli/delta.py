"""``kit delta run``: the daily BTC/ETH short strangle (``kit emulate delta``: kit.cli.emulate).

The trader itself is :mod:`kit.app.delta_trader`; this module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any


def add_delta_parser(sub: Any) -> None:
    """``kit delta run``: the daily BTC/ETH short strangle on Delta Exchange."""
    p = sub.add_parser("delta", help="Delta Exchange BTC/ETH options: the daily short strangle")
    dsub = p.add_subparsers(dest="delta_command", required=True, metavar="ACTION")
    s = dsub.add_parser("run", help="check, select, enter, manage and exit one day's strangle")
    s.add_argument("--underlying", choices=["BTC", "ETH"], help="coin (default BTC, or preset)")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", dest="live", action="store_false", default=False,
                      help="paper orders against Delta's quotes (the default)")  # fmt: skip
    mode.add_argument("--live", dest="live", action="store_true", help="real orders: needs "
                      "KIT_LIVE_TRADING=yes and --confirm-live DELTA_API_KEY")  # fmt: skip
    s.add_argument("--confirm-live", metavar="API_KEY", help="the DELTA_API_KEY, confirming --live")
    s.add_argument("--preset", help="TOML file of trader settings (see README)")
    s.add_argument("--feed", choices=["delta", "rest"], default="delta",
                   help="legs engine: marks from the socket (delta, default) or REST polling "
                   "only (the desk engine always reads the socket)")  # fmt: skip
    s.add_argument("--engine", choices=["desk", "legs"], default="desk",
                   help="desk (default): the desk's order manager works the strangle and its "
                   "risk rules watch it, as for the index strangles; legs: the trader works "
                   "each leg itself")  # fmt: skip
    s.add_argument("--once", action="store_true", help="check and select, print, trade nothing")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--log-dir", help="logs, status.json, STOP and saved state (default "
                   "$KIT_DATA_DIR/delta)")  # fmt: skip
    s.add_argument("--db", help="keep progress and trade reports in this store (DuckDB file or "
                   "postgresql:// URL) instead of LOG_DIR/state")  # fmt: skip
    s.set_defaults(func=cmd_delta_run)
    s = dsub.add_parser("stop", help="ask a running trader to exit both legs and halt")
    s.add_argument("--log-dir", help="the trader's log directory (default $KIT_DATA_DIR/delta)")
    s.set_defaults(func=cmd_delta_stop)


def _log_dir(args: argparse.Namespace) -> Path:
    from kit.core.config import data_dir

    return Path(args.log_dir) if args.log_dir else data_dir() / "delta"


def cmd_delta_stop(args: argparse.Namespace) -> int:
    path = _log_dir(args)
    path.mkdir(parents=True, exist_ok=True)
    (path / "STOP").write_text("stop requested\n")
    print(json.dumps({"stop": str(path / "STOP")}))
    return 0


def cmd_delta_run(args: argparse.Namespace) -> int:
    from kit.adapters.delta.parsing import DeltaError
    from kit.app.delta_panel import PanelError
    from kit.app.delta_strategy import SettingsError
    from kit.app.delta_trader import TraderBlockedError

    if args.engine == "desk" and args.feed == "rest" and not args.once:
        raise ValueError("--feed rest is for --engine legs: the desk engine reads the socket")
    try:
        out = asyncio.run(_run(args))
    except (DeltaError, TraderBlockedError, SettingsError, PanelError) as exc:
        raise ValueError(str(exc)) from None
    print(json.dumps(out) if args.json else json.dumps(out, indent=2), flush=True)
    return 0


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    from kit.adapters.delta.client import DeltaClient
    from kit.adapters.delta.config import DeltaConfig
    from kit.adapters.delta.feed import DeltaFeed
    from kit.adapters.delta.wiring import probe
    from kit.adapters.paper.broker import PaperConfig
    from kit.app.delta_panel import acquire_lock, release_lock
    from kit.app.delta_strategy import TraderSettings
    from kit.app.delta_trader import DeltaTrader, StoreDocs, attach_logs, detach_logs
    from kit.core.clock import SimClock, from_ns
    from kit.execution.live import make_broker
    from kit.execution.state import JsonStateStore
    from kit.portfolio.market import MarketState

    settings = TraderSettings.load(args.preset, underlying=args.underlying)
    cfg = DeltaConfig.from_env()
    log_dir = _log_dir(args)
    handlers = attach_logs(log_dir)
    client = DeltaClient(cfg)
    feed, db, locked = None, None, False
    try:
        clock = SimClock(from_ns(await probe(client)), speed=1.0)  # the exchange's time
        if args.db:
            from kit.store.attach import open_desk_store

            db = open_desk_store(args.db)
            state: Any = StoreDocs(db)
        else:
            state = JsonStateStore(log_dir / "state")
        paper = PaperConfig(commission_by_root={"BTC": 0.03, "ETH": 0.01}, starting_cash=10_000.0)
        if args.engine == "desk" and not args.once:
            from kit.app.delta_desk import desk_trader

            acquire_lock(log_dir)
            locked = True
            trader, run = await desk_trader(settings, client, live=args.live,
                                            confirm=args.confirm_live, state=state,
                                            log_dir=log_dir, paper=paper)  # fmt: skip
            try:
                return await trader.run()
            finally:
                await run.close()
        market = MarketState()
        broker = make_broker(clock, market, live=args.live, broker="delta",
                             confirm=args.confirm_live, store=state, paper=paper)  # fmt: skip
        if args.live:
            await broker.connect()
        if args.feed == "delta" and not args.once:
            feed = DeltaFeed(cfg, clock=clock, client=client, owns_client=False)
            await feed.start()
        trader = DeltaTrader(settings, client, broker, clock=clock, state=state, log_dir=log_dir,
                             live=args.live, market=None if args.live else market,
                             feed=feed)  # fmt: skip
        if args.once:
            return await trader.once()
        acquire_lock(log_dir)  # one trader per log directory: two tabs never start two
        locked = True
        return await trader.run()
    finally:
        if locked:
            release_lock(log_dir)
        if feed is not None:
            await feed.close()
        close = getattr(locals().get("broker"), "close", None)
        if close is not None:
            await close()
        await client.aclose()
        if db is not None:
            db.close()
        detach_logs(handlers)

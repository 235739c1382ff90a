"""``kit`` / ``python -m kit``: the command line. Each command is a small function; errors in the
arguments exit with status 2 and a one-line message, never a traceback."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from kit import __version__
from kit.cli import args as args_
from kit.core import symbology
from kit.core.clock import expiry_time, time_to_expiry, us_session
from kit.core.config import ConfigError, Settings
from kit.core.model import ModelError
from kit.store.base import StoreError

PARSERS: dict[str, Callable[[str], object]] = {
    "occ": symbology.from_occ,
    "dxlink": symbology.from_dxlink,
    "delta": symbology.from_delta,
}


def _parse_symbol(text: str):
    """Try each vendor form in turn: the user should not have to say which one they pasted."""
    for parse in PARSERS.values():
        try:
            return parse(text)
        except ModelError:
            continue
    raise ModelError(f"{text!r} is not an OCC, DxLink or Delta Exchange option symbol")


def cmd_symbol(args: argparse.Namespace) -> int:
    c = _parse_symbol(args.symbol)
    out = {
        "root": c.root,
        "underlying": c.underlying,
        "expiry": c.expiry.isoformat(),
        "strike": c.strike,
        "right": c.right.value,
        "multiplier": c.multiplier,
        "expires_at": expiry_time(c).isoformat(),
    }
    if c.is_crypto:
        out["delta"] = symbology.to_delta(c)
    else:
        out |= {
            "occ": symbology.to_occ(c),
            "dxlink": symbology.to_dxlink(c),
            "thetadata": symbology.to_thetadata(c),
            "ibkr": symbology.to_ibkr(c),
        }
    if args.at:
        when = datetime.fromisoformat(args.at)
        if when.tzinfo is None:
            raise ModelError(f"--at {args.at!r}: include a UTC offset, e.g. 2024-01-19T15:00-05:00")
        out["years_to_expiry"] = time_to_expiry(c, when)
    print(json.dumps(out, indent=2))
    return 0


def cmd_session(args: argparse.Namespace) -> int:
    s = us_session(args.day)
    if s is None:
        print(json.dumps({"day": args.day.isoformat(), "open": None, "close": None}))
    else:
        print(
            json.dumps(
                {
                    "day": s.day.isoformat(),
                    "open": s.open.isoformat(),
                    "close": s.close.isoformat(),
                    "early_close": s.early_close,
                }
            )
        )
    return 0


def _feed(text: str) -> Any:
    from kit.app.build import FeedSpec

    try:
        return FeedSpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--feed {text!r}: ")) from None


def _venue_args(s: argparse.ArgumentParser) -> None:
    """The same feed and broker flags on `kit serve`, `kit run` and `kit monitor`."""
    s.add_argument("--feed", type=_feed, default="sim", help="market data: sim (default), "
                   "replay:PATH (a recorded .parquet day), thetadata (a ThetaData Terminal "
                   "at THETADATA_HOST/THETADATA_REST_PORT/THETADATA_WS_PORT) or delta (Delta "
                   "Exchange BTC/ETH options, DELTA_TESTNET/DELTA_BASE_URL) or tastytrade "
                   "(DXLink, TT_SECRET/TT_REFRESH, TT_API_URL or TT_SANDBOX) or ibkr (TWS / IB "
                   "Gateway at IBKR_HOST/IBKR_PORT/IBKR_CLIENT_ID) or ibkr-cpapi (the Client "
                   "Portal gateway at IBKR_CPAPI_URL, IBKR_ACCOUNT_ID)")  # fmt: skip
    s.add_argument("--broker", choices=["paper", "ibkr-cpapi", "delta", "tastytrade", "ibkr"],
                   default="paper", help="paper (default: fills against the feed's quotes), "
                   "ibkr-cpapi, delta, tastytrade or ibkr (live: needs KIT_LIVE_TRADING=yes and "
                   "--confirm-live ACCOUNT, for delta the DELTA_API_KEY, for tastytrade "
                   "TT_ACCOUNT)")  # fmt: skip
    s.add_argument("--confirm-live", metavar="ACCOUNT", help="the IBKR account id, confirming "
                   "live trading with --broker ibkr-cpapi")  # fmt: skip


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from kit.core.config import env
    from kit.engine.records import record_to_json
    from kit.risk.rules import load_rules
    from kit.sinks.console import ConsoleSink

    rules = load_rules(args.rules or env("KIT_RULES"))
    speed = args.speed or None

    def emit(doc: dict) -> None:
        print(json.dumps(doc), flush=True)

    sinks = [] if args.jsonl else [ConsoleSink()]
    # Start-up objects (modules, rule tables) live as long as the process: keep them out of the
    # collector's full scans, which otherwise stall the event loop for tens of milliseconds.
    gc.freeze()
    if args.broker != "paper":
        raise ValueError("kit run trades on paper (--broker paper); a live broker runs under "
                         "kit serve")  # fmt: skip
    if args.auto:
        from kit.app.autopilot import AUTO_SEED, run_auto
        from kit.execution.state import JsonStateStore

        store = JsonStateStore(args.state) if args.state else None
        config = None
        if args.strategy is not None:  # a config backtested with kit backtest run, traded
            from kit.research.backtest import BacktestConfig

            picked = BacktestConfig.from_toml(args.strategy).for_live()
            rules, config = picked.rules(), picked.auto()
        result = asyncio.run(run_auto(
            day=args.date, seed=AUTO_SEED if args.seed is None else args.seed, speed=speed,
            rules=rules, config=config, script=args.script or (), store=store, db=args.db,
            start=args.start, sinks=sinks, feed=args.feed,
            emit=emit if args.jsonl else None,
        ))  # fmt: skip
        if not args.jsonl:
            emit(result.summary)
        return 0
    if args.strategy is not None:
        raise ValueError("--strategy FILE trades a backtest config under --auto")
    if args.feed.kind != "sim":
        from kit.app.replay import watch

        out = asyncio.run(watch(args.feed, rules=rules, sinks=sinks, speed=speed, db=args.db,
                                listener=(lambda e: emit(record_to_json(e))) if args.jsonl
                                else None))  # fmt: skip
        emit(out)
        return 0
    from kit.app.scenarios import run

    if args.script is None:
        raise ValueError("give --script NAME, or --auto for an auto-managed session")
    out = asyncio.run(
        run(args.script, sinks=sinks, speed=speed, seed=args.seed or 0, day=args.date,
            demo=not args.no_demo, rules=rules, auto_manage=False, db=args.db,
            listener=(lambda e: emit(record_to_json(e))) if args.jsonl else None)
    )  # fmt: skip
    counts: dict[str, int] = {}
    for record in out.alerts:
        counts[record.alert.rule] = counts.get(record.alert.rule, 0) + 1
    emit({
        "kind": "summary", "scenario": args.script, "alerts": counts,
        "positions": [
            {k: p[k] for k in ("id", "pnl", "pnl_pct", "delta_unit", "gamma_unit", "spot")}
            for p in out.snapshot.positions
        ],
        "events": out.desk_stats["events"],
    })  # fmt: skip
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The desk service on the simulated market until Ctrl-C (see kit/app/service.py)."""
    import asyncio

    from kit.app.service import ServiceConfig, serve_forever
    from kit.remote.gateway import GatewayConfig

    config = ServiceConfig(
        gateway=GatewayConfig(port=args.port), day=args.date, start=args.start,
        speed=args.speed, seed=args.seed, demo=not args.no_demo, auto_manage=args.auto_manage,
        db=args.db, rules=args.rules, feed=str(args.feed), broker=args.broker,
        confirm_live=args.confirm_live, metrics_port=args.metrics_port,
    )  # fmt: skip
    gc.freeze()  # as in `kit run`: start-up objects stay out of the collector's full scans
    try:
        asyncio.run(serve_forever(config))
    except OSError as exc:
        raise ValueError(
            f"cannot listen on 127.0.0.1:{args.port} ({exc.strerror or exc})"
        ) from None
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    """The desk service plus the Voila monitor, stopped together (``make monitor``)."""
    from kit.app.launch import run

    serve = ["--speed", str(args.speed), "--feed", str(args.feed), "--broker", args.broker]
    serve += ["--db", args.db] if args.db else []
    serve += ["--rules", str(args.rules)] if args.rules else []
    serve += ["--confirm-live", args.confirm_live] if args.confirm_live else []
    serve += ["--metrics-port", str(args.metrics_port)] if args.metrics_port else []
    return run(args.port, args.service_port, serve + (["--no-demo"] if args.no_demo else []))


def cmd_db(args: argparse.Namespace) -> int:
    """Look into and maintain the store: row counts, Parquet export, tick retention."""
    from pathlib import Path

    from kit.store import TABLES, check_target, is_postgres, open_store, store_target

    if args.action != "info" and args.table is not None and args.table not in TABLES:
        raise ValueError(f"unknown table {args.table!r} (have {', '.join(TABLES)})")
    target = check_target(store_target(args.db))
    if not is_postgres(target) and not Path(target).is_file():  # read it, never create it
        raise ValueError(f"no database at {target}: record one first (kit run --auto --db "
                         f"{target}, or kit serve --db {target})")  # fmt: skip
    with open_store(target) as store:
        if args.action == "info":
            out = {"store": store.describe(), "schema_version": store.version(),
                   "timescale": store.timescale,
                   "rows": {name: store.count(name) for name in TABLES}}  # fmt: skip
        elif args.action == "export":
            if args.table is None or args.path is None:
                raise ValueError("export needs TABLE and PATH, e.g. kit db export fills f.parquet")
            out = {"table": args.table, "path": str(args.path),
                   "rows": store.export_parquet(args.table, args.path)}  # fmt: skip
        else:
            if args.days is None:
                raise ValueError("prune needs --days N (ticks older than N days are deleted)")
            newest = store.query("SELECT max(ts) AS t FROM quotes")["t"][0]
            cut = (newest or datetime.now(UTC)) - timedelta(days=args.days)
            out = {"deleted": store.prune_ticks(cut), "before": cut.isoformat()}
    print(json.dumps(out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kit", description="Theta Desk command line.")
    p.add_argument("--version", action="version", version=f"kit {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("symbol", help="convert an option symbol between vendor forms")
    s.add_argument("symbol", help="OCC (SPXW  240119C04700000), DxLink (.SPXW240119C4700) or Delta")
    s.add_argument("--at", help="also print years to expiry from this ISO time (with offset)")
    s.set_defaults(func=cmd_symbol)

    s = sub.add_parser("session", help="US options session (open/close in UTC) on a date")
    s.add_argument("day", type=args_.day, help="YYYY-MM-DD")
    s.set_defaults(func=cmd_session)

    from kit.cli.emulate import add_emulate_parser

    add_emulate_parser(sub)

    from kit.app.scenarios import DEFAULT_DAY, SCENARIOS

    s = sub.add_parser("run", help="run the desk on a simulated session to its end")
    _venue_args(s)
    s.add_argument("--script", choices=sorted(SCENARIOS), help="scenario to run (or its shocks, "
                   "timed from the open, under --auto)")  # fmt: skip
    s.add_argument("--auto", action="store_true", help="an auto-managed paper session from the "
                   "open to the close, entering by the strategy's rules")  # fmt: skip
    s.add_argument("--strategy", type=args_.input_file, metavar="FILE", help="under --auto: "
                   "trade this backtest config (kit backtest run --config-file): its entry and "
                   "exits as rules, instead of the default strangle and rules")  # fmt: skip
    s.add_argument(
        "--speed",
        type=args_.speed,
        default=0.0,
        help="market seconds per second, or 'max' (default: as fast as possible)",
    )
    s.add_argument("--jsonl", action="store_true", help="every alert, decision, order and fill "
                   "as JSON lines on stdout, then a summary line")  # fmt: skip
    s.add_argument("--no-demo", action="store_true", help="skip the demo short SPX strangle")
    s.add_argument("--seed", type=int, default=None,
                   help="simulator seed (default 0; 3 under --auto)")  # fmt: skip
    s.add_argument("--date", type=args_.day, default=DEFAULT_DAY, help="session to simulate")
    s.add_argument("--rules", help="TOML file overriding the default risk rules (or KIT_RULES)")
    s.add_argument("--state", type=args_.output_dir, help="directory keeping the paper "
                   "broker's and order manager's state across runs (default: in "
                   "memory)")  # fmt: skip
    s.add_argument("--from", dest="start", type=args_.clock_time, help="under --auto: begin the "
                   "session at this New York time (HH:MM[:SS]) instead of the open")  # fmt: skip
    s.add_argument("--db", help="record everything to this store and keep the state there: "
                   "a DuckDB file or a postgresql:// URL (an interrupted --auto day "
                   "resumes)")  # fmt: skip
    s.set_defaults(func=cmd_run)

    from kit.app.autopilot import AUTO_SEED

    s = sub.add_parser("serve", help="the desk service: one engine on the simulated market, "
                       "served to dashboards on ws://127.0.0.1:PORT until Ctrl-C")  # fmt: skip
    s.add_argument("--port", type=args_.port, default=8765, help="gateway port (default 8765)")
    s.add_argument("--date", type=args_.day, default=DEFAULT_DAY, help="session to simulate")
    s.add_argument("--from", dest="start", type=args_.clock_time, default=time(10),
                   help="New York time the session starts at (default 10:00)")  # fmt: skip
    s.add_argument("--speed", type=args_.positive, default=1.0,
                   help="market seconds per second (default 1: real time)")  # fmt: skip
    s.add_argument("--seed", type=int, default=AUTO_SEED, help=f"simulator seed ({AUTO_SEED})")
    _venue_args(s)
    s.add_argument("--no-demo", action="store_true", help="no demo paper strangle")
    s.add_argument("--auto-manage", action="store_true", help="start with auto-manage on")
    s.add_argument("--db", help="record to this DuckDB file or postgresql:// URL and resume "
                   "from it after a restart (default: in memory)")  # fmt: skip
    s.add_argument("--rules", help="TOML file overriding the default risk rules (or KIT_RULES)")
    s.add_argument("--metrics-port", type=args_.port, help="serve /metrics, /healthz and "
                   "/readyz on http://127.0.0.1:PORT (default: off; see kit status)")  # fmt: skip
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("monitor", help="the desk service and the Voila monitor, until Ctrl-C")
    s.add_argument("--port", type=args_.port, default=8866, help="Voila port (default 8866)")
    s.add_argument("--service-port", type=args_.port, default=8765, help="service port (8765)")
    s.add_argument("--speed", type=args_.positive, default=1.0, help="market seconds per second")
    s.add_argument("--db", help="as for `kit serve`")
    s.add_argument("--rules", type=args_.text_file, help="rules TOML, as for `kit serve`")
    _venue_args(s)
    s.add_argument("--no-demo", action="store_true", help="no demo paper strangle")
    s.add_argument("--metrics-port", type=args_.port, help="as for `kit serve` (the monitor's "
                   "?page=ops reads it)")  # fmt: skip
    s.set_defaults(func=cmd_monitor)

    s = sub.add_parser("db", help="the store: row counts, Parquet export, tick retention")
    s.add_argument("action", choices=["info", "export", "prune"])
    s.add_argument("table", nargs="?", help="export: the table (fills, quotes, trade_logs, ...)")
    s.add_argument("path", nargs="?", type=args_.output_path,
                   help="export: the Parquet file to write")  # fmt: skip
    s.add_argument("--days", type=args_.positive, help="prune: keep this many days of ticks, "
                   "counted back from the newest tick")  # fmt: skip
    s.add_argument("--db", help="DuckDB file or postgresql:// URL (default: KIT_DB_URL, "
                   "DB_CONNECTION_STRING, else data/desk.duckdb)")  # fmt: skip
    s.set_defaults(func=cmd_db)

    from kit.cli.positions import add_positions_parser

    add_positions_parser(sub)

    from kit.cli.signals import add_gex_parser

    add_gex_parser(sub)
    from kit.cli.history import add_history_parser

    add_history_parser(sub)
    from kit.cli.sim import add_sim_parser

    add_sim_parser(sub)
    from kit.cli.backtest import add_backtest_parser

    add_backtest_parser(sub)
    from kit.cli.watch import add_watch_parser

    add_watch_parser(sub)
    from kit.cli.tape import add_tape_parser

    add_tape_parser(sub)
    from kit.cli.book import add_book_parser

    add_book_parser(sub)
    from kit.cli.delta import add_delta_parser

    add_delta_parser(sub)
    from kit.cli.status import add_status_parser

    add_status_parser(sub)
    from kit.cli.validate import add_validate_parser

    add_validate_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        Settings.from_env().configure_logging()
        return args.func(args)
    except (ModelError, ConfigError, ValueError, StoreError) as exc:
        print(f"kit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""``kit emulate tws``: a loopback TWS / IB Gateway API (see :mod:`kit.adapters.ibkr.emulator`)."""

from __future__ import annotations

import argparse
import asyncio

from kit.cli import args as args_

TWS_PORT = 7497  # TWS paper trading's API port


def add_emulate_tws_args(s: argparse.ArgumentParser) -> None:
    """The ``kit emulate tws`` flags (``--port`` is shared with ``kit emulate delta``)."""
    s.add_argument("--client-id-limit", type=args_.count, default=32, metavar="N",
                   help="tws: at most N API clients at once (TWS allows 32)")  # fmt: skip


def emulate_tws(args: argparse.Namespace) -> int:
    from kit.adapters.ibkr.emulator import serve_forever

    port = TWS_PORT if args.port is None else args.port
    try:
        asyncio.run(serve_forever(port, args.seed, args.speed, args.client_id_limit))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        raise ValueError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})") from None
    return 0

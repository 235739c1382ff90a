"""``kit emulate VENDOR``: a vendor's protocol on 127.0.0.1, driven by the simulated market, until
Ctrl-C. One parser and one runner for every vendor: each differs only in its default port, its
extra flags and which emulator's ``serve_forever`` it starts."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from typing import Any

from kit.cli import args as args_

# each vendor's own port, so a client configured for the real thing finds the emulator there
PORTS = {"delta": 8900, "tws": 7497, "cpapi": 5000, "tastytrade": 8901}
VENDORS = ("thetadata", *PORTS)


def add_emulate_parser(sub: Any) -> None:
    """Register ``emulate`` on the ``kit`` command's subparsers."""
    s = sub.add_parser("emulate", help="run a vendor emulator on 127.0.0.1 until Ctrl-C")
    s.add_argument("vendor", choices=VENDORS, help="which vendor protocol to speak")
    ports = ", ".join(f"{v} {p}" for v, p in PORTS.items())
    s.add_argument("--port", type=args_.port, default=None,
                   help=f"the emulator's port (default the vendor's own: {ports})")  # fmt: skip
    s.add_argument("--rest-port", type=args_.port, default=25503,
                   help="thetadata: REST v3 port (default 25503)")  # fmt: skip
    s.add_argument("--ws-port", type=args_.port, default=25520,
                   help="thetadata: stream port (default 25520)")  # fmt: skip
    s.add_argument("--api-key", help="delta: the API key the emulator accepts")
    s.add_argument("--api-secret", help="delta: its secret (signatures are checked with it)")
    s.add_argument("--client-id-limit", type=args_.count, default=32, metavar="N",
                   help="tws: at most N API clients at once (TWS allows 32)")  # fmt: skip
    s.add_argument("--seed", type=int, default=3,
                   help="simulator seed (default 3: the demo market kit serve uses)")  # fmt: skip
    s.add_argument("--speed", type=args_.positive, default=1.0, help="market time per second")
    s.set_defaults(func=cmd_emulate)


def cmd_emulate(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; a port in use is a one-line error."""
    seed, speed = args.seed, args.speed
    if args.vendor == "thetadata":
        from kit.adapters.thetadata.emulator import serve_forever as thetadata

        return _serve(thetadata(args.rest_port, args.ws_port, seed, speed), "127.0.0.1")
    port = PORTS[args.vendor] if args.port is None else args.port
    server: Coroutine[Any, Any, None]
    if args.vendor == "delta":
        if not args.api_key or not args.api_secret:
            raise ValueError("kit emulate delta needs --api-key K --api-secret S")
        from kit.adapters.delta.emulator import serve_forever as delta

        server = delta(port, args.api_key, args.api_secret, seed, speed)
    elif args.vendor == "tws":
        from kit.adapters.ibkr.emulator import serve_forever as tws

        server = tws(port, seed, speed, args.client_id_limit)
    elif args.vendor == "cpapi":
        from kit.adapters.cpapi.simulated import serve_forever as cpapi

        server = cpapi(port, seed, speed)
    else:
        from kit.adapters.tastytrade.emulator import serve_forever as tastytrade

        server = tastytrade(port, seed, speed)
    return _serve(server, f"127.0.0.1:{port}")


def _serve(server: Coroutine[Any, Any, None], where: str) -> int:
    try:
        asyncio.run(server)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        raise ValueError(f"cannot listen on {where} ({exc.strerror or exc})") from None
    return 0

"""``kit emulate tastytrade``: the loopback tastytrade API (REST + DXLink) on the simulated market.

Point the desk at it with ``TT_API_URL=http://127.0.0.1:P`` (any ``TT_SECRET``/``TT_REFRESH``),
the SDK with ``tastytrade.session.API_URL``. Faults: ``POST /faults`` (see the emulator).
"""

from __future__ import annotations

import argparse
import asyncio

DEFAULT_PORT = 8901  # tastytrade has no local gateway: any free loopback port


def emulate_tastytrade(args: argparse.Namespace) -> int:
    from kit.adapters.tastytrade.emulator import serve_forever

    port = DEFAULT_PORT if args.port is None else args.port
    try:
        asyncio.run(serve_forever(port, args.seed, args.speed))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        raise ValueError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})") from None
    return 0

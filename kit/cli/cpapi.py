"""``kit emulate cpapi``: the loopback IBKR Client Portal gateway on the simulated market."""

from __future__ import annotations

import argparse
import asyncio

DEFAULT_PORT = 5000  # the Client Portal gateway's own port


def emulate_cpapi(args: argparse.Namespace) -> int:
    from kit.adapters.cpapi.simulated import serve_forever

    port = DEFAULT_PORT if args.port is None else args.port
    try:
        asyncio.run(serve_forever(port, args.seed, args.speed))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        raise ValueError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc})") from None
    return 0

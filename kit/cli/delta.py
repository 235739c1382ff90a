"""``kit delta run`` (the daily BTC/ETH short strangle) and ``kit emulate delta``'s arguments.

The trader itself is :mod:`kit.app.delta_trader`; this module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import asyncio

from kit.cli import args as args_


def add_emulate_delta_args(s: argparse.ArgumentParser) -> None:
    """The ``kit emulate delta`` flags (beside the ThetaData ones on the same sub-command)."""
    s.add_argument("--port", type=args_.port, default=8900,
                   help="delta: REST /v2 and socket port (default 8900)")  # fmt: skip
    s.add_argument("--api-key", help="delta: the API key the emulator accepts")
    s.add_argument("--api-secret", help="delta: its secret (signatures are checked with it)")


def emulate_delta(args: argparse.Namespace) -> int:
    from kit.adapters.delta.emulator import serve_forever

    if not args.api_key or not args.api_secret:
        raise ValueError("kit emulate delta needs --api-key K --api-secret S")
    try:
        asyncio.run(serve_forever(args.port, args.api_key, args.api_secret, args.seed,
                                  args.speed))  # fmt: skip
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        why = exc.strerror or exc
        raise ValueError(f"cannot listen on 127.0.0.1:{args.port} ({why})") from None
    return 0

"""``kit status``: is the running desk service ready? Reads its ``/readyz`` on the metrics port
(``kit serve --metrics-port M``) and prints each check; exit 0 when ready, 1 when not, 2 when
nothing answers."""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx

from kit.cli.args import port

DEFAULT_METRICS_PORT = 9765


def add_status_parser(sub: Any) -> None:
    s = sub.add_parser("status", help="health of a running `kit serve` (its metrics port)")
    s.add_argument(
        "--metrics-port",
        type=port,
        default=DEFAULT_METRICS_PORT,
        help=f"the service's --metrics-port (default {DEFAULT_METRICS_PORT})",
    )
    s.add_argument("--json", action="store_true", help="the /readyz JSON as served")
    s.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    url = f"http://127.0.0.1:{args.metrics_port}/readyz"
    try:
        r = httpx.get(url, timeout=5.0)
        doc = r.json()
    except httpx.HTTPError as exc:
        raise ValueError(
            f"nothing answers on {url} ({type(exc).__name__}); is `kit serve "
            f"--metrics-port {args.metrics_port}` running?"
        ) from None
    except ValueError:
        raise ValueError(
            f"{url} answered {r.status_code} without JSON: not a kit service"
        ) from None
    if args.json:
        print(json.dumps(doc))
    else:
        print(f"engine {doc.get('engine')}: {'ready' if doc.get('ready') else 'NOT READY'}")
        for name, check in doc.get("checks", {}).items():
            print(f"  {name:7s} {'ok ' if check.get('ok') else 'BAD'}  {check.get('detail', '')}")
    return 0 if doc.get("ready") else 1

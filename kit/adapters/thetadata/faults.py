"""The emulator's fault switches over HTTP: ``POST /faults`` on its REST port.

Tests flip the switches in-process (:meth:`ThetaDataEmulator.go_silent` ...); this endpoint lets
a script, a browser test or a second process do the same to ``kit emulate thetadata`` running
elsewhere, so attacks on the adapter (silences, dropped sockets, failing backfills, frames from
the future) can be replayed from the shell::

    curl -d '{"silence_s": 8}' http://127.0.0.1:25503/faults
    curl -d '{"rest_error": {"code": 473, "count": 3}}' http://127.0.0.1:25503/faults

One JSON object per request; several keys may be combined. The answer is ``{"ok": true}``, or
HTTP 400 with ``{"ok": false, "error": ...}`` naming what was wrong (nothing is applied then).
Only loopback peers are served: the switches break the stream on purpose.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tornado.web

from kit.adapters.thetadata.frames import quote_frame
from kit.core.model import Quote

if TYPE_CHECKING:
    from kit.adapters.thetadata.emulator import ThetaDataEmulator

FUTURE_S = 365 * 86400  # a bad_frame "future_ts" is dated this far ahead of the vendor clock
BAD_FRAMES = ("future_ts", "past_ts", "malformed")


class FaultError(ValueError):
    """A fault request that cannot be applied; the message names the key."""


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FaultError(f"{key} must be a number of seconds, got {value!r}")
    if not 0 <= value <= 3600:
        raise FaultError(f"{key} must be between 0 and 3600 seconds, got {value!r}")
    return float(value)


def _count(key: str, value: Any, limit: int = 1000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= limit:
        raise FaultError(f"{key} must be an integer from 1 to {limit}, got {value!r}")
    return value


def bad_frame(emu: ThetaDataEmulator, kind: str) -> str:
    """A frame the adapter must refuse: a real contract's quote dated a year ahead or behind
    (``future_ts`` / ``past_ts``), or bytes that are not a frame at all (``malformed``)."""
    if kind == "malformed":
        return '{"header": {"type": "QUOTE"}, "quote": '
    c = next(iter(emu._tracked), None) or emu.market.chain("SPXW")[0]
    shift = FUTURE_S if kind == "future_ts" else -FUTURE_S
    ts = emu.clock.now_ns() + shift * 1_000_000_000
    return quote_frame(Quote(c, 1.0, 1.1, 1, 1, ts)).decode()


def plan(emu: ThetaDataEmulator, body: Any) -> list[Callable[[], Any]]:
    """Validate a whole request first, then return the actions: all of it applies or none."""
    if not isinstance(body, dict) or not body:
        raise FaultError('send one JSON object of faults, e.g. {"silence_s": 8}')
    actions: list[Callable[[], Any]] = []
    for key, value in body.items():
        if key == "silence_s":
            s = _seconds(key, value)
            actions.append(lambda s=s: emu.go_silent(s))
        elif key == "upstream_down_s":
            s = _seconds(key, value)
            actions.append(lambda s=s: emu.upstream_down(s))
        elif key == "drop":
            n = _count(key, 1 if value is True else value, limit=1)
            actions.extend(emu.drop for _ in range(n))
        elif key == "rest_error":
            if not isinstance(value, dict) or set(value) - {"code", "count"}:
                raise FaultError('rest_error must be {"code": 4xx/5xx, "count": N}')
            code = value.get("code")
            if isinstance(code, bool) or not isinstance(code, int) or not 400 <= code <= 599:
                raise FaultError(f"rest_error.code must be an HTTP error code, got {code!r}")
            n = _count("rest_error.count", value.get("count", 1))
            actions.append(lambda c=code, n=n: emu.fail_rest(c, n))
        elif key == "bad_frame":
            if value not in BAD_FRAMES:
                raise FaultError(f"bad_frame must be one of {', '.join(BAD_FRAMES)}")
            actions.append(lambda v=value: emu.inject(bad_frame(emu, v)))
        elif key == "clear":
            actions.append(lambda: setattr(emu, "faults", type(emu.faults)()))
        else:
            raise FaultError(f"unknown fault {key!r} (silence_s, upstream_down_s, drop, "
                             "rest_error, bad_frame, clear)")  # fmt: skip
    return actions


class FaultsHandler(tornado.web.RequestHandler):
    """``POST /faults`` -> ``{"ok": true}``; registered by the emulator next to ``/v3``."""

    def initialize(self, emu: ThetaDataEmulator) -> None:
        self.emu = emu

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload))

    async def post(self) -> None:
        try:
            if not ipaddress.ip_address(self.request.remote_ip or "0.0.0.0").is_loopback:
                self._answer(403, {"ok": False, "error": "fault switches are loopback only"})
                return
        except ValueError:
            self._answer(403, {"ok": False, "error": "fault switches are loopback only"})
            return
        try:
            body = json.loads(self.request.body or b"null")
            actions = plan(self.emu, body)
        except (ValueError, RecursionError) as exc:  # FaultError and JSONDecodeError included
            self._answer(400, {"ok": False, "error": str(exc)[:300]})
            return
        for act in actions:
            result = act()
            if asyncio.iscoroutine(result):
                await result
        self._answer(200, {"ok": True})

"""The desk service's loopback WebSocket gateway: token, snapshots, events and commands.

Wire protocol (JSON text frames, one object each; ``protocol`` 1):

- client → ``{"type": "auth", "token": T, "client": NAME}`` first, within ``auth_timeout_s``;
  a wrong or missing token is answered ``{"type": "error", ...}`` and the socket closed (4401).
- server → ``{"type": "hello", "engine": {...}, "commands": [...]}``, then the newest snapshot.
- server → ``{"type": "snapshot", ...}`` (see :mod:`kit.app.view`) at most ``snapshot_hz`` a second.
  A slow viewer gets the newest one when it is ready again: intermediate snapshots are skipped,
  never queued.
- server → ``{"type": "event", "event": {...}}``: alerts, decisions, orders, fills and feed
  states (:func:`kit.engine.alerts.record_to_json`), in order; a viewer more than ``event_queue``
  events behind loses the oldest (the store keeps all of them).
- client → ``{"type": "command", "id": ID, "cmd": NAME, ...}`` (:mod:`kit.app.commands`);
  server → ``{"type": "reply", "id": ID, "ok": true, "result": {...}}`` or ``"ok": false,
  "error": WHY``. Malformed frames get ``{"type": "error", "error": WHY}`` and the socket stays.

Only processes of this machine reach 127.0.0.1, and browsers are refused outright (they always
send an ``Origin`` header; the dashboards connect from their Python kernels), so a web page
cannot drive the desk even if it guessed the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from kit.core.config import ConfigError, env
from kit.remote.protocol import (
    PROTOCOL,
    UNAUTHORIZED,
    client_token,
    redacted_logger,
    token_path,
)

log = logging.getLogger(__name__)

# PROTOCOL, UNAUTHORIZED and the token file are shared with the clients: kit.remote.protocol
__all__ = ["PROTOCOL", "UNAUTHORIZED", "Gateway", "GatewayConfig", "client_token",
           "service_token", "token_path"]  # fmt: skip
_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder()
MAX_DEPTH = 16  # a command is two levels deep; settings four


def nesting_depth(raw: str | bytes, limit: int = MAX_DEPTH) -> int:
    """How deep ``raw``'s arrays and objects nest, counted up to ``limit + 1`` (strings
    skipped); a frame with at most ``limit`` brackets returns their count, an upper bound.
    Checked before parsing: 30,000 ``[`` would otherwise recurse the decoder."""
    text = raw.encode() if isinstance(raw, str) else raw
    brackets = text.count(b"[") + text.count(b"{")
    if brackets <= limit:
        return brackets  # cannot nest deeper than the brackets it has
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def _decode(raw: str | bytes) -> Any:
    """Parse one frame; a frame nested deeper than ``MAX_DEPTH`` is a DecodeError."""
    if nesting_depth(raw) > MAX_DEPTH:
        raise msgspec.DecodeError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return _decoder.decode(raw)


MIN_TOKEN_CHARS = 16  # a guessable token is no token; the generated one has 43


def service_token(path: Path | None = None) -> str:
    """The token clients must present: ``KIT_TOKEN``, else the token file, created on first
    start with a fresh random token readable by this user only (mode 0600, directory 0700).
    A short token, or a token directory others can enter, stops start-up with the reason."""
    if token := env("KIT_TOKEN"):
        return _strong(token, "KIT_TOKEN")
    path = path or token_path()
    _private_dir(path.parent)
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process created it first
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # a token others can read is no token
        log.warning("gateway: %s was readable by others; made it user-only", path)
    return _strong(path.read_text().strip(), f"the token file {path}")


def _strong(token: str, where: str) -> str:
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"{where} holds a {len(token)}-character token: use at least "
                          f"{MIN_TOKEN_CHARS} (delete the file for a fresh one, or set KIT_TOKEN "
                          "to the output of: python -c 'import secrets; "
                          "print(secrets.token_urlsafe(32))')")  # fmt: skip
    return token


def _private_dir(folder: Path) -> None:
    """The token's directory, created 0700; an existing one others can enter is made 0700, or
    start-up stops with the reason when that is not possible."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if folder.stat().st_mode & 0o077:
        try:
            os.chmod(folder, 0o700)
        except OSError as exc:
            raise ConfigError(f"the token directory {folder} is open to other users and cannot "
                              f"be made private ({exc.strerror}): chmod 700 it or set "
                              "KIT_TOKEN_FILE elsewhere") from None  # fmt: skip
        log.warning("gateway: %s was open to other users; made it 0700", folder)


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    snapshot_hz: float = 10.0
    auth_timeout_s: float = 5.0
    event_queue: int = 1000
    max_message_bytes: int = 65536  # commands are small; anything bigger is not one


Handler = Callable[[Any, str], Awaitable[dict[str, Any]]]


class _Viewer:
    """One connected client: its pending events and whether a newer snapshot awaits it."""

    def __init__(self, ws: ServerConnection, name: str, event_queue: int) -> None:
        self.ws, self.name = ws, name
        self.events: deque[bytes] = deque(maxlen=event_queue)
        self.snapshot_seq = 0
        self.wake = asyncio.Event()


class Gateway:
    """Serves one desk to many viewers. ``publish_snapshot`` and ``publish_event`` are O(1) per
    viewer on the desk's loop; each viewer has a sender task that writes at its own pace."""

    def __init__(
        self,
        token: str,
        commands: Handler,
        hello: Callable[[], dict[str, Any]],
        config: GatewayConfig | None = None,
    ) -> None:
        self.config = config or GatewayConfig()
        self._token = token
        self._commands = commands
        self._hello = hello
        self.viewers: set[_Viewer] = set()
        self._snapshot: bytes | None = None
        self._snapshot_seq = 0
        self._server: Server | None = None
        self.port = self.config.port

    async def start(self) -> None:
        cfg = self.config
        ws_log = redacted_logger(f"{__name__}.websocket", self._token)
        self._server = await serve(
            self._session, cfg.host, cfg.port, compression=None, origins=[None],
            max_size=cfg.max_message_bytes, logger=ws_log,
        )  # fmt: skip
        self.port = self._server.sockets[0].getsockname()[1]  # the real one when port=0
        log.info("gateway: listening on ws://%s:%d", cfg.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()  # closes every connection with 1001 (going away)
            await self._server.wait_closed()
            self._server = None

    # --- fan-out ---

    def publish_snapshot(self, doc: dict[str, Any]) -> None:
        self._snapshot = _encode(doc)
        self._snapshot_seq += 1
        for v in self.viewers:
            v.wake.set()

    def publish_event(self, doc: dict[str, Any]) -> None:
        frame = _encode({"type": "event", "event": doc})
        for v in self.viewers:
            v.events.append(frame)  # a full deque drops its oldest
            v.wake.set()

    # --- one connection ---

    async def _session(self, ws: ServerConnection) -> None:
        name = await self._authenticate(ws)
        if name is None:
            return
        viewer = _Viewer(ws, name, self.config.event_queue)
        hello = _encode({"type": "hello", "protocol": PROTOCOL, **self._hello()})
        await ws.send(hello, text=True)
        self.viewers.add(viewer)
        viewer.wake.set()  # the newest snapshot right away
        sender = asyncio.create_task(self._send_loop(viewer), name=f"gateway:{name}")
        log.info("gateway: %s connected (%d viewers)", name, len(self.viewers))
        try:
            async for raw in ws:
                await self._on_message(viewer, raw)
        except ConnectionClosed:
            pass
        finally:
            self.viewers.discard(viewer)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            log.info("gateway: %s left (%d viewers)", name, len(self.viewers))

    async def _authenticate(self, ws: ServerConnection) -> str | None:
        try:
            raw = await asyncio.wait_for(ws.recv(), self.config.auth_timeout_s)
            msg = _decode(raw)
            ok = (isinstance(msg, dict) and msg.get("type") == "auth"
                  and isinstance(msg.get("token"), str)
                  and hmac.compare_digest(msg["token"].encode(), self._token.encode()))  # fmt: skip
        except (TimeoutError, ConnectionClosed, msgspec.DecodeError):
            ok, msg = False, None
        if not ok:
            with contextlib.suppress(ConnectionClosed):
                refusal = _encode({"type": "error", "error": "unauthorized: send "
                                   '{"type": "auth", "token": ...} first'})  # fmt: skip
                await ws.send(refusal, text=True)
                await ws.close(UNAUTHORIZED, "unauthorized")
            log.warning("gateway: refused a client without the right token")
            return None
        name = msg.get("client") if isinstance(msg, dict) else None
        return str(name)[:40] if name else "client"

    async def _send_loop(self, v: _Viewer) -> None:
        """Events in order, then the newest snapshot if the viewer has not had it. The rate is
        the publisher's (≤ ``snapshot_hz``); pausing here as well would make a snapshot wait
        out the previous one's pause (measured: ~100 ms more lag on screen)."""
        while True:
            await v.wake.wait()
            v.wake.clear()
            while v.events:
                await v.ws.send(v.events.popleft(), text=True)
            if self._snapshot is not None and v.snapshot_seq != self._snapshot_seq:
                v.snapshot_seq = self._snapshot_seq
                await v.ws.send(self._snapshot, text=True)

    async def _on_message(self, v: _Viewer, raw: str | bytes) -> None:
        try:
            msg = _decode(raw)
        except msgspec.DecodeError as exc:
            error = _encode({"type": "error", "error": f"malformed JSON: {exc}"})
            await v.ws.send(error, text=True)
            return
        if not isinstance(msg, dict) or msg.get("type") != "command":
            await v.ws.send(_encode({"type": "error", "error": 'expected {"type": "command", '
                                     '"cmd": ...}'}), text=True)  # fmt: skip
            return
        reply: dict[str, Any] = {"type": "reply", "id": msg.get("id"), "cmd": msg.get("cmd")}
        try:
            reply |= {"ok": True, "result": await self._commands(msg, v.name)}
        except ValueError as exc:  # CommandError and the like: the reason, for a person
            reply |= {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.exception("gateway: command %r failed", msg.get("cmd"))
            reply |= {"ok": False, "error": f"internal error: {type(exc).__name__}"}
        await v.ws.send(_encode(reply), text=True)

"""``kit.connect()``: a dashboard's (or a script's) connection to the desk service.

The client keeps the newest snapshot and the recent events, and reconnects by itself with
backoff when the service restarts or the socket drops: a dashboard simply keeps rendering
``client.snapshot`` and shows ``client.connected``. Commands wait for their reply; each carries a
request id, which the service folds into its intent ids, so a command resent after a reconnect
cannot trade twice.

    desk = await kit.connect()
    await desk.command("close_half", position="demo-100002")
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from kit.core.backoff import Backoff
from kit.core.config import env
from kit.core.tasks import cancel
from kit.remote.protocol import UNAUTHORIZED, client_token, redacted_logger

log = logging.getLogger(__name__)

DEFAULT_URL = "ws://127.0.0.1:8765"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class CommandRefusedError(RuntimeError):
    """The service refused a command; the message is its reason."""


class DeskClient:
    """A live view of the desk service. Create with :func:`connect`."""

    def __init__(self, url: str, token: str, name: str, backoff: Backoff | None = None) -> None:
        self.url, self.name = url, name
        self._token = token
        self._ws_log = redacted_logger(f"{__name__}.websocket", token)
        self.backoff = backoff or Backoff(initial_s=0.2, max_s=5.0)
        self.snapshot: dict[str, Any] | None = None
        self.hello: dict[str, Any] | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=500)
        self.connected = False
        self.connects = 0
        self.error: str | None = None  # why the last attempt failed, for the dashboard
        self.on_snapshot: list[Callable[[dict[str, Any]], None]] = []
        self.on_event: list[Callable[[dict[str, Any]], None]] = []
        self._ws: ClientConnection | None = None
        self._ready = asyncio.Event()
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random()

    async def start(self, timeout_s: float = 10.0) -> None:
        self._task = asyncio.create_task(self._run(), name=f"kit.remote.client:{self.name}")
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            await self.close()
            why = self.error or "timeout"
            raise ConnectionError(f"no desk service at {self.url} ({why}): start it with "
                                  "`kit serve` or `make monitor`") from None  # fmt: skip

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
        self.connected = False

    async def __aenter__(self) -> DeskClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                async with ws_connect(self.url, compression=None, open_timeout=5,
                                      logger=self._ws_log) as ws:  # fmt: skip
                    await ws.send(_encode({"type": "auth", "token": self._token,
                                           "client": self.name}), text=True)  # fmt: skip
                    self._ws, attempt = ws, 0
                    await self._read(ws)
            except ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == UNAUTHORIZED:
                    self.error = "unauthorized: the token does not match the service's"
                else:
                    self.error = "connection lost"
            except (OSError, InvalidStatus, TimeoutError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"
            finally:
                self._ws, self.connected = None, False
                for fut in self._replies.values():
                    if not fut.done():
                        fut.set_exception(ConnectionError("the desk service went away"))
                self._replies.clear()
            await asyncio.sleep(self.backoff.delay(attempt, self._rng))
            attempt += 1

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            msg = _decode(raw)
            kind = msg.get("type")
            if kind == "snapshot":
                self.snapshot = msg
                for cb in self.on_snapshot:
                    cb(msg)
            elif kind == "event":
                self.events.append(msg["event"])
                for cb in self.on_event:
                    cb(msg["event"])
            elif kind == "reply":
                fut = self._replies.pop(str(msg.get("id")), None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
            elif kind == "hello":
                self.hello, self.connected, self.error = msg, True, None
                self.connects += 1
                self._ready.set()
            elif kind == "error":
                self.error = msg.get("error")
                log.warning("desk service: %s", self.error)

    async def command(self, cmd: str, *, timeout_s: float = 10.0, **params: Any) -> dict:
        """Send one command and return its result; CommandRefusedError carries the refusal."""
        ws = self._ws
        if ws is None or not self.connected:
            raise ConnectionError(f"not connected to the desk service ({self.error})")
        rid = f"{self._prefix}-{next(self._ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[rid] = fut
        await ws.send(_encode({"type": "command", "id": rid, "cmd": cmd, **params}), text=True)
        reply = await asyncio.wait_for(fut, timeout_s)
        if not reply.get("ok"):
            raise CommandRefusedError(reply.get("error") or "refused")
        return reply["result"]

    async def next_snapshot(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """Wait for the next snapshot (tests and scripts; dashboards use ``on_snapshot``)."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def once(doc: dict[str, Any]) -> None:
            if not fut.done():
                fut.set_result(doc)

        self.on_snapshot.append(once)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self.on_snapshot.remove(once)


async def connect(
    url: str | None = None, token: str | None = None, *, name: str = "client",
    timeout_s: float = 10.0,
) -> DeskClient:  # fmt: skip
    """Connect to the desk service (``KIT_SERVICE_URL``, default ws://127.0.0.1:8765) with the
    token from ``KIT_TOKEN`` or the service's token file; reconnects by itself afterwards."""
    client = DeskClient(url or env("KIT_SERVICE_URL", DEFAULT_URL),
                        token or client_token(), name)  # fmt: skip
    await client.start(timeout_s)
    return client

"""One ``ib_async.IB`` per process, kept connected: reconnect with backoff, a watchdog, TWS's
connectivity messages.

TWS counts API clients by client id, and one socket carries market data and orders alike, so
the feed and the broker share one :class:`IbConnection` per (host, port, client id)
(:meth:`IbConnection.shared`). It is async all the way (``connectAsync``; no ``util.startLoop``
or ``nest_asyncio``).

The keeper task works like ``ib_async``'s ``Watchdog``: while connected it looks every
``probe_s``; when nothing arrived for that long it probes TWS with ``reqCurrentTime`` (a socket
that stays open but answers nothing within ``probe_timeout_s`` is dropped; the timeout is
generous because requests wait behind the 50-per-second pacing queue); when the socket is gone
it reconnects with :class:`~kit.core.backoff.Backoff` (the nightly restart, a crash, a cut
cable), logging error 326 (client id in use) plainly. Listeners hear ``("up", 0, where)`` after
each (re)connection and start-up synchronisation, ``("down", 0, why)`` when the socket goes,
``("beat", 0, "")`` per look that found TWS alive and ``("error", code, text)`` for TWS messages
with request id -1 (1100 lost, 1101/1102 restored with data lost/maintained, 2110 TWS-server
link broken, 2103/2105/2157 a farm down); per-request errors go to ``ib.errorEvent``
subscribers as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar

from ib_async import IB

from kit.adapters.ibkr.config import IbkrConfig
from kit.core.backoff import Backoff
from kit.core.tasks import cancel

log = logging.getLogger(__name__)

Listener = Callable[[str, int, str], None]
CLIENT_ID_IN_USE = 326
MESSAGES_PER_S = 50


class IbConnection:
    """A shared, self-healing TWS API connection. ``acquire``/``release`` count its users; the
    last release disconnects."""

    _shared: ClassVar[dict[tuple[str, int, int], IbConnection]] = {}

    def __init__(self, config: IbkrConfig, *, backoff: Backoff | None = None) -> None:
        self.config = config
        self.ib = IB()
        self.ib.RaiseRequestErrors = False
        self.ib.client.MaxRequests = MESSAGES_PER_S  # IBKR's pacing: 50 messages a second
        self.backoff = backoff or Backoff(0.25, 2.0, 10.0, 0.2)
        self.listeners: list[Listener] = []
        self.generation = 0  # connections made so far
        self.last_error = ""
        self.users = 0
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rng = random.Random()
        self.ib.errorEvent += self._on_error
        self.ib.disconnectedEvent += self._on_disconnected

    @classmethod
    def shared(cls, config: IbkrConfig) -> IbConnection:
        """The process's connection to ``config``'s TWS and client id (made on first use)."""
        key = (config.host, config.port, config.client_id)
        conn = cls._shared.get(key)
        if conn is None or conn._closed_loop():
            conn = cls._shared[key] = cls(config)
        return conn

    def _closed_loop(self) -> bool:
        """A connection made under an event loop that is gone (a finished ``asyncio.run``)."""
        return self._task is not None and self._task.get_loop().is_closed()

    # --- users ---

    async def acquire(self, *, wait: bool = True) -> None:
        """Count a user; start the keeper (first connection) if it is not running; with
        ``wait``, return once connected or raise ConnectionError after ``timeout_s``."""
        self.users += 1
        if self._task is None:
            self._task = asyncio.create_task(self._keep(), name=f"ibkr:{self.config.port}")
        if wait:
            await self.wait_up(self.config.timeout_s)

    async def release(self) -> None:
        self.users = max(self.users - 1, 0)
        if self.users == 0:
            await self.close()

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
        self.ib.disconnect()
        self._up.clear()
        key = (self.config.host, self.config.port, self.config.client_id)
        if self._shared.get(key) is self:
            del self._shared[key]

    @property
    def is_up(self) -> bool:
        return self._up.is_set() and self.ib.isConnected()

    async def wait_up(self, timeout: float | None = None) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
        except TimeoutError:
            why = f": {self.last_error}" if self.last_error else ""
            raise ConnectionError(f"cannot reach {self.config.where}{why}") from None

    def drop(self, why: str) -> None:
        """Disconnect now (the keeper reconnects): a watchdog's verdict."""
        if self.ib.isConnected():
            log.warning("ibkr: dropping the connection to %s: %s", self.config.where, why)
            self.last_error = why
            self.ib.disconnect()

    # --- the keeper ---

    async def _keep(self) -> None:
        attempt = 0
        while True:
            if not self.ib.isConnected():
                self._up.clear()
                try:
                    await self._connect()
                    attempt = 0
                except Exception as exc:  # refused, timed out, client id in use: retried
                    self.last_error = self.last_error or f"{type(exc).__name__}: {exc}"
                    with contextlib.suppress(Exception):
                        self.ib.disconnect()
                    await asyncio.sleep(self.backoff.delay(attempt, self._rng))
                    attempt += 1
                    continue
            await asyncio.sleep(self.config.probe_s)
            if self.ib.isConnected():
                await self._probe()

    async def _connect(self) -> None:
        cfg = self.config
        self.last_error = ""
        await self.ib.connectAsync(cfg.host, cfg.port, clientId=cfg.client_id,
                                   timeout=cfg.timeout_s, account=cfg.account_id)  # fmt: skip
        if cfg.market_data_type != 1:
            self.ib.reqMarketDataType(cfg.market_data_type)
        self.generation += 1
        self._up.set()
        log.info("ibkr: connected to %s (connection %d)", cfg.where, self.generation)
        self._tell("up", 0, cfg.where)

    async def _probe(self) -> None:
        last = self.ib.wrapper.lastTime
        idle = (datetime.now(last.tzinfo) - last).total_seconds() if last != datetime.min else 1e9
        if idle >= self.config.probe_s:
            timeout = self.config.probe_timeout_s
            try:
                await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), timeout)
            except (TimeoutError, ConnectionError):
                self.drop(f"no answer to reqCurrentTime within {timeout:g}s")
                return
        self._tell("beat", 0, "")

    # --- events ---

    def _on_disconnected(self) -> None:
        self._up.clear()
        self._tell("down", 0, self.last_error or "connection closed by TWS")

    def _on_error(self, req_id: int, code: int, text: str, contract: object) -> None:
        if code == CLIENT_ID_IN_USE:
            self.last_error = (f"client id {self.config.client_id} is already in use at "
                               f"{self.config.host}:{self.config.port} (326): set another "
                               "IBKR_CLIENT_ID")  # fmt: skip
            log.error("ibkr: %s", self.last_error)
        if req_id == -1:
            self._tell("error", code, text)

    def _tell(self, kind: str, code: int, text: str) -> None:
        for listener in list(self.listeners):
            try:
                listener(kind, code, text)
            except Exception:
                log.exception("ibkr: connection listener %r failed", listener)

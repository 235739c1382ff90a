"""WebSocket messages in batches: everything one socket read brought, with one wake-up.

``websockets``' ``async for message in ws`` hands over one message per await: each passes its
assembler queue, two coroutines and a UTF-8 decode, about 2 µs a message, more than the adapter
spends parsing it. A feed wants the opposite trade: the frames that arrived together, at once.
:class:`BatchingConnection` (given to ``connect(create_connection=...)``, the library's hook
for its own connection class) takes complete data messages straight from the protocol as it
parses them and :func:`batches` yields them per socket read as a :class:`FrameBatch` of raw
payloads (bytes; msgspec decodes JSON from bytes, and validates UTF-8 as it does). Control
frames, the handshake and the close take the library's own path, so a close still ends the
iteration as ``ConnectionClosedOK`` (normal) or raises ``ConnectionClosedError``, and a
fragmented message is joined here as the library would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosedOK
from websockets.frames import Frame, Opcode

from kit.adapters.ingest import FrameBatch

_DATA = (Opcode.TEXT, Opcode.BINARY)


class BatchingConnection(ClientConnection):
    """A client connection whose data messages bypass the one-message-per-``recv`` assembler."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch = FrameBatch()
        self._fragments: list[bytes] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._lost = False

    def process_event(self, event: Any) -> None:
        if self.response is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake's response
            return
        op = event.opcode
        if op in _DATA and event.fin and self._fragments is None:
            self._batch.append(bytes(event.data))
        elif op in _DATA:
            self._fragments = [bytes(event.data)]
            return
        elif op is Opcode.CONT and self._fragments is not None:
            self._fragments.append(bytes(event.data))
            if not event.fin:
                return
            self._batch.append(b"".join(self._fragments))
            self._fragments = None
        else:
            super().process_event(event)  # pongs; pings and close are the protocol's
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._lost = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self) -> FrameBatch:
        """The messages received since the last call (empty if none)."""
        batch, self._batch = self._batch, FrameBatch()
        return batch

    async def batches(self) -> AsyncIterator[FrameBatch]:
        """Batches until the connection closes: returns on a normal close, raises
        ``ConnectionClosedError`` otherwise (as ``async for message in ws`` does)."""
        while True:
            if self._batch:
                yield self.take()
                continue
            if self._lost:
                try:
                    await self.recv()  # no data reaches the assembler: this raises the close
                except ConnectionClosedOK:
                    return
                continue  # pragma: no cover - recv cannot return a message here
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

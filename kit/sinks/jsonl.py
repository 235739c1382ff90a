"""The JSON-lines sink: one :func:`~kit.engine.records.record_to_json` object per line."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import msgspec

from kit.core.model import Severity
from kit.engine.records import SinkRecord, record_to_json


class JsonlSink:
    """One JSON object per line, appended to a file (parents created) or written to a stream."""

    def __init__(
        self, target: str | os.PathLike[str] | TextIO, *, min_severity: Severity = Severity.INFO
    ) -> None:
        self.audit, self.min_severity = True, min_severity
        self._path = Path(target) if isinstance(target, str | os.PathLike) else None
        self._stream = None if isinstance(target, str | os.PathLike) else target
        self.name = f"jsonl:{self._path or getattr(target, 'name', 'stream')}"

    async def send(self, records: Sequence[SinkRecord]) -> None:
        data = b"".join(msgspec.json.encode(record_to_json(r)) + b"\n" for r in records)
        if self._stream is not None:
            self._stream.write(data.decode())
            self._stream.flush()
        else:
            await asyncio.to_thread(self._append, data)  # a slow disk must not stall the loop

    def _append(self, data: bytes) -> None:
        assert self._path is not None
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("ab") as f:
            f.write(data)

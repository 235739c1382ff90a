"""The JSON-lines sink: one :func:`~kit.engine.records.record_to_json` object per line."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

import msgspec

from kit.core import config
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


class RotatingJsonlSink(JsonlSink):
    """The alert log file: JSON lines, rotated when the next batch would pass ``max_bytes``
    (``alerts.jsonl`` -> ``.1`` -> ... -> ``.keep``; the oldest is dropped), so a desk that runs
    for weeks never fills the disk and never loses the newest records."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int, keep: int = 3, *,
                 min_severity: Severity = Severity.INFO) -> None:  # fmt: skip
        if max_bytes <= 0 or keep < 1:
            raise ValueError(f"alert log: max_bytes must be > 0 and keep >= 1, got "
                             f"{max_bytes} and {keep}")  # fmt: skip
        super().__init__(path, min_severity=min_severity)
        self.max_bytes, self.keep = max_bytes, keep

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RotatingJsonlSink | None:
        """``KIT_ALERT_LOG=path`` (rotated at ``KIT_ALERT_LOG_MB``, default 10, keeping
        ``KIT_ALERT_LOG_KEEP``, default 5); None when unset."""
        path = config.env("KIT_ALERT_LOG", environ=env)
        if path is None:
            return None
        mb = config.env_float("KIT_ALERT_LOG_MB", 10.0, environ=env, what="megabytes, e.g. 10")
        keep = config.env_int("KIT_ALERT_LOG_KEEP", 5, environ=env)
        assert mb is not None
        return cls(path, max_bytes=int(mb * 1_000_000), keep=keep)

    def _append(self, data: bytes) -> None:
        assert self._path is not None
        p = self._path
        if p.exists() and p.stat().st_size + len(data) > self.max_bytes:
            for i in range(self.keep - 1, 0, -1):
                old = p.with_name(f"{p.name}.{i}")
                if old.exists():
                    old.replace(p.with_name(f"{p.name}.{i + 1}"))
            p.replace(p.with_name(f"{p.name}.1"))
        super()._append(data)

"""Where execution state survives a restart: a small key → JSON document store.

The paper broker and the order manager save their state here on every change. Until the store
issue lands, :class:`JsonStateStore` keeps one JSON file per key, written atomically (temp file,
fsync, rename) so a crash mid-write leaves the previous version intact, never half a file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol

_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class StateStore(Protocol):
    def load(self, key: str) -> dict[str, Any] | None: ...

    def save(self, key: str, state: dict[str, Any]) -> None: ...


def _check_key(key: str) -> None:
    if not _KEY.match(key):
        raise ValueError(f"state key {key!r}: use letters, digits, '_', '-' and '.'")


class MemoryStateStore:
    """In-process state: survives an object being recreated, not the process. For tests."""

    def __init__(self) -> None:
        self._docs: dict[str, str] = {}

    def load(self, key: str) -> dict[str, Any] | None:
        _check_key(key)
        doc = self._docs.get(key)
        return None if doc is None else json.loads(doc)

    def save(self, key: str, state: dict[str, Any]) -> None:
        _check_key(key)
        self._docs[key] = json.dumps(state)  # a copy: later mutation of ``state`` is not saved


class JsonStateStore:
    """One ``KEY.json`` per key under ``directory`` (created on first save)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        _check_key(key)
        return self.directory / f"{key}.json"

    def load(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{path}: corrupt state file ({exc}); move it aside to start fresh"
            raise ValueError(msg) from None

    def save(self, key: str, state: dict[str, Any]) -> None:
        path = self._path(key)
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", dir=self.directory)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

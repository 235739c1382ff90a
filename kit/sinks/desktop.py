"""The desktop sink: a CRITICAL alert pops up on the operator's screen (``notify-send``, the
freedesktop notification tool of libnotify, wherever it is installed).

Enabled with ``KIT_DESKTOP_NOTIFY=1`` (severity from ``KIT_DESKTOP_MIN_SEVERITY``, CRITICAL by
default: a desktop that pops up on every INFO is one the trader learns to ignore). Set without
``notify-send`` on PATH it is a one-line configuration error at start, never a silent no-op.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kit.core import config
from kit.core.model import Severity
from kit.engine.records import AlertRecord, SinkRecord
from kit.sinks.base import SinkError, ny_time

TIMEOUT_S = 5.0
URGENCY = {Severity.CRITICAL: "critical", Severity.WARNING: "normal", Severity.INFO: "low"}


@dataclass
class DesktopSink:
    """One ``notify-send`` per alert at or above ``min_severity`` (alerts only, no audit)."""

    command: str  # the notify-send executable
    min_severity: Severity = Severity.CRITICAL
    name: str = "desktop"
    audit: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DesktopSink | None:
        """``KIT_DESKTOP_NOTIFY=1`` enables it; None when unset."""
        if not config.env_bool("KIT_DESKTOP_NOTIFY", False, environ=env):
            return None
        path = (env or {}).get("PATH") if env is not None else None
        command = shutil.which("notify-send", path=path)
        if command is None:
            raise ValueError("KIT_DESKTOP_NOTIFY is set but notify-send is not on PATH "
                             "(install libnotify-bin)")  # fmt: skip
        level = (config.env("KIT_DESKTOP_MIN_SEVERITY", environ=env) or "CRITICAL").upper()
        if level not in Severity.__members__:
            raise ValueError(f"KIT_DESKTOP_MIN_SEVERITY={level!r}: one of INFO, WARNING, "
                             "CRITICAL")  # fmt: skip
        return cls(command, Severity[level])

    async def send(self, records: Sequence[SinkRecord]) -> None:
        for record in records:
            if isinstance(record, AlertRecord):
                await self._notify(record)

    async def _notify(self, record: AlertRecord) -> None:
        a = record.alert
        title = f"Theta Desk {a.severity.value}: {a.rule}"
        body = f"{ny_time(a.ts_ns)} {a.message}"[:500]
        proc = await asyncio.create_subprocess_exec(
            self.command, "--app-name=Theta Desk", f"--urgency={URGENCY[a.severity]}", title,
            body, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(TIMEOUT_S):
                _, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise SinkError(f"desktop: notify-send did not return in {TIMEOUT_S:g} s") from None
        if proc.returncode:
            why = err.decode(errors="replace").strip().splitlines()[:1]
            raise SinkError(f"desktop: notify-send exited {proc.returncode}: "
                            f"{why[0] if why else ''}")  # fmt: skip

"""The desktop sink: configured from the environment, one notify-send per alert at its severity,
failures reported. The machine has no desktop, so ``notify-send`` is a script on PATH that
records its arguments: the sink's real subprocess path runs end to end."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kit.app.build import configured_sinks
from kit.core.clock import SimClock
from kit.core.config import ConfigError
from kit.core.model import Alert, Severity
from kit.engine.alerts import AlertManager
from kit.engine.records import AlertRecord
from kit.sinks.base import SinkError
from kit.sinks.desktop import DesktopSink


def shim(folder: Path, exit_code: int = 0) -> Path:
    """A ``notify-send`` that appends its arguments, one per line, then a blank line."""
    folder.mkdir(exist_ok=True)
    log = folder / "calls.txt"
    script = folder / "notify-send"
    script.write_text(
        f'#!/bin/sh\nfor a in "$@"; do echo "$a" >> {log}; done\necho >> {log}\n'
        f'[ {exit_code} -eq 0 ] || echo "no display" >&2\nexit {exit_code}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


def test_configuration_from_the_environment(tmp_path: Path) -> None:
    assert DesktopSink.from_env({}) is None
    assert DesktopSink.from_env({"KIT_DESKTOP_NOTIFY": "0"}) is None
    with pytest.raises(ValueError, match="notify-send is not on PATH"):
        DesktopSink.from_env({"KIT_DESKTOP_NOTIFY": "1", "PATH": str(tmp_path)})
    shim(tmp_path / "bin")
    env = {"KIT_DESKTOP_NOTIFY": "1", "PATH": str(tmp_path / "bin")}
    sink = DesktopSink.from_env(env)
    assert sink is not None and sink.min_severity is Severity.CRITICAL and not sink.audit
    assert DesktopSink.from_env({**env, "KIT_DESKTOP_MIN_SEVERITY": "warning"}).min_severity == (
        Severity.WARNING
    )
    with pytest.raises(ValueError, match="KIT_DESKTOP_MIN_SEVERITY"):
        DesktopSink.from_env({**env, "KIT_DESKTOP_MIN_SEVERITY": "loud"})


def test_the_builder_refuses_a_desktop_sink_without_notify_send(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIT_DESKTOP_NOTIFY", "1")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="notify-send"):
        configured_sinks()
    log = shim(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert [s.name for s in configured_sinks()] == ["desktop"]
    assert not log.exists()


async def test_critical_alerts_pop_up_and_quieter_ones_do_not(tmp_path: Path) -> None:
    log = shim(tmp_path / "bin")
    sink = DesktopSink(str(tmp_path / "bin" / "notify-send"))
    clock = SimClock(datetime(2024, 3, 12, 15, 0, tzinfo=UTC))
    alerts = AlertManager(clock, (sink,))
    alerts.start()
    now = clock.now_ns()
    alerts.notify(Alert(now, Severity.INFO, "desk", "auto-manage on", key="a"))
    alerts.notify(Alert(now, Severity.CRITICAL, "stop_loss", "demo-1 lost 2.1x credit", key="b"))
    await alerts.close()  # delivers what is queued
    calls = [c.splitlines() for c in log.read_text().split("\n\n") if c.strip()]
    assert calls == [
        [
            "--app-name=Theta Desk",
            "--urgency=critical",
            "Theta Desk CRITICAL: stop_loss",
            "11:00:00 demo-1 lost 2.1x credit",
        ]
    ]


async def test_a_failing_notify_send_is_a_sink_error(tmp_path: Path) -> None:
    shim(tmp_path / "bin", exit_code=1)
    sink = DesktopSink(str(tmp_path / "bin" / "notify-send"))
    record = AlertRecord(1, Alert(1_700_000_000 * 10**9, Severity.CRITICAL, "engine", "down"))
    with pytest.raises(SinkError, match="exited 1: no display"):
        await sink.send([record])

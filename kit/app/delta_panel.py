"""What the Delta control panel (``notebooks/delta_trader.ipynb``) does, outside the notebook.

The panel starts ``kit delta run`` as its own process (so closing the browser tab never stops a
trade), talks to it only through files in the trader's log directory, and reads what it writes:

* ``trader.pid``: the running trader's lock. :func:`acquire_lock` takes it atomically and
  refuses while its process is alive, so two tabs (or a tab and a terminal) never start two
  traders; a lock left by a dead process is taken over.
* ``STOP``: :func:`request_stop` ("Stop & Exit Positions") asks the trader to buy both legs back
  and halt; :func:`start` removes a stale one first.
* ``status.json``, ``delta_trader_summary.log``, ``delta_trader_detailed.log``: the live metrics
  and the log tails (:func:`read_status`, :func:`tail`).

Settings are validated by :class:`~kit.app.delta_strategy.TraderSettings` before anything starts
and handed over as a TOML preset (``panel_preset.toml``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from kit.adapters.delta.client import DeltaClient
from kit.adapters.delta.config import DeltaConfig
from kit.adapters.delta.parsing import contract_of
from kit.app.delta_strategy import TraderSettings
from kit.core.config import data_dir

LOCK = "trader.pid"
PRESETS = "presets"  # saved presets: LOG_DIR/presets/NAME.toml


class PanelError(RuntimeError):
    """The panel cannot do what was asked; the message says why."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(log_dir: Path) -> int | None:
    """The pid of the trader holding the lock, if it is alive."""
    try:
        pid = int((Path(log_dir) / LOCK).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return None
    return pid if pid > 0 and _alive(pid) else None


def acquire_lock(log_dir: Path, pid: int | None = None) -> None:
    """Take the trader lock for ``pid`` (default: this process), or PanelError naming the
    running trader."""
    path = Path(log_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            other = running(log_dir)
            if other is not None:
                raise PanelError(
                    f"a trader is already running (pid {other}, lock {path})"
                ) from None
            path.unlink(missing_ok=True)  # a dead trader's lock
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(pid or os.getpid()))
        return
    raise PanelError(f"cannot take the trader lock {path}")


def release_lock(log_dir: Path) -> None:
    path = Path(log_dir) / LOCK
    with contextlib.suppress(FileNotFoundError, ValueError):
        if int(path.read_text().strip() or 0) == os.getpid():
            path.unlink()


def to_toml(settings: Mapping[str, Any]) -> str:
    """A flat TOML document of strings, numbers and booleans (what the settings are)."""
    lines = []
    for key, value in settings.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = repr(value)
        else:
            text = json.dumps(str(value))
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def start(log_dir: Path, settings: Mapping[str, Any], *, live: bool = False,
          confirm: str | None = None, env: Mapping[str, str] | None = None,
          engine: str = "desk") -> int:  # fmt: skip
    """Validate ``settings``, write the preset and launch the trader; returns its pid."""
    log_dir = Path(log_dir)
    TraderSettings.load(None, **dict(settings))  # one-line SettingsError on a bad value
    other = running(log_dir)
    if other is not None:
        raise PanelError(f"a trader is already running (pid {other}): stop it first")
    if live and not confirm:
        raise PanelError("live trading needs the API key typed as confirmation")
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "STOP").unlink(missing_ok=True)
    preset = log_dir / "panel_preset.toml"
    preset.write_text(to_toml(settings))
    if engine not in ("legs", "desk"):
        raise PanelError(f"engine {engine!r}: legs or desk")
    mode = ["--live", "--confirm-live", confirm or ""] if live else ["--dry-run"]
    cmd = [sys.executable, "-m", "kit", "delta", "run", "--preset", str(preset), "--log-dir",
           str(log_dir), "--engine", engine, *mode]  # fmt: skip
    child_env = None if env is None else dict(env)
    out = open(log_dir / "trader.out", "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=child_env, start_new_session=True)  # fmt: skip
    out.close()
    return proc.pid


def request_stop(log_dir: Path) -> Path:
    """Ask the running trader to exit both legs and halt (it checks every ``poll_s``)."""
    path = Path(log_dir) / "STOP"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("stop requested from the control panel\n")
    return path


def read_status(log_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(log_dir) / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def tail(path: Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 200 * lines))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def default_log_dir() -> Path:
    """Where ``kit delta run`` writes by default: ``$KIT_DATA_DIR/delta`` (the checkout's
    ``data/delta`` wherever the kernel starts)."""
    return data_dir() / "delta"


def listed_expiries(coin: str, config: DeltaConfig | None = None) -> list[date]:
    """The settlement days Delta lists for ``coin`` (for the panel's expiry dropdown). Runs the
    async client on its own thread: a notebook kernel already has a running loop."""

    async def fetch() -> list[date]:
        async with DeltaClient(config or DeltaConfig.from_env()) as client:
            return sorted({contract_of(p).expiry for p in await client.products(coin)})

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, fetch()).result()


def presets(log_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted((Path(log_dir) / PRESETS).glob("*.toml"))}


def save_preset(log_dir: Path, name: str, settings: Mapping[str, Any]) -> Path:
    """Validate and save ``settings`` as ``presets/NAME.toml``."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise PanelError(f"preset name {name!r}: letters, digits, - and _ only")
    TraderSettings.load(None, **dict(settings))
    path = Path(log_dir) / PRESETS / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_toml(settings))
    return path

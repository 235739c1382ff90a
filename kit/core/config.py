"""Settings from the environment, a ``.env`` file, or defaults; frozen once read.

Credentials and endpoints live in the environment (or ``.env``, which is git-ignored) so nothing
secret is ever committed. Values already in the environment win over ``.env``.

This module is the only reader of ``os.environ``: everything else asks :func:`env`,
:func:`env_bool`, :func:`env_int` or :func:`env_float`, which read ``.env`` first, strip
whitespace, treat an empty value as unset and raise a :class:`ConfigError` naming the variable
when a value does not parse. Each takes ``environ=`` (a mapping) so tests can pass their own.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import overload

from dotenv import load_dotenv

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """A setting has a value the desk cannot use; the message names the variable."""


@cache
def load_env(path: str = ".env") -> bool:
    """Read ``.env`` once (without overriding variables already set); True if it set any. No file
    is fine; one that cannot be read or is not UTF-8 text is a ConfigError naming it."""
    if os.path.isdir(path):  # python-dotenv would skip it silently
        raise ConfigError(f"{path}: is a directory, not a settings file")
    try:
        return load_dotenv(path, override=False, encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text ({_first_bad_byte(path)})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _first_bad_byte(path: str) -> str:
    """Where a file stops being UTF-8 (the decoder reading in chunks only knows the chunk)."""
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"byte {data[exc.start]:#04x} on line {line}"
    return "it changed while being read"


Environ = Mapping[str, str] | None


@overload
def env(name: str, default: str, *, environ: Environ = None, strip: bool = True) -> str: ...
@overload
def env(
    name: str, default: None = None, *, environ: Environ = None, strip: bool = True
) -> str | None: ...
def env(
    name: str, default: str | None = None, *, environ: Environ = None, strip: bool = True
) -> str | None:
    """The variable's value, whitespace stripped (``strip=False`` for secrets, which may begin
    or end with a space); ``default`` when unset or empty. Reads ``.env`` first unless
    ``environ`` (a mapping standing in for the environment) is given."""
    if environ is None:
        load_env()
        environ = os.environ
    raw = environ.get(name) or ""
    value = raw.strip() if strip else raw
    return value or default


def parse_bool(name: str, text: str) -> bool:
    """The one boolean parser: 1/true/yes/on or 0/false/no/off, any case; else a ConfigError."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{name}={text!r}: give 1/true/yes/on or 0/false/no/off")


def env_bool(name: str, default: bool, *, environ: Environ = None) -> bool:
    """A yes/no setting (see :func:`parse_bool`); ``default`` when unset or empty."""
    text = env(name, environ=environ)
    return default if text is None else parse_bool(name, text)


@overload
def env_int(name: str, default: int, *, environ: Environ = None, what: str = ...) -> int: ...
@overload
def env_int(name: str, default: None = None, *, environ: Environ = None,
            what: str = ...) -> int | None: ...  # fmt: skip
def env_int(name: str, default: int | None = None, *, environ: Environ = None,
            what: str = "an integer") -> int | None:  # fmt: skip
    """An integer setting; ``default`` when unset or empty; ConfigError saying ``what`` to give."""
    text = env(name, environ=environ)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r}: give {what}") from None


@overload
def env_float(name: str, default: float, *, environ: Environ = None, what: str = ...) -> float: ...
@overload
def env_float(name: str, default: None = None, *, environ: Environ = None,
              what: str = ...) -> float | None: ...  # fmt: skip
def env_float(name: str, default: float | None = None, *, environ: Environ = None,
              what: str = "a number") -> float | None:  # fmt: skip
    """A finite number setting; ``default`` when unset or empty; ConfigError saying ``what``."""
    text = env(name, environ=environ)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"{name}={text!r}: give {what}")
    return value


def project_root(start: Path | None = None) -> Path | None:
    """The checkout this package runs from: the nearest directory at or above ``start`` (the
    working directory) that holds ``pyproject.toml`` and ``kit/``. Voila starts a page's kernel
    in ``notebooks/``, so a bare ``data/`` there would be a second, empty data directory."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file() and (d / "kit" / "__init__.py").is_file():
            return d
    return None


def data_dir(*, environ: Environ = None) -> Path:
    """Where runtime files live: ``KIT_DATA_DIR``, else the checkout's ``data/`` (relative when
    the working directory is the checkout itself, so messages stay short), else ``./data``. Every
    default path (the DuckDB store, the manual-position journal) hangs off this one answer, so a
    notebook page reads the same files whichever directory its kernel started in."""
    if explicit := env("KIT_DATA_DIR", environ=environ):
        return Path(explicit)
    root = project_root()
    if root is None or root == Path.cwd().resolve():
        return Path("data")
    return root / "data"


@dataclass(frozen=True)
class Settings:
    """Process-wide settings. Later subsystems add their own fields here, with defaults."""

    data_dir: Path = Path("data")
    log_level: str = "INFO"
    log_format: str = "text"  # json: one object per line, for a log collector

    @classmethod
    def from_env(cls) -> Settings:
        level = (env("KIT_LOG_LEVEL") or "INFO").upper()
        if level not in LOG_LEVELS:
            raise ConfigError(f"KIT_LOG_LEVEL: {level!r} is not one of {', '.join(LOG_LEVELS)}")
        fmt = (env("KIT_LOG_FORMAT") or "text").lower()
        if fmt not in LOG_FORMATS:
            raise ConfigError(f"KIT_LOG_FORMAT: {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
        return cls(data_dir=data_dir(), log_level=level, log_format=fmt)

    def configure_logging(self) -> None:
        if self.log_format == "json":
            handler = logging.StreamHandler()
            handler.setFormatter(JsonLogFormatter())
            logging.basicConfig(level=self.log_level, handlers=[handler])
            return
        logging.basicConfig(
            level=self.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line (``KIT_LOG_FORMAT=json``): ``ts`` (ISO 8601, UTC), ``level``,
    ``logger`` (the subsystem: ``kit.remote.gateway``, ``kit.store.writer``...), ``message``
    and, for an exception, ``exc`` (its traceback). Redaction filters run before it, so a
    masked secret stays masked."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)

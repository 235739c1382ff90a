"""Argument types shared by the command-line modules (``argparse`` ``type=`` callables).

They live here, below every command module, so a command module never imports another one for
a parser (``kit.cli.positions`` importing ``kit.cli.main`` for ``_day`` was an import cycle).
"""

from __future__ import annotations

import argparse
import os
from datetime import date, time
from pathlib import Path


def day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def clock_time(text: str) -> time:
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time (HH:MM[:SS]): {text!r}") from None


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def speed(text: str) -> float:
    """A replay speed: a positive factor, or ``max`` (0: as fast as possible)."""
    if text == "max":
        return 0.0
    return positive(text)


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (0-65535): {text!r}")
    return value


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1: {text!r}")
    return value


# --- paths: every command checks its files the same way, and names the file in the error ---


def check_file(path: Path, *, utf8: bool = False) -> Path:
    """``path`` exists, is a file (not a directory) and is readable; with ``utf8``, its whole
    text decodes as UTF-8. Raises ``ArgumentTypeError`` naming the file and what is wrong."""
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{path}: no such file")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a directory, not a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{path}: not a regular file")
    try:
        with path.open("rb") as fh:
            if utf8:
                data = fh.read()
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise argparse.ArgumentTypeError(
                        f"{path}: not UTF-8 text (bad byte at offset {exc.start})"
                    ) from None
    except PermissionError:
        raise argparse.ArgumentTypeError(f"{path}: not readable (permission denied)") from None
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{path}: cannot be read ({exc.strerror})") from None
    return path


def input_file(text: str) -> Path:
    """A readable file (binary: Parquet, DuckDB, CSV read by a library)."""
    return check_file(Path(text))


def text_file(text: str) -> Path:
    """A readable UTF-8 text file (TOML, JSON, CSV read as text)."""
    return check_file(Path(text), utf8=True)


def input_dir(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{path}: no such directory")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a file, not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: not readable (permission denied)")
    return path


def output_dir(text: str) -> Path:
    """A directory to write into: an existing writable directory, or one that can be created
    (its nearest existing parent is a writable directory)."""
    path = Path(text)
    if path.exists():
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"{path}: is a file, not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{path}: not writable (permission denied)")
        return path
    return _creatable(path)


def _creatable(path: Path) -> Path:
    """``path`` can be made: its nearest existing ancestor is a writable directory."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: cannot be created in {parent}")
    return path


def output_path(text: str) -> Path:
    """A file to write whose missing directories are created: not a directory itself."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a directory, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{path}: not writable (permission denied)")
    return _creatable(path)


def output_file(text: str) -> Path:
    """A file to write: not a directory, in an existing writable directory."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a directory, not a file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{path}: not writable (permission denied)")
    return path

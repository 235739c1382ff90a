"""Argument types shared by the command-line modules (``argparse`` ``type=`` callables).

They live here, below every command module, so a command module never imports another one for
a parser (``kit.cli.positions`` importing ``kit.cli.main`` for ``_day`` was an import cycle).
"""

from __future__ import annotations

import argparse
from datetime import date, time


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

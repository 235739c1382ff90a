"""Settings from the environment, a ``.env`` file, or defaults; frozen once read.

Credentials and endpoints live in the environment (or ``.env``, which is git-ignored) so nothing
secret is ever committed. Values already in the environment win over ``.env``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from dotenv import load_dotenv

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A setting has a value the desk cannot use; the message names the variable."""


@cache
def load_env(path: str = ".env") -> bool:
    """Read ``.env`` once (without overriding variables already set); True if a file was read."""
    return load_dotenv(path, override=False)


@dataclass(frozen=True)
class Settings:
    """Process-wide settings. Later subsystems add their own fields here, with defaults."""

    data_dir: Path = Path("data")
    log_level: str = "INFO"

    @classmethod
    def from_env(cls) -> Settings:
        load_env()
        level = os.environ.get("KIT_LOG_LEVEL", "INFO").upper()
        if level not in LOG_LEVELS:
            raise ConfigError(f"KIT_LOG_LEVEL: {level!r} is not one of {', '.join(LOG_LEVELS)}")
        return cls(data_dir=Path(os.environ.get("KIT_DATA_DIR", "data")), log_level=level)

    def configure_logging(self) -> None:
        logging.basicConfig(
            level=self.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )

"""What the desk service and its viewers agree on, importable by both sides without either.

The dashboard (:mod:`kit.ui`, :mod:`kit.remote.client`) must stay thin: it never loads the
engine. So the few facts both ends share live here, with nothing heavier than the standard
library: the protocol version, the close code of a refused token and where the token is kept
(the rule settings a dashboard may change arrive in every snapshot). The frames themselves are
described in :mod:`kit.remote.gateway`; the snapshot document in :mod:`kit.app.view`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from kit.core.config import env

PROTOCOL = 1
UNAUTHORIZED = 4401  # WebSocket close code: wrong or missing token


def token_path() -> Path:
    """Where the service keeps its token: ``KIT_TOKEN_FILE``, else a user-only config file."""
    if path := env("KIT_TOKEN_FILE"):
        return Path(path)
    base = Path(env("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "theta-desk" / "service.token"


def client_token(path: Path | None = None) -> str:
    """The token a client presents; a clear error when the service has never run."""
    if token := env("KIT_TOKEN"):
        return token
    path = path or token_path()
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise ConnectionError(f"no service token at {path}: start the desk service (`kit serve`) "
                              "or set KIT_TOKEN") from None  # fmt: skip


# any auth frame's token, the wrong ones a guesser sends included (JSON, maybe escaped/repr'd)
_TOKEN_FIELD = re.compile(r"""(\\?["']token\\?["']\s*:\s*\\?["'])[^"'\\]*""")


class _Redact(logging.Filter):
    """Masks a secret in whatever the WebSocket library logs (at DEBUG it logs every frame,
    the auth frame included), and the token of any auth frame, right or wrong."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        masked = text.replace(self.secret, "***")
        if "token" in masked:
            masked = _TOKEN_FIELD.sub(r"\1***", masked)
        if masked != text:
            record.msg, record.args = masked, None
        return True


def redacted_logger(name: str, secret: str) -> logging.Logger:
    """A logger for the WebSocket library to use that never writes ``secret``."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _Redact) and f.secret == secret for f in logger.filters):
        logger.addFilter(_Redact(secret))
    return logger

"""Delta Exchange settings: keys and hosts from the environment or ``.env`` (never logged).

``DELTA_API_KEY`` / ``DELTA_API_SECRET`` (testnet and production keys differ), ``DELTA_TESTNET``
(yes by default: nothing reaches the real exchange unless the user says so), ``DELTA_BASE_URL``
to point at another REST host (``kit emulate delta``: ``http://127.0.0.1:8900``) and
``DELTA_WS_URL`` for the socket (derived from ``DELTA_BASE_URL`` when only that is set).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kit.core.config import ConfigError, env, env_bool

PRODUCTION = ("https://api.india.delta.exchange", "wss://socket.india.delta.exchange")
TESTNET = ("https://cdn-ind.testnet.deltaex.org", "wss://socket-ind.testnet.deltaex.org")


@dataclass(frozen=True)
class DeltaConfig:
    base_url: str = TESTNET[0]
    ws_url: str = TESTNET[1]
    api_key: str = ""
    api_secret: str = field(default="", repr=False)  # never in a repr, a log or an error
    testnet: bool = True
    timeout_s: float = 10.0
    retries: int = 4  # 429s and dropped connections retried this many times
    max_backoff_s: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DeltaConfig:
        testnet = env_bool("DELTA_TESTNET", True, environ=environ)
        rest, ws = TESTNET if testnet else PRODUCTION
        base = env("DELTA_BASE_URL", environ=environ)
        if base:
            parts = urlsplit(base)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(f"DELTA_BASE_URL={base!r}: give http(s)://host[:port]")
            rest = base.rstrip("/")
            ws = f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}/"
        return cls(
            base_url=rest,
            ws_url=env("DELTA_WS_URL", ws, environ=environ),
            api_key=env("DELTA_API_KEY", "", environ=environ),
            api_secret=env("DELTA_API_SECRET", "", environ=environ, strip=False),
            testnet=testnet,
        )

    @property
    def has_keys(self) -> bool:
        return bool(self.api_key and self.api_secret)

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

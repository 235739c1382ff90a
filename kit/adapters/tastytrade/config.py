"""tastytrade settings: OAuth credentials and hosts from the environment or ``.env`` (never logged).

``TT_SECRET`` (the OAuth client secret of your provider app) and ``TT_REFRESH`` (the user's
refresh token) are the SDK's own variable names. ``TT_SANDBOX=yes`` selects the certification
(sandbox) host ``api.cert.tastyworks.com``; ``TT_API_URL`` points anywhere else (``kit emulate
tastytrade``: ``http://127.0.0.1:P``). ``TT_ACCOUNT`` is the account orders and positions use
(default: the first open account). ``TT_LIVENESS_S`` (60) is how long the DXLink socket may stay
silent before it is reconnected; ``TT_CHUNK_BYTES`` (16000) caps one subscription message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kit.core.config import ConfigError, env, env_bool, env_float, env_int

PRODUCTION_URL = "https://api.tastyworks.com"
SANDBOX_URL = "https://api.cert.tastyworks.com"


@dataclass(frozen=True)
class TastyConfig:
    api_url: str = PRODUCTION_URL
    secret: str = field(default="", repr=False)  # never in a repr, a log or an error
    refresh: str = field(default="", repr=False)
    sandbox: bool = False
    account: str = ""
    liveness_s: float = 60.0  # DXLink: no inbound message this long -> STALE, reconnect
    chunk_bytes: int = 16_000  # largest FEED_SUBSCRIPTION message sent
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TastyConfig:
        sandbox = env_bool("TT_SANDBOX", False, environ=environ)
        url = env("TT_API_URL", "", environ=environ) or (SANDBOX_URL if sandbox else PRODUCTION_URL)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"TT_API_URL={url!r}: give http(s)://host[:port]")
        return cls(
            api_url=url.rstrip("/"),
            secret=env("TT_SECRET", "", environ=environ, strip=False),
            refresh=env("TT_REFRESH", "", environ=environ, strip=False),
            sandbox=sandbox,
            account=env("TT_ACCOUNT", "", environ=environ),
            liveness_s=env_float("TT_LIVENESS_S", 60.0, environ=environ),
            chunk_bytes=env_int("TT_CHUNK_BYTES", 16_000, environ=environ),
        )

    @property
    def has_credentials(self) -> bool:
        return bool(self.secret and self.refresh)

    @property
    def host(self) -> str:
        return urlsplit(self.api_url).netloc

    def require(self) -> None:
        if not self.has_credentials:
            raise ConfigError("tastytrade needs TT_SECRET (OAuth client secret) and TT_REFRESH "
                              "(refresh token) in the environment or .env")  # fmt: skip

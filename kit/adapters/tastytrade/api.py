"""One tastytrade session (the SDK's OAuth ``Session``) shared by the feed, chains and broker.

The SDK refreshes its access token only by the clock (``expires_in`` minus a minute). A token the
server stops honouring earlier (revoked, a second login, an expiry the clock missed) answers
401: :meth:`TastyApi.call` refreshes once and retries, so a session that lost its token heals
instead of failing every request until the desk restarts. The SDK picks its host from module
constants at construction; the configured host (sandbox, emulator) is set on the session's
client right after, so two sessions on two hosts can live in one process.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kit.adapters.tastytrade.config import TastyConfig
from kit.core.config import ConfigError

try:
    import tastytrade
except ImportError:  # the SDK is an extra: a one-line hint, not a traceback
    raise ConfigError("tastytrade needs the tastytrade SDK: pip install 'theta-desk[brokers]' "
                      "(make setup installs it)") from None  # fmt: skip

log = logging.getLogger(__name__)
# The SDK sets its own logger to DEBUG, which would print every streamer message (the alert
# streamer's carry the access token) wherever the root handler prints: INFO and up only.
logging.getLogger(tastytrade.__name__).setLevel(logging.INFO)  # after the SDK's own setLevel

T = TypeVar("T")


class TastyError(RuntimeError):
    """A tastytrade request failed; the message is the server's (never a credential)."""


def _auth_failure(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("token", "unauthorized", "401", "invalid_grant", "expired"))


class TastyApi:
    """The SDK session and the account in use. ``async with TastyApi(cfg) as api`` or
    :meth:`open` / :meth:`aclose`."""

    def __init__(self, config: TastyConfig | None = None) -> None:
        from tastytrade import Session

        self.config = cfg = config or TastyConfig.from_env()
        cfg.require()
        self.session = Session(cfg.secret, cfg.refresh, is_test=cfg.sandbox,
                               timeout=cfg.timeout_s)  # fmt: skip
        self.session._client.base_url = cfg.api_url  # the configured host, not the SDK's
        self.account: Any = None  # tastytrade.Account
        self.refreshes = 0  # forced refreshes after a 401 (auth expiry healed)

    async def open(self) -> TastyApi:
        """Log in (OAuth refresh) and choose the account; ConfigError naming the host on
        failure, never a traceback."""
        from tastytrade import Account

        try:
            await self.session.refresh(force=True)
            accounts = await self.call(lambda: Account.get(self.session))
        except ConfigError:
            raise
        except Exception as exc:
            await self.aclose()
            where = self.config.api_url
            raise ConfigError(f"cannot log in to tastytrade at {where}: {exc} (TT_SECRET, "
                              "TT_REFRESH, TT_SANDBOX, TT_API_URL)") from None  # fmt: skip
        want = self.config.account
        chosen = [a for a in accounts if not want or a.account_number == want]
        if not chosen:
            await self.aclose()
            have = ", ".join(a.account_number for a in accounts) or "none"
            raise ConfigError(f"tastytrade account {want!r} not found (have {have}): TT_ACCOUNT")
        self.account = chosen[0]
        return self

    async def aclose(self) -> None:
        await self.session._client.aclose()

    async def __aenter__(self) -> TastyApi:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` (an SDK call); after a refused token, one forced refresh and a retry."""
        from tastytrade.utils import TastytradeError

        try:
            return await fn()
        except TastytradeError as exc:
            if not _auth_failure(exc):
                raise TastyError(str(exc).strip()) from None
            log.warning("tastytrade: token refused (%s); refreshing", str(exc).strip()[:80])
        self.refreshes += 1
        try:
            await self.session.refresh(force=True)
            return await fn()
        except TastytradeError as exc:
            raise TastyError(str(exc).strip()) from None

    async def quote_token(self) -> tuple[str, str]:
        """(dxlink-url, token) for the streamer, as the SDK's DXLinkStreamer gets them."""
        data = await self.call(lambda: self.session._get("/api-quote-tokens"))
        return str(data["dxlink-url"]), str(data["token"])

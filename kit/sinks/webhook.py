"""The webhook sink: POSTs batches as JSON, configured from ``KIT_WEBHOOK_URL``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field

import httpx
import msgspec

from kit.core import config
from kit.core.model import Severity
from kit.engine.records import SinkRecord, record_to_json
from kit.remote.protocol import redacted_logger
from kit.sinks.base import SinkError, with_retries


class _ServerError(Exception):
    """A 5xx answer: the receiver is having trouble, worth another try."""


@dataclass(frozen=True)
class WebhookSink:
    """POSTs ``{"alerts": [...]}`` as JSON; retries 5xx and connection errors, drops on 4xx.

    Only the host is ever logged (and shown in repr): webhook URLs often carry a secret token.
    """

    url: str = field(repr=False)
    min_severity: Severity = Severity.WARNING
    timeout_s: float = 5.0
    headers: Mapping[str, str] | None = None
    _: KW_ONLY
    audit: bool = False
    retry_delays_s: tuple[float, ...] = (0.5, 2.0)

    def __post_init__(self) -> None:
        # httpx logs every request's full URL at INFO: mask the path and query (the token)
        secret = httpx.URL(self.url).raw_path.decode("ascii", "replace")
        if len(secret) > 1:
            redacted_logger("httpx", secret)

    @property
    def name(self) -> str:
        return f"webhook:{httpx.URL(self.url).host}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebhookSink | None:
        """Configure from ``KIT_WEBHOOK_URL``; None when it is unset."""
        url = config.env("KIT_WEBHOOK_URL", environ=env)
        return cls(url) if url else None

    async def send(self, records: Sequence[SinkRecord]) -> None:
        body = msgspec.json.encode({"alerts": [record_to_json(r) for r in records]})
        headers = {"content-type": "application/json", **(self.headers or {})}
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:

            async def post() -> None:
                resp = await client.post(self.url, content=body, headers=headers)
                if resp.status_code >= 500:
                    raise _ServerError(f"HTTP {resp.status_code}")
                if resp.status_code >= 400:
                    raise SinkError(f"{self.name} refused: {resp.status_code} {resp.text[:200]!r}")

            transient = (_ServerError, httpx.TransportError)
            await with_retries(self.name, post, transient, self.retry_delays_s)

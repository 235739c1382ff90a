"""ThetaData Terminal settings (host and ports from the environment or ``.env``) and its errors."""

from __future__ import annotations

from dataclasses import dataclass

from kit.adapters.thetadata.parsing import ERROR_CODES
from kit.core.config import env, env_int


class ThetaDataError(RuntimeError):
    """The Terminal refused a request; ``code``/``name`` are ThetaData's, ``detail`` its text."""

    def __init__(self, code: int, detail: str, url: str) -> None:
        self.code, self.name, self.detail = code, ERROR_CODES.get(code, "UNKNOWN"), detail
        super().__init__(f"ThetaData {code} {self.name}: {detail.strip() or 'no detail'} ({url})")


@dataclass(frozen=True)
class ThetaDataConfig:
    host: str = "127.0.0.1"
    rest_port: int = 25503
    ws_port: int = 25520
    rest_format: str = "csv"  # or "ndjson"
    retries: int = 5
    retry_initial_s: float = 0.25
    index_poll_s: float = 1.0
    stream_trades: bool = False
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls) -> ThetaDataConfig:
        """``THETADATA_HOST``, ``THETADATA_REST_PORT``, ``THETADATA_WS_PORT`` (and ``.env``)."""
        port = "a port number (an integer)"
        return cls(
            host=env("THETADATA_HOST", cls.host),
            rest_port=env_int("THETADATA_REST_PORT", cls.rest_port, what=port),
            ws_port=env_int("THETADATA_WS_PORT", cls.ws_port, what=port),
        )

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}/v3"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/v1/events"

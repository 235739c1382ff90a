"""Where TWS / IB Gateway listens and who we are to it: ``IBKR_HOST``, ``IBKR_PORT``,
``IBKR_CLIENT_ID`` (and ``IBKR_ACCOUNT_ID`` for orders), from the environment or ``.env``.

Ports are IBKR's defaults: TWS 7497 paper / 7496 live, IB Gateway 4002 paper / 4001 live. The
port says which account type the socket trades; orders go through the live-trading gate of
:mod:`kit.execution.live` whichever it is, and :attr:`IbkrConfig.live_port` names the live ones
so the gate's message can say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kit.core.config import ConfigError, env, env_float, env_int

PAPER_PORTS = {7497: "TWS paper", 4002: "IB Gateway paper"}
LIVE_PORTS = {7496: "TWS live", 4001: "IB Gateway live"}
DEFAULT_PORT = 7497


@dataclass(frozen=True)
class IbkrConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    client_id: int = 1
    account_id: str = ""
    timeout_s: float = 10.0  # connect and start-up synchronisation
    market_data_lines: int = 100  # IBKR's default allowance; more needs quote booster packs
    market_data_type: int = 1  # 1 live, 3 delayed (what the account is entitled to)
    probe_s: float = 2.0  # the watchdog looks this often; idle that long, it probes TWS
    probe_timeout_s: float = 4.0  # an unanswered reqCurrentTime probe drops the connection

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IbkrConfig:
        port = env_int("IBKR_PORT", DEFAULT_PORT, environ=environ, what="a TCP port")
        if not 0 < port < 65536:
            raise ConfigError(f"IBKR_PORT={port}: not a TCP port")
        kind = env_int("IBKR_MARKET_DATA_TYPE", 1, environ=environ, what="1-4")
        if kind not in (1, 2, 3, 4):
            raise ConfigError(f"IBKR_MARKET_DATA_TYPE={kind}: 1 live, 2 frozen, 3 delayed, "
                              "4 delayed frozen")  # fmt: skip
        lines = env_int("IBKR_MARKET_DATA_LINES", 100, environ=environ, what="a whole number")
        return cls(
            host=env("IBKR_HOST", "127.0.0.1", environ=environ),
            port=port,
            client_id=env_int("IBKR_CLIENT_ID", 1, environ=environ, what="a whole number"),
            account_id=env("IBKR_ACCOUNT_ID", "", environ=environ),
            market_data_lines=lines,
            market_data_type=kind,
            timeout_s=env_float("IBKR_TIMEOUT_S", 10.0, environ=environ, what="seconds"),
        )

    @property
    def live_port(self) -> bool:
        return self.port in LIVE_PORTS

    @property
    def where(self) -> str:
        kind = LIVE_PORTS.get(self.port) or PAPER_PORTS.get(self.port) or "TWS API"
        return f"{kind} at {self.host}:{self.port} (client id {self.client_id})"

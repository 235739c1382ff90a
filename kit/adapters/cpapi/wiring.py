"""Wiring the Client Portal into the desk builder (``--feed ibkr-cpapi``).

One :class:`~kit.adapters.cpapi.session.CpApiSession` serves the feed, the chain source and (with
``--broker ibkr-cpapi``) the broker. The probe authenticates and reads SPX's last price from
``iserver/marketdata/snapshot``: an unreachable or logged-out gateway is a one-line
:class:`~kit.core.config.ConfigError` naming the settings, not a feed that retries forever. The
desk's clock starts at the gateway's own time (``_updated``) and flows with the wall, so a desk
on the emulator's simulated 10:00 is at 10:00 whatever the hour.
"""

from __future__ import annotations

from kit.adapters.cpapi.broker import CpApiConfig
from kit.adapters.cpapi.chains import CpApiChainSource
from kit.adapters.cpapi.feed import CpApiFeed
from kit.adapters.cpapi.marketdata import field_number
from kit.adapters.cpapi.session import CpApiSession
from kit.core.clock import SimClock, from_ns
from kit.core.config import ConfigError
from kit.execution.broker import BrokerError, OrderRejectedError


async def probe(session: CpApiSession) -> int:
    """The gateway's time (ns) from SPX's snapshot; ConfigError when it cannot answer."""
    where = session.config.base_url
    await session.acquire()
    try:
        await session.authenticate()
        und = await session.underlying("SPX")
        rows = await session.call("GET", "/iserver/marketdata/snapshot",
                                  params={"conids": str(und), "fields": "31"})  # fmt: skip
    except (BrokerError, OrderRejectedError) as exc:
        raise ConfigError(f"cannot use the IBKR gateway at {where}: {exc} (IBKR_CPAPI_URL, "
                          "IBKR_ACCOUNT_ID, IBKR_CPAPI_VERIFY_TLS)") from None  # fmt: skip
    finally:
        await session.release()
    row = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
    ms = field_number(row.get("_updated"))
    if not ms:
        raise ConfigError(f"the IBKR gateway at {where} sent no SPX snapshot time")
    return int(ms * 1_000_000)


async def cpapi_feed(
    config: CpApiConfig | None = None,
) -> tuple[SimClock, CpApiFeed, CpApiChainSource]:
    session = CpApiSession(config or CpApiConfig.from_env())
    clock = SimClock(from_ns(await probe(session)), speed=1.0)
    return clock, CpApiFeed(session, clock=clock), CpApiChainSource(session, clock)

"""Wiring TWS / IB Gateway into the desk builder (``--feed ibkr``, ``--broker ibkr``).

The feed's probe connects the process's shared :class:`~kit.adapters.ibkr.connection.IbConnection`
and reads TWS's time (``reqCurrentTime``): unreachable is one line naming the host, port and
client id and what to check, never a feed retrying forever behind the desk's back. The desk's
clock starts at TWS's time and flows with the wall, as with ThetaData and Delta.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kit.adapters.ibkr.chains import IbkrChainSource
from kit.adapters.ibkr.config import IbkrConfig
from kit.adapters.ibkr.connection import IbConnection
from kit.adapters.ibkr.feed import IbkrFeed
from kit.core.clock import Clock, SimClock, to_ns
from kit.core.config import ConfigError

log = logging.getLogger(__name__)


async def ibkr_feed(config: IbkrConfig | None = None) -> tuple[SimClock, IbkrFeed, IbkrChainSource]:
    cfg = config or IbkrConfig.from_env()
    conn = IbConnection.shared(cfg)
    try:
        await conn.acquire()
        now = await conn.ib.reqCurrentTimeAsync()
    except (ConnectionError, TimeoutError, OSError) as exc:
        await conn.release()
        raise ConfigError(f"cannot reach {cfg.where} ({exc}): is TWS or IB Gateway running with "
                          "the API enabled (Configure > API > Settings) and this port and client "
                          "id free? (IBKR_HOST, IBKR_PORT, IBKR_CLIENT_ID)") from None  # fmt: skip
    clock = SimClock(now, speed=1.0)  # TWS's time, then the wall
    feed = IbkrFeed(cfg, clock=clock, connection=conn)
    feed._acquired = True  # the probe's hold on the connection is the feed's
    log.info("ibkr: feed on %s, market time %s (%d ns)", cfg.where, now, to_ns(now))
    return clock, feed, IbkrChainSource(feed)


def ibkr_broker(clock: Clock, confirm: str | None, environ: Mapping[str, str] | None = None):
    """The TWS broker, once the gate's confirmation names the account it trades."""
    from kit.adapters.ibkr.broker import IbkrBroker

    cfg = IbkrConfig.from_env(environ)
    if not cfg.account_id:
        raise ConfigError("IBKR_ACCOUNT_ID must be set for --broker ibkr (the account the "
                          "orders are for, e.g. DU1234567 for paper)")  # fmt: skip
    if confirm != cfg.account_id:
        raise ConfigError("live trading needs a confirmation naming the account: pass "
                          "--confirm-live with the account id of IBKR_ACCOUNT_ID")  # fmt: skip
    kind = "a LIVE account port" if cfg.live_port else "a paper account port"
    log.warning("IBKR orders go to %s (%s): real orders on a live account", cfg.where, kind)
    return IbkrBroker(cfg, clock)

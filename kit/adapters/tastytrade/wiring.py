"""Wiring tastytrade into the desk builder (``--feed tastytrade``, ``--broker tastytrade``).

One :class:`~kit.adapters.tastytrade.api.TastyApi` session serves the feed and the chain source;
the broker (``--broker tastytrade``) logs in with its own, so closing the feed never cuts
orders. The probe logs in and reads SPX's market data: missing credentials, a refused login or
an unreachable host are one-line ConfigErrors naming the settings. The desk's clock starts at
the vendor's own SPX timestamp and flows with the wall (as with ThetaData), so a desk on
``kit emulate tastytrade`` runs at the emulator's market time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kit.adapters.tastytrade.api import TastyApi, TastyError
from kit.adapters.tastytrade.chains import TastytradeChainSource
from kit.adapters.tastytrade.config import TastyConfig
from kit.adapters.tastytrade.feed import TastytradeFeed
from kit.core.clock import Clock, SimClock, from_ns
from kit.core.config import ConfigError

log = logging.getLogger(__name__)


async def probe(api: TastyApi) -> int:
    """The vendor's time (ns) from SPX's market data; ConfigError when it cannot answer."""
    from tastytrade.market_data import get_market_data_by_type

    try:
        rows = await api.call(lambda: get_market_data_by_type(api.session, indices=["SPX"]))
    except TastyError as exc:
        raise ConfigError(f"cannot read tastytrade market data at {api.config.api_url}: {exc}") \
            from None  # fmt: skip
    if not rows:
        raise ConfigError(f"tastytrade at {api.config.api_url} has no SPX market data")
    return int(rows[0].updated_at.timestamp() * 1e9)


async def tastytrade_feed(
    config: TastyConfig | None = None,
) -> tuple[SimClock, TastytradeFeed, TastytradeChainSource]:
    api = await TastyApi(config or TastyConfig.from_env()).open()
    try:
        ts = await probe(api)
    except BaseException:
        await api.aclose()
        raise
    clock = SimClock(from_ns(ts), speed=1.0)
    return clock, TastytradeFeed(api, clock=clock, owns_api=True), TastytradeChainSource(api, clock)


def tastytrade_broker(clock: Clock, confirm: str | None, environ: Mapping[str, str] | None = None):
    """The live tastytrade broker, once the gate's confirmation names the account (TT_ACCOUNT)."""
    from kit.adapters.tastytrade.broker import TastytradeBroker

    cfg = TastyConfig.from_env(environ)
    cfg.require()
    if not cfg.account:
        raise ConfigError("--broker tastytrade needs TT_ACCOUNT (the account orders go to)")
    if confirm != cfg.account:
        raise ConfigError("live trading on tastytrade needs a confirmation naming the account: "
                          "pass --confirm-live with the value of TT_ACCOUNT")  # fmt: skip
    where = "SANDBOX" if cfg.sandbox else cfg.host
    log.warning("tastytrade %s: LIVE orders go to account %s", where, cfg.account)
    return TastytradeBroker(cfg, clock)

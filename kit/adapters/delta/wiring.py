"""Wiring Delta Exchange into the desk builder (``--feed delta``, ``--broker delta``).

The probe reads the products and one ticker: an unreachable host or an empty listing is a one-line
:class:`~kit.core.config.ConfigError` naming the settings, not a feed that retries forever. The
desk's clock starts at the exchange's own ticker time and flows with the wall (as with ThetaData),
so a desk on an emulator running a simulated hour is at that hour.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from kit.adapters.delta.chains import DeltaChainSource
from kit.adapters.delta.client import DeltaClient
from kit.adapters.delta.config import DeltaConfig
from kit.adapters.delta.feed import DeltaFeed
from kit.adapters.delta.parsing import DeltaError, ticker_ts_ns
from kit.core.clock import Clock, SimClock, from_ns
from kit.core.config import ConfigError

log = logging.getLogger(__name__)


async def probe(client: DeltaClient) -> int:
    """The exchange's time (ns) from one option ticker; ConfigError when it cannot answer."""
    cfg = client.config
    try:
        products = await client.products()
        if not products:
            raise ConfigError(f"Delta Exchange at {cfg.base_url} lists no BTC/ETH options")
        ticker = await client.ticker(products[0]["symbol"])
    except DeltaError as exc:
        raise ConfigError(f"cannot read Delta Exchange at {cfg.base_url}: {exc} (DELTA_TESTNET, "
                          "DELTA_BASE_URL)") from None  # fmt: skip
    return ticker_ts_ns(ticker)


async def delta_feed(
    config: DeltaConfig | None = None,
) -> tuple[SimClock, DeltaFeed, DeltaChainSource]:
    cfg = config or DeltaConfig.from_env()
    client = DeltaClient(cfg)
    try:
        ts = await probe(client)
    except BaseException:
        await client.aclose()
        raise
    clock = SimClock(from_ns(ts), speed=1.0)
    feed = DeltaFeed(cfg, clock=clock, client=client, owns_client=True)
    chains = DeltaChainSource(client)
    return clock, feed, chains


def delta_broker(clock: Clock, confirm: str | None, environ: Mapping[str, str] | None = None):
    """The live Delta broker, once the gate's confirmation names the API key in use."""
    from kit.adapters.delta.broker import DeltaBroker

    cfg = DeltaConfig.from_env(environ)
    if not cfg.has_keys:
        raise ConfigError("DELTA_API_KEY and DELTA_API_SECRET must be set for --broker delta")
    if confirm != cfg.api_key:
        raise ConfigError("live trading on Delta needs a confirmation naming the key: pass "
                          "--confirm-live with the value of DELTA_API_KEY")  # fmt: skip
    where = "TESTNET" if cfg.testnet else "PRODUCTION"
    log.warning("Delta Exchange %s (%s): orders go to the exchange", where, cfg.host)
    return DeltaBroker(cfg, clock)

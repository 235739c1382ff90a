"""Choosing the broker: paper unless live trading is switched on *and* confirmed.

Going live takes two deliberate steps, so no default, typo or stray flag can send a real order:

1. the setting ``KIT_LIVE_TRADING=yes`` in the environment or ``.env`` (never on by default);
2. a confirmation that names the account: ``confirm`` must equal the broker account id the
   adapter will trade (``kit run --live --confirm-live U1234567``).

Credentials and endpoints come only from the environment (see each adapter's ``from_env``);
this module never logs their values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kit.adapters.paper.broker import PaperBroker, PaperConfig
from kit.core.clock import Clock
from kit.core.config import ConfigError, env_bool
from kit.execution.broker import Broker
from kit.execution.state import StateStore
from kit.portfolio.market import MarketState

log = logging.getLogger(__name__)

LIVE_SETTING = "KIT_LIVE_TRADING"
LIVE_BROKERS = ("ibkr-cpapi", "delta", "tastytrade", "ibkr")


def make_broker(
    clock: Clock,
    market: MarketState,
    *,
    live: bool = False,
    broker: str = "ibkr-cpapi",
    confirm: str | None = None,
    env: Mapping[str, str] | None = None,
    store: StateStore | None = None,
    paper: PaperConfig | None = None,
    session: Any = None,
) -> Broker:
    """The paper broker, or (with both opt-ins) a live one; refusals are ConfigErrors.
    ``session``: the Client Portal session of a ``--feed ibkr-cpapi`` feed, shared with the
    ``ibkr-cpapi`` broker (one gateway login and keep-alive for both)."""
    if not live:
        return PaperBroker(clock, market, paper, store=store)
    if not env_bool(LIVE_SETTING, False, environ=env):
        raise ConfigError(f"live trading is off: set {LIVE_SETTING}=yes in the environment or "
                          ".env to allow it (paper trading needs nothing)")  # fmt: skip
    if broker not in LIVE_BROKERS:
        raise ConfigError(f"unknown live broker {broker!r} (have {', '.join(LIVE_BROKERS)})")
    if broker == "delta":
        from kit.adapters.delta.wiring import delta_broker

        return delta_broker(clock, confirm, env)
    if broker == "ibkr":  # TWS / IB Gateway: paper and live account ports alike
        from kit.adapters.ibkr.wiring import ibkr_broker

        return ibkr_broker(clock, confirm, env)
    if broker == "tastytrade":
        from kit.adapters.tastytrade.wiring import tastytrade_broker

        return tastytrade_broker(clock, confirm, env)
    from kit.adapters.cpapi.broker import CpApiBroker, CpApiConfig

    config = CpApiConfig.from_env(env)
    if confirm != config.account_id:
        raise ConfigError("live trading needs a confirmation naming the account: pass "
                          "--confirm-live with the account id of IBKR_ACCOUNT_ID")  # fmt: skip
    log.warning("LIVE TRADING on %s: orders go to a real market", broker)
    if session is not None:
        return CpApiBroker(clock=clock, session=session)
    return CpApiBroker(config, clock)

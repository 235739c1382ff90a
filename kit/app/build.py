"""One builder: a :class:`RunSpec` in, a wired desk out (feed, clock, chain source, desk, IV
history, store, broker, order manager, sinks), with one ``start()`` and one ``close()``.

``kit serve``, ``kit run`` (scripted and ``--auto``), the autopilot and notebooks that run a
desk in-kernel all build here, so a new feed or broker plugs in once and every path reaches it.

Feeds: ``sim`` (the simulated market), ``replay:PATH`` (a recorded Parquet day, on its own
timestamps), ``thetadata`` (a ThetaData Terminal, or ``kit emulate thetadata``). Brokers:
``paper`` (the default everywhere; it fills against whatever feed the desk runs on) and
``ibkr-cpapi`` (live: needs the live-trading gate of :mod:`kit.execution.live`).

Market time: the simulator's clock starts at ``day``/``start``; a replay's at its first record; a
vendor's at the vendor's own market time (the ThetaData Terminal's index timestamp at start-up,
then flowing with the wall), so a desk on an emulator serving a simulated 10:00 runs at 10:00
whatever the hour.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal

from kit.adapters.chains import ChainSource
from kit.core.clock import NEW_YORK, Clock, SimClock, from_ns, us_session
from kit.core.config import ConfigError, env
from kit.core.model import Contract
from kit.engine.alerts import AlertManager, AlertSink, DeskRecord
from kit.engine.desk import Desk, DeskConfig
from kit.execution.broker import Broker
from kit.execution.manager import ManagerConfig, OrderManager
from kit.execution.state import MemoryStateStore, StateStore
from kit.risk.rules import Rules, load_rules
from kit.store import Store
from kit.store.attach import DeskStore, open_desk_store

log = logging.getLogger(__name__)

Mode = Literal["paper", "live", "alert_only", "backtest"]
MODES: tuple[str, ...] = ("paper", "live", "alert_only", "backtest")
FEEDS = ("sim", "replay:PATH", "thetadata", "delta", "tastytrade")
BROKERS = ("paper", "ibkr-cpapi", "delta", "tastytrade")
DEFAULT_DAY = date(2024, 3, 12)  # a plain Tuesday: reproducible simulated runs
DEFAULT_SEED = 3  # the simulated day whose IV rank (86) lets a premium seller in
UNDERLYINGS = ("SPX", "SPY", "VIX")
FEEDS = (*FEEDS, "ibkr-cpapi")  # the IBKR Client Portal socket (kit.adapters.cpapi.feed)
FEEDS, BROKERS = (*FEEDS, "ibkr"), (*BROKERS, "ibkr")  # TWS / IB Gateway (kit.adapters.ibkr)


@dataclass(frozen=True)
class FeedSpec:
    """Which feed: ``sim``, ``replay`` (with ``path``) or ``thetadata``."""

    kind: str = "sim"
    path: Path | None = None

    @classmethod
    def parse(cls, text: str) -> FeedSpec:
        """``sim`` | ``replay:PATH`` | ``thetadata``; anything else is a one-line ValueError."""
        name, _, rest = text.strip().partition(":")
        if name == "replay":
            if not rest:
                raise ValueError("--feed replay needs a file: replay:PATH (a recorded .parquet)")
            path = Path(rest).expanduser()
            if not path.is_file():
                raise ValueError(f"--feed replay:{rest}: no such file")
            return cls("replay", path)
        if name in ("ibkr-cpapi", "ibkr") and not rest:
            return cls(name)
        if name in ("sim", "thetadata", "delta", "tastytrade") and not rest:
            return cls(name)
        raise ValueError(f"--feed {text!r}: use one of {', '.join(FEEDS)}")

    def __str__(self) -> str:
        return f"replay:{self.path}" if self.kind == "replay" else self.kind


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides how a desk runs. Paper trading on the simulator by default."""

    mode: Mode = "paper"
    feed: FeedSpec = field(default_factory=FeedSpec)
    broker: str = "paper"
    confirm_live: str | None = None  # the account id, for the live-trading gate
    db: Store | str | None = None  # DuckDB path, postgresql:// URL or open store; None: memory
    rules: Rules | str | None = None  # loaded rules or a TOML path; None: KIT_RULES or defaults
    day: date = DEFAULT_DAY  # simulator: the session; others: from the feed
    # New York time to start at; None: the simulator's open, a replay's first record
    start: time | None = None
    seed: int = DEFAULT_SEED
    speed: float | None = 1.0  # market seconds per wall second; None: stepped (as fast as can)
    script: Sequence[Any] | str = ()  # simulator events (kit.adapters.sim.feed.SCRIPTS)
    # simulator: the seeded path begins at the open (a later start, or a restart, lands in the
    # same market); False begins it at ``start``, with the script timed from there
    path_from_open: bool = True
    auto_manage: bool = False
    sinks: tuple[AlertSink, ...] = ()
    listener: Callable[[DeskRecord], None] | None = None
    state: StateStore | None = None  # restart state when there is no store
    env_sinks: bool = True  # also the email / webhook sinks KIT_SMTP_* / KIT_WEBHOOK_URL set up
    resume_key: str = "run"  # the state document a resumable run saves its progress in
    manager: ManagerConfig | None = None
    paper: Any = None  # PaperConfig
    sim: Any = None  # simulator: a SimConfig (its seed is replaced by ``seed``); None: defaults
    # a backtest's pace: the simulator delivers one conflated batch per this many market seconds
    # and the desk's heartbeat runs as often (None: every step and every second, as live)
    conflate_s: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.broker not in BROKERS:
            raise ValueError(f"--broker {self.broker!r}: use one of {', '.join(BROKERS)}")
        if self.speed is not None and not self.speed > 0:
            raise ValueError(f"--speed must be positive, got {self.speed!r}")
        if (self.mode == "live") != (self.broker != "paper"):
            raise ValueError(f"mode {self.mode} with --broker {self.broker}: live trading is "
                             "mode live with a live broker; everything else is paper")  # fmt: skip


class Run:
    """A wired desk. Build with :func:`build` (or ``async with await build(spec)``)."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.store = open_desk_store(spec.db) if isinstance(spec.db, str) else spec.db
        self.saved = self.store.load_state(f"desk.{spec.resume_key}") if self.store else None
        self.resume = self._resumable(self.saved)
        self.clock: Clock
        self.feed: Any
        self.chains: ChainSource
        self.desk: Desk
        self.kept: DeskStore | None = None
        self.broker: Broker | None = None
        self.orders: OrderManager | None = None
        self._started = False

    def _resumable(self, saved: dict[str, Any] | None) -> dict[str, Any] | None:
        s = self.spec
        if not saved or saved.get("done") or saved.get("feed", "sim") != str(s.feed):
            return None
        if s.feed.kind == "sim" and (saved.get("day"), saved.get("seed")) != (
            s.day.isoformat(), s.seed):  # fmt: skip
            return None
        return saved

    @property
    def resumed(self) -> bool:
        return self.resume is not None

    # --- wiring ---

    async def _wire(self) -> None:
        s = self.spec
        await getattr(self, f"_feed_{s.feed.kind.replace('-', '_')}")()  # ibkr-cpapi
        rules = s.rules if isinstance(s.rules, Rules) else load_rules(s.rules or env("KIT_RULES"))
        sinks = (*s.sinks, *configured_sinks()) if s.env_sinks else s.sinks
        pace = DeskConfig(heartbeat_s=s.conflate_s) if s.conflate_s else None
        self.desk = Desk(self.clock, [self.feed], rules=rules,
                         alerts=AlertManager(self.clock, sinks), config=pace,
                         auto_manage=s.auto_manage and s.mode != "alert_only")  # fmt: skip
        for symbol in ("SPX", "SPY"):
            history = await self.chains.iv_history(symbol)
            if history is not None and len(history):
                self.desk.iv_history[symbol] = history
        if s.listener is not None:
            self.desk.listeners.append(s.listener)
        self.kept = DeskStore.open(self.desk, self.store) if self.store is not None else None
        self.state = self.kept.state if self.kept is not None else s.state or MemoryStateStore()
        if self.kept is not None:  # what a replay of this day needs besides its ticks
            self._keep_chain_inputs(iv_history=self.desk.iv_history)
        if s.mode != "alert_only":
            self.broker = self._broker()
            self.orders = OrderManager(self.desk, self.broker, s.manager, store=self.state)

    def _sim_start(self) -> tuple[datetime, datetime]:
        s = self.spec
        session = us_session(s.day)
        if session is None:
            raise ValueError(f"{s.day} is not a US trading session")
        begin = datetime.combine(s.day, s.start, NEW_YORK) if s.start else session.open
        if not session.open <= begin < session.close:
            raise ValueError(f"start {s.start} is outside the {s.day} session")
        return session.open, begin

    async def _feed_sim(self) -> None:
        from kit.adapters.sim.feed import SCRIPTS, SimFeed
        from kit.adapters.sim.market import SimConfig
        from kit.adapters.sim.source import SimChainSource

        s = self.spec
        opened, begin = self._sim_start()
        self.clock = SimClock(from_ns(self.resume["ts_ns"]) if self.resume else begin,
                              speed=s.speed)  # fmt: skip
        steps = SCRIPTS[s.script] if isinstance(s.script, str) else tuple(s.script)
        config = replace(s.sim, seed=s.seed) if s.sim is not None else SimConfig(seed=s.seed)
        self.feed = SimFeed(self.clock, config=config, script=steps, conflate_s=s.conflate_s,
                            start=opened if s.path_from_open else None)  # fmt: skip
        self.chains = SimChainSource(self.feed.market, self.clock)

    async def _feed_replay(self) -> None:
        import polars as pl

        from kit.adapters.replay.feed import MAX_SPEED, ReplayFeed
        from kit.adapters.replay.source import ReplayChainSource

        s = self.spec
        path = s.feed.path
        assert path is not None
        try:
            first = pl.scan_parquet(path).select(pl.col("ts_ns").min()).collect().item()
        except Exception as exc:  # polars raises several types for a file that is not Parquet
            raise ValueError(f"--feed replay:{path}: not a recording ({exc})") from None
        if first is None:
            raise ValueError(f"--feed replay:{path}: the recording is empty")
        start = from_ns(self.resume["ts_ns"]) if self.resume else from_ns(first)
        if s.start is not None and not self.resume:  # the instant a recorded run began
            start = datetime.combine(start.astimezone(NEW_YORK).date(), s.start, NEW_YORK)
        self.clock = SimClock(start, speed=s.speed)
        self.feed = ReplayFeed(path, clock=self.clock, speed=min(s.speed or 1.0, MAX_SPEED))
        self.chains = ReplayChainSource(path, self.clock)

    async def _feed_thetadata(self) -> None:
        from kit.adapters.thetadata.chains import ThetaDataChainSource
        from kit.adapters.thetadata.config import ThetaDataConfig, ThetaDataError
        from kit.adapters.thetadata.feed import ThetaDataFeed
        from kit.adapters.thetadata.rest import ThetaDataREST

        td = ThetaDataConfig.from_env()
        probe = ThetaDataREST(replace(td, retries=1))
        try:
            tick = await probe.index_price("SPX")
        except ThetaDataError as exc:
            raise ConfigError(
                f"cannot reach the ThetaData Terminal at {td.host}:{td.rest_port} ({exc.name}): "
                "is it running and logged in? (THETADATA_HOST, THETADATA_REST_PORT, "
                "THETADATA_WS_PORT)") from None  # fmt: skip
        finally:
            await probe.aclose()
        if tick is None:
            raise ConfigError(f"the ThetaData Terminal at {td.host}:{td.rest_port} has no SPX "
                              "price: index data needs a subscription with it")  # fmt: skip
        self.clock = SimClock(from_ns(tick.ts_ns), speed=1.0)  # the vendor's market time
        self.feed = ThetaDataFeed(td, clock=self.clock)
        self.chains = ThetaDataChainSource(self.feed.rest, self.clock)

    async def _feed_delta(self) -> None:
        from kit.adapters.delta.wiring import delta_feed

        self.clock, self.feed, self.chains = await delta_feed()

    async def _feed_tastytrade(self) -> None:
        from kit.adapters.tastytrade.wiring import tastytrade_feed

        self.clock, self.feed, self.chains = await tastytrade_feed()

    async def _feed_ibkr_cpapi(self) -> None:
        from kit.adapters.cpapi.wiring import cpapi_feed

        self.clock, self.feed, self.chains = await cpapi_feed()

    async def _feed_ibkr(self) -> None:
        from kit.adapters.ibkr.wiring import ibkr_feed

        self.clock, self.feed, self.chains = await ibkr_feed()

    def _broker(self) -> Broker:
        from kit.execution.live import make_broker

        s = self.spec
        live = s.broker != "paper"
        if live and s.mode == "backtest":
            raise ConfigError("a backtest trades on paper only: drop --broker")
        session = getattr(self.feed, "session", None) if s.broker == "ibkr-cpapi" else None
        return make_broker(self.clock, self.desk.market, live=live, broker=s.broker,
                           confirm=s.confirm_live, store=self.state, paper=s.paper,
                           session=session)  # fmt: skip

    # --- lifecycle ---

    async def start(self) -> Run:
        """Start the store, the desk, the order manager; subscribe the index underlyings."""
        if self._started:
            return self
        self._started = True
        if self.kept is not None:
            await self.kept.start()
        await self.desk.start()
        if self.orders is not None:
            await self.orders.start()
        await self.desk.subscribe(list(UNDERLYINGS))
        return self

    async def close(self) -> None:
        """Stop everything this run started, newest first; safe to call twice."""
        if self.orders is not None:
            await self.orders.close()
        await self.desk.close()
        if self.kept is not None:
            await self.kept.close()
            self.kept = None
        close = getattr(self.broker, "close", None)  # a live broker holds a session
        if close is not None:
            try:
                await close()
            except Exception as exc:  # closing must finish; the reason is kept
                log.warning("run: closing the %s broker failed: %s", self.spec.broker, exc)

    async def __aenter__(self) -> Run:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- chains ---

    async def subscribe_expiry(self, root: str, dte: int) -> list[Contract]:
        """Quote a whole expiry of ``root``, ``dte`` listed expiries out (rolls and wings choose
        from it later); returns it, empty when there is no such expiry."""
        expiries = await self.chains.expirations(root)
        if len(expiries) <= dte:
            return []
        chain = await self.chains.contracts(root, expiries[dte])
        if not chain:
            return []
        await self.desk.subscribe(chain)
        snap = await self.chains.snapshot(chain)
        self.desk.process(snap.events)  # its current quotes now, rather than one step later
        if snap.open_interest:
            known = list(snap.open_interest)
            self.desk.market.set_open_interest(known, [snap.open_interest[c] for c in known])
            if self.kept is not None:
                self._keep_chain_inputs(open_interest=snap.open_interest)
        self.desk.market.refresh(self.desk.market.track_all(chain), self.desk.clock.now_ns())
        return chain

    def _keep_chain_inputs(self, iv_history: Any = None, open_interest: Any = None) -> None:
        """Record the chain inputs a store does not hold as ticks (the IV history behind IV
        rank, the open interest of a subscribed expiry) in a state document per session day,
        so ``kit validate`` replays the day through the same entry checks."""
        from kit.adapters.replay.source import CHAIN_INPUTS, merge_chain_inputs

        key = f"{CHAIN_INPUTS}.{self.clock.now().astimezone(NEW_YORK).date().isoformat()}"
        doc = merge_chain_inputs(self.state.load(key), iv_history, open_interest)
        self.state.save(key, doc)

    def save_progress(self, **extra: Any) -> None:
        """The resumable position of this run (day, seed, feed, market time) in its state."""
        s = self.spec
        self.state.save(s.resume_key, {"day": s.day.isoformat(), "seed": s.seed,
                                       "feed": str(s.feed), "ts_ns": self.clock.now_ns(),
                                       "done": False, **extra})  # fmt: skip


async def build(spec: RunSpec) -> Run:
    """Wire a desk for ``spec`` (not started: ``await run.start()`` or ``async with``)."""
    run = Run(spec)
    try:
        await run._wire()
    except BaseException:
        if run.store is not None and isinstance(spec.db, str):
            run.store.close()  # opened here: never leave a DuckDB file locked behind an error
        raise
    return run


def configured_sinks() -> tuple[AlertSink, ...]:
    """The email, webhook, desktop and alert-log sinks the environment configures (none when
    unset); a half-set configuration is a one-line ConfigError, never a silent no-op."""
    from kit.sinks.desktop import DesktopSink
    from kit.sinks.email import EmailSink
    from kit.sinks.jsonl import RotatingJsonlSink
    from kit.sinks.webhook import WebhookSink

    try:
        found = (EmailSink.from_env(), WebhookSink.from_env(), DesktopSink.from_env(),
                 RotatingJsonlSink.from_env())  # fmt: skip
    except ValueError as exc:
        raise ConfigError(f"alert sinks: {exc}") from None
    return tuple(sink for sink in found if sink is not None)

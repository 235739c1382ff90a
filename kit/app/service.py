"""The desk as a process (``kit serve``): one Desk, its feed, broker, auto-manager and store,
served to any number of dashboards through the loopback gateway (:mod:`kit.remote.gateway`).

Dashboards are disposable (a Voila tab's kernel may linger or die at any time), so they never
own orders: they render the snapshots this process publishes and send it commands. However
many tabs are open there is one engine, one auto-manager and one order manager, so two tabs
cannot trade twice.

On the simulated market (the default, and what ``make monitor`` runs) the clock starts at
``start`` New York time on ``day`` and flows at ``speed`` x real time; a paper strangle is
opened through the order manager as the demo position. With ``db`` the session is recorded and
a restart resumes where the store's last persisted second left off, positions and working
orders included.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time as wall
from dataclasses import dataclass, field
from datetime import date, time
from functools import partial
from pathlib import Path
from typing import Any

from kit import __version__
from kit.app.build import DEFAULT_DAY, DEFAULT_SEED, FeedSpec, Run, RunSpec, build
from kit.app.commands import SCHEMA, CommandError, Commands
from kit.app.view import ViewBuilder
from kit.core.clock import NEW_YORK
from kit.core.model import Fill, Severity
from kit.core.tasks import cancel
from kit.engine.alerts import AlertSink, record_to_json
from kit.engine.health import signature
from kit.ops.metrics import DeskMetrics
from kit.ops.server import OpsServer, attach
from kit.positions.manual import ManualBook, manual_path
from kit.remote.gateway import Gateway, GatewayConfig, service_token

log = logging.getLogger(__name__)

STATE_KEY = "service"


# The demo's short-strike band: wider than the 0.10-0.15 default because 5-point 0DTE strikes sit
# about 0.06 delta apart at 10:00, so a 0.05-wide band is empty on some seconds (measured: the
# 0.10-0.15 band missed between 5020 C at 0.153-0.164 and 5025 C at 0.084-0.094 on the demo day).
DEMO_BAND = {"delta_low": 0.08, "delta_high": 0.20}
DEMO_ATTEMPTS = 30


@dataclass(frozen=True)
class ServiceConfig:
    """How ``kit serve`` runs. The defaults are the demo ``make monitor`` starts."""

    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    feed: str = "sim"  # sim | replay:PATH | thetadata
    broker: str = "paper"  # paper | ibkr-cpapi (live: needs the live-trading gate)
    confirm_live: str | None = None
    day: date = DEFAULT_DAY
    start: time = time(10, 0)  # New York time the simulated session starts at
    speed: float = 1.0  # market seconds per wall second
    seed: int = DEFAULT_SEED  # a day whose IV rank lets the demo entry pass the entry rule
    demo: bool = True  # open a paper strangle when nothing is held
    auto_manage: bool = False
    db: str | None = None  # DuckDB path or postgresql:// URL; None keeps everything in memory
    rules: str | None = None  # TOML overriding the default rules
    token_file: Path | None = None
    manual: Path | None = None  # the `kit positions` journal (None: KIT_MANUAL_POSITIONS/default)
    metrics_port: int | None = None  # /metrics, /healthz, /readyz on 127.0.0.1 (None: off)

    def spec(self, sinks: tuple[AlertSink, ...] = ()) -> RunSpec:
        return RunSpec(mode="live" if self.broker != "paper" else "paper",
                       feed=FeedSpec.parse(self.feed), broker=self.broker,
                       confirm_live=self.confirm_live, db=self.db, rules=self.rules,
                       day=self.day, start=self.start, seed=self.seed, speed=self.speed,
                       auto_manage=self.auto_manage, sinks=sinks,
                       resume_key=STATE_KEY)  # fmt: skip


def publish(gateway: Gateway, durable: Any, event: Any) -> None:
    """Events to viewers; a fill only once the store has it (``durable``: when_durable)."""
    doc = record_to_json(event)
    if durable is None or type(event) is not Fill:
        gateway.publish_event(doc)
    else:
        durable(lambda: gateway.publish_event(doc))


def sync_manual(desk: Any, manual: ManualBook, seen: tuple[int, int, int] | None,
                spawn: Any) -> tuple[tuple[int, int, int] | None, int]:  # fmt: skip
    """Bring the `kit positions` journal into ``desk``'s book when the file changed since
    ``seen`` (its mtime, inode, size): new positions open as alert-only, new trades apply as
    fills (their ids are stable, so nothing applies twice); ``spawn`` runs the subscription of
    new legs. Returns (the file's new ``seen``, positions touched). A journal that cannot be
    read is reported once per change as a WARNING, never fatal. Shared by ``kit serve`` and
    ``kit watch``."""
    path = manual.path
    try:
        st = path.stat()
    except FileNotFoundError:
        return seen, 0
    now_seen = (st.st_mtime_ns, st.st_ino, st.st_size)
    if now_seen == seen:
        return seen, 0
    try:
        records = manual.desk_records()
    except ValueError as exc:
        desk.notify(Severity.WARNING, "manual", f"manual positions not loaded: {exc}")
        return now_seen, 0
    book, touched = desk.book, 0
    for position, fills in records:
        if position.id not in book.rows:
            desk.alert_only.add(position.id)
            desk.open_position(position, fills)
            spawn(desk.subscribe([leg.contract for leg in position.legs]))
            touched += 1
            continue
        resized = book.positions[position.id].quantity != position.quantity
        if resized:
            book.amend(position)
        applied = [book.apply_fill(fill, position.id) for fill in fills]  # known ids: no-op
        touched += resized or any(applied)
    if touched:
        desk.evaluate()
    return now_seen, touched


class DeskService:
    """Builds and runs the engine; ``await start()``, then ``await close()``."""

    def __init__(self, config: ServiceConfig | None = None, sinks: tuple[AlertSink, ...] = ()):
        self.config = config or ServiceConfig()
        self.sinks = sinks
        self.token = service_token(self.config.token_file)  # refused before anything starts
        self.engine = {"id": f"{os.getpid()}-{wall.time_ns() % 10**9:09d}", "pid": os.getpid(),
                       "version": __version__, "started_ns": wall.time_ns()}  # fmt: skip
        self._tasks: list[asyncio.Task[None]] = []
        self.manual = ManualBook(self.config.manual or manual_path())
        self._manual_seen: tuple[int, int, int] | None = None
        self.run: Run | None = None
        self.metrics: DeskMetrics | None = None  # with metrics_port (kit.ops)
        self.ops: OpsServer | None = None
        self.broker_seen_ns = 0  # wall time the broker last answered (readiness)

    async def _wire(self) -> None:
        """The desk from the builder, then what a served desk adds: commands, view, gateway."""
        cfg = self.config
        self.run = run = await build(cfg.spec(self.sinks))
        self.resumed = run.resumed
        self.clock, self.feed, self.desk = run.clock, run.feed, run.desk
        self.kept, self.store = run.kept, run.store
        assert run.broker is not None and run.orders is not None
        self.broker, self.orders = run.broker, run.orders
        self.commands = Commands(self.desk, self.orders, self._chain, cfg.rules)
        durable = self.kept.writer.when_durable if self.kept is not None else None
        self.view = ViewBuilder(self.desk, self.engine, self.orders, durable)
        self.gateway = Gateway(self.token, self._command, self._hello, cfg.gateway)
        self.desk.listeners.append(partial(publish, self.gateway, durable))
        if cfg.metrics_port is not None:
            self.metrics = attach(self)
            self.ops = OpsServer(self, self.metrics, cfg.metrics_port)

    async def _chain(self, root: str, dte: int) -> list:
        assert self.run is not None
        return await self.run.subscribe_expiry(root, dte)

    def _hello(self) -> dict[str, Any]:
        return {"engine": {**self.engine, "clients": len(self.gateway.viewers) + 1},
                "commands": sorted(SCHEMA)}  # fmt: skip

    async def _command(self, message: Any, who: str) -> dict[str, Any]:
        """Run a command; a failure that is not the sender's mistake is an engine fault (logged
        once, CRITICAL alert, DEGRADED) and the reply says so in one line."""
        stage = f"command {message.get('cmd') if isinstance(message, dict) else '?'}"
        health, started, outcome = self.desk.health, wall.perf_counter(), "ok"
        try:
            result = await self.commands.run(message, who)
        except (CommandError, ValueError):
            outcome = "refused"
            raise
        except Exception as exc:
            outcome = "error"
            health.failed(stage, exc)
            raise CommandError(f"{stage[8:]}: internal error ({signature(exc)}); the engine "
                               "is DEGRADED, see its alerts") from None  # fmt: skip
        finally:
            if self.metrics is not None:
                name = stage[8:] if stage[8:] in SCHEMA else "unknown"  # bounded labels
                self.metrics.command(name, wall.perf_counter() - started, outcome)
        health.ok(stage)
        return result

    def sync_manual(self) -> int:
        """Bring the `kit positions` journal into the book (:func:`sync_manual`)."""

        def spawn(job: Any) -> None:
            self._tasks.append(asyncio.create_task(job))

        self._manual_seen, touched = sync_manual(self.desk, self.manual, self._manual_seen, spawn)
        return touched

    async def start(self) -> None:
        await self._wire()
        assert self.run is not None
        self.desk.on_heartbeat.append(self.sync_manual)
        if self.kept is not None:
            self.desk.on_heartbeat.append(self.run.save_progress)
        await self.run.start()
        await self._chain("SPXW", 0)
        self.sync_manual()
        await self.gateway.start()
        if self.ops is not None:
            await self.ops.start()
            self.engine["metrics_port"] = self.ops.port  # the ops page finds it in the hello
        self._tasks.append(asyncio.create_task(self._publish_loop(), name="service:snapshots"))
        if self.config.demo and not any(self.desk.book.held(p) for p in self.desk.book.ids):
            self._tasks.append(asyncio.create_task(self._open_demo(), name="service:demo"))

    async def _open_demo(self) -> None:
        """The demo position: a 2-lot paper 0DTE strangle, entered like any other. Retried for a
        simulated minute: the chain's first quotes and a passing entry check can take a while."""
        for attempt in range(DEMO_ATTEMPTS):
            await self.clock.sleep(2.0)  # a couple of seconds of quotes to select on
            try:
                result = await self.commands.run(
                    {"cmd": "open_strangle", "strategy": "demo", "quantity": 2, **DEMO_BAND},
                    "demo",
                )
            except CommandError as exc:
                if attempt == DEMO_ATTEMPTS - 1:
                    log.warning("service: no demo position: %s", exc)
                continue
            log.info("service: demo position %s", result["position"])
            return

    async def _publish_loop(self) -> None:
        period = 1.0 / self.config.gateway.snapshot_hz
        while True:
            started = wall.perf_counter()
            try:
                account = await self.broker.account()
                self.broker_seen_ns = wall.time_ns()
                doc = self.view.build(account, len(self.gateway.viewers))
                doc["wall_ns"] = wall.time_ns()  # the viewer measures its lag against this
                self.gateway.publish_snapshot(doc)
                if self.metrics is not None:
                    self.metrics.snapshots.inc()
            except Exception as exc:  # counted, alerted once, DEGRADED; the loop goes on
                self.desk.health.failed("snapshot", exc)
            else:
                self.desk.health.ok("snapshot")
            await asyncio.sleep(max(0.0, period - (wall.perf_counter() - started)))

    async def close(self) -> None:
        await cancel(*self._tasks)
        if self.run is None:
            return
        if self.ops is not None:
            await self.ops.close()
        await self.gateway.close()
        await self.run.close()

    async def __aenter__(self) -> DeskService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve_forever(config: ServiceConfig, sinks: tuple[AlertSink, ...] = ()) -> None:
    """``kit serve``: run until SIGINT/SIGTERM, then stop cleanly (orders stay at the broker
    as they are; with a store, the next start resumes them)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    service = DeskService(config, sinks)
    await service.start()
    gw = service.gateway
    print(f"kit serve: desk engine {service.engine['id']} on ws://{gw.config.host}:{gw.port} "
          f"({'resumed' if service.resumed else 'fresh'} {config.feed} session "
          f"{service.clock.now().astimezone(NEW_YORK):%Y-%m-%d %H:%M}, {config.broker} broker"
          f"{f', speed {config.speed:g}x' if config.feed != 'thetadata' else ''}); Ctrl-C "
          "stops", flush=True)  # fmt: skip
    try:
        await stop.wait()
    finally:
        await service.close()
        print("kit serve: stopped", flush=True)

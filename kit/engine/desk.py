"""The Desk: the one owner of state. Feeds in; market, book, rules, alerts and actions out.

Everything runs on one asyncio loop. Each feed has a pump task that takes whatever events are
waiting (up to ``max_batch``), applies them to the market state (O(1) each) and then evaluates
once: Greeks of the open legs are recomputed vectorised, the book is revalued and every rule runs
over every position. When the loop keeps up a batch is one event, so rules run on every tick;
under load they run on the newest state of each batch instead of falling behind. A heartbeat
re-prices the whole chain and evaluates the time-driven rules (feed silence, time stops) even
when nothing arrives.

Actions are proposed when their alert first fires. They are executed only when auto-manage is on,
the kill switch is off, no feed-outage freeze is in force and the position's quotes pass the
liquidity rule; each decision is recorded with its inputs as an audit record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from msgspec.structs import replace

from kit.adapters.base import Feed
from kit.core.clock import NEW_YORK, NS_PER_S, Clock, from_ns, to_ns
from kit.core.model import (
    Action,
    ActionKind,
    Alert,
    Decision,
    FeedState,
    FeedStatus,
    Fill,
    Greeks,
    ModelError,
    Position,
    Quote,
    Severity,
    Trade,
    UnderlyingTick,
)
from kit.core.tasks import cancel
from kit.engine.alerts import AlertManager, AlertRecord, DeskRecord
from kit.engine.health import Health
from kit.engine.hooks import DeskHooks, Hook, Listener
from kit.engine.ports import Executor, OrderFlow
from kit.engine.snapshot import Snapshot, build_snapshot
from kit.portfolio.book import Book, BookConfig, PositionView
from kit.portfolio.market import MarketConfig, MarketState
from kit.portfolio.valuation import compile_tick_path
from kit.risk.checks import BlockedBy, Context, EntryCheck, Finding, check_entry, evaluate
from kit.risk.rules import Rules, load_rules
from kit.signals import iv_rank

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from kit.execution.broker import OrderState

__all__ = ["Desk", "DeskConfig", "DeskEvent", "Executor", "Snapshot"]
DeskEvent = DeskRecord
_POSITION_ACTIONS = frozenset(ActionKind) - {ActionKind.FREEZE, ActionKind.BLOCK_ENTRIES}
VOL_INDEX = {"SPX": "VIX", "SPY": "VIX"}
FROZEN = "held: frozen by feed outage"
# partial closes a rule level carries out once per position: its condition may clear and hold
# again as the held units' P&L moves (a leg filled before the other), which must not reduce the
# position a second time (three close-halves in a row for one 50% target)
_ONCE = frozenset({ActionKind.CLOSE_HALF, ActionKind.REDUCE_25})


@dataclass(frozen=True)
class DeskConfig:
    heartbeat_s: float = 1.0  # time-driven rules and the full-chain Greeks run this often
    max_batch: int = 4096  # events applied before one evaluation
    subscriber_queue: int = 10_000  # events buffered per event-stream subscriber


class Desk:
    """Wires feeds → market state → book → rules → alerts and actions on one event loop.

    Its seams: ``orders`` (an :class:`~kit.engine.ports.OrderFlow`) and ``executor`` are set by
    the order flow that attaches; ``hooks`` (:class:`~kit.engine.hooks.DeskHooks`) is the table
    of who else hears the desk, also reachable as ``on_batch``, ``on_heartbeat``, ``listeners``
    and ``tape``."""

    def __init__(
        self,
        clock: Clock,
        feeds: Sequence[Feed] = (),
        *,
        rules: Rules | None = None,
        alerts: AlertManager | None = None,
        executor: Executor | None = None,
        auto_manage: bool = False,
        config: DeskConfig | None = None,
        market_config: MarketConfig | None = None,
        book_config: BookConfig | None = None,
    ) -> None:
        self.clock = clock
        self.feeds = list(feeds)
        self.rules = rules or load_rules()
        # the limits the engine started with: settings may tighten them, never loosen them
        self.limit_ceiling = self.rules.limits
        self.config = config or DeskConfig()
        windows = tuple(sorted({self.rules.rapid_move.window_s,
                                self.rules.correlation_break.window_s}))  # fmt: skip
        compile_tick_path()  # numba's kernels loaded now (~1 s, once), not on the first tick
        self.market = MarketState((market_config or MarketConfig()).with_windows(windows))
        self.book = Book(self.market, book_config)
        self.alerts = alerts or AlertManager(clock)
        self.executor = executor
        self.orders: OrderFlow | None = None  # set by the order flow that attaches
        self.hooks = DeskHooks()
        self.auto_manage = auto_manage
        self.killed = False
        self.frozen = False
        self.blocked_by: Mapping[str, str] = {}
        self.alert_only: set[str] = set()  # positions traded elsewhere: alerts, never orders
        self.iv_history: dict[str, np.ndarray] = {}
        self.feed_states: dict[str, FeedState] = {}
        self.feed_down_since: dict[str, int] = {}
        self.last_data_ns = clock.now_ns()
        self.stats = {"events": 0, "rejected": 0, "evaluations": 0, "actions_executed": 0}
        self.view: PositionView = self.book.view(self.last_data_ns)
        self._scope: set[str | None] = {None}
        self._day: date | None = None
        self._day_ns = (0, 0)  # [start, end) of self._day, epoch ns
        self._evaluated_ns = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[None]] = set()
        self._held: dict[tuple[str, str | None, str], Finding] = {}  # vetoed by a freeze only
        # partial closes carried out, by (rule, position, level): the order manager rebuilds
        # it from its journal after a restart, so a level never reduces a position twice
        self.done_once: set[tuple[str, str | None, str]] = set()
        self.feed_seen_ns: dict[str, int] = {}  # when each feed last delivered a batch
        self.health = Health(self.notify, clock.now_ns)

    # --- hooks (see DeskHooks: one table, these names kept for its users) ---

    @property
    def on_batch(self) -> list[Hook]:
        return self.hooks.on_batch

    @property
    def on_heartbeat(self) -> list[Hook]:
        return self.hooks.on_heartbeat

    @property
    def listeners(self) -> list[Listener]:
        return self.hooks.listeners

    @property
    def tape(self) -> Callable[[Any], None] | None:
        return self.hooks.tape

    @tape.setter
    def tape(self, tape: Callable[[Any], None] | None) -> None:
        self.hooks.tape = tape

    # --- lifecycle ---

    async def start(self) -> None:
        self.alerts.start()
        for feed in self.feeds:
            await feed.start()
            self._spawn(f"desk:{feed.name}", lambda feed=feed: self._pump(feed))
        self._spawn("desk:heartbeat", self._heartbeat)

    def _spawn(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """A supervised task: restarted when it dies; after repeated deaths the desk halts
        visibly (kill switch on, CRITICAL alert) instead of running without it."""
        run = self.health.supervise(name, body, on_give_up=self._give_up)
        self._tasks.append(asyncio.create_task(run, name=name))

    def _give_up(self, why: str) -> None:
        self.kill(f"engine halted: {why}")

    async def close(self) -> None:
        for task in self._tasks:
            await cancel(task)
        self._tasks.clear()
        for feed in self.feeds:
            await feed.close()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.alerts.close()

    async def __aenter__(self) -> Desk:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def subscribe(self, keys: Iterable[Any]) -> None:
        """Subscribe every feed to ``keys`` (contracts and underlying symbols)."""
        keys = list(keys)
        for feed in self.feeds:
            await feed.subscribe(keys)

    async def _pump(self, feed: Feed) -> None:
        health, stage = self.health, f"task desk:{feed.name}"
        async for event in feed:
            batch = [event]
            while len(batch) < self.config.max_batch:
                nxt = feed.get_nowait()
                if nxt is None:
                    break
                batch.append(nxt)
            self.process(batch)
            self.feed_seen_ns[feed.name] = self.clock.now_ns()  # per-feed data age (operations)
            if health.faults:
                health.ok(stage)

    async def _heartbeat(self) -> None:
        period_ns = int(self.config.heartbeat_s * NS_PER_S)
        while True:
            await self.clock.sleep(self.config.heartbeat_s)
            for _ in range(3):  # let a feed woken at the same instant deliver its batch first
                await asyncio.sleep(0)
            now = self.clock.now_ns()
            self.market.refresh(None, now)
            if now - self._evaluated_ns >= period_ns:  # ticks already evaluated this period
                self.evaluate()
            self.hooks.run("heartbeat", self.hooks.on_heartbeat, self.health)
            self.health.ok("task desk:heartbeat")

    # --- the hot path ---

    def process(self, events: Iterable[Any]) -> list[AlertRecord]:
        """Apply events (bad ones are counted and logged, never raised), then evaluate once."""
        m, data, tape = self.market, False, self.hooks.tape
        for event in events:
            self.stats["events"] += 1
            t = type(event)
            try:
                if t is Quote:
                    m.on_quote(event)
                    data = True
                elif t is UnderlyingTick:
                    m.on_underlying(event)
                    data = True
                elif t is Trade:
                    data = True
                elif t is FeedStatus:
                    self._on_status(event)
                    continue
                elif t is Greeks:  # a vendor's, kept beside the desk's own
                    m.on_vendor_greeks(event)
                    continue
                else:
                    raise ModelError(f"not a market event: {event!r:.120}")
                if tape is not None:
                    tape(event)
            except Exception as exc:
                self.stats["rejected"] += 1
                log.warning("desk: event rejected: %s", exc)
        if data:
            self.last_data_ns = self.clock.now_ns()
            self.hooks.run("batch", self.hooks.on_batch, self.health)  # e.g. paper matching
        return self.evaluate()

    def _on_status(self, status: FeedStatus) -> None:
        self.feed_states[status.feed] = status.state
        if status.state is FeedState.LIVE or status.state is FeedState.CLOSED:
            self.feed_down_since.pop(status.feed, None)
        else:
            self.feed_down_since.setdefault(status.feed, self.clock.now_ns())
        self._publish(status)

    def evaluate(self) -> list[AlertRecord]:
        """Reprice open legs, revalue the book, run every rule; returns the alerts emitted.

        Never raises: a failure is reported to :attr:`health` (the engine turns DEGRADED and
        automation stops) and the last good view stays in place for the dashboards."""
        try:
            emitted = self._evaluate()
        except Exception as exc:
            self.health.failed("evaluate", exc)
            return []
        if self.health.faults:
            self.health.ok("evaluate")
        return emitted

    def _evaluate(self) -> list[AlertRecord]:
        now = self._evaluated_ns = self.clock.now_ns()
        self._roll_day(now)
        b = self.book
        if b.n_legs:
            self.market.refresh(b.leg_row[b.leg_qty != 0], now)
        self.view = view = b.view(now)
        ctx = Context(view, self.market, self.rules, now, self.last_data_ns, self.feed_down_since)
        findings = evaluate(ctx)
        self.stats["evaluations"] += 1
        emitted = self.alerts.offer(findings, self._scope)  # builds only the news
        was_frozen = self.frozen
        self._apply_states(findings, now)
        if was_frozen and not self.frozen and self._held:
            self._release_held(findings, view)
        if emitted:
            by_alert = {id(f.alert): f for f in findings if f.built}
            for record in emitted:
                self._publish(record)
                finding = by_alert[id(record.alert)]
                if finding.action is not None:
                    self._act(finding, view)
                if record.alert.rule == "rapid_move":
                    self.market.refresh(None, now)  # a fast market: reprice the whole chain now
        return emitted

    def _roll_day(self, now: int) -> None:
        if self._day_ns[0] <= now < self._day_ns[1]:
            return  # the New York day of the last evaluation (no time zone look-up per tick)
        day = from_ns(now).astimezone(NEW_YORK).date()
        if day != self._day:
            if self._day is not None:
                self.book.roll_day()
            self._day = day
        start = datetime.combine(day, time(), NEW_YORK)
        self._day_ns = (to_ns(start), to_ns(start + timedelta(days=1)))

    def _apply_states(self, findings: list[Finding], now: int) -> None:
        """Freeze and entry blocks hold exactly while their conditions hold."""
        frozen = any(f.rule == "feed_stale" for f in findings)
        if self.frozen and not frozen:
            alert = Alert(now, Severity.INFO, "feed_stale", "fresh market data: automation "
                          "resumes", key="resumed")  # fmt: skip
            self._publish(self.alerts.notify(alert))
        self.frozen = frozen
        self.blocked_by = BlockedBy(findings)  # messages formatted when read, not each tick

    def _release_held(self, findings: list[Finding], view: PositionView) -> None:
        """Fresh data after a freeze: act on the held actions whose conditions still hold."""
        held, self._held = self._held, {}
        for f in findings:
            if (f.rule, f.position_id, f.key) in held and f.action_kind:
                self._act(f, view)

    def _act(self, finding: Finding, view: PositionView) -> None:
        action = finding.action
        assert action is not None
        status = self._veto(action, view)
        once = (finding.rule, finding.position_id, finding.key)
        if status is None and action.kind in _ONCE and once in self.done_once:
            status = "proposed: this level already reduced the position once"
        if status == FROZEN:
            self._held[finding.rule, finding.position_id, finding.key] = finding
        if status is None and action.kind in _POSITION_ACTIONS and self.executor is not None:
            status = "executed"
            if action.kind in _ONCE:  # the level goes with the intent into the journal
                self.done_once.add(once)
                action = replace(action, params={**action.params, "level": finding.key})
            self.stats["actions_executed"] += 1
            task = asyncio.get_running_loop().create_task(self._execute(action))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        elif status is None:
            status = "applied" if action.kind not in _POSITION_ACTIONS else "proposed"
        self.record(replace(action, params={**action.params, "status": status}))

    def _veto(self, action: Action, view: PositionView) -> str | None:
        """Why an action is only proposed, or None when it may be carried out."""
        if action.kind not in _POSITION_ACTIONS:
            return None
        if action.position_id in self.alert_only:
            return "proposed: alert-only position (traded elsewhere)"
        if self.killed:
            return "proposed: kill switch on"
        if self.health.degraded:
            return "proposed: engine degraded (" + ", ".join(self.health.faults) + ")"
        if not self.auto_manage:
            return "proposed: auto-manage off"
        if self.frozen:
            return FROZEN
        if self.orders is not None and self.orders.pending_entry(action.position_id):
            return "proposed: the entry is still being filled"
        i = self.book.rows.get(action.position_id or "")
        if i is not None and (view.stale[i] or view.max_spread_pct[i]
                              >= self.rules.liquidity.max_spread_pct):  # fmt: skip
            return "proposed: illiquid quotes, no automatic execution"
        return None

    async def _execute(self, action: Action) -> None:
        assert self.executor is not None
        try:
            await self.executor(action)
        except Exception:
            log.exception("desk: executing %s for %s failed", action.kind, action.position_id)

    # --- switches ---

    def set_auto_manage(self, on: bool) -> None:
        if on and self.killed:
            raise RuntimeError("the kill switch is on: reset it before enabling auto-manage")
        self.auto_manage = on
        self._audit(f"auto-manage {'on' if on else 'off'}")

    def kill(self, reason: str = "manual kill switch") -> None:
        """Stop all automation at once: auto-manage off, no action executed until reset, and
        every working order cancelled (the trader takes over)."""
        self.killed, self.auto_manage = True, False
        self._audit(f"kill switch on: {reason}", Severity.CRITICAL)
        if self.orders is not None:  # and nothing keeps working: every order is cancelled
            task = asyncio.get_running_loop().create_task(
                self.orders.halt(f"kill switch: {reason}")
            )
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def reset_kill(self) -> None:
        self.killed = False
        self._audit("kill switch reset (auto-manage stays off)")

    def acknowledge(self, seq: int, by: str = "user") -> AlertRecord:
        """Acknowledge alert ``seq``; the updated record is published (stores keep the ack)."""
        record = self.alerts.acknowledge(seq, by)
        self._publish(record)
        return record

    # --- persistence ---

    def state(self) -> dict[str, Any]:
        """The switches and the alert manager's memory: what a restart must not forget (so
        rules do not re-fire, acknowledged alerts stay acknowledged). Positions and orders are
        the broker's and the order manager's to restore."""
        return {"ts_ns": self.clock.now_ns(), "auto_manage": self.auto_manage,
                "killed": self.killed, "alerts": self.alerts.state()}  # fmt: skip

    def restore(self, state: dict[str, Any], history: Iterable[AlertRecord] = ()) -> None:
        """Take back :meth:`state` (and the alert records kept by the store)."""
        self.auto_manage = bool(state.get("auto_manage", False))
        self.killed = bool(state.get("killed", False))
        self.alerts.restore(state.get("alerts") or {}, history)

    def _audit(self, message: str, severity: Severity = Severity.INFO) -> None:
        self.notify(severity, "desk", message)

    def notify(self, severity: Severity, rule: str, message: str) -> AlertRecord:
        """Emit and publish a one-off alert (a switch flipped, the store went down)."""
        alert = Alert(self.clock.now_ns(), severity, rule, message, key=message)
        record = self.alerts.notify(alert)
        self._publish(record)
        return record

    # --- positions ---

    def refresh_legs(self, position: Position) -> None:
        rows = self.market.track_all(leg.contract for leg in position.legs)
        self.market.refresh(rows, self.clock.now_ns())

    def check_entry(self, position: Position, *, publish: bool = True) -> EntryCheck:
        """Entry validation and pre-trade limits at current quotes; the verdict is alerted
        (``publish=False`` for a ticket's preview: a look is not a decision worth an alert)."""
        self.refresh_legs(position)
        now = self.clock.now_ns()
        ctx = Context(self.view, self.market, self.rules, now, self.last_data_ns)
        check = check_entry(ctx, position, self.iv_rank(position.underlying),
                            tuple(self.blocked_by.values()))  # fmt: skip
        if publish:
            self._publish(self.alerts.notify(check.finding.alert))
        return check

    def open_position(self, position: Position, fills: Iterable[Fill] = ()) -> None:
        """Add a position to the book with its fills (from a broker, or recorded)."""
        self.book.open(position)
        for fill in fills:
            self.book.apply_fill(fill, position.id)
        self._scope = {None, *self.book.ids}
        self.evaluate()

    def iv_rank(self, underlying: str) -> float | None:
        """IV rank of the underlying's volatility index (or ATM IV) against its history."""
        history = self.iv_history.get(underlying)
        if history is None:
            return None
        current = self.market.spot_of(VOL_INDEX.get(underlying, ""))
        return iv_rank(history, current)

    # --- outputs ---

    def record(self, event: Action | Decision | OrderState | Fill) -> None:
        """Audit and publish something the desk did (an action, decision, order or fill)."""
        self.alerts.audit(event)
        self._publish(event)

    def _publish(self, event: DeskEvent) -> None:
        self.hooks.publish(event)

    def events(self) -> AsyncIterator[DeskEvent]:
        """Alerts, actions, decisions, orders, fills and feed statuses as they happen, from now
        on (a slow reader loses the oldest; ``listeners`` never lose any)."""
        return self.hooks.stream(self.config.subscriber_queue)

    def snapshot(self) -> Snapshot:
        """The dashboards' picture of the latest evaluation (:mod:`kit.engine.snapshot`)."""
        return build_snapshot(self)

"""The order manager: intents in, orders to the broker, fills into the book, never twice.

How an intent is worked:

1. **Checks first.** Bad parameters, an unknown or flat position, a missing quote and the risk
   limits (:mod:`kit.risk.limits`) refuse an intent before any broker sees an order. An entry
   is refused while its strategy holds a position or has one pending (duplicate-trade
   prevention); the journal that knows this is persisted, so a restart remembers.
2. **Lingering orders go first.** Orders still working for the position are cancelled, and the
   cancel confirmations awaited, before anything new is sent; a newer intent for the position
   supersedes the older one.
3. **A limit ladder.** The order starts at mid and, after each wait (growing by ``backoff``),
   steps ``step_fraction`` of the way to the natural price (the touch), reaching it on the last
   retry; then it is cancelled. Optionally (by default for closes, not for entries) a market
   order finishes what is left.
4. **Combos or protected legging.** A broker with combo support gets one multi-leg order. Without
   it, legs go one by one, buys before sells (a long wing is never missing under a short), each
   sized to what the previous legs filled, and any excess left by a leg that could not be
   completed is unwound.
5. **Idempotent client ids.** Every order's client id is ``<intent id>/<stage>``: re-running an
   intent after a restart finds its orders at the broker instead of sending them again.

Fills are routed to the desk's book by client id; expiry settlements by contract. The checks of
step 1 are :mod:`kit.execution.pretrade`; steps 3 and 4 (working one order) are
:mod:`kit.execution.ladder`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from kit.core.model import Action, Decision, Fill, Leg, ModelError, Side
from kit.execution.broker import (
    SETTLEMENT,
    Broker,
    BrokerError,
    BrokerEvent,
    OrderRejectedError,
    SimulatedVenue,
)
from kit.execution.intents import (
    NOTHING_TO_SELL,
    Intent,
    IntentKind,
    IntentRecord,
    closing_legs,
    intent_for_action,
)
from kit.execution.ladder import Ladder, ManagerConfig, orient
from kit.execution.pretrade import check_intent
from kit.execution.state import MemoryStateStore, StateStore
from kit.portfolio.strategies import StrategyError, units_to_close

if TYPE_CHECKING:
    from kit.engine.desk import Desk

log = logging.getLogger(__name__)


__all__ = ["IntentRecord", "ManagerConfig", "OrderManager", "orient"]


class OrderManager:
    """Works intents into orders on one broker and feeds the fills to the desk's book."""

    def __init__(
        self,
        desk: Desk,
        broker: Broker,
        config: ManagerConfig | None = None,
        *,
        store: StateStore | None = None,
    ) -> None:
        self.desk, self.broker = desk, broker
        self.config = config or ManagerConfig()
        self.store = store or MemoryStateStore()
        self.records: dict[str, IntentRecord] = {}
        self.strategies: dict[str, str] = {}  # strategy id → its position (held or pending)
        self._tasks: dict[str, asyncio.Task[IntentRecord]] = {}
        self.ladder = Ladder(broker, desk.clock, desk.market, self.config, self._save,
                             self._decide)  # fmt: skip
        self._amended: set[str] = set()
        self._dirty = False  # fills applied, the desk not yet re-evaluated
        self._seq = 0
        self._load()
        for rec in self.records.values():  # a level's partial close, journaled, stays done
            i = rec.intent
            if i.source.startswith("auto:") and i.kind is IntentKind.CLOSE and i.fraction < 1:
                rule, _, level = i.source.removeprefix("auto:").partition(":")
                desk.done_once.add((rule, i.position_id, level))
        broker.subscribe(self._on_broker_event)
        desk.executor = self.on_action
        desk.orders = self
        if isinstance(broker, SimulatedVenue):  # it matches resting orders on each batch
            desk.hooks.add_batch(broker.on_market)

    # --- journal ---

    def _load(self) -> None:
        state = self.store.load(self.config.state_key)
        if not state:
            return
        self._seq = int(state["seq"])
        self.strategies = dict(state["strategies"])
        for doc in state["records"]:
            rec = msgspec.convert(doc, IntentRecord)
            self.records[rec.intent.id] = rec

    def _save(self) -> None:
        self.store.save(self.config.state_key, {
            "seq": self._seq, "strategies": self.strategies,
            "records": [msgspec.to_builtins(r) for r in self.records.values()],
        })  # fmt: skip

    def next_id(self, position_id: str, kind: str) -> str:
        """A fresh intent id (the sequence is journaled, so ids never repeat across restarts)."""
        self._seq += 1
        return f"{position_id}.{kind}.{self._seq}"

    # --- lifecycle ---

    async def start(self) -> None:
        """Connect, rebuild the book from the broker's fills and resume unfinished intents."""
        await self.broker.connect()
        fills = await self.broker.fills()
        for fill in fills:
            self._route_fill(fill, publish=False)
        for pid in {self.position_of(f) for f in fills} - {None}:
            self._reshape(pid)  # type: ignore[arg-type]
        self._dirty = False
        self.desk.evaluate()
        resumed = [r for r in self.records.values() if r.active]
        for rec in resumed:
            self._spawn(rec)
        if fills or resumed:
            self._decide(
                "recovery",
                f"recovered {len(fills)} fills from {self.broker.name}; "
                f"resuming {len(resumed)} unfinished intents",
                None,
                {"fills": len(fills), "resumed": [r.intent.id for r in resumed]},
            )

    async def close(self) -> None:
        """Stop working (orders at the broker stay as they are: a restart resumes them)."""
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await self.broker.close()

    def halt(self, reason: str) -> Coroutine[Any, Any, None]:
        """Stop every intent working now, and return the coroutine that cancels their orders
        (awaiting confirmations): the kill switch and the close of a session. The stop itself
        is immediate, so an intent submitted after the halt (a manual close) is not touched.
        Stopped intents end as failed with ``reason``."""
        stopped = self.pending()
        for rec in stopped:
            rec.status, rec.message = "failed", reason
        tasks = [t for r in stopped if (t := self._tasks.get(r.intent.id)) is not None]
        for task in tasks:
            task.cancel()
        return self._cancel_orders({r.intent.id for r in stopped}, tasks)

    def cancel(self, intent_id: str, reason: str) -> Coroutine[Any, Any, None]:
        """Stop one working intent (a trader's Cancel on the working-orders list) and return
        the coroutine that cancels its orders at the broker. What already filled stays filled:
        the book keeps those units. OrderRejectedError when the intent is not working."""
        rec = self.records.get(intent_id)
        if rec is None or not rec.active:
            state = "unknown" if rec is None else rec.status
            raise OrderRejectedError(f"intent {intent_id!r} is not working ({state})")
        rec.status, rec.message = "cancelled", reason
        self._decide("cancel", f"{rec.intent.kind} {rec.intent.position_id} cancelled: {reason}",
                     rec.intent.position_id, {"intent": intent_id})  # fmt: skip
        task = self._tasks.get(intent_id)
        if task is not None:
            task.cancel()
        return self._cancel_orders({intent_id}, [task] if task is not None else [])

    async def _cancel_orders(self, ids: set[str], tasks: list[asyncio.Task[IntentRecord]]) -> None:
        await asyncio.gather(*tasks, return_exceptions=True)
        for state in await self.broker.orders():
            if not state.status.done and state.client_id.split("/", 1)[0] in ids:
                await self.ladder.cancel(state.client_id)
        self._save()

    # --- intake ---

    def submit(self, intent: Intent) -> IntentRecord:
        """Check ``intent`` and start working it; refusals raise OrderRejectedError (and are
        audited). Submitting a known intent id returns its record: nothing is sent twice."""
        known = self.records.get(intent.id)
        if known is not None:
            return known
        try:
            self._check(intent)
        except OrderRejectedError as exc:
            self._decide(
                "rejected",
                f"{intent.kind} {intent.position_id} refused: {exc}",
                intent.position_id,
                {"intent": intent.id, "source": intent.source},
            )
            raise
        rec = self.records[intent.id] = IntentRecord(intent)
        if intent.kind is IntentKind.OPEN:
            self.strategies[intent.strategy_id] = intent.position_id
        self._save()
        self._decide("intent", f"{intent.kind} {intent.position_id}: {intent.reason}",
                     intent.position_id, {"intent": intent.id, "source": intent.source,
                                          "fraction": intent.fraction})  # fmt: skip
        self._spawn(rec)
        return rec

    async def execute(self, intent: Intent) -> IntentRecord:
        """Submit ``intent`` and wait until it is worked to its end."""
        rec = self.submit(intent)
        task = self._tasks.get(intent.id)
        if task is not None:
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():  # we were cancelled, not the intent
                    raise
        return rec  # a superseded intent (its task cancelled) ends here too

    async def on_action(self, action: Action) -> None:
        """The desk's executor: carry out an auto-managed rule action as an intent."""
        pid = action.position_id or ""
        try:
            intent = intent_for_action(
                action,
                self.desk.book,
                self.desk.market,
                self.strategy_of(pid),
                self.next_id(pid, action.kind),
            )
            await self.execute(intent)
        except (StrategyError, ModelError, OrderRejectedError) as exc:
            self._decide("rejected", f"{action.kind} for {pid} not carried out: {exc}", pid,
                         {"rule": action.rule})  # fmt: skip

    def strategy_of(self, position_id: str) -> str:
        return next((s for s, p in self.strategies.items() if p == position_id), position_id)

    def pending(self, position_id: str | None = None) -> list[IntentRecord]:
        return [r for r in self.records.values() if r.active
                and (position_id is None or r.intent.position_id == position_id)]  # fmt: skip

    def pending_entry(self, position_id: str | None) -> bool:
        """Whether an entry of ``position_id`` (None: of any position) is still being worked
        (the desk's :class:`~kit.engine.ports.OrderFlow`)."""
        return any(r.intent.kind is IntentKind.OPEN for r in self.pending(position_id))

    def _check(self, intent: Intent) -> None:
        """Refuse what must not reach a broker (:func:`~kit.execution.pretrade.check_intent`)."""
        check_intent(intent, self.desk, self.strategies, [r.intent for r in self.pending()])

    # --- working an intent ---

    def _spawn(self, rec: IntentRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._run(rec), name=rec.intent.id)
        self._tasks[rec.intent.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(rec.intent.id, None))

    async def _run(self, rec: IntentRecord) -> IntentRecord:
        intent, cfg = rec.intent, self.config
        pid = intent.position_id
        try:
            await self._supersede(rec)
            await self._cancel_lingering(pid, keep=f"{intent.id}/")
            legs, quantity = self._plan(rec)
            rec.quantity, rec.status = quantity, "working"
            self._save()
            if intent.target is not None and intent.kind is not IntentKind.OPEN:
                self.desk.book.amend(intent.target)  # the new legs exist before their fills
                self._amended.add(intent.id)
                await self.desk.subscribe(leg.contract for leg in intent.legs)
            fallback = cfg.market_fallback_open if intent.kind.adds_risk else (
                cfg.market_fallback_close)  # fmt: skip
            if self.broker.supports_combo or len(legs) == 1:
                side, order_legs = orient(legs)
                rec.filled = await self.ladder.work(rec, "C", order_legs, side, quantity, fallback)
            else:
                rec.filled = await self.ladder.leg_in(rec, legs, quantity, fallback)
            rec.status = ("done" if rec.filled == quantity else
                          "partial" if rec.filled else "failed")  # fmt: skip
        except (BrokerError, OrderRejectedError, ModelError) as exc:
            rec.status, rec.message = "failed", str(exc)
            log.warning("order manager: %s failed: %s", intent.id, exc)
        except Exception as exc:  # a bug must not leave the intent "working" forever
            rec.status, rec.message = "failed", f"internal error: {type(exc).__name__}: {exc}"
            log.exception("order manager: %s failed unexpectedly", intent.id)
        finally:
            if not rec.active:  # a shutdown leaves it working: a restart resumes it
                self._finish(rec)
        return rec

    async def _supersede(self, rec: IntentRecord) -> None:
        """A newer intent for the same position replaces any older one still working."""
        for other in self.pending(rec.intent.position_id):
            if other is rec:  # records keep submission order (the journal too): only older
                break  # intents are superseded, even when a restart resumes both
            other.status = "superseded"
            task = self._tasks.get(other.intent.id)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _plan(self, rec: IntentRecord) -> tuple[tuple[Leg, ...], int]:
        """Legs per unit (signed) and units to trade, from what is held now."""
        intent = rec.intent
        if intent.kind is IntentKind.OPEN:
            assert intent.target is not None
            return intent.target.legs, intent.target.quantity
        held = self.desk.book.held(intent.position_id)
        if held is None:
            raise OrderRejectedError(f"position {intent.position_id!r} is flat")
        if intent.kind is IntentKind.CLOSE:
            units = rec.quantity or units_to_close(held.quantity, intent.fraction)
            legs = closing_legs(self.desk.market, held)
            if not legs:
                raise OrderRejectedError(NOTHING_TO_SELL.format(intent.position_id))
            return legs, units
        return intent.legs, rec.quantity or held.quantity

    def _release(self, pid: str) -> None:
        """Once ``pid`` is flat with nothing pending, its strategy may enter again (after an
        intent closed it, or expiry settled it)."""
        sid = next((s for s, p in self.strategies.items() if p == pid), None)
        if sid is not None and not self.pending(pid) and (
                pid not in self.desk.book.rows or self.desk.book.held(pid) is None):  # fmt: skip
            del self.strategies[sid]
            self._save()

    def _finish(self, rec: IntentRecord) -> None:
        intent = rec.intent
        pid = intent.position_id
        if pid in self.desk.book.rows:
            self._reshape(pid)
        self._release(pid)
        self._save()
        self._decide("done", f"{intent.kind} {pid}: {rec.status}, {rec.filled} of "
                     f"{rec.quantity} units" + (f" ({rec.message})" if rec.message else ""),
                     pid, {"intent": intent.id, "status": rec.status})  # fmt: skip

    def _reshape(self, pid: str) -> None:
        """The book's record of a position follows what its fills left (units, legs)."""
        held = self.desk.book.held(pid)
        if held is not None:
            self.desk.book.amend(held)

    async def _cancel_lingering(self, pid: str, keep: str) -> None:
        for state in await self.broker.orders():
            o = state.order
            if o.position_id == pid and not state.status.done and not o.client_id.startswith(keep):
                self._decide("order", f"cancelling lingering order {o.client_id} first", pid,
                             {"client_id": o.client_id})  # fmt: skip
                await self.ladder.cancel(o.client_id)

    # --- broker events ---

    def _on_broker_event(self, event: BrokerEvent) -> None:
        if isinstance(event, Fill):
            self._route_fill(event)
            return
        if self._dirty:  # the fills of one execution are valued together, not leg by leg
            self._dirty = False
            self.desk.evaluate()
        self.ladder.wake(event.client_id)
        self.desk.record(event)

    def position_of(self, fill: Fill) -> str | None:
        """The position a fill belongs to (a settlement part names its position in its id)."""
        if fill.client_id == SETTLEMENT:
            pid = fill.fill_id.rpartition(":")[2]
            return pid if pid in self.desk.book.rows else None
        rec = self.records.get(fill.client_id.split("/", 1)[0])
        return rec.intent.position_id if rec is not None else None

    def _route_fill(self, fill: Fill, *, publish: bool = True) -> None:
        """Apply a fill to its position's book entry (opening the position on its first fill;
        splitting a settlement over the positions holding the contract)."""
        book = self.desk.book
        if fill.client_id == SETTLEMENT:
            for pid, part in self._settlement_parts(fill):
                book.apply_fill(part, pid)
                if publish:
                    self.desk.record(part)
                self._release(pid)
            self.desk.evaluate()
            return
        rec = self.records.get(fill.client_id.split("/", 1)[0])
        if rec is None:
            log.warning("order manager: fill %s for unknown order %s kept at the broker only",
                        fill.fill_id, fill.client_id)  # fmt: skip
            return
        intent = rec.intent
        pid = intent.position_id
        if pid not in book.rows:
            assert intent.target is not None
            self.desk.open_position(intent.target)
        elif intent.target is not None and intent.id not in self._amended and (
                intent.kind is not IntentKind.OPEN):  # fmt: skip
            book.amend(intent.target)  # recovery: the rolled-in legs must exist
            self._amended.add(intent.id)
        self._dirty |= book.apply_fill(fill, pid)
        if publish:
            self.desk.record(fill)

    def _settlement_parts(self, fill: Fill) -> list[tuple[str, Fill]]:
        book, row = self.desk.book, self.desk.market.index.get(fill.contract)
        parts = []
        for j in np.flatnonzero((book.leg_row == row) & (book.leg_qty != 0)):
            pid = book.ids[int(book.leg_pos[j])]
            q = float(book.leg_qty[j])
            side = Side.BUY if q < 0 else Side.SELL
            parts.append((pid, msgspec.structs.replace(
                fill, fill_id=f"{fill.fill_id}:{pid}", side=side, quantity=abs(q))))  # fmt: skip
        return parts

    def _decide(self, kind: str, message: str, pid: str | None, inputs: dict[str, Any]) -> None:
        decision = Decision(self.desk.clock.now_ns(), kind, message, pid, inputs)
        self.desk.record(decision)

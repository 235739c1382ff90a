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

Fills are routed to the desk's book by client id; expiry settlements by contract.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from kit.core.model import Action, Decision, Fill, Leg, ModelError, Order, OrderType, Side
from kit.core.symbology import to_occ
from kit.execution.broker import (
    SETTLEMENT,
    Broker,
    BrokerError,
    BrokerEvent,
    OrderRejectedError,
    OrderState,
)
from kit.execution.intents import Intent, IntentKind, intent_for_action
from kit.execution.state import MemoryStateStore, StateStore
from kit.portfolio.strategies import StrategyError, units_to_close
from kit.risk.limits import check_limits, stress_loss, tightest

if TYPE_CHECKING:
    from kit.engine.desk import Desk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManagerConfig:
    """How orders are worked. Prices are per unit of the order (net for combos)."""

    tick: float = 0.05  # limit prices are multiples of this ...
    ticks: Mapping[str, float] = field(default_factory=lambda: {"SPY": 0.01})  # ... by underlying
    step_fraction: float = 0.25  # each retry moves the limit this share of mid → natural
    retries: int = 4  # price steps after the first (at mid); the last one reaches natural
    wait_s: float = 5.0  # wait for a fill at the first price ...
    backoff: float = 1.5  # ... and this much longer at each later price
    cancel_timeout_s: float = 10.0  # a cancel not confirmed by then fails the intent
    market_fallback_close: bool = True  # closes finish with a market order if the ladder didn't
    market_fallback_open: bool = False  # entries never chase: an unfilled entry is let go
    market_wait_s: float = 10.0  # how long a market order may take
    state_key: str = "order_manager"

    def __post_init__(self) -> None:
        if not 0 < self.step_fraction <= 1 or self.retries < 0 or self.backoff < 1:
            raise ValueError("step_fraction must be in (0, 1], retries >= 0 and backoff >= 1")
        waits = (self.wait_s, self.cancel_timeout_s, self.market_wait_s, self.tick,
                 *self.ticks.values())  # fmt: skip
        if not all(w > 0 for w in waits):
            raise ValueError("ticks and waits must be positive")


class IntentRecord(msgspec.Struct):
    """An intent and how far it got: the journal entry that survives a restart."""

    intent: Intent
    status: str = "accepted"  # accepted | working | done | partial | failed | superseded
    quantity: int = 0  # units worked, resolved when work starts
    filled: int = 0  # units done
    steps: dict[str, int] = msgspec.field(default_factory=dict)  # ladder step per stage
    message: str = ""

    @property
    def active(self) -> bool:
        return self.status in ("accepted", "working")


def orient(legs: tuple[Leg, ...]) -> tuple[Side, tuple[Leg, ...]]:
    """The order side and legs for per-unit ``legs`` (signed): all-short legs become a SELL of
    the positive combo (a strangle is sold for a credit), anything else a BUY as given."""
    if all(leg.ratio < 0 for leg in legs):
        return Side.SELL, tuple(Leg(leg.contract, -leg.ratio) for leg in legs)
    return Side.BUY, legs


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
        self._wake: dict[str, asyncio.Event] = {}
        self._amended: set[str] = set()
        self._dirty = False  # fills applied, the desk not yet re-evaluated
        self._seq = 0
        self._load()
        broker.subscribe(self._on_broker_event)
        desk.executor = self.on_action
        desk.orders = self
        on_market = getattr(broker, "on_market", None)
        if on_market is not None:  # a simulated venue matches resting orders on each batch
            desk.on_batch.append(on_market)

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

    async def _cancel_orders(self, ids: set[str], tasks: list[asyncio.Task[IntentRecord]]) -> None:
        await asyncio.gather(*tasks, return_exceptions=True)
        for state in await self.broker.orders():
            if not state.status.done and state.client_id.split("/", 1)[0] in ids:
                await self._cancel(state.client_id)
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

    def _check(self, intent: Intent) -> None:
        """Refuse what must not reach a broker; the message is the reason, for a person."""
        desk, book, market = self.desk, self.desk.book, self.desk.market
        pid = intent.position_id
        if intent.kind is IntentKind.OPEN:
            assert intent.target is not None
            held_by = self.strategies.get(intent.strategy_id)
            if held_by is not None and (self.pending(held_by) or (
                    held_by in book.rows and book.held(held_by) is not None)):  # fmt: skip
                raise OrderRejectedError(
                    f"strategy {intent.strategy_id!r} already has position {held_by!r} open or "
                    "pending: no second entry (duplicate-trade prevention)")  # fmt: skip
            if pid in book.rows:
                raise OrderRejectedError(f"position {pid!r} already exists")
            legs, quantity = intent.target.legs, intent.target.quantity
        else:
            held = book.held(pid) if pid in book.rows else None
            if held is None:
                raise OrderRejectedError(f"position {pid!r} is not held: nothing to {intent.kind}")
            legs, quantity = intent.legs or held.legs, held.quantity
        now = desk.clock.now_ns()
        for leg in legs:
            i = market.index.get(leg.contract)
            if i is None or not (market.bid[i] > 0 and market.ask[i] > 0):
                raise OrderRejectedError(f"no two-sided quote for {leg.contract}")
            if market.expiry_ns[i] <= now:
                raise OrderRejectedError(f"{leg.contract} has expired")
        if not intent.kind.adds_risk:
            return
        view = desk.view
        underlying = legs[0].contract.underlying
        spot = market.spot_of(underlying)
        limits = tightest(desk.rules.limits, desk.limit_ceiling)
        if limits.enabled and not math.isfinite(spot):  # the stress would read 0
            raise OrderRejectedError(f"no {underlying} spot: the risk limits cannot be checked")
        added = stress_loss(market, book, legs, quantity, spot)
        if intent.kind is IntentKind.ROLL:
            held = book.held(pid)
            assert held is not None and intent.target is not None
            added = stress_loss(market, book, intent.target.legs, quantity, spot) - stress_loss(
                market, book, held.legs, quantity, spot)  # fmt: skip
        # entries still being worked count once each, at their full size and risk, whether or
        # not part of them filled (a filled part is also a row of the book: not counted twice)
        entries = [
            r.intent.target
            for r in self.pending()
            if r.intent.kind is IntentKind.OPEN and r.intent.target is not None
        ]
        entering = {p.id for p in entries}
        n = len(view.is_open)  # view.ids is the book's list: positions added later follow it
        live = view.is_open & np.array([p not in entering for p in view.ids[:n]], dtype=bool)
        pending_risk = sum(
            stress_loss(market, book, p.legs, p.quantity, market.spot_of(p.underlying))
            for p in entries
        )
        why = check_limits(
            limits, opening=intent.kind is IntentKind.OPEN, quantity=quantity,
            added_risk=added, open_positions=int(live.sum()) + len(entries),
            total_risk=float(view.risk[live].sum()) + pending_risk,
            day_pnl=float(view.day_pnl.sum()),
            killed=desk.killed, blocked_by=tuple(desk.blocked_by.values()),
        )  # fmt: skip
        if why:
            raise OrderRejectedError("; ".join(why))

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
                rec.filled = await self._work(rec, "C", order_legs, side, quantity, fallback)
            else:
                rec.filled = await self._leg_in(rec, legs, quantity, fallback)
            rec.status = ("done" if rec.filled == quantity else
                          "partial" if rec.filled else "failed")  # fmt: skip
        except (BrokerError, OrderRejectedError, ModelError) as exc:
            rec.status, rec.message = "failed", str(exc)
            log.warning("order manager: %s failed: %s", intent.id, exc)
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
            return tuple(Leg(leg.contract, -leg.ratio) for leg in held.legs), units
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

    async def _leg_in(
        self, rec: IntentRecord, legs: tuple[Leg, ...], quantity: int, fallback: bool
    ) -> int:
        """Legs one by one, buys first, each sized to what the earlier legs filled; excess
        from a leg that fell short is unwound (with a market fallback) so no leg is left
        unmatched."""
        order = sorted(range(len(legs)), key=lambda n: legs[n].ratio < 0)
        matched, got = quantity, {}
        for n in order:
            leg = legs[n]
            if matched == 0:
                break
            side = Side.BUY if leg.ratio > 0 else Side.SELL
            units = matched * abs(leg.ratio)
            done = await self._work(rec, f"L{n}", (Leg(leg.contract, 1),), side, units, fallback)
            got[n] = done
            matched = min(matched, done // abs(leg.ratio))
        for n, done in got.items():
            leg = legs[n]
            excess = done - matched * abs(leg.ratio)
            if excess > 0:
                side = Side.SELL if leg.ratio > 0 else Side.BUY
                await self._work(rec, f"U{n}", (Leg(leg.contract, 1),), side, excess, True)
        if matched < quantity:
            self._decide(
                "order",
                f"legging stopped at {matched} of {quantity} units; unmatched legs unwound",
                rec.intent.position_id,
                {"intent": rec.intent.id, "filled": {str(k): v for k, v in got.items()}},
            )
        return matched

    async def _work(
        self, rec: IntentRecord, stage: str, legs: tuple[Leg, ...], side: Side, quantity: int,
        fallback: bool,
    ) -> int:  # fmt: skip
        """One order through the ladder (and the market fallback); returns units filled."""
        cfg, broker = self.config, self.broker
        cid = f"{rec.intent.id}/{stage}"
        step = rec.steps.get(stage, 0)
        state = broker.order(cid)
        if state is None:
            order = Order(cid, legs, side, quantity, OrderType.LIMIT, self.desk.clock.now_ns(),
                          self._price(legs, side, step), rec.intent.position_id)  # fmt: skip
            state = await broker.place(order)
        while not state.status.done:
            state = await self._wait(cid, cfg.wait_s * cfg.backoff**step)
            if state.status.done or rec.status == "superseded":
                break
            step += 1
            if step > cfg.retries:
                break
            try:
                limit = self._price(legs, side, step)
                rec.steps[stage] = step
                self._save()
                state = await broker.replace(cid, limit_price=limit)
            except OrderRejectedError as exc:  # e.g. a quote went one-sided: the order must not
                rec.message = f"ladder stopped: {exc}"  # keep working, so cancel it below
                break
        if not state.status.done:
            state = await self._cancel(cid)
        filled = state.filled_qty
        if filled < quantity and fallback and rec.status != "superseded":
            mid = f"{cid}/mkt"
            m = broker.order(mid) or await broker.place(
                Order(mid, legs, side, quantity - filled, OrderType.MARKET,
                      self.desk.clock.now_ns(), None, rec.intent.position_id))  # fmt: skip
            m = await self._wait(mid, cfg.market_wait_s)
            if not m.status.done:
                m = await self._cancel(mid)
            filled += m.filled_qty
            self._wake.pop(mid, None)
        self._wake.pop(cid, None)  # done with these orders: nothing waits on them any more
        return filled

    def _price(self, legs: tuple[Leg, ...], side: Side, step: int) -> float:
        """The ladder's price at ``step``: mid, then ``step_fraction`` steps to the natural."""
        m, cfg = self.desk.market, self.config
        rows = m.rows([leg.contract for leg in legs])
        ratio = np.array([leg.ratio for leg in legs], dtype=float)
        bid, ask = m.bid[rows], m.ask[rows]
        if not (np.all(bid > 0) and np.all(ask > 0)):
            names = ", ".join(to_occ(leg.contract, padded=False) for leg in legs)
            raise OrderRejectedError(f"no two-sided quote for every leg of {names}")
        buying = (ratio > 0) == (side is Side.BUY)
        mid = float(ratio @ (0.5 * (bid + ask)))
        natural = float(ratio @ np.where(buying, ask, bid))
        price = mid + min(1.0, step * cfg.step_fraction) * (natural - mid)
        tick = cfg.ticks.get(legs[0].contract.underlying, cfg.tick)
        units = price / tick
        if step * cfg.step_fraction >= 1:  # the last step is marketable: round toward natural
            units = math.ceil(units - 1e-9) if side is Side.BUY else math.floor(units + 1e-9)
        return round(round(units) * tick, 10)

    async def _wait(self, cid: str, seconds: float) -> OrderState:
        """The order's state once it is done or ``seconds`` (on the desk's clock) have passed."""
        clock = self.desk.clock
        deadline = clock.now_ns() + int(seconds * 1e9)
        while True:
            state = self.broker.order(cid)
            if state is None:
                raise BrokerError(f"{self.broker.name} does not know order {cid}")
            left = (deadline - clock.now_ns()) / 1e9
            if state.status.done or left <= 0:
                return state
            wake = self._wake.setdefault(cid, asyncio.Event())
            wake.clear()
            waiter = asyncio.ensure_future(wake.wait())
            sleeper = asyncio.ensure_future(clock.sleep(left))
            try:
                await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                sleeper.cancel()

    async def _cancel(self, cid: str) -> OrderState:
        """Cancel and wait for the confirmation (a fill may win the race: that counts)."""
        state = await self.broker.cancel(cid)
        if not state.status.done:
            state = await self._wait(cid, self.config.cancel_timeout_s)
        if not state.status.done:
            raise BrokerError(
                f"cancel of {cid} not confirmed within "
                f"{self.config.cancel_timeout_s:g} s: sending nothing new"
            )
        return state

    async def _cancel_lingering(self, pid: str, keep: str) -> None:
        for state in await self.broker.orders():
            o = state.order
            if o.position_id == pid and not state.status.done and not o.client_id.startswith(keep):
                self._decide("order", f"cancelling lingering order {o.client_id} first", pid,
                             {"client_id": o.client_id})  # fmt: skip
                await self._cancel(o.client_id)

    # --- broker events ---

    def _on_broker_event(self, event: BrokerEvent) -> None:
        if isinstance(event, Fill):
            self._route_fill(event)
            return
        if self._dirty:  # the fills of one execution are valued together, not leg by leg
            self._dirty = False
            self.desk.evaluate()
        wake = self._wake.get(event.client_id)
        if wake is not None:
            wake.set()
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

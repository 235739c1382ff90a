"""One auto-managed paper session: open to close, entering by the strategy's rules.

``kit run --feed sim --auto`` calls :func:`run_auto`. From the first entry time the autopilot
looks for a short strangle in the delta band on the chosen expiry; an entry must pass the desk's
entry check (spread, open interest, net delta, IV rank, limits), else it retries later until the
last entry time. Once in, the desk's rules manage the position with auto-manage on: profit
targets, stops, delta rolls and time stops become intents that the order manager works through
the paper broker. At the close, working orders are cancelled and whatever is still held is
settled at intrinsic value, so the session always ends flat and its realised P&L is exactly what
its fills add up to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from kit.adapters.paper.broker import PaperBroker, PaperConfig
from kit.adapters.sim.feed import SCRIPTS, ScriptStep, SimFeed
from kit.adapters.sim.market import SimConfig
from kit.core.clock import NEW_YORK, SimClock, from_ns, us_session
from kit.core.model import Contract, Decision
from kit.engine.alerts import AlertManager, AlertSink, record_to_json
from kit.engine.desk import Desk
from kit.execution.intents import open_intent
from kit.execution.manager import ManagerConfig, OrderManager
from kit.execution.state import MemoryStateStore, StateStore
from kit.portfolio.strategies import DeltaBand, LiquidityFilter, StrategyError, strangle
from kit.risk.rules import Rules
from kit.store import Store
from kit.store.attach import DeskStore, open_desk_store
from kit.store.recorder import RecorderConfig

WARM_UP_S = 5.0  # a session begun mid-day waits this long for the feed before selecting
AUTO_SEED = 3  # the default auto session: a day whose IV rank (86) lets a premium seller in


@dataclass(frozen=True)
class AutoConfig:
    """The strategy the autopilot trades. Entry filters beyond these are the desk's entry rule."""

    strategy_id: str = "spx-0dte-strangle"
    root: str = "SPXW"
    dte: int = 0  # sessions to expiry: 0 = today's expiry
    band: DeltaBand = field(default_factory=DeltaBand)
    liquidity: LiquidityFilter | None = None  # None: the desk's entry rule's spread and OI
    quantity: int = 4
    first_entry: time = time(9, 45)  # New York time
    last_entry: time = time(14, 0)
    retry_every_s: float = 900.0  # a refused entry is tried again this much later


@dataclass(frozen=True)
class AutoResult:
    realized_pnl: float  # from the book
    fills_cash: float  # the sum of every fill's cash flow (commissions included)
    flat: bool
    fills: int
    orders: int
    entered: bool
    summary: dict[str, Any]


async def run_auto(
    *,
    day: date,
    seed: int = AUTO_SEED,
    speed: float | None = None,
    rules: Rules | None = None,
    config: AutoConfig | None = None,
    manager: ManagerConfig | None = None,
    paper: PaperConfig | None = None,
    script: Sequence[ScriptStep] | str = (),
    store: StateStore | None = None,
    db: Store | str | None = None,
    start: time | None = None,
    sinks: Sequence[AlertSink] = (),
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> AutoResult:
    """Run one session on the simulator; ``emit`` receives every desk record as JSON.

    With ``db`` (a DuckDB path, ``postgresql://`` URL or open store) everything is recorded
    there and the state lives there too: a run of the same day that was interrupted (even by
    kill -9) resumes where its last persisted second left off, with its positions and working
    orders, and sends no order twice. ``start`` (New York time) begins a fresh session later
    than the open, in the same simulated market (the path from the open is replayed)."""
    cfg = config or AutoConfig()
    session = us_session(day)
    if session is None:
        raise ValueError(f"{day} is not a US trading session")
    opened = open_desk_store(db) if isinstance(db, str) else db
    saved = opened.load_state(f"{RecorderConfig().desk}.autopilot") if opened else None
    resume = saved if saved and saved["day"] == day.isoformat() and not saved["done"] else None
    begin = datetime.combine(day, start, NEW_YORK) if start else session.open
    if not session.open <= begin < session.close:
        raise ValueError(f"start {start} is outside the {day} session")
    clock = SimClock(from_ns(resume["ts_ns"]) if resume else begin, speed=speed)
    steps = SCRIPTS[script] if isinstance(script, str) else tuple(script)
    feed = SimFeed(clock, config=SimConfig(seed=seed), script=steps, start=session.open)
    desk = Desk(clock, [feed], rules=rules, alerts=AlertManager(clock, sinks), auto_manage=True)
    for symbol in ("SPX", "SPY"):
        desk.iv_history[symbol] = feed.market.iv_history("SPX")
    if emit is not None:
        desk.listeners.append(lambda event: emit(record_to_json(event)))
    kept = DeskStore.open(desk, opened) if opened is not None else None
    state = kept.state if kept is not None else store or MemoryStateStore()
    broker = PaperBroker(clock, desk.market, paper, store=state)
    orders = OrderManager(desk, broker, manager, store=state)
    progress = {"day": day.isoformat(), "seed": seed, "ts_ns": clock.now_ns(), "done": False}
    if kept is not None:
        desk.on_heartbeat.append(lambda: state.save("autopilot", progress | {
            "ts_ns": clock.now_ns()}))  # fmt: skip
        await kept.start()
        if resume is not None:
            desk.record(Decision(clock.now_ns(), "recovery", f"resuming the {day} session at "
                                 f"{clock.now().astimezone(NEW_YORK):%H:%M:%S} from "
                                 f"{kept.store.describe()}", None, {}))  # fmt: skip
    await desk.start()
    entered = cfg.strategy_id in orders.strategies
    if entered:  # resumed with a position: its expiry must be quoted before the book is
        await subscribe_expiry(desk, feed, cfg.root, cfg.dte)
    await orders.start()
    try:
        await desk.subscribe(["SPX", "SPY", "VIX"])
        warm = clock.now() + timedelta(seconds=WARM_UP_S)  # quotes and a spot to select on
        when = max(datetime.combine(day, cfg.first_entry, NEW_YORK), warm)
        last = datetime.combine(day, cfg.last_entry, NEW_YORK)
        while not entered and when <= last:
            await _advance(clock, when, speed)
            entered = await _try_entry(desk, feed, orders, cfg, day)
            when += timedelta(seconds=cfg.retry_every_s)
        await _advance(clock, session.close + timedelta(seconds=1), speed)
        await _wind_down(desk, broker, orders)
        if kept is not None:
            state.save("autopilot", progress | {"ts_ns": clock.now_ns(), "done": True})
    finally:
        await orders.close()
        await desk.close()
        if kept is not None:
            await kept.close()
    return _result(desk, len(await broker.orders()), orders, entered, emit)


async def _advance(clock: SimClock, when: datetime, speed: float | None) -> None:
    if speed is None:
        await clock.run_until(when)
        return
    while clock.now() < when:
        await asyncio.sleep(min(0.2, (when - clock.now()).total_seconds() / speed))


async def _try_entry(
    desk: Desk, feed: SimFeed, orders: OrderManager, cfg: AutoConfig, day: date
) -> bool:
    """Select the strangle and enter if the desk's entry check passes; says why not."""
    now = desk.clock.now_ns()
    chain = await subscribe_expiry(desk, feed, cfg.root, cfg.dte)
    if not chain:
        return _skip(desk, f"no {cfg.root} expiry {cfg.dte} sessions out")
    pid = f"{cfg.strategy_id}-{day:%Y%m%d}"
    try:
        liquidity = cfg.liquidity or LiquidityFilter.for_entry(desk.rules.entry)
        position = strangle(desk.market, chain, pid, now, band=cfg.band, liquidity=liquidity,
                            quantity=cfg.quantity)  # fmt: skip
    except StrategyError as exc:
        return _skip(desk, str(exc))
    check = desk.check_entry(position)
    if not check.ok:
        return _skip(desk, "; ".join(check.failures), check.inputs)
    intent = open_intent(position, cfg.strategy_id, f"entry: {check.finding.alert.message}",
                         intent_id=f"{pid}.open", source="autopilot")  # fmt: skip
    desk.record(Decision(now, "entry", f"selling {position.note}: {intent.reason}", pid,
                         check.inputs))  # fmt: skip
    orders.submit(intent)
    return True


async def subscribe_expiry(desk: Desk, feed: SimFeed, root: str, dte: int) -> list[Contract]:
    """Quote a whole expiry of ``root``, ``dte`` sessions out (rolls and wings choose from it
    later); returns it, empty when there is no such expiry."""
    m = feed.market
    expiries = sorted({c.expiry for c in m.chain(root)})
    if len(expiries) <= dte:
        return []
    chain = [c for c in m.chain(root) if c.expiry == expiries[dte]]
    await desk.subscribe(chain)
    desk.process(m.quotes(chain))  # its current quotes now, rather than one step later
    desk.market.set_open_interest(chain, m.open_interest(chain))
    desk.market.refresh(desk.market.rows(chain), desk.clock.now_ns())
    return chain


def _skip(desk: Desk, why: str, inputs: dict[str, Any] | None = None) -> bool:
    desk.record(Decision(desk.clock.now_ns(), "entry", f"no entry: {why}", None, inputs or {}))
    return False


async def _wind_down(desk: Desk, broker: PaperBroker, orders: OrderManager) -> None:
    """The close: stop working orders, then settle what is held at intrinsic value."""
    await orders.halt("the session closed")
    held = await broker.positions()
    if held:
        spots = {c.underlying: desk.market.spot_of(c.underlying) for c in held}
        fills = broker.settle(spots, desk.clock.now_ns())
        desk.record(Decision(desk.clock.now_ns(), "settlement",
                             f"{len(fills)} legs settled at intrinsic value", None,
                             {"spots": spots}))  # fmt: skip


def _result(
    desk: Desk, n_orders: int, orders: OrderManager, entered: bool,
    emit: Callable[[dict[str, Any]], None] | None,
) -> AutoResult:  # fmt: skip
    fills = [fill for _, fill in desk.book.fills]
    cash = round(sum(f.cash_flow for f in fills), 2)
    view = desk.book.view(desk.clock.now_ns())
    realized = round(float(view.realized.sum()), 2)
    flat = not any(desk.book.held(pid) for pid in desk.book.ids)
    summary = {
        "kind": "summary", "ts": from_ns(desk.clock.now_ns()).isoformat(),
        "entered": entered, "flat": flat, "realized_pnl": realized, "fills_cash": cash,
        "fills": len(fills), "orders": n_orders,
        "commissions": round(sum(f.commission for f in fills), 2),
        "intents": {r.intent.id: r.status for r in orders.records.values()},
        "alerts": len(desk.alerts.history),
    }  # fmt: skip
    if emit is not None:
        emit(summary)
    return AutoResult(realized, cash, flat, len(fills), n_orders, entered, summary)

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
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, time, timedelta
from typing import Any

from kit.adapters.paper.broker import PaperBroker, PaperConfig
from kit.adapters.sim.feed import ScriptStep
from kit.app.build import DEFAULT_DAY, DEFAULT_SEED, FeedSpec, Run, RunSpec, build
from kit.app.scenarios import sim_setup
from kit.core.clock import NEW_YORK, SimClock, from_ns, us_session
from kit.core.model import Decision
from kit.engine.alerts import AlertSink, record_to_json
from kit.engine.desk import Desk
from kit.execution.broker import OrderRejectedError
from kit.execution.intents import open_intent
from kit.execution.manager import ManagerConfig, OrderManager
from kit.execution.state import StateStore
from kit.portfolio.strategies import (
    DeltaBand,
    LiquidityFilter,
    StrategyError,
    protected,
    short_strangle,
    strangle,
    wings_at_width,
)
from kit.risk.rules import Rules, rules_table
from kit.store import Store

WARM_UP_S = 5.0  # a session begun mid-day waits this long for the feed before selecting
AUTO_SEED = DEFAULT_SEED  # the default auto session: a day whose IV rank (86) lets a seller in


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
    # strikes: False, the liquid pair in the band whose deltas cancel best (strangle_strikes);
    # True, each side nearest the band's midpoint unfiltered (short_strangle: the grid's rule,
    # which a backtest of a grid row must follow to compare trade by trade)
    nearest: bool = False
    # an iron condor: long wings this many points beyond the shorts (the grid's ``wings``,
    # strategies.wings_at_width); 0: the strangle alone
    wing_width: float = 0.0
    # the grid's ``otm_pct:X`` or ``premium:X`` rule, or ``band:LO:HI`` (a P-band's move
    # fractions for the session), each side unfiltered as with ``nearest``
    # (strategies.nearest_otm); "": by delta
    strikes: str = ""

    def __post_init__(self) -> None:
        if self.strikes:
            kind, *text = self.strikes.split(":")
            try:
                x = [float(v) for v in text]
            except ValueError:
                x = []
            one = kind in ("otm_pct", "premium") and len(x) == 1 and x[0] > 0
            band = kind == "band" and len(x) == 2 and all(map(math.isfinite, x)) and x[0] < x[1]
            if not (one or band):
                raise ValueError(f"strikes {self.strikes!r}: otm_pct:X or premium:X with X > 0, "
                                 "or band:LO:HI (move fractions, LO < HI; empty: by the "
                                 "band's delta)")  # fmt: skip

    @property
    def rule(self) -> tuple[Any, ...] | None:
        """The strike rule for ``strategies.short_strangle`` (None: by delta)."""
        kind, *x = self.strikes.split(":")
        return (kind, *map(float, x)) if self.strikes else None


CONFIG_DOC = "autopilot_config"  # state document per session day: the strategy and rules run


def config_doc(cfg: AutoConfig) -> dict[str, Any]:
    """``cfg`` as plain JSON/TOML (times as HH:MM:SS); :func:`config_from_doc` reads it back."""
    doc = asdict(cfg)
    doc["first_entry"], doc["last_entry"] = cfg.first_entry.isoformat(), cfg.last_entry.isoformat()
    return doc


def config_from_doc(doc: dict[str, Any]) -> AutoConfig:
    """An :class:`AutoConfig` from :func:`config_doc`'s form (any key left out keeps its
    default); an unknown key or bad value is a one-line ValueError."""
    known = {f.name for f in fields(AutoConfig)}
    if unknown := sorted(set(doc) - known):
        raise ValueError(
            f"strategy: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    out = dict(doc)
    try:
        if "band" in out:
            out["band"] = DeltaBand(**out["band"])
        if out.get("liquidity") is not None:
            out["liquidity"] = LiquidityFilter(**out["liquidity"])
        for key in ("first_entry", "last_entry"):
            if key in out:
                out[key] = time.fromisoformat(out[key])
        return AutoConfig(**out)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"strategy: {exc}") from None


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
    day: date = DEFAULT_DAY,
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
    feed: FeedSpec | str = "sim",
    conflate_s: float | None = None,
    sim: Any = None,
    on_start: Callable[[Run], None] | None = None,
) -> AutoResult:
    """Run one session (the simulator unless ``feed`` says otherwise); ``emit`` receives every
    desk record as JSON.

    With ``db`` (a DuckDB path, ``postgresql://`` URL or open store) everything is recorded
    there and the state lives there too: a run of the same day that was interrupted (even by
    kill -9) resumes where its last persisted second left off, with its positions and working
    orders, and sends no order twice; a day that already finished is not traded again (its
    summary is emitted). ``start`` (New York time) begins a fresh simulated session later than
    the open, in the same simulated market (the path from the open is replayed).
    ``conflate_s`` paces a backtest (see :class:`~kit.app.build.RunSpec`); ``sim`` is the
    simulator's settings (a SimConfig; default the scenario's). ``on_start``
    is called with the started run (a test's hand on the desk: a manual close mid-session)."""
    cfg = config or AutoConfig()
    feed = FeedSpec.parse(feed) if isinstance(feed, str) else feed
    if feed.kind not in ("sim", "replay"):
        speed = 1.0  # a vendor's market flows with the wall: never stepped, never jumped ahead
    steps, market = sim_setup(script)  # a scenario's shocks and market (quiet: a calm one)
    market = sim if sim is not None else market  # a SimConfig of the caller's (a backtest's)
    spec = RunSpec(
        mode="backtest" if speed is None else "paper",
        feed=feed, db=db, rules=rules,
        day=day, start=start, seed=seed, speed=speed, script=steps, sim=market, auto_manage=True,
        sinks=tuple(sinks), state=store, resume_key="autopilot", manager=manager, paper=paper,
        listener=(lambda event: emit(record_to_json(event))) if emit is not None else None,
        conflate_s=conflate_s,
    )  # fmt: skip
    run = await build(spec)
    if (
        run.saved
        and run.saved.get("done")
        and run.saved.get("day") == day.isoformat()
        and (run.saved.get("seed") == seed and run.saved.get("feed", "sim") == str(spec.feed))
    ):
        return await _already_done(run, emit)  # fmt: skip
    desk, clock, broker, orders = run.desk, run.clock, run.broker, run.orders
    assert isinstance(broker, PaperBroker) and orders is not None
    session = us_session(clock.now().astimezone(NEW_YORK).date())
    if session is None:
        await run.close()
        raise ValueError(f"{clock.now():%Y-%m-%d} is not a US trading session")
    today = session.day
    if run.kept is not None:
        desk.on_heartbeat.append(run.save_progress)
        if run.resumed:
            desk.record(Decision(clock.now_ns(), "recovery", f"resuming the {today} session at "
                                 f"{clock.now().astimezone(NEW_YORK):%H:%M:%S} from "
                                 f"{run.kept.store.describe()}", None, {}))  # fmt: skip
        else:  # what kit validate replays the day with (a resumed run keeps the first start)
            began = clock.now().astimezone(NEW_YORK).time().isoformat()
            run.state.save(f"{CONFIG_DOC}.{today.isoformat()}",
                           {"strategy": config_doc(cfg), "rules": rules_table(desk.rules),
                            "start": began})  # fmt: skip
    await run.start()
    if on_start is not None:
        on_start(run)
    entered = cfg.strategy_id in orders.strategies
    try:
        if entered:  # resumed with a position: its expiry must be quoted before the book is
            await run.subscribe_expiry(cfg.root, cfg.dte)
        warm = clock.now() + timedelta(seconds=WARM_UP_S)  # quotes and a spot to select on
        when = max(datetime.combine(today, cfg.first_entry, NEW_YORK), warm)
        last = datetime.combine(today, cfg.last_entry, NEW_YORK)
        while not entered and when <= last:
            await _advance(clock, when, speed)
            entered = await _try_entry(run, cfg, today)
            when += timedelta(seconds=cfg.retry_every_s)
        await _advance(clock, session.close + timedelta(seconds=1), speed)
        await _wind_down(desk, broker, orders)
        if run.kept is not None:
            run.save_progress(done=True)
    finally:
        await run.close()
    return _result(desk, len(await broker.orders()), orders, entered, emit)


async def _already_done(run: Run, emit: Callable[[dict[str, Any]], None] | None) -> AutoResult:
    """A recorded day that finished: say so, with what the store holds, and trade nothing."""
    saved = run.saved or {}
    await run.close()
    summary = {"kind": "summary", "already_done": True, "day": saved.get("day"),
               "message": f"the {saved.get('day')} session already finished in this store; "
                          "nothing was traded again (use another --db or --date)"}  # fmt: skip
    if emit is not None:
        emit(summary)
    return AutoResult(0.0, 0.0, True, 0, 0, False, summary)


async def _advance(clock: SimClock, when: datetime, speed: float | None) -> None:
    if speed is None:
        await clock.run_until(when)
        return
    while clock.now() < when:
        await asyncio.sleep(min(0.2, (when - clock.now()).total_seconds() / speed))


async def _try_entry(run: Run, cfg: AutoConfig, day: date) -> bool:
    """Select the strangle and enter if the desk's entry check passes; says why not."""
    desk, orders = run.desk, run.orders
    assert orders is not None
    now = desk.clock.now_ns()
    chain = await run.subscribe_expiry(cfg.root, cfg.dte)
    if not chain:
        return _skip(desk, f"no {cfg.root} expiry {cfg.dte} sessions out")
    pid = f"{cfg.strategy_id}-{day:%Y%m%d}"
    try:
        liquidity = cfg.liquidity or LiquidityFilter.for_entry(desk.rules.entry)
        if cfg.nearest or cfg.strikes:
            position = short_strangle(desk.market, chain, pid, now, delta=cfg.band.mid,
                                      quantity=cfg.quantity, rule=cfg.rule)  # fmt: skip
        else:
            position = strangle(desk.market, chain, pid, now, band=cfg.band, liquidity=liquidity,
                                quantity=cfg.quantity)  # fmt: skip
        if cfg.wing_width > 0:
            position = protected(position, wings_at_width(desk.market, chain, position,
                                                          cfg.wing_width))  # fmt: skip
    except StrategyError as exc:
        return _skip(desk, str(exc))
    check = desk.check_entry(position)
    if not check.ok:
        return _skip(desk, "; ".join(check.failures), check.inputs)
    intent = open_intent(position, cfg.strategy_id, f"entry: {check.finding.alert.message}",
                         intent_id=f"{pid}.open", source="autopilot")  # fmt: skip
    desk.record(Decision(now, "entry", f"selling {position.note}: {intent.reason}", pid,
                         check.inputs))  # fmt: skip
    try:
        orders.submit(intent)
    except OrderRejectedError as exc:  # recorded by the manager; the session goes on
        return _skip(desk, f"the order manager refused it: {exc}")
    return True


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

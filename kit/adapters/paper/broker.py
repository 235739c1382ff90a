"""The paper broker: fills orders against the quotes the desk sees, so paper trading behaves like
the market on screen rather than like a fantasy of mid-price fills.

How it fills (prices follow the BAG convention of :mod:`kit.execution.broker`):

* Each leg trades at its *touch*: the ask when that leg buys, the bid when it sells. The order's
  natural net is ``Σ ratio x touch``. A limit order is marketable when a BUY's natural is at most
  its limit (a SELL's at least its limit).
* An order that is marketable when it arrives (or when a replace takes effect) takes liquidity at
  the touch, each leg worsened by ``slippage_per_contract``, but never past its limit. A resting
  order that the market later crosses fills at its limit: the gap between the limit and the
  natural is spread over the legs in proportion to ``|ratio| x (ask - bid)`` (evenly per contract
  when every spread is zero), because the wide legs are where the fair price is least known. No
  leg price goes below zero; a leg that would is pinned at zero and the rest is re-spread.
* Leg prices are not rounded to a tick, so ``Σ ratio x leg price`` equals the net fill price to
  floating-point precision and the account reconciles to the fills exactly.
* With ``fill_quoted_size_only`` an execution takes at most the quoted size on the side it trades,
  and that size stays used up until a new quote (a new ``quote_ts``) arrives for the contract.
  An order taking liquidity (marketable on arrival, or a market order) larger than the shown size
  gets what ``PaperConfig.depth`` says: hidden levels a tick apart (``impact``, the default), a
  cancel of the rest (``cancel``, as IBKR's paper account), or the rest left working (``rest``).
* Each fill is charged :meth:`PaperConfig.commission`: broker commission plus the root's
  exchange, clearing and regulatory fees (:mod:`kit.execution.costs`).

Orders, cancels and replaces take effect ``latency_ms`` after they are sent (on the injected
clock), so a cancel can lose the race with a fill. State persists in a :class:`StateStore` after
every change as one JSON document: every order record (its :class:`OrderState`, execution count
and in-flight requests), every fill, the counters and the cash, all encoded with msgspec. The
ledger (cash, positions, realized P&L) is rebuilt from the fills on load: they are the truth.

Pricing and quoted-size accounting are :mod:`kit.adapters.paper.matching`; the ledger and the
margin are :mod:`kit.adapters.paper.ledger`. This module is the venue: requests, latency, order
states, settlement and persistence.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence

import msgspec
from msgspec.structs import replace

from kit.adapters.paper.config import PaperConfig
from kit.adapters.paper.ledger import Ledger
from kit.adapters.paper.matching import Liquidity, positive, price_order
from kit.core.clock import Clock, expiry_time, to_ns
from kit.core.model import Contract, Fill, Order, OrderType, Side
from kit.execution.broker import (
    SETTLEMENT,
    AccountSummary,
    BrokerError,
    BrokerEvent,
    Listener,
    OrderRejectedError,
    OrderState,
    OrderStatus,
    check_replace,
    notify,
)
from kit.execution.state import StateStore
from kit.portfolio.market import MarketState

__all__ = ["PaperBroker", "PaperConfig"]

log = logging.getLogger(__name__)


class _Op(msgspec.Struct):
    """A request in flight to the venue: ``activate`` (the order), ``cancel`` or ``replace``."""

    kind: str
    limit_price: float | None = None
    quantity: int | None = None


class _Record(msgspec.Struct):
    state: OrderState
    execs: int = 0  # executions so far: numbers the fill ids
    pending: list[_Op] = msgspec.field(default_factory=list)


class _Doc(msgspec.Struct):
    """The persisted document (version 1)."""

    version: int
    starting_cash: float
    next_id: int
    settle_seq: int
    cash: float
    orders: list[_Record]
    fills: list[Fill]


def _label(c: Contract) -> str:
    return f"{c.root} {c.expiry} {c.strike:g}{c.right.value}"


class PaperBroker:
    """A simulated venue filling against a :class:`MarketState` (see the module docstring).

    A :class:`~kit.execution.broker.Broker` and a :class:`~kit.execution.broker.SimulatedVenue`:
    resting orders match only when :meth:`on_market` is called (the order manager hooks it to
    the desk's batches)."""

    name = "paper"
    live = False

    def __init__(
        self,
        clock: Clock,
        market: MarketState,
        config: PaperConfig | None = None,
        *,
        store: StateStore | None = None,
        combo: bool = True,
    ) -> None:
        self.clock, self.market = clock, market
        self.config = config or PaperConfig()
        self.supports_combo = combo
        self._store = store
        self._listeners: list[Listener] = []
        self._orders: dict[str, _Record] = {}
        self._working: dict[str, _Record] = {}  # WORKING/PARTIAL, in time priority
        self._fills: list[Fill] = []
        self._tasks: dict[asyncio.Task[None], _Op] = {}
        self._liquidity = Liquidity(market, self.config.fill_quoted_size_only)
        self._starting_cash = self.config.starting_cash
        self._next_id, self._settle_seq = 1, 1
        self._ledger = Ledger(market, self._starting_cash)
        self._closed = False
        if store is not None:
            self._load(store)

    # --- lifecycle ---

    async def connect(self) -> None:
        """Re-send the requests that were in flight when the broker stopped (restart or close)."""
        self._closed = False
        in_flight = {id(op) for op in self._tasks.values()}
        for rec in self._orders.values():
            for op in rec.pending:
                if id(op) not in in_flight:
                    self._schedule(rec, op)

    async def close(self) -> None:
        """Stop the latency timers; their requests stay pending and resume on ``connect``."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # --- requests ---

    async def place(self, order: Order) -> OrderState:
        known = self._orders.get(order.client_id)
        if known is not None:
            return known.state
        self._check_open()
        self._validate(order)
        broker_id = f"P{self._next_id}"
        self._next_id += 1
        state = OrderState(
            order, OrderStatus.PENDING, broker_id=broker_id, ts_ns=self.clock.now_ns()
        )
        rec = self._orders[order.client_id] = _Record(state, pending=[op := _Op("activate")])
        self._set(rec, state)
        self._schedule(rec, op)
        return state

    async def cancel(self, client_id: str) -> OrderState:
        rec = self._known(client_id)
        if not rec.state.status.done:
            self._check_open()
            self._request(rec, _Op("cancel"))
        return rec.state

    async def replace(
        self, client_id: str, *, limit_price: float, quantity: int | None = None
    ) -> OrderState:
        rec = self._known(client_id)
        state = rec.state
        check_replace(state, limit_price, quantity)
        self._check_open()
        self._request(rec, _Op("replace", float(limit_price), quantity))
        return state

    def _validate(self, order: Order) -> None:
        """Refuse what the venue could never fill, with a reason fit for the user."""
        if len(order.legs) > 1 and not self.supports_combo:
            raise OrderRejectedError("this broker takes single-leg orders only (combo=False)")
        if len({leg.contract for leg in order.legs}) != len(order.legs):
            raise OrderRejectedError("the same contract appears in two legs")
        if order.quantity < 1:
            raise OrderRejectedError(f"quantity {order.quantity} is below 1")
        lp = order.limit_price
        if order.order_type is OrderType.LIMIT and (lp is None or not math.isfinite(lp)):
            raise OrderRejectedError(f"limit price {lp!r} is not a finite number")
        m = self.market
        for leg in order.legs:
            row = m.index.get(leg.contract)
            if row is None:
                raise OrderRejectedError(f"{_label(leg.contract)}: not tracked, no quote to fill")
            buy = order.side.sign * leg.ratio > 0
            if not m.tradable(row, buy):
                b, a = float(m.bid[row]), float(m.ask[row])
                what = "no ask to buy from" if buy else "no bid to sell into"
                raise OrderRejectedError(f"{_label(leg.contract)}: {what} ({b}/{a})")
            if m.expiry_ns[row] <= self.clock.now_ns():
                raise OrderRejectedError(f"{_label(leg.contract)}: expired")

    # --- queries ---

    def order(self, client_id: str) -> OrderState | None:
        rec = self._orders.get(client_id)
        return None if rec is None else rec.state

    async def orders(self) -> list[OrderState]:
        return [rec.state for rec in self._orders.values()]

    async def fills(self) -> list[Fill]:
        return list(self._fills)

    async def positions(self) -> dict[Contract, int]:
        return {c: round(q) for c, q in self._ledger.held()}

    async def account(self) -> AccountSummary:
        """Cash from the fills; net liquidation marks positions at the market's mark; buying
        power used is a Reg-T style margin estimate (:mod:`kit.risk.margin`), distinct from the
        stress loss the desk's risk limits measure."""
        ledger = self._ledger
        return AccountSummary(
            cash=ledger.cash,
            net_liquidation=ledger.cash + ledger.value(),
            realized_pnl=ledger.realized,
            commissions=ledger.commissions,
            buying_power_used=ledger.margin(),
        )

    # --- latency ---

    def _request(self, rec: _Record, op: _Op) -> None:
        rec.pending.append(op)
        self._save()
        self._schedule(rec, op)

    def _schedule(self, rec: _Record, op: _Op) -> None:
        task = asyncio.get_running_loop().create_task(self._after_latency(rec, op))
        self._tasks[task] = op
        task.add_done_callback(self._tasks.pop)

    async def _after_latency(self, rec: _Record, op: _Op) -> None:
        await self.clock.sleep(self.config.latency_ms / 1000)
        rec.pending = [p for p in rec.pending if p is not op]  # cancelled timers stay pending
        try:
            if not rec.state.status.done:  # a cancel that lost the race to a fill does nothing
                self._apply(rec, op)
            self._save()
        except Exception:  # a failure here must be seen, not die unnoticed with the task
            log.exception("paper broker: %s of %s failed", op.kind, rec.state.client_id)

    def _apply(self, rec: _Record, op: _Op) -> None:
        state, now = rec.state, self.clock.now_ns()
        if op.kind == "cancel":
            self._set(rec, replace(state, status=OrderStatus.CANCELLED, ts_ns=now))
        elif op.kind == "activate":
            if state.status is OrderStatus.PENDING:
                self._set(rec, replace(state, status=OrderStatus.WORKING, ts_ns=now))
            self._match(rec, aggressive=True)
        elif op.kind == "replace":
            qty = max(op.quantity or state.order.quantity, state.filled_qty)
            order = replace(state.order, limit_price=op.limit_price, quantity=qty)
            status = OrderStatus.FILLED if qty == state.filled_qty else state.status
            self._set(rec, replace(state, order=order, status=status, ts_ns=now))
            if rec.state.status is not OrderStatus.PENDING:
                self._match(rec, aggressive=True)

    # --- matching ---

    def on_market(self) -> None:
        """Match the working orders against the current quotes (after each batch of events);
        with none working it costs one dict check."""
        for rec in list(self._working.values()) if self._working else ():
            self._match(rec, aggressive=False)

    def _match(self, rec: _Record, *, aggressive: bool) -> None:
        """Fill what the quotes allow now (:func:`~kit.adapters.paper.matching.price_order`)."""
        state = rec.state
        if state.status not in (OrderStatus.WORKING, OrderStatus.PARTIAL):
            return
        order = state.order
        slippage = self.config.slippage_per_contract
        priced = price_order(self.market, order, aggressive=aggressive, slippage=slippage)
        if priced is None:
            return  # a quote that cannot fill, or a limit the market does not reach
        ratios = [leg.ratio for leg in order.legs]
        remaining = order.quantity - state.filled_qty
        cfg, prices = self.config, priced.prices
        taking = aggressive or order.limit_price is None  # takes liquidity, not resting
        if taking and cfg.depth == "impact" and cfg.fill_quoted_size_only:
            units, prices = self._liquidity.walk(
                order, priced, remaining, slippage=slippage, levels=cfg.depth_levels
            )
        else:
            units = self._liquidity.fillable(priced.rows, priced.buys, ratios, remaining)
        if units > 0:
            self._execute(rec, priced.rows, priced.buys, prices, units)
            if taking and cfg.depth == "cancel" and not rec.state.status.done:
                why = "cancelled beyond the shown size"
                now = self.clock.now_ns()
                self._set(
                    rec, replace(rec.state, status=OrderStatus.CANCELLED, reason=why, ts_ns=now)
                )

    def _execute(
        self, rec: _Record, rows: list[int], buys: list[bool], prices: list[float], units: int
    ) -> None:
        """One execution: a fill per leg, then the order's new state; sizes used up."""
        state, now = rec.state, self.clock.now_ns()
        order, cfg = state.order, self.config
        rec.execs += 1
        fills = []
        for j, (leg, row, buy, price) in enumerate(
            zip(order.legs, rows, buys, prices, strict=True)
        ):
            qty = units * abs(leg.ratio)
            fee = cfg.commission(leg.contract.root, qty, price)
            fill_id = f"{state.broker_id}-{rec.execs}-{j}"
            side = Side.BUY if buy else Side.SELL
            fills.append(Fill(fill_id, order.client_id, leg.contract, side, float(qty), price, now,
                              commission=fee))  # fmt: skip
            self._liquidity.take(row, buy, qty)
        net = sum(leg.ratio * p for leg, p in zip(order.legs, prices, strict=True))
        filled = state.filled_qty + units
        avg = round((state.avg_price * state.filled_qty + net * units) / filled, 9)
        status = OrderStatus.FILLED if filled >= order.quantity else OrderStatus.PARTIAL
        for f in fills:
            self._ledger.post(f)
        state = replace(state, status=status, filled_qty=filled, avg_price=avg, ts_ns=now)
        self._set(rec, state, fills)

    # --- settlement ---

    def settle(self, spots: Mapping[str, float], now_ns: int) -> list[Fill]:
        """Close every expired holding at intrinsic value against ``spots`` (by underlying), and
        cancel the orders still live on expired contracts. All spots are checked first, so a
        missing one settles nothing."""
        expired = [c for c, _ in self._ledger.held() if self._expiry(c) <= now_ns]
        for c in expired:
            if not positive(spots.get(c.underlying, math.nan)):
                raise BrokerError(f"settle: no spot for {c.underlying} to settle {_label(c)}")
        fills = []
        for c in expired:
            s, q = spots[c.underlying], self._ledger.pos[c]
            price = max(0.0, s - c.strike) if c.is_call else max(0.0, c.strike - s)
            side = Side.SELL if q > 0 else Side.BUY
            fill_id, self._settle_seq = f"settle-{self._settle_seq}", self._settle_seq + 1
            fills.append(Fill(fill_id, SETTLEMENT, c, side, abs(q), price, now_ns))
            self._ledger.post(fills[-1])
        self._fills.extend(fills)
        self._save()
        for f in fills:
            self._emit(f)
        live = [rec for rec in self._orders.values() if not rec.state.status.done]
        for rec in live:
            if any(self._expiry(leg.contract) <= now_ns for leg in rec.state.order.legs):
                status = OrderStatus.CANCELLED
                self._set(rec, replace(rec.state, status=status, reason="expired", ts_ns=now_ns))
        return fills

    def _expiry(self, c: Contract) -> int:
        row = self.market.index.get(c)
        return int(self.market.expiry_ns[row]) if row is not None else to_ns(expiry_time(c))

    # --- state, ledger, events ---

    def _set(self, rec: _Record, state: OrderState, fills: Sequence[Fill] = ()) -> None:
        """Record a new order state (and its fills), persist, then tell the listeners."""
        rec.state = state
        if state.status in (OrderStatus.WORKING, OrderStatus.PARTIAL):
            self._working.setdefault(state.client_id, rec)
        else:
            self._working.pop(state.client_id, None)
        self._fills.extend(fills)
        self._save()
        for f in fills:
            self._emit(f)
        self._emit(state)

    def _emit(self, event: BrokerEvent) -> None:
        notify(self._listeners, event, self.name)

    def _known(self, client_id: str) -> _Record:
        rec = self._orders.get(client_id)
        if rec is None:
            raise BrokerError(f"unknown order {client_id!r}")
        return rec

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerError("paper broker is closed: connect() first")

    # --- persistence ---

    def _save(self) -> None:
        if self._store is None:
            return
        doc = _Doc(1, self._starting_cash, self._next_id, self._settle_seq, self._ledger.cash,
                   list(self._orders.values()), self._fills)  # fmt: skip
        self._store.save(self.config.state_key, msgspec.to_builtins(doc))

    def _load(self, store: StateStore) -> None:
        raw = store.load(self.config.state_key)
        if raw is None:
            return
        try:
            doc = msgspec.convert(raw, type=_Doc)
        except (msgspec.ValidationError, ValueError) as exc:
            raise ValueError(f"paper broker state {self.config.state_key!r}: {exc}") from None
        self._starting_cash = doc.starting_cash
        self._ledger = Ledger(self.market, doc.starting_cash)
        self._next_id, self._settle_seq = doc.next_id, doc.settle_seq
        for rec in doc.orders:
            self._orders[rec.state.client_id] = rec
            if rec.state.status in (OrderStatus.WORKING, OrderStatus.PARTIAL):
                self._working[rec.state.client_id] = rec
        for f in doc.fills:
            self._ledger.post(f)
        self._fills = list(doc.fills)

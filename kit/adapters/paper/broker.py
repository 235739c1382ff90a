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

Orders, cancels and replaces take effect ``latency_ms`` after they are sent (on the injected
clock), so a cancel can lose the race with a fill. State persists in a :class:`StateStore` after
every change as one JSON document: every order record (its :class:`OrderState`, execution count
and in-flight requests), every fill, the counters and the cash, all encoded with msgspec. The
ledger (cash, positions, realized P&L) is rebuilt from the fills on load: they are the truth.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np
from msgspec.structs import replace

from kit.core.clock import Clock, expiry_time, to_ns
from kit.core.model import Contract, Fill, Order, OrderType, Side
from kit.core.payoff import leg_pnl_on_moves
from kit.execution.broker import (
    SETTLEMENT,
    AccountSummary,
    BrokerError,
    BrokerEvent,
    Listener,
    OrderRejectedError,
    OrderState,
    OrderStatus,
    notify,
)
from kit.execution.state import StateStore
from kit.portfolio.market import MarketState

log = logging.getLogger(__name__)
_EPS = 1e-9  # price tolerance: float sums of quotes must not make a marketable order rest


@dataclass(frozen=True)
class PaperConfig:
    """How the paper venue behaves. Money is in dollars, prices in the option's price units.

    ``commission_by_root`` overrides the per-contract commission for an option root, e.g.
    ``{"SPX": 0.66, "SPXW": 0.66}`` for index options that carry exchange fees.
    ``starting_cash`` applies to a new account only: a restored account keeps its own.
    """

    latency_ms: float = 50.0  # an order, cancel or replace takes effect this long after sending
    slippage_per_contract: float = 0.0  # price units worse than the touch for taking fills
    commission_per_contract: float = 0.65
    commission_by_root: Mapping[str, float] = field(default_factory=dict)
    fill_quoted_size_only: bool = True  # fills take at most the quoted size, used up per quote
    starting_cash: float = 100_000.0
    margin_move_pct: float = 10.0  # buying power used = worst expiry loss within ±this spot move
    state_key: str = "paper_broker"

    def __post_init__(self) -> None:
        numbers = {
            "latency_ms": self.latency_ms,
            "slippage_per_contract": self.slippage_per_contract,
            "commission_per_contract": self.commission_per_contract,
            **{f"commission_by_root[{k}]": v for k, v in self.commission_by_root.items()},
        }
        for name, value in numbers.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: must be a finite non-negative number, got {value!r}")


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


def _ok(x: float) -> bool:
    return math.isfinite(x) and x > 0


def distribute(
    base: Sequence[float], ratios: Sequence[int], weights: Sequence[float], target: float
) -> list[float] | None:
    """Leg prices moved from ``base`` so that ``Σ ratio x price == target``, each leg taking a
    share of the gap proportional to its weight; None when no non-negative prices reach it."""
    prices = list(base)
    free = list(range(len(prices)))
    while True:
        gap = target - sum(r * p for r, p in zip(ratios, prices, strict=True))
        if abs(gap) <= 1e-12:
            return prices
        if not free:
            return None
        total = sum(weights[i] for i in free)
        if total > 0:
            share = {i: weights[i] / total for i in free}
        else:  # every spread is zero: evenly per contract
            n = sum(abs(ratios[i]) for i in free)
            share = {i: abs(ratios[i]) / n for i in free}
        for i in free:
            prices[i] += gap * share[i] / ratios[i]
        pinned = [i for i in free if prices[i] < 0]
        if not pinned:
            return prices
        for i in pinned:
            prices[i] = 0.0
            free.remove(i)


class PaperBroker:
    """A simulated venue filling against a :class:`MarketState` (see the module docstring)."""

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
        self._consumed: dict[tuple[int, bool], tuple[int, float]] = {}  # (row, buy) → (ts, qty)
        self._starting_cash = self.config.starting_cash
        self._next_id, self._settle_seq = 1, 1
        self._cash, self._realized, self._commissions = self._starting_cash, 0.0, 0.0
        self._pos: dict[Contract, float] = {}
        self._cost: dict[Contract, float] = {}  # average open price per contract
        self._last: dict[Contract, float] = {}  # last fill price: the mark of last resort
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
        if state.status.done or state.order.order_type is not OrderType.LIMIT:
            why = state.status.value if state.status.done else "a market order"
            raise OrderRejectedError(f"cannot replace {client_id}: it is {why}")
        if not isinstance(limit_price, int | float) or not math.isfinite(limit_price):
            raise OrderRejectedError(f"replace {client_id}: limit {limit_price!r} is not finite")
        if quantity is not None and quantity < max(1, state.filled_qty):
            msg = f"replace {client_id}: quantity {quantity} is below 1 or the {state.filled_qty}"
            raise OrderRejectedError(f"{msg} filled")
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
            if not (_ok(m.bid[row]) and _ok(m.ask[row])):
                b, a = float(m.bid[row]), float(m.ask[row])
                raise OrderRejectedError(f"{_label(leg.contract)}: no two-sided quote ({b}/{a})")
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
        return {c: round(q) for c, q in self._pos.items() if round(q) != 0}

    async def account(self) -> AccountSummary:
        """Cash from the fills; net liquidation marks positions at the market's mark."""
        value = sum(q * self._mark(c) * c.multiplier for c, q in self._pos.items() if q)
        return AccountSummary(
            cash=self._cash,
            net_liquidation=self._cash + value,
            realized_pnl=self._realized,
            commissions=self._commissions,
            buying_power_used=self._margin(),
        )

    def _margin(self) -> float:
        """A portfolio-margin-style requirement: per underlying, the worst loss from today's
        marks if every held option expired after a spot move within ±``margin_move_pct``
        (the book's risk measure, so paper margin and the desk's risk agree)."""
        held = [(c, q) for c, q in self._pos.items() if round(q) != 0]
        move = self.config.margin_move_pct / 100 * np.linspace(-1.0, 1.0, 21)
        total = 0.0
        for und in {c.underlying for c, _ in held}:
            legs = [(c, q) for c, q in held if c.underlying == und]
            spot = self.market.spot_of(und)
            if not math.isfinite(spot):
                continue
            pnl = leg_pnl_on_moves(
                np.full(len(legs), spot), [c.strike for c, _ in legs],
                [c.is_call for c, _ in legs], [q * c.multiplier for c, q in legs],
                [self._mark(c) for c, _ in legs], move,
            )  # fmt: skip
            total += max(0.0, -float(pnl.sum(axis=0).min()))
        return round(total, 2)

    def _mark(self, c: Contract) -> float:
        """The market's mark, else the mid, else the last fill price: never NaN in the value."""
        m, row = self.market, self.market.index.get(c)
        if row is not None:
            if math.isfinite(mark := float(m.mark[row])):
                return mark
            if _ok(m.bid[row]) and _ok(m.ask[row]):
                return float(m.bid[row] + m.ask[row]) / 2
        return self._last.get(c, 0.0)

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
        """Fill what the quotes allow now. ``aggressive``: the order just arrived (or was
        replaced) and takes liquidity at the touch; otherwise it rests and fills at its limit."""
        state = rec.state
        if state.status not in (OrderStatus.WORKING, OrderStatus.PARTIAL):
            return
        order, m = state.order, self.market
        rows = [m.index.get(leg.contract) for leg in order.legs]
        if any(r is None or not (_ok(m.bid[r]) and _ok(m.ask[r])) for r in rows):
            return  # an untracked, one-sided or NaN quote: nothing fills, the order keeps working
        ratios = [leg.ratio for leg in order.legs]
        buys = [order.side.sign * r > 0 for r in ratios]
        touch = [float(m.ask[r] if b else m.bid[r]) for r, b in zip(rows, buys, strict=True)]
        natural = sum(r * p for r, p in zip(ratios, touch, strict=True))
        sign, limit = order.side.sign, order.limit_price
        if limit is not None and sign * (limit - natural) < -_EPS:
            return
        units = self._fillable(rows, buys, ratios, order.quantity - state.filled_qty)
        if units <= 0:
            return
        weights = [abs(q) * float(m.ask[r] - m.bid[r]) for q, r in zip(ratios, rows, strict=True)]
        if limit is None or aggressive:
            s = self.config.slippage_per_contract
            prices = [max(0.0, p + s if b else p - s) for p, b in zip(touch, buys, strict=True)]
            net = sum(r * p for r, p in zip(ratios, prices, strict=True))
            if limit is not None and sign * (net - limit) > _EPS:  # slippage stops at the limit
                prices = distribute(prices, ratios, weights, limit) or touch
        else:
            prices = distribute(touch, ratios, weights, limit) or touch
        self._execute(rec, rows, buys, prices, units)

    def _fillable(
        self, rows: list[int], buys: list[bool], ratios: list[int], remaining: int
    ) -> int:
        """Whole units the quoted sizes allow: min over legs of available // |ratio|."""
        if not self.config.fill_quoted_size_only:
            return remaining
        m, units = self.market, remaining
        for row, buy, ratio in zip(rows, buys, ratios, strict=True):
            size = float(m.ask_size[row] if buy else m.bid_size[row])
            available = (size if math.isfinite(size) else 0.0) - self._used(row, buy)
            units = min(units, math.floor(available / abs(ratio) + _EPS))
        return max(units, 0)

    def _used(self, row: int, buy: bool) -> float:
        """Contracts already taken from the current quote on one side (0 once it is requoted)."""
        ts, used = self._consumed.get((row, buy), (-1, 0.0))
        return used if ts == self.market.quote_ts[row] else 0.0

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
            rate = cfg.commission_by_root.get(leg.contract.root, cfg.commission_per_contract)
            fill_id = f"{state.broker_id}-{rec.execs}-{j}"
            side = Side.BUY if buy else Side.SELL
            fills.append(Fill(fill_id, order.client_id, leg.contract, side, float(qty), price, now,
                              commission=round(qty * rate, 2)))  # fmt: skip
            used = self._used(row, buy) + qty
            self._consumed[(row, buy)] = (int(self.market.quote_ts[row]), used)
        net = sum(leg.ratio * p for leg, p in zip(order.legs, prices, strict=True))
        filled = state.filled_qty + units
        avg = round((state.avg_price * state.filled_qty + net * units) / filled, 9)
        status = OrderStatus.FILLED if filled >= order.quantity else OrderStatus.PARTIAL
        for f in fills:
            self._book(f)
        state = replace(state, status=status, filled_qty=filled, avg_price=avg, ts_ns=now)
        self._set(rec, state, fills)

    # --- settlement ---

    def settle(self, spots: Mapping[str, float], now_ns: int) -> list[Fill]:
        """Close every expired holding at intrinsic value against ``spots`` (by underlying), and
        cancel the orders still live on expired contracts. All spots are checked first, so a
        missing one settles nothing."""
        expired = [c for c, q in self._pos.items() if round(q) != 0 and self._expiry(c) <= now_ns]
        for c in expired:
            if not _ok(spots.get(c.underlying, math.nan)):
                raise BrokerError(f"settle: no spot for {c.underlying} to settle {_label(c)}")
        fills = []
        for c in expired:
            s, q = spots[c.underlying], self._pos[c]
            price = max(0.0, s - c.strike) if c.is_call else max(0.0, c.strike - s)
            side = Side.SELL if q > 0 else Side.BUY
            fill_id, self._settle_seq = f"settle-{self._settle_seq}", self._settle_seq + 1
            fills.append(Fill(fill_id, SETTLEMENT, c, side, abs(q), price, now_ns))
            self._book(fills[-1])
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

    def _book(self, f: Fill) -> None:
        """Post a fill to the ledger: cash, position, average cost and realized P&L (gross of
        commissions, which are reported on their own)."""
        c, signed = f.contract, f.side.sign * f.quantity
        pos, cost = self._pos.get(c, 0.0), self._cost.get(c, 0.0)
        if pos * signed < 0:  # reduces (or flips) the position
            closed = min(abs(pos), abs(signed))
            self._realized += closed * (f.price - cost) * math.copysign(1, pos) * c.multiplier
            if abs(signed) > abs(pos):
                cost = f.price
        else:
            cost = (abs(pos) * cost + abs(signed) * f.price) / (abs(pos) + abs(signed))
        self._pos[c], self._cost[c], self._last[c] = pos + signed, cost, f.price
        self._cash += f.cash_flow
        self._commissions += f.commission

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
        doc = _Doc(1, self._starting_cash, self._next_id, self._settle_seq, self._cash,
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
        self._starting_cash = self._cash = doc.starting_cash
        self._next_id, self._settle_seq = doc.next_id, doc.settle_seq
        for rec in doc.orders:
            self._orders[rec.state.client_id] = rec
            if rec.state.status in (OrderStatus.WORKING, OrderStatus.PARTIAL):
                self._working[rec.state.client_id] = rec
        for f in doc.fills:
            self._book(f)
        self._fills = list(doc.fills)

"""The Broker protocol: what the order manager needs from any broker, paper or real.

Conventions (IBKR's, so combos map onto a BAG order one to one):

* An :class:`~kit.core.model.Order` trades ``side.sign * leg.ratio * quantity`` contracts of each
leg. * ``limit_price`` is per unit of the order *as its legs define it*: the net of ``ratio x
price``
  over the legs. A BUY pays at most the limit (a negative limit is a credit it must at least
  receive); a SELL receives at least the limit. Selling a short strangle is a SELL of
  ``(+1 put, +1 call)`` at a positive credit.
* ``client_id`` is the idempotency key: placing an order whose ``client_id`` the broker already
  knows returns that order's state and sends nothing. That is what makes a retry or a restart
  unable to trade twice.

Brokers report changes as events to their subscribers: an :class:`OrderState` whenever an order's
status or filled quantity changes, and a :class:`~kit.core.model.Fill` per execution (expiry
settlements arrive as fills at intrinsic value with ``client_id`` ``"settlement"``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Protocol, runtime_checkable

import msgspec

from kit.core.model import Contract, Fill, Order, OrderType

SETTLEMENT = "settlement"  # client_id of expiry settlement fills


class BrokerError(RuntimeError):
    """The broker could not do what was asked (not connected, unknown order, ...)."""


class OrderRejectedError(ValueError):
    """An order refused before or by the broker; the message is the reason, fit for a user."""


class OrderStatus(StrEnum):
    PENDING = "pending"  # sent, not yet acknowledged
    WORKING = "working"  # acknowledged and live at the venue
    PARTIAL = "partial"  # live, partly filled
    FILLED = "filled"
    CANCELLED = "cancelled"  # possibly partly filled first: see filled_qty
    REJECTED = "rejected"

    @property
    def done(self) -> bool:
        return self in _DONE


_DONE = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})


class OrderState(msgspec.Struct, frozen=True):
    """An order as the broker last reported it. ``avg_price`` is the net price per unit filled."""

    order: Order
    status: OrderStatus
    filled_qty: int = 0
    avg_price: float = 0.0
    broker_id: str = ""
    reason: str = ""
    ts_ns: int = 0

    @property
    def client_id(self) -> str:
        return self.order.client_id

    @property
    def remaining(self) -> int:
        return 0 if self.status.done else self.order.quantity - self.filled_qty


class AccountSummary(msgspec.Struct, frozen=True):
    """Cash and value in dollars. ``net_liquidation`` marks positions at mid."""

    cash: float
    net_liquidation: float
    realized_pnl: float
    commissions: float
    buying_power_used: float = 0.0


BrokerEvent = OrderState | Fill
Listener = Callable[[BrokerEvent], None]

log = logging.getLogger(__name__)


def check_replace(state: OrderState, limit_price: object, quantity: int | None) -> None:
    """Refuse a replace every venue refuses alike, before anything is sent: a finished or market
    order, a limit that is not a finite number, a quantity below 1 or below what has filled (one
    rule and one wording for every broker, which the shared contract suite holds them to)."""
    cid, filled = state.order.client_id, state.filled_qty
    if state.status.done or state.order.order_type is not OrderType.LIMIT:
        why = state.status.value if state.status.done else "a market order"
        raise OrderRejectedError(f"cannot replace {cid}: it is {why}")
    if not isinstance(limit_price, int | float) or not math.isfinite(limit_price):
        raise OrderRejectedError(f"replace {cid}: limit {limit_price!r} is not finite")
    if quantity is not None and quantity < max(1, filled):
        raise OrderRejectedError(f"replace {cid}: quantity {quantity} is below 1 or the {filled} "
                                 "filled")  # fmt: skip


def notify(listeners: Sequence[Listener], event: BrokerEvent, broker: str) -> None:
    """Deliver ``event`` to every listener: one that raises is logged, the rest still hear it
    (a failing dashboard must not stop fills reaching the book)."""
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            log.exception("%s: listener %r failed on %r", broker, listener, event)


@runtime_checkable
class Broker(Protocol):
    """Place / cancel / replace orders, report their states and fills, positions and account.

    ``supports_combo`` says whether multi-leg orders are executed atomically; without it the
    order manager legs in with protection (see :mod:`kit.execution.manager`).
    """

    name: str
    supports_combo: bool
    live: bool  # True when orders reach a real market: needs the explicit opt-in

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every order state change and fill from now on."""

    async def place(self, order: Order) -> OrderState:
        """Send ``order``; idempotent on ``client_id``. A bad order raises OrderRejectedError."""

    async def cancel(self, client_id: str) -> OrderState:
        """Ask to cancel; returns the state now (the confirmation arrives as an event)."""

    async def replace(
        self, client_id: str, *, limit_price: float, quantity: int | None = None
    ) -> OrderState:
        """Change a working limit order's price (and total quantity)."""

    def order(self, client_id: str) -> OrderState | None:
        """The last known state of an order, or None if the broker never saw that client id."""

    async def orders(self) -> list[OrderState]:
        """Every order this session knows (working and done): what reconciliation reads."""

    async def fills(self) -> list[Fill]:
        """Every execution so far (for reconciliation after a restart)."""

    async def positions(self) -> dict[Contract, int]:
        """Signed contracts held per contract (flat ones omitted)."""

    async def account(self) -> AccountSummary: ...


@runtime_checkable
class SimulatedVenue(Protocol):
    """A broker that is its own market (the paper broker): nothing fills unless it is told the
    quotes moved. The order manager hooks ``on_market`` to the desk's batches when the broker
    it attaches to is one; a real broker's venue matches on its own."""

    def on_market(self) -> None:
        """Match the resting orders against the current quotes."""

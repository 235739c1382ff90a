"""What the TWS emulator remembers of each order and execution (its ids and the engine's)."""

from __future__ import annotations

from dataclasses import dataclass

from kit.adapters.ibkr.emulator_protocol import IbContract


@dataclass
class OrderRec:
    """One order the emulator took: its TWS ids and the engine's client id."""

    order_id: int
    client_id: int
    perm_id: int
    engine_id: str  # the paper engine's client id
    contract: IbContract
    action: str
    order_type: str
    tif: str
    order_ref: str
    legs: tuple[tuple[int, int, str], ...]
    last_status: str = ""


@dataclass
class ExecRec:
    exec_id: str
    order: OrderRec
    contract: IbContract
    side: str  # BOT | SLD
    shares: float
    price: float
    commission: float
    ts_ns: int
    cum_qty: float = 0.0
    avg_price: float = 0.0

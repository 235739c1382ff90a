"""A vendor's Greeks beside the desk's own (issue 22, item 4): any feed yields
``Greeks(source=VENDOR)``; the desk keeps the latest per contract in MarketState, never replaces
its own IV and Greeks, and the snapshot gives each position the vendor's delta and the
difference. What the tastytrade feed relies on as much as the Client Portal's."""

from __future__ import annotations

import math
from datetime import date, datetime

from kit.core.clock import NEW_YORK, SimClock
from kit.core.model import (
    Contract,
    Fill,
    Greeks,
    Leg,
    Position,
    Quote,
    Side,
    StrategyType,
    UnderlyingTick,
)
from kit.engine.desk import Desk

DAY = date(2024, 3, 12)
PUT = Contract("SPXW", DAY, 4950.0, "P")
CALL = Contract("SPXW", DAY, 5050.0, "C")


def vendor(c: Contract, delta: float, ts: int, source: str = "tastytrade") -> Greeks:
    nan = math.nan
    return Greeks(c, ts, 0.2, delta, 0.01, -1.0, 0.5, nan, nan, nan, source=source)


def test_vendor_greeks_sit_beside_the_desks_own_and_the_snapshot_shows_the_difference() -> None:
    clock = SimClock(datetime(2024, 3, 12, 11, 0, tzinfo=NEW_YORK), speed=None)
    desk = Desk(clock)
    ts = clock.now_ns()
    desk.process([UnderlyingTick("SPX", 5000.0, ts), Quote(PUT, 1.95, 2.05, 10, 10, ts),
                  Quote(CALL, 1.95, 2.05, 10, 10, ts)])  # fmt: skip
    pos = Position("S1", StrategyType.STRANGLE, (Leg(PUT, -1), Leg(CALL, -1)), 1, ts)
    desk.open_position(pos, [Fill(f"f{i}", "c1", c, Side.SELL, 1.0, 2.0, ts)
                             for i, c in enumerate((PUT, CALL))])  # fmt: skip
    m = desk.market
    put_row, call_row = m.index[PUT], m.index[CALL]
    own = (float(m.delta[put_row]), float(m.delta[call_row]))
    assert all(-1 < d < 1 and d == d for d in own)
    row = desk.snapshot().positions[0]
    assert row["vendor_delta_shares"] is None and row["vendor_delta_diff_shares"] is None
    # one leg priced by the vendor: the difference over it, the vendor's total still unknown
    desk.process([vendor(CALL, own[1] + 0.02, ts)])
    row = desk.snapshot().positions[0]
    assert row["vendor_delta_shares"] is None
    assert abs(row["vendor_delta_diff_shares"] - (-1.0 * 100 * 0.02)) < 1e-9  # short 1 call
    desk.process([vendor(PUT, own[0] - 0.01, ts)])
    row = desk.snapshot().positions[0]
    assert abs(row["vendor_delta_diff_shares"] - (-1.0 * 100 * (-0.01 + 0.02))) < 1e-9
    assert abs(row["vendor_delta_shares"] - (row["delta_shares"] - 1.0)) < 1e-9
    assert row["vendor"] == "tastytrade"
    assert abs(m.delta[put_row] - own[0]) < 1e-9 and abs(m.delta[call_row] - own[1]) < 1e-9
    assert m.vendor_iv[call_row] == 0.2 and m.vendor_ts[call_row] == ts
    # the desk's own Greeks are never fed: refused and counted
    rejected = desk.stats["rejected"]
    desk.process([vendor(CALL, 0.9, ts, source="desk")])
    assert desk.stats["rejected"] == rejected + 1 and m.vendor_delta[call_row] != 0.9

"""One TWS API connection of the emulator: the handshake, then each request and its answers.

Requests are read in order and answered in order (as TWS does), so a client that waits for an
answer has seen every message the emulator sent before it. Message ids and fields: see
:mod:`kit.adapters.ibkr.emulator_protocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.adapters.ibkr import emulator_protocol as wire
from kit.adapters.ibkr.emulator_orders import NO_DEFINITION, place
from kit.adapters.ibkr.emulator_protocol import Cursor, IbContract
from kit.core.clock import NEW_YORK, from_ns, sessions_before
from kit.core.model import Contract, ModelError, Order
from kit.execution.broker import BrokerError

if TYPE_CHECKING:
    from kit.adapters.ibkr.emulator import TwsEmulator
    from kit.adapters.ibkr.emulator_records import OrderRec

log = logging.getLogger(__name__)

FARM_OK = ((2104, "Market data farm connection is OK:usfarm"),
           (2106, "HMDS data farm connection is OK:ushmds"),
           (2158, "Sec-def data farm connection is OK:secdefnj"))  # fmt: skip


@dataclass
class Sub:
    """One market data line: an option or an index, live or delayed."""

    contract: Contract | None
    index: str | None
    delayed: bool
    last: tuple[float, ...] = ()


class Session:
    """The state of one connected API client."""

    def __init__(self, emu: TwsEmulator, writer: asyncio.StreamWriter) -> None:
        self.emu, self.writer = emu, writer
        self.client_id = -1
        self.subs: dict[int, Sub] = {}
        self.data_type = 1  # reqMarketDataType: 1 live, 2 frozen, 3 delayed, 4 delayed frozen
        self.positions_sub = False
        self.account_sub = False

    def send(self, fields: list[Any]) -> None:
        if self.emu.faults.silent or self.writer.is_closing():
            return
        self.writer.write(wire.frame(fields))

    def abort(self) -> None:
        transport = self.writer.transport
        if transport is not None:
            transport.abort()

    # --- streaming ---

    def stream(self, cols: dict[Contract, np.ndarray]) -> None:
        """Ticks that changed since the last step, for every line of this client."""
        for req_id, sub in list(self.subs.items()):
            self.ticks(req_id, sub, cols.get(sub.contract) if sub.contract else None)

    def ticks(self, req_id: int, sub: Sub, col: np.ndarray | None) -> None:
        d = 65 if sub.delayed else 0  # delayed bid/ask 66/67, delayed last 68, close 75
        if sub.index is not None:
            spot = round(self.emu.spot(sub.index), 2)
            if sub.last != (spot,):
                if not sub.last:
                    self.send(wire.tick_price(req_id, 9 + (66 if sub.delayed else 0), spot, 0))
                sub.last = (spot,)
                self.send(wire.tick_price(req_id, 4 + (64 if sub.delayed else 0), spot, 0))
            return
        if col is None:
            return
        bid, ask, bs, as_, mid, iv, delta, gamma, vega, theta, und = (float(x) for x in col)
        key = (bid, ask, bs, as_, round(iv, 6), round(und, 2))
        if key == sub.last:
            return
        first, sub.last = not sub.last, key
        self.send(wire.tick_price(req_id, 1 + d, bid if bid > 0 else -1.0, bs))
        self.send(wire.tick_price(req_id, 2 + d, ask if ask > 0 else -1.0, as_))
        if first and not sub.delayed:
            assert sub.contract is not None
            oi = float(self.emu.sim.open_interest([sub.contract])[0])
            self.send(wire.tick_size(req_id, 27 if sub.contract.is_call else 28, oi))
        g = 80 if sub.delayed else 10  # bid, ask, last, model Greeks: 10..13 (delayed 80..83)
        for tick, price in ((g, bid), (g + 1, ask), (g + 3, mid)):
            if price > 0:
                self.send(wire.tick_option(req_id, tick, iv, delta, price, gamma, vega, theta,
                                           und))  # fmt: skip

    def positions_changed(self) -> None:
        if self.positions_sub:
            asyncio.get_running_loop().create_task(self._positions(end=False))

    async def _positions(self, end: bool = True) -> None:
        held = await self.emu.paper.positions()
        for c, qty in sorted(held.items(), key=lambda kv: self.emu.conid(kv[0])):
            self.send(wire.position(self.emu.account, self.emu.ib_option(c), float(qty),
                                    self.emu.avg_cost(c)))  # fmt: skip
        if end:
            self.send(wire.position_end())

    # --- requests ---

    async def handle(self, fields: list[str]) -> None:
        msg_id = int(fields[0])
        self.emu.requests.append(msg_id)
        self.emu.arrivals.append(asyncio.get_running_loop().time())
        handler = HANDLERS.get(msg_id)
        if handler is None:
            log.debug("tws emulator: request %s ignored", msg_id)
            return
        try:
            await handler(self, fields)
        except (ValueError, IndexError, KeyError, ModelError) as exc:
            req_id = int(fields[2]) if len(fields) > 2 and fields[2].lstrip("-").isdigit() else -1
            self.send(wire.error(req_id, 321, f"Error validating request: {exc}"))

    async def start_api(self, f: list[str]) -> None:
        emu, cid = self.emu, int(f[2])
        if cid in emu.sessions:
            self.send(wire.error(-1, 326, "Unable to connect as the client id is already in "
                                 "use. Retry with a unique client id."))  # fmt: skip
            raise ConnectionAbortedError("client id in use")
        if len(emu.sessions) >= emu.client_id_limit:
            self.send(wire.error(-1, 502, f"Couldn't connect to TWS: at most "
                                 f"{emu.client_id_limit} API clients"))  # fmt: skip
            raise ConnectionAbortedError("too many clients")
        self.client_id = cid
        emu.sessions[cid] = self
        self.send(wire.next_valid_id(emu.next_order_id))
        self.send(wire.managed_accounts([emu.account]))
        for code, text in FARM_OK:
            self.send(wire.error(-1, code, text))
        if emu.faults.upstream_lost:
            self.send(wire.error(-1, 1100, "Connectivity between IB and Trader Workstation "
                                 "has been lost."))  # fmt: skip

    async def req_positions(self, f: list[str]) -> None:
        self.positions_sub = True
        await self._positions()

    async def req_open_orders(self, f: list[str], all_clients: bool = False) -> None:
        for rec in list(self.emu.orders.values()):
            st = self.emu.paper.order(rec.engine_id)
            if st is None or st.status.done or not (all_clients or rec.client_id == self.client_id):
                continue
            self.send(wire.open_order(self.emu.order_view(rec), rec.contract))
            self.send(self.emu.status_message(rec))
        self.send(wire.open_order_end())

    async def req_all_open_orders(self, f: list[str]) -> None:
        await self.req_open_orders(f, all_clients=True)

    async def req_completed(self, f: list[str]) -> None:
        """The account's orders that are done (filled, cancelled, rejected) today."""
        emu = self.emu
        for rec in list(emu.orders.values()):
            st = emu.paper.order(rec.engine_id)
            if st is None or not st.status.done:
                continue
            when = f"{from_ns(st.ts_ns).astimezone(NEW_YORK):%Y%m%d %H:%M:%S} America/New_York"
            self.send(wire.completed_order(emu.order_view(rec), rec.contract,
                                           float(st.filled_qty), when))  # fmt: skip
        self.send(wire.completed_orders_end())

    async def _account_rows(self) -> list[tuple[str, str]]:
        acc = await self.emu.paper.account()
        bp = max(acc.net_liquidation - acc.buying_power_used, 0.0)
        return [("NetLiquidation", f"{acc.net_liquidation:.2f}"),
                ("TotalCashValue", f"{acc.cash:.2f}"), ("RealizedPnL", f"{acc.realized_pnl:.2f}"),
                ("InitMarginReq", f"{acc.buying_power_used:.2f}"),
                ("MaintMarginReq", f"{acc.buying_power_used:.2f}"),
                ("AvailableFunds", f"{bp:.2f}"), ("BuyingPower", f"{bp:.2f}")]  # fmt: skip

    async def req_account_updates(self, f: list[str]) -> None:
        self.account_sub = f[2] == "1"
        if not self.account_sub:
            return
        emu = self.emu
        for key, value in await self._account_rows():
            self.send(wire.account_value(key, value, "USD", emu.account))
        for c, qty in (await emu.paper.positions()).items():
            row = emu.market.index.get(c)
            mark = float(emu.market.mark[row]) if row is not None else 0.0
            mark = mark if math.isfinite(mark) else 0.0
            self.send(wire.portfolio(emu.ib_option(c), float(qty), mark, emu.avg_cost(c),
                                     emu.account))  # fmt: skip
        self.send(wire.account_time(f"{from_ns(emu.clock.now_ns()):%H:%M}"))
        self.send(wire.account_download_end(emu.account))

    async def req_account_multi(self, f: list[str]) -> None:
        req_id = int(f[2])
        for key, value in await self._account_rows():
            self.send(wire.account_update_multi(req_id, self.emu.account, key, value))
        self.send(wire.account_update_multi_end(req_id))

    async def req_account_summary(self, f: list[str]) -> None:
        req_id = int(f[2])
        for key, value in await self._account_rows():
            self.send([63, 1, req_id, self.emu.account, key, value, "USD"])
        self.send([64, 1, req_id])

    async def req_executions(self, f: list[str]) -> None:
        req_id = int(f[2])
        wanted = int(f[3] or 0) if len(f) > 3 else 0
        chosen = [e for e in self.emu.executions if not wanted or e.order.client_id == wanted]
        for e in chosen:
            self.send(self.emu.exec_message(e, req_id))
        for e in chosen:
            self.send(wire.commission_report(e.exec_id, e.commission, None))
        self.send(wire.exec_details_end(req_id))

    async def req_contract_details(self, f: list[str]) -> None:
        r = Cursor(f, 2)
        req_id = r.int()
        spec = r.contract()
        found = self._resolve(spec)
        if not found:
            self.send(wire.error(req_id, 200, NO_DEFINITION))
            return
        for ib in found:
            under = self.emu.ib_index(ib.symbol) if ib.sec_type == "OPT" else None
            name = {"SPX": "S&P 500 Stock Index", "NDX": "NASDAQ 100 Stock Index"}.get(
                ib.symbol, ib.symbol)  # fmt: skip
            self.send(wire.contract_details(
                req_id, ib, under_con_id=under.con_id if under else 0, long_name=name,
                under_symbol=ib.symbol if under else "", under_sec_type="IND" if under else "",
                min_tick=0.05 if ib.sec_type == "OPT" else 0.01,
            ))  # fmt: skip
        self.send(wire.contract_details_end(req_id))

    def _resolve(self, spec: dict[str, Any]) -> list[IbContract]:
        emu = self.emu
        if spec["conId"]:
            if (c := emu.contract_by_id(spec["conId"])) is not None:
                return [emu.ib_option(c, spec["exchange"])]
            symbol = emu.index_by_id(spec["conId"])
            return [ib] if symbol and (ib := emu.ib_index(symbol)) else []
        if spec["secType"] == "IND":
            return [ib] if (ib := emu.ib_index(spec["symbol"])) else []
        if spec["secType"] in ("OPT", ""):
            return [emu.ib_option(c, spec["exchange"]) for c in emu.find_options(spec)]
        return []

    async def req_sec_def_opt_params(self, f: list[str]) -> None:
        req_id, symbol = int(f[1]), f[2]
        und = self.emu.ib_index(symbol)
        chain = self.emu.sim.chain() if und is not None else []
        classes: dict[str, list[Contract]] = {}
        for c in chain:
            if c.underlying == symbol:
                classes.setdefault(c.root, []).append(c)
        for root, cs in sorted(classes.items()):
            exps = sorted({f"{c.expiry:%Y%m%d}" for c in cs})
            strikes = sorted({c.strike for c in cs})
            for exchange in ("SMART", "CBOE"):
                assert und is not None
                self.send(wire.sec_def_opt_params(req_id, exchange, und.con_id, root, exps,
                                                  strikes))  # fmt: skip
        self.send(wire.sec_def_opt_params_end(req_id))

    async def req_market_data_type(self, f: list[str]) -> None:
        self.data_type = int(f[2])

    async def req_mkt_data(self, f: list[str]) -> None:
        r = Cursor(f, 2)
        req_id = r.int()
        spec = r.contract()
        emu = self.emu
        found = self._resolve(spec) if spec["secType"] != "BAG" else []
        if not found:
            self.send(wire.error(req_id, 200, NO_DEFINITION))
            return
        snapshot = len(f) >= 4 and f[-3] == "1"  # answered at once: holds no line
        if len(self.subs) >= emu.market_data_lines and req_id not in self.subs and not snapshot:
            self.send(wire.error(req_id, 101, f"Max number of tickers has been reached "
                                 f"({emu.market_data_lines} market data lines)"))  # fmt: skip
            return
        if emu.faults.no_permission:
            self.send(wire.error(req_id, 354, "Requested market data is not subscribed. Check "
                                 "API status by selecting the Account menu then under "
                                 "Management choose Market Data Subscription Manager"))  # fmt: skip
            return
        delayed = emu.faults.delayed_only or self.data_type in (3, 4)
        if emu.faults.delayed_only:
            self.send(wire.error(req_id, 10167, "Requested market data is not subscribed. "
                                 "Displaying delayed market data."))  # fmt: skip
        self.send(wire.market_data_type(req_id, 3 if delayed else 1))
        ib = found[0]
        c = emu.contract_by_id(ib.con_id) if ib.sec_type == "OPT" else None
        sub = Sub(c, ib.symbol if ib.sec_type == "IND" else None, delayed)
        if c is not None:
            emu.track(c)
        self.subs[req_id] = sub
        if not emu.faults.upstream_lost:
            self.ticks(req_id, sub, emu.option_rows([c])[:, 0] if c is not None else None)
        if snapshot:  # one picture, then tickSnapshotEnd
            self.subs.pop(req_id, None)
            self.send([57, 1, req_id])

    async def req_historical_data(self, f: list[str]) -> None:
        """Daily bars of VIX only (the simulator's 30-day SPX implied vol, one bar per session
        before today's, as the IV history behind IV rank); anything else has no data (162)."""
        r = Cursor(f, 1)
        req_id = r.int()
        spec = r.contract()
        r.skip(2)  # includeExpired, endDateTime
        bar_size = r.str()
        if (spec["symbol"], spec["secType"], bar_size) != ("VIX", "IND", "1 day"):
            self.send(wire.error(req_id, 162, "Historical Market Data Service error message:"
                                 "HMDS query returned no data"))  # fmt: skip
            return
        today = from_ns(self.emu.clock.now_ns()).astimezone(NEW_YORK).date()
        closes = self.emu.sim.iv_history("SPX")
        days = sessions_before(today, len(closes))
        bars: list[Any] = []
        for d, v in zip(days, closes, strict=True):
            x = round(float(v), 2)
            bars += [f"{d:%Y%m%d}", x, x, x, x, 0, x, 0]
        start, end = f"{days[0]:%Y%m%d} 00:00:00", f"{today:%Y%m%d} 00:00:00"
        self.send([17, req_id, start, end, len(days), *bars])

    async def cancel_mkt_data(self, f: list[str]) -> None:
        self.subs.pop(int(f[2]), None)

    async def req_ids(self, f: list[str]) -> None:
        self.send(wire.next_valid_id(self.emu.next_order_id))

    async def req_current_time(self, f: list[str]) -> None:
        self.send(wire.current_time(self.emu.clock.now_ns() // 1_000_000_000))

    async def req_managed_accounts(self, f: list[str]) -> None:
        self.send(wire.managed_accounts([self.emu.account]))

    async def place_order(self, f: list[str]) -> None:
        await place(self, wire.parse_place_order(f))

    async def cancel_order(self, f: list[str]) -> None:
        order_id = int(f[2])
        rec = self.emu.orders.get((self.client_id, order_id))
        if rec is None:
            self.send(wire.error(order_id, 135, f"Can't find order with id ={order_id}"))
            return
        try:
            await self.emu.paper.cancel(rec.engine_id)
        except BrokerError as exc:
            self.send(wire.error(order_id, 161, f"Cancel attempted when order is not in a "
                                 f"cancellable state: {exc}"))  # fmt: skip

    def rec_order(self, rec: OrderRec) -> Order:
        st = self.emu.paper.order(rec.engine_id)
        assert st is not None
        return st.order


HANDLERS: dict[int, Callable[[Session, list[str]], Any]] = {
    71: Session.start_api, 61: Session.req_positions, 5: Session.req_open_orders,
    16: Session.req_all_open_orders, 99: Session.req_completed,
    6: Session.req_account_updates, 76: Session.req_account_multi,
    62: Session.req_account_summary, 7: Session.req_executions,
    9: Session.req_contract_details, 78: Session.req_sec_def_opt_params,
    59: Session.req_market_data_type, 1: Session.req_mkt_data, 2: Session.cancel_mkt_data,
    8: Session.req_ids, 49: Session.req_current_time, 17: Session.req_managed_accounts,
    3: Session.place_order, 4: Session.cancel_order, 20: Session.req_historical_data,
}  # fmt: skip


async def serve_connection(emu: TwsEmulator, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:  # fmt: skip
    """Handshake, then requests until the client goes (or a fault drops it)."""
    session = Session(emu, writer)
    try:
        lo, hi = await wire.read_handshake(reader)
        if hi < wire.SERVER_VERSION:
            raise wire.ProtocolError(f"client versions v{lo}..{hi} exclude {wire.SERVER_VERSION}")
        now = from_ns(emu.clock.now_ns()).astimezone(UTC)
        session.send([wire.SERVER_VERSION, f"{now:%Y%m%d %H:%M:%S} UTC"])
        while True:
            fields = await wire.read_frame(reader)
            if fields:
                await session.handle(fields)
                if not emu.faults.silent:
                    await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, wire.ProtocolError) as exc:
        log.debug("tws emulator: connection ended: %s", exc)
    finally:
        if emu.sessions.get(session.client_id) is session:
            del emu.sessions[session.client_id]
        with contextlib.suppress(Exception):
            writer.close()

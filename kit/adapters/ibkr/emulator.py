"""A loopback TWS / IB Gateway: the TWS API socket protocol over the simulator and a paper engine.

``kit emulate tws --port P`` serves it; the unmodified ``ib_async`` client connects, qualifies
contracts, reads option-chain parameters, streams quotes and model Greeks and trades. The market
is :class:`~kit.adapters.sim.market.MarketSim` (stepped on the emulator's clock, 10:00 New York
on the latest session by default, as the other emulators); orders are matched by a
:class:`~kit.adapters.paper.broker.PaperBroker` over the quotes of the contracts in play, so a
limit through the offer fills and one below the bid rests. Wire formats are in
:mod:`kit.adapters.ibkr.emulator_protocol`; one connection's requests in
:mod:`kit.adapters.ibkr.emulator_session`.

Fault switches (:class:`Faults` and methods): :meth:`TwsEmulator.drop` (abort every socket),
``silent`` (send nothing, answer nothing), :meth:`TwsEmulator.connectivity` (errors 1100, then
1102 "data maintained" or 1101 "data lost"; no market data while lost), ``reject_orders`` (error
201 with the reason), ``delayed_only`` (10167 and delayed tick types 66/67/83), ``no_permission``
(354, no data) and :meth:`TwsEmulator.restart` (the nightly restart: every socket dropped and the
port closed for a while). Choices where TWS is not documented: conids of options are given in
order of first sight (SPX, NDX, VIX and SPY keep IBKR's real ones); executions and positions are
the account's, whichever client placed the order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from kit.adapters.ibkr import emulator_protocol as wire
from kit.adapters.ibkr.emulator_protocol import IbContract, OrderView
from kit.adapters.ibkr.emulator_records import ExecRec, OrderRec
from kit.adapters.paper.broker import PaperBroker, PaperConfig
from kit.adapters.sim.market import MarketSim, SimConfig
from kit.adapters.thetadata.emulator import default_start
from kit.core.clock import NEW_YORK, Clock, SimClock, from_ns
from kit.core.model import Contract, Fill, Side
from kit.core.pricing import greeks as bsm_greeks
from kit.core.symbology import to_occ
from kit.execution.broker import BrokerEvent, OrderState, OrderStatus
from kit.portfolio.market import MarketState

if TYPE_CHECKING:
    from kit.adapters.ibkr.emulator_session import Session

log = logging.getLogger(__name__)

INDEX_CONIDS = {"SPX": 416904, "NDX": 416843, "VIX": 13455763, "RUT": 416888}
IB_STATUS = {OrderStatus.PENDING: "PreSubmitted", OrderStatus.WORKING: "Submitted",
             OrderStatus.PARTIAL: "Submitted", OrderStatus.FILLED: "Filled",
             OrderStatus.CANCELLED: "Cancelled", OrderStatus.REJECTED: "Inactive"}  # fmt: skip
MARKET_DATA_LINES = 100  # IBKR's default allowance of simultaneous market data lines


@dataclass
class Faults:
    """Fault switches, flipped by tests (or by hand)."""

    silent: bool = False  # nothing is sent: no answers, no data
    reject_orders: str = ""  # non-empty: every new order is rejected (error 201) with this
    delayed_only: bool = False  # market data is delayed (10167, tick types 66/67/83)
    no_permission: bool = False  # market data requests fail with 354
    upstream_lost: bool = False  # between 1100 and 1101/1102: no market data


@dataclass
class _Track:
    """Contracts whose quotes the emulator computes each step (subscribed or ordered)."""

    contracts: list[Contract] = field(default_factory=list)
    index: dict[Contract, int] = field(default_factory=dict)
    last: np.ndarray | None = None  # bid, ask, sizes, iv, delta, gamma, vega, theta per column

    def add(self, c: Contract) -> bool:
        if c in self.index:
            return False
        self.index[c] = len(self.contracts)
        self.contracts.append(c)
        self.last = None
        return True


class TwsEmulator:
    """The TWS API on ``host:port`` (0: a free port) for one paper account."""

    def __init__(self, *, clock: Clock | None = None, config: SimConfig | None = None,
                 port: int = 0, host: str = "127.0.0.1", account: str = "DU1234567",
                 client_id_limit: int = 32, market_data_lines: int = MARKET_DATA_LINES,
                 paper: PaperConfig | None = None) -> None:  # fmt: skip
        self.clock = clock or SimClock(default_start(datetime.now(NEW_YORK)), speed=1.0)
        self.sim = MarketSim(self.clock.now(), config)
        self.market = MarketState()
        self.paper = PaperBroker(self.clock, self.market, paper or PaperConfig(latency_ms=1.0))
        self.paper.subscribe(self._on_engine)
        self.host, self._port, self.account = host, port, account
        self.client_id_limit, self.market_data_lines = client_id_limit, market_data_lines
        self.faults = Faults()
        self.sessions: dict[int, Session] = {}  # by API client id
        self.connections = 0  # sockets accepted, ever
        self.orders_received = 0  # new orders (not modifications, not what-ifs)
        self.requests: list[int] = []  # message ids of every request, for tests
        self.arrivals: list[float] = []  # when each request arrived (loop time), for pacing
        self.orders: dict[tuple[int, int], OrderRec] = {}  # (client id, order id)
        self.by_engine: dict[str, OrderRec] = {}
        self.executions: list[ExecRec] = []
        self.next_order_id = 1
        self._perm = 1_800_000_000
        self._conids: dict[Contract, int] = {}
        self._contracts: dict[int, Contract] = {}
        self._next_conid = 700_000_001
        self._track = _Track()
        self._server: asyncio.base_events.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending_reports: list[ExecRec] = []
        self._conn_tasks: set[asyncio.Task[None]] = set()

    # --- lifecycle ---

    async def start(self) -> TwsEmulator:
        from kit.adapters.ibkr.emulator_session import serve_connection

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            task = asyncio.current_task()
            if task is not None:
                self._conn_tasks.add(task)
            try:
                await serve_connection(self, reader, writer)
            finally:
                self._conn_tasks.discard(task)  # type: ignore[arg-type]

        self._server = await asyncio.start_server(accept, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="tws-emulator")
        return self

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.drop()
        if self._server is not None:
            self._server.close()
            self._server = None
        conns = list(self._conn_tasks)
        for t in conns:
            t.cancel()
        await asyncio.gather(*conns, return_exceptions=True)
        await self.paper.close()

    async def __aenter__(self) -> TwsEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self._port

    # --- fault switches ---

    def drop(self) -> None:
        """Abort every API connection (no goodbye), as a crash or a network cut does."""
        for s in list(self.sessions.values()):
            s.abort()
        self.sessions.clear()

    async def restart(self, down_s: float = 1.0) -> None:
        """The nightly restart: drop every client, refuse connections for ``down_s`` wall
        seconds, then listen again on the same port. Orders and executions survive."""
        self.drop()
        if self._server is not None:
            self._server.close()
            self._server = None
        await asyncio.sleep(down_s)
        await self.start()

    def connectivity(self, up: bool, *, data_lost: bool = False) -> None:
        """TWS lost (1100) or regained (1102, or 1101 when subscriptions were lost) its link to
        IB's servers; market data stops while it is lost."""
        self.faults.upstream_lost = not up
        if not up:
            code, text = 1100, "Connectivity between IB and Trader Workstation has been lost."
        elif data_lost:
            code, text = 1101, ("Connectivity between IB and Trader Workstation has been "
                                "restored - data lost.")  # fmt: skip
        else:
            code, text = 1102, ("Connectivity between IB and Trader Workstation has been "
                                "restored - data maintained.")  # fmt: skip
        for s in list(self.sessions.values()):
            if up and data_lost:
                s.subs.clear()
            s.send(wire.error(-1, code, text))

    # --- contracts ---

    def conid(self, c: Contract) -> int:
        if (conid := self._conids.get(c)) is None:
            conid = self._conids[c] = self._next_conid
            self._contracts[conid] = c
            self._next_conid += 1
        return conid

    def contract_by_id(self, conid: int) -> Contract | None:
        return self._contracts.get(conid)

    def ib_option(self, c: Contract, exchange: str = "SMART") -> IbContract:
        return IbContract(self.conid(c), c.underlying, "OPT", f"{c.expiry:%Y%m%d}", c.strike,
                          c.right.value, f"{c.multiplier:g}", exchange or "SMART", "USD",
                          to_occ(c), c.root)  # fmt: skip

    def ib_index(self, symbol: str) -> IbContract | None:
        if symbol not in INDEX_CONIDS or (symbol not in self.sim.symbols and symbol != "VIX"):
            return None
        return IbContract(INDEX_CONIDS[symbol], symbol, "IND", exchange="CBOE",
                          local_symbol=symbol)  # fmt: skip

    def index_by_id(self, conid: int) -> str | None:
        return next((s for s, i in INDEX_CONIDS.items() if i == conid), None)

    def find_options(self, spec: dict) -> list[Contract]:
        """Listed options matching a request's symbol, expiry (day or month), strike, right and
        trading class (empty fields match anything)."""
        expiry, right = str(spec.get("expiry") or ""), str(spec.get("right") or "")[:1].upper()
        strike, tclass = float(spec.get("strike") or 0), str(spec.get("tradingClass") or "")
        symbol = str(spec.get("symbol") or "")
        out = []
        for c in self.sim.chain(tclass or None):
            if symbol and c.underlying != symbol:
                continue
            if expiry and not f"{c.expiry:%Y%m%d}".startswith(expiry):
                continue
            if (strike and abs(c.strike - strike) > 1e-6) or (right and c.right.value != right):
                continue
            out.append(c)
        return out

    def spot(self, symbol: str) -> float:
        return self.sim.spot(symbol) if symbol in self.sim.symbols else 15.0  # VIX: a level

    # --- the market ---

    def track(self, c: Contract) -> None:
        """Quote ``c`` from now on (and put its current quote in the engine's market)."""
        if self._track.add(c):
            for q in self.sim.quotes([c]):
                self.market.on_quote(q)

    def option_rows(self, contracts: list[Contract]) -> np.ndarray:
        """Rows of bid, ask, bid size, ask size, mid, iv, delta, gamma, vega/pt, theta/day, spot
        (one column per contract) at the current step."""
        bid, ask, bs, as_, mid, iv, _ = self.sim.quote_arrays(contracts)
        L = self.sim.listing
        idx = np.fromiter((L.index[c] for c in contracts), dtype=np.int64)
        spot = np.array([self.sim.spot(L.contracts[j].underlying) for j in idx]) * L.ratio[idx]
        T = np.maximum((L.expiry_ns[idx] - self.sim.now_ns) / (365.25 * 86400e9), 1e-9)
        g = bsm_greeks(spot, L.strike[idx], T, L.rate[idx], L.div_yield[idx], iv, L.is_call[idx])
        return np.stack([bid, ask, bs, as_, mid, iv, g.delta, g.gamma, g.vega_per_point,
                         g.theta_per_day, spot])  # fmt: skip

    async def _run(self) -> None:
        """Step the simulator on the clock; feed the engine; stream to the subscribers."""
        while True:
            await self.clock.sleep(self.sim.config.step_s)
            try:
                self.step()
            except Exception:  # one bad step must not stop the venue
                log.exception("tws emulator: step failed")

    def step(self) -> None:
        self.sim.advance_to(self.clock.now_ns())
        L, now = self.sim.listing, self.sim.now_ns
        alive = [c for c in self._track.contracts if L.expiry_ns[L.index[c]] > now]
        if alive:
            for q in self.sim.quotes(alive):
                self.market.on_quote(q)
            self.paper.on_market()
        if self.faults.upstream_lost:
            return
        rows = self.option_rows(alive) if alive else np.zeros((11, 0))
        cols = {c: rows[:, j] for j, c in enumerate(alive)}
        for s in list(self.sessions.values()):
            s.stream(cols)

    # --- orders (called by sessions) ---

    def new_perm_id(self) -> int:
        self._perm += 1
        return self._perm

    def order_view(self, rec: OrderRec, *, what_if: bool = False) -> OrderView:
        st = self.paper.order(rec.engine_id)
        order = st.order if st is not None else None
        qty = float(order.quantity) if order else 0.0
        lmt = order.limit_price if order else None
        return OrderView(rec.order_id, rec.client_id, rec.perm_id, rec.action, qty,
                         rec.order_type, lmt, rec.tif, self.account, rec.order_ref,
                         self.status_of(rec), rec.legs, what_if)  # fmt: skip

    def status_of(self, rec: OrderRec) -> str:
        st = self.paper.order(rec.engine_id)
        return IB_STATUS[st.status] if st is not None else "PendingSubmit"

    def status_message(self, rec: OrderRec) -> list:
        st = self.paper.order(rec.engine_id)
        assert st is not None
        filled = float(st.filled_qty)
        remaining = 0.0 if st.status.done else float(st.order.quantity - st.filled_qty)
        last = next((e.price for e in reversed(self.executions) if e.order is rec), 0.0)
        return wire.order_status(rec.order_id, IB_STATUS[st.status], filled, remaining,
                                 st.avg_price, rec.perm_id, last, rec.client_id,
                                 st.reason)  # fmt: skip

    def _on_engine(self, event: BrokerEvent) -> None:
        """The paper engine's events as TWS reports them to the order's client: execDetails per
        leg fill, then openOrder + orderStatus, then the commission reports."""
        if isinstance(event, Fill):
            if (owner := self.by_engine.get(event.client_id)) is None:
                return
            exe = self._execution(owner, event)
            self._to_owner(owner, self.exec_message(exe, -1))
            self._pending_reports.append(exe)
            return
        rec = self.by_engine.get(event.client_id)
        if not isinstance(event, OrderState) or rec is None:
            return
        status = IB_STATUS[event.status]
        if status != rec.last_status:
            rec.last_status = status
            self._to_owner(rec, wire.open_order(self.order_view(rec), rec.contract))
        self._to_owner(rec, self.status_message(rec))
        reports, self._pending_reports = self._pending_reports, []
        for exe in reports:
            self._to_owner(rec, wire.commission_report(exe.exec_id, exe.commission, None))
        if reports:
            for s in list(self.sessions.values()):
                s.positions_changed()

    def _execution(self, rec: OrderRec, f: Fill) -> ExecRec:
        n = len(self.executions) + 1
        exec_id = f"0000e0d5.{rec.perm_id:08x}.{n:02d}.01"
        side = "BOT" if f.side is Side.BUY else "SLD"
        conid = self.conid(f.contract)
        same = [e for e in self.executions if e.order is rec and e.contract.con_id == conid]
        cum = sum(e.shares for e in same) + f.quantity
        avg = (sum(e.shares * e.price for e in same) + f.quantity * f.price) / cum
        exe = ExecRec(exec_id, rec, self.ib_option(f.contract), side, f.quantity, f.price,
                      f.commission, f.ts_ns, cum, avg)  # fmt: skip
        self.executions.append(exe)
        return exe

    def exec_message(self, e: ExecRec, req_id: int) -> list:
        when = from_ns(e.ts_ns).astimezone(NEW_YORK)
        text = f"{when:%Y%m%d %H:%M:%S} America/New_York"
        return wire.execution(req_id, e.order.order_id, e.contract, e.exec_id, text,
                              self.account, e.side, e.shares, e.price, e.order.perm_id,
                              e.order.client_id, e.cum_qty, e.avg_price,
                              e.order.order_ref)  # fmt: skip

    def _to_owner(self, rec: OrderRec, msg: list) -> None:
        s = self.sessions.get(rec.client_id)
        if s is not None:
            s.send(msg)

    def avg_cost(self, c: Contract) -> float:
        """Average cost per contract (price x multiplier) of the fills that built the position."""
        conid = self.conid(c)
        fills = [e for e in self.executions if e.contract.con_id == conid]
        qty = sum(e.shares if e.side == "BOT" else -e.shares for e in fills)
        opening = [e for e in fills if (e.side == "BOT") == (qty > 0)]
        shares = sum(e.shares for e in opening)
        return (sum(e.shares * e.price for e in opening) / shares * c.multiplier) if shares else 0.0


async def serve_forever(port: int, seed: int, speed: float, client_id_limit: int) -> None:
    """``kit emulate tws``: run until interrupted."""
    clock = SimClock(default_start(datetime.now(NEW_YORK)), speed=speed)
    emu = TwsEmulator(clock=clock, config=SimConfig(seed=seed), port=port,
                      client_id_limit=client_id_limit)  # fmt: skip
    async with emu:
        print(f"TWS API emulator on 127.0.0.1:{emu.port} (server version "
              f"{wire.SERVER_VERSION}, account {emu.account}); market time "
              f"{clock.now().astimezone(NEW_YORK):%Y-%m-%d %H:%M %Z} at {speed:g}x; Ctrl-C to "
              "stop", flush=True)  # fmt: skip
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(3600)


__all__ = ["INDEX_CONIDS", "Faults", "TwsEmulator", "serve_forever"]

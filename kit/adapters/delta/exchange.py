"""The emulated Delta Exchange venue: option products, tickers and an account, on the simulator.

The emulator's HTTP and socket layers (:mod:`kit.adapters.delta.emulator`) only translate wire
JSON; this module is the exchange itself. It lists the simulator's BTC/ETH daily options (17:30
IST expiries) as Delta products with ids, prices tickers (top of book, mark, mark IV, Greeks by
:func:`kit.core.pricing.greeks`, open interest) from :class:`~kit.adapters.sim.market.MarketSim`,
and matches orders through the paper broker (:class:`~kit.adapters.paper.broker.PaperBroker`,
zero latency) so emulated fills follow the same rules as paper trading. Positions and entry
prices come from a paper :class:`~kit.adapters.paper.ledger.Ledger` posted with the fills.

Account rules Delta enforces and we emulate: ``client_order_id`` at most 32 characters and
unique, reduce-only orders that may only shrink a position, and an initial margin check (short
options need ``margin_pct`` of the underlying's notional plus the premium) against the available
balance. Every change is reported to listeners as ``(channel, payload)`` for the private socket.
"""

from __future__ import annotations

import asyncio
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kit.adapters.delta.parsing import DeltaError, iso_utc
from kit.adapters.paper.broker import PaperBroker, PaperConfig
from kit.adapters.paper.ledger import Ledger
from kit.adapters.sim.chains import YEAR_NS
from kit.adapters.sim.market import MarketSim
from kit.core.clock import Clock, to_ns
from kit.core.clock import expiry_time as contract_expiry
from kit.core.model import Contract, Fill, Leg, Order, OrderType, Quote, Side, UnderlyingTick
from kit.core.pricing import greeks
from kit.core.symbology import to_delta
from kit.execution.broker import BrokerEvent, OrderRejectedError, OrderState, OrderStatus
from kit.portfolio.market import MarketState

COINS = ("BTC", "ETH")
NO_BID = 1e-9  # the token bid a bid-less option gets in the matcher's book
Listener = Callable[[str, dict[str, Any]], None]


@dataclass
class AccountRules:
    starting_balance: float = 10_000.0  # USD
    margin_pct: float = 10.0  # short option initial margin: % of underlying notional + premium
    commission_by_root: dict[str, float] = field(
        default_factory=lambda: {"BTC": 0.03, "ETH": 0.01}  # USD per contract
    )


@dataclass
class _OrderRec:
    id: int
    product_id: int
    symbol: str
    client_order_id: str | None
    reduce_only: bool
    time_in_force: str
    created_us: int
    commission: float = 0.0


def _us(ns: int) -> int:
    return ns // 1000


def _s(x: float) -> str:
    return f"{x:.10g}"


class DeltaExchange:
    """Products, tickers and one account over ``market`` (advanced by :meth:`step`)."""

    def __init__(self, market: MarketSim, clock: Clock, rules: AccountRules | None = None) -> None:
        self.market, self.clock = market, clock
        self.rules = rules or AccountRules()
        self.book = MarketState()
        paper = PaperConfig(latency_ms=0.0, commission_by_root=dict(self.rules.commission_by_root),
                            starting_cash=self.rules.starting_balance)  # fmt: skip
        self.paper = PaperBroker(clock, self.book, paper)
        self.paper.subscribe(self._on_paper)
        self.ledger = Ledger(self.book, self.rules.starting_balance)
        self.products: dict[int, Contract] = {}
        self.ids: dict[Contract, int] = {}
        self.by_symbol: dict[str, int] = {}
        self.orders: dict[int, _OrderRec] = {}
        self.by_client: dict[str, int] = {}
        self.fills: list[dict[str, Any]] = []
        self.listeners: list[Listener] = []
        self.seq: dict[str, int] = {}
        self.reject_margin = False  # fault switch: every opening order is short of margin
        self.skip_seq: dict[str, int] = {}  # fault switch: channel -> seq_nos to skip once
        self._next_order = 1000
        self._expiries: dict[object, int] = {}  # expiry day -> settlement ns (17:30 IST)
        self.list_products()

    # --- products and tickers ---

    def list_products(self) -> None:
        """Give every listed BTC/ETH option a product id (stable: a CRC of its symbol)."""
        for coin in COINS:
            for c in self.market.chain(coin):
                if c not in self.ids:
                    symbol = to_delta(c)
                    pid = zlib.crc32(symbol.encode()) % 9_000_000 + 1_000_000
                    self.products[pid], self.ids[c], self.by_symbol[symbol] = c, pid, symbol
                    self.by_symbol[symbol] = pid

    def _expiry_ns(self, c: Contract) -> int:
        ns = self._expiries.get(c.expiry)
        if ns is None:
            ns = self._expiries[c.expiry] = to_ns(contract_expiry(c))
        return ns

    def alive(self) -> list[int]:
        now = self.clock.now_ns()
        return [pid for pid, c in self.products.items() if self._expiry_ns(c) > now]

    def product(self, pid: int) -> dict[str, Any]:
        c = self.products[pid]
        return {
            "id": pid, "symbol": to_delta(c), "description": f"{c.root} {c.right.name} option",
            "contract_type": "call_options" if c.is_call else "put_options",
            "state": "live" if self._expiry_ns(c) > self.clock.now_ns() else "expired",
            "trading_status": "operational", "strike_price": _s(c.strike),
            "settlement_time": iso_utc(self._expiry_ns(c)),
            "contract_value": _s(c.multiplier), "contract_unit_currency": c.root,
            "tick_size": "0.5" if c.root == "BTC" else "0.1",
            "underlying_asset": {"symbol": c.root}, "quoting_asset": {"symbol": "USD"},
            "settling_asset": {"symbol": "USD"}, "spot_index": {"symbol": f".DE{c.root}USD"},
        }  # fmt: skip

    def resolve(self, ident: str | int) -> int:
        """A product id from an id or a symbol; DeltaError ``invalid_product`` otherwise."""
        text = str(ident)
        pid = int(text) if text.isdigit() else self.by_symbol.get(text)
        if pid is None or pid not in self.products:
            raise DeltaError("invalid_product", 404, {"product": text})
        return pid

    def tickers(self, pids: list[int]) -> list[dict[str, Any]]:
        """Tickers of live products: quotes, mark, mark IV, Greeks, open interest."""
        m = self.market
        m.advance_to(self.clock.now_ns())
        contracts = [self.products[p] for p in pids]
        if not contracts:
            return []
        bid, ask, bs, az, mid, iv, alive = m.quote_arrays(contracts)
        step = m.steps
        spot = np.array([m.spot(c.root) for c in contracts])
        exp = np.array([self._expiry_ns(c) for c in contracts])
        T = np.maximum((exp - m.step_time(step)) / YEAR_NS, 0.0)
        g = greeks(spot, np.array([c.strike for c in contracts]), T, 0.0, 0.0, iv,
                   np.array([c.is_call for c in contracts]))  # fmt: skip
        oi = m.open_interest(contracts)
        ts = _us(m.step_time(step))
        out = []
        for j, (pid, c) in enumerate(zip(pids, contracts, strict=True)):
            if not alive[j]:
                continue
            out.append({
                "symbol": to_delta(c), "product_id": pid,
                "contract_type": "call_options" if c.is_call else "put_options",
                "underlying_asset_symbol": c.root, "strike_price": _s(c.strike),
                "spot_price": _s(spot[j]), "mark_price": _s(mid[j]), "close": _s(mid[j]),
                "oi": _s(oi[j] * c.multiplier), "oi_contracts": str(int(oi[j])),
                "oi_value_usd": _s(oi[j] * c.multiplier * spot[j]), "timestamp": ts,
                "quotes": {"best_bid": _s(bid[j]) if bid[j] > 0 else None,
                           "best_ask": _s(ask[j]), "bid_size": str(int(bs[j])),
                           "ask_size": str(int(az[j])), "mark_iv": _s(iv[j])},
                "greeks": {"delta": _s(g.delta[j]), "gamma": _s(g.gamma[j]),
                           "theta": _s(g.theta_per_day[j]), "vega": _s(g.vega_per_point[j]),
                           "rho": _s(g.rho[j])},
            })  # fmt: skip
        return out

    # --- the market's step ---

    def step(self) -> None:
        """Bring the simulator to the clock; requote the contracts with orders or positions and
        let resting orders match."""
        m = self.market
        m.advance_to(self.clock.now_ns())
        if m.steps % 600 == 0:
            self.list_products()
        for coin in COINS:
            self.book.on_underlying(UnderlyingTick(coin, m.spot(coin), m.step_time(m.steps)))
        active = {self.products[r.product_id] for r in self.orders.values()}
        active |= {c for c, _ in self.ledger.held()}
        live = [c for c in active if m.is_listed(c) and self._expiry_ns(c) > m.now_ns]
        for q in m.quotes(live):
            self._book(q)
        self.paper.on_market()

    def _quote(self, c: Contract) -> None:
        self.market.advance_to(self.clock.now_ns())
        for q in self.market.quotes([c]):
            self._book(q)

    def _book(self, q: Quote) -> None:
        """Into the matcher's book. A worthless option quotes no bid; the paper venue wants two
        sides, so the book gets a token bid (market sales into no bid are refused before it)
        and a buy-back at the ask stays possible, as on Delta."""
        if q.bid <= 0 < q.ask:
            q = Quote(q.contract, NO_BID, q.ask, 1.0, q.ask_size, q.ts_ns)
        self.book.on_quote(q)

    def no_bid(self, c: Contract) -> bool:
        row = self.book.index.get(c)
        return row is None or float(self.book.bid[row]) <= NO_BID

    # --- orders ---

    async def place(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v2/orders``: validate like Delta, then hand to the paper matcher."""
        try:
            pid = self.resolve(body.get("product_id") or body.get("product_symbol") or "")
            size = int(body.get("size") or 0)
            side = Side(str(body.get("side")))
            kind = {"limit_order": OrderType.LIMIT, "market_order": OrderType.MARKET}[
                str(body.get("order_type") or "limit_order")]  # fmt: skip
            limit = float(body["limit_price"]) if kind is OrderType.LIMIT else None
        except (KeyError, ValueError, TypeError):
            raise DeltaError("bad_schema", 400, {"body": body}) from None
        if size < 1 or (limit is not None and not (math.isfinite(limit) and limit > 0)):
            raise DeltaError("bad_schema", 400, {"size": size, "limit_price": limit})
        coid = body.get("client_order_id") or None
        if coid is not None and (len(str(coid)) > 32 or str(coid) in self.by_client):
            code = "bad_schema" if len(str(coid)) > 32 else "duplicate_client_order_id"
            raise DeltaError(code, 400, {"client_order_id": coid})
        c = self.products[pid]
        if self._expiry_ns(c) <= self.clock.now_ns():
            raise DeltaError("invalid_product", 400, {"product_id": pid, "state": "expired"})
        reduce_only = str(body.get("reduce_only", "false")).lower() == "true"
        held = self.ledger.pos.get(c, 0.0)
        if reduce_only and not (held * side.sign < 0 and size <= abs(held)):
            raise DeltaError("reduce_only_violation", 400, {"position": held, "size": size})
        self._quote(c)
        if kind is OrderType.MARKET and side is Side.SELL and self.no_bid(c):
            raise DeltaError("insufficient_liquidity", 400, {"product_id": pid, "side": "sell"})
        if not reduce_only and held * side.sign >= 0:
            self._check_margin(c, side, size, limit)
        oid, self._next_order = self._next_order, self._next_order + 1
        tif = str(body.get("time_in_force") or "gtc")
        rec = _OrderRec(oid, pid, to_delta(c), coid, reduce_only, tif, _us(self.clock.now_ns()))
        self.orders[oid] = rec
        if coid is not None:
            self.by_client[coid] = oid
        order = Order(str(oid), (Leg(c, 1),), side, size, kind, self.clock.now_ns(), limit)
        try:
            await self.paper.place(order)
        except OrderRejectedError as exc:
            del self.orders[oid]
            self.by_client.pop(coid or "", None)
            # the paper venue refuses an order with no quote to fill against
            thin = ("no ask to buy from", "no bid to sell into", "two-sided")
            code = "insufficient_liquidity" if any(t in str(exc) for t in thin) else "bad_schema"
            raise DeltaError(code, 400, {"reason": str(exc)}) from None
        await self._settle()
        if kind is OrderType.MARKET and not self.paper.order(str(oid)).status.done:
            await self.paper.cancel(str(oid))  # a market order never rests (IOC)
            await self._settle()
        return self.order_json(oid)

    def _check_margin(self, c: Contract, side: Side, size: int, limit: float | None) -> None:
        if side is Side.BUY:
            need = (limit or 0.0) * size * c.multiplier
        else:
            spot = self.market.spot(c.root)
            need = size * c.multiplier * spot * self.rules.margin_pct / 100
        available = self.balance()["available"]
        if self.reject_margin or need > available:
            raise DeltaError("insufficient_margin", 400, {
                "required_additional_balance": _s(need - available),
                "available_balance": _s(available)})  # fmt: skip

    async def _settle(self) -> None:
        for _ in range(5):  # the paper broker's zero-latency timers run on the loop
            await asyncio.sleep(0)

    async def cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        oid = self._find(body)
        state = self.paper.order(str(oid))
        if state is None or state.status.done:
            raise DeltaError("open_order_not_found", 404, {"id": oid})
        await self.paper.cancel(str(oid))
        await self._settle()
        return self.order_json(oid)

    async def edit(self, body: dict[str, Any]) -> dict[str, Any]:
        oid = self._find(body)
        state = self.paper.order(str(oid))
        if state is None or state.status.done:
            raise DeltaError("open_order_not_found", 404, {"id": oid})
        try:
            price = float(body.get("limit_price") or state.order.limit_price or 0)
            size = int(body["size"]) if body.get("size") is not None else None
            await self.paper.replace(str(oid), limit_price=price, quantity=size)
        except (ValueError, OrderRejectedError) as exc:
            raise DeltaError("bad_schema", 400, {"reason": str(exc)}) from None
        await self._settle()
        return self.order_json(oid)

    def _find(self, body: dict[str, Any]) -> int:
        if body.get("client_order_id"):
            oid = self.by_client.get(str(body["client_order_id"]))
        else:
            oid = int(body.get("id") or 0)
        if oid is None or oid not in self.orders:
            raise DeltaError("open_order_not_found", 404, {"id": body.get("id")})
        return oid

    def order_json(self, oid: int) -> dict[str, Any]:
        rec, state = self.orders[oid], self.paper.order(str(oid))
        assert state is not None
        o = state.order
        if state.status is OrderStatus.FILLED:
            name = "closed"
        elif state.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED):
            name = "cancelled"
        else:
            name = "open" if state.status is not OrderStatus.PENDING else "pending"
        return {
            "id": oid, "user_id": 1, "product_id": rec.product_id, "product_symbol": rec.symbol,
            "client_order_id": rec.client_order_id, "side": o.side.value, "size": o.quantity,
            "unfilled_size": 0 if state.status is OrderStatus.FILLED
            else o.quantity - state.filled_qty,
            "order_type": "limit_order" if o.order_type is OrderType.LIMIT else "market_order",
            "limit_price": None if o.limit_price is None else _s(o.limit_price),
            "state": name, "reduce_only": rec.reduce_only, "time_in_force": rec.time_in_force,
            "average_fill_price": _s(state.avg_price) if state.filled_qty else None,
            "paid_commission": _s(rec.commission), "created_at": rec.created_us,
            "updated_at": _us(state.ts_ns or self.clock.now_ns()),
        }  # fmt: skip

    def open_orders(self) -> list[dict[str, Any]]:
        return [self.order_json(oid) for oid in self.orders
                if not self.paper.order(str(oid)).status.done]  # fmt: skip

    # --- account ---

    def positions(self) -> list[dict[str, Any]]:
        out = []
        for c, q in self.ledger.held():
            pid = self.ids[c]
            mark = self.ledger.mark(c)
            entry = self.ledger.cost.get(c, 0.0)
            out.append({
                "product_id": pid, "product_symbol": to_delta(c), "size": round(q),
                "entry_price": _s(entry), "mark_price": _s(mark),
                "margin": _s(self._position_margin(c, q)),
                "unrealized_pnl": _s((mark - entry) * q * c.multiplier),
                "realized_pnl": "0",
            })  # fmt: skip
        return out

    def _position_margin(self, c: Contract, q: float) -> float:
        if q >= 0:
            return 0.0
        spot = self.book.spot_of(c.root)
        return abs(q) * c.multiplier * spot * self.rules.margin_pct / 100

    def balance(self) -> dict[str, float]:
        pos_margin = sum(self._position_margin(c, q) for c, q in self.ledger.held())
        order_margin = 0.0
        for oid, rec in self.orders.items():
            st = self.paper.order(str(oid))
            if st is None or st.status.done or rec.reduce_only:
                continue
            c = self.products[rec.product_id]
            if st.order.side is Side.SELL:
                order_margin += st.remaining * c.multiplier * self.market.spot(c.root) * (
                    self.rules.margin_pct / 100)  # fmt: skip
            else:
                order_margin += st.remaining * c.multiplier * (st.order.limit_price or 0.0)
        cash = self.ledger.cash  # net of commissions already (Fill.cash_flow includes them)
        return {"balance": cash, "position_margin": pos_margin, "order_margin": order_margin,
                "available": cash - pos_margin - order_margin}  # fmt: skip

    def wallet(self) -> list[dict[str, Any]]:
        b = self.balance()
        return [{"asset_id": 3, "asset_symbol": "USD", "balance": _s(b["balance"]),
                 "available_balance": _s(b["available"]),
                 "position_margin": _s(b["position_margin"]),
                 "order_margin": _s(b["order_margin"]),
                 "commission": _s(self.ledger.commissions)}]  # fmt: skip

    # --- events for the private socket ---

    def next_seq(self, channel: str, skip: int = 0) -> int:
        self.seq[channel] = self.seq.get(channel, 0) + 1 + skip
        return self.seq[channel]

    def _emit(self, channel: str, payload: dict[str, Any]) -> None:
        """Number the change on its channel once (``seq_no``), then tell every listener."""
        payload = {**payload, "seq_no": self.next_seq(channel, self.skip_seq.pop(channel, 0))}
        for listener in list(self.listeners):
            listener(channel, payload)

    def _on_paper(self, event: BrokerEvent) -> None:
        if isinstance(event, Fill):
            self.ledger.post(event)
            oid = int(event.client_id)
            rec = self.orders[oid]
            rec.commission += event.commission
            fill = {"id": f"F{event.fill_id}", "order_id": oid, "product_id": rec.product_id,
                    "product_symbol": rec.symbol, "client_order_id": rec.client_order_id,
                    "side": event.side.value, "size": int(event.quantity),
                    "price": _s(event.price), "commission": _s(event.commission),
                    "role": "taker", "created_at": _us(event.ts_ns)}  # fmt: skip
            self.fills.append(fill)
            self._emit("v2/user_trades", fill)
            c = event.contract
            size = round(self.ledger.pos.get(c, 0.0))
            self._emit("positions", {"product_id": rec.product_id, "product_symbol": rec.symbol,
                                     "size": size, "entry_price": _s(self.ledger.cost.get(c, 0.0)),
                                     "action": "update" if size else "delete"})  # fmt: skip
            self._emit("margins", self.wallet()[0])
        elif isinstance(event, OrderState) and event.client_id.isdigit():
            oid = int(event.client_id)
            if oid in self.orders:
                doc = self.order_json(oid)
                doc["action"] = "create" if event.status is OrderStatus.PENDING else "update"
                self._emit("orders", doc)

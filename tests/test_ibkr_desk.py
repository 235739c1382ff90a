"""The desk on ``--feed ibkr --broker ibkr`` against the TWS API emulator, end to end over real
sockets: the builder wires clock, feed, chain source and broker from ``IBKR_*``; quotes and
IBKR's model Greeks reach the desk's market; a strangle is sold as one BAG combo and bought
back; a large order fills partly; a restarted broker adopts its working order instead of
sending it twice; the paper/live gate is unchanged."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kit.adapters.ibkr.broker import IbkrBroker
from kit.adapters.ibkr.config import IbkrConfig
from kit.adapters.ibkr.connection import IbConnection
from kit.adapters.ibkr.emulator import TwsEmulator
from kit.app.build import FeedSpec, RunSpec, build
from kit.core.config import ConfigError
from kit.core.model import Fill, Leg, Order, OrderType, Side
from kit.execution.broker import OrderState, OrderStatus
from kit.execution.live import make_broker
from kit.portfolio.market import MarketState

ACCOUNT = "DU1234567"


async def until(predicate: Any, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def tws_env(monkeypatch: pytest.MonkeyPatch, emu: TwsEmulator, client_id: int = 1) -> None:
    monkeypatch.setenv("IBKR_HOST", "127.0.0.1")
    monkeypatch.setenv("IBKR_PORT", str(emu.port))
    monkeypatch.setenv("IBKR_CLIENT_ID", str(client_id))
    monkeypatch.setenv("IBKR_ACCOUNT_ID", ACCOUNT)
    monkeypatch.setenv("IBKR_MARKET_DATA_LINES", "300")  # a quote booster's worth: one expiry
    monkeypatch.setenv("KIT_LIVE_TRADING", "yes")


async def test_desk_quotes_greeks_and_a_combo_strangle_on_tws(monkeypatch) -> None:
    async with TwsEmulator(account=ACCOUNT, market_data_lines=300) as emu:
        tws_env(monkeypatch, emu)
        spec = RunSpec(mode="live", feed=FeedSpec.parse("ibkr"), broker="ibkr",
                       confirm_live=ACCOUNT, env_sinks=False)  # fmt: skip
        run = await build(spec)
        assert abs(run.clock.now_ns() - emu.clock.now_ns()) < 5e9  # TWS's market time
        broker = run.broker
        assert isinstance(broker, IbkrBroker) and broker.conn is run.feed.conn  # one IB
        async with run:
            chain = await run.subscribe_expiry("SPXW", 0)
            assert len(chain) > 20 and all(c.root == "SPXW" for c in chain)
            m, spot = run.desk.market, emu.sim.spot("SPX")
            put = min((c for c in chain if not c.is_call), key=lambda c: abs(c.strike - spot + 30))
            call = min((c for c in chain if c.is_call), key=lambda c: abs(c.strike - spot - 30))
            rows = [m.index[put], m.index[call]]
            await until(lambda: all(m.vendor_ts[r] > 0 and m.bid[r] > 0 for r in rows)
                        and m.spot_of("SPX") > 0)  # fmt: skip
            assert m.vendor_source[rows[0]] == "ibkr"
            assert run.desk.feed_states["ibkr"].value == "LIVE"
            assert run.feed.open_interest.get(put, 0) > 0
            events: list[OrderState | Fill] = []
            broker.subscribe(events.append)
            legs = (Leg(put, 1), Leg(call, 1))
            sell = Order("strangle-open", legs, Side.SELL, 1, OrderType.LIMIT, 0, limit_price=0.05)
            await broker.place(sell)
            await until(lambda: _status(broker, "strangle-open") is OrderStatus.FILLED
                        and len(_fills(events, "strangle-open")) == 2)  # fmt: skip
            opened = _fills(events, "strangle-open")
            assert {(f.contract, f.side) for f in opened} == {(put, Side.SELL), (call, Side.SELL)}
            assert all(f.commission > 0 for f in opened)
            assert await broker.positions() == {put: -1, call: -1}
            credit = broker.order("strangle-open").avg_price
            assert credit == pytest.approx(sum(f.price for f in opened))
            close = Order("strangle-close", legs, Side.BUY, 1, OrderType.LIMIT, 0,
                          limit_price=round(credit * 3 + 5, 1))  # fmt: skip
            await broker.place(close)
            await until(lambda: _status(broker, "strangle-close") is OrderStatus.FILLED)
            assert await broker.positions() == {}
            margin = await broker.what_if(sell)
            assert margin > 1000  # a naked strangle's buying power, from TWS's what-if
        assert not broker.conn.ib.isConnected()  # closed by its last user


async def test_partial_fill_and_a_restart_mid_order_neither_duplicates_nor_loses(
    monkeypatch,
) -> None:
    async with TwsEmulator(account=ACCOUNT) as emu:
        cfg = IbkrConfig(port=emu.port, client_id=5, account_id=ACCOUNT, probe_s=0.5)
        first = IbkrBroker(cfg, connection=IbConnection(cfg))
        await first.connect()
        spot = emu.sim.spot("SPX")
        listed = emu.sim.chain("SPXW")
        first_expiry = min(x.expiry for x in listed)
        chain = [c for c in listed if c.expiry == first_expiry]
        put = min((c for c in chain if not c.is_call), key=lambda c: abs(c.strike - spot + 20))
        emu.track(put)
        row = emu.market.index[put]
        ask, shown = float(emu.market.ask[row]), float(emu.market.ask_size[row])
        big = Order("big", (Leg(put, 1),), Side.BUY, int(shown) + 5000, OrderType.LIMIT, 0,
                    limit_price=ask)  # fmt: skip
        events: list[OrderState | Fill] = []
        first.subscribe(events.append)
        await first.place(big)
        await until(lambda: _status(first, "big") is OrderStatus.PARTIAL)
        part = first.order("big")
        assert 0 < part.filled_qty < big.quantity
        await until(lambda: sum(f.quantity for f in _fills(events, "big")) >= part.filled_qty)
        resting = Order("rest", (Leg(put, 1),), Side.BUY, 2, OrderType.LIMIT, 0,
                        limit_price=round(max(ask * 0.3, 0.05), 2))  # fmt: skip
        placed = await first.place(resting)
        await until(lambda: _status(first, "rest") is OrderStatus.WORKING)
        gone = Order("gone", (Leg(put, 1),), Side.BUY, 1, OrderType.LIMIT, 0,
                     limit_price=round(max(ask * 0.3, 0.05), 2))  # fmt: skip
        await first.place(gone)
        await until(lambda: _status(first, "gone") is OrderStatus.WORKING)
        await first.cancel("gone")
        await until(lambda: _status(first, "gone") is OrderStatus.CANCELLED)
        sent = emu.orders_received
        await first.close()  # the process stops with the order working at TWS
        second = IbkrBroker(cfg, connection=IbConnection(cfg))  # restarted, same client id
        await second.connect()
        later: list[OrderState | Fill] = []
        second.subscribe(later.append)
        adopted = await second.place(resting)
        assert adopted.broker_id == placed.broker_id and adopted.status is OrderStatus.WORKING
        assert emu.orders_received == sent  # not sent again
        again = await second.place(big)  # the partly filled one is found too
        assert again.filled_qty >= part.filled_qty and emu.orders_received == sent
        ended = await second.place(gone)  # cancelled, no executions: a completed order
        assert ended.status is OrderStatus.CANCELLED and emu.orders_received == sent
        await second.replace("rest", limit_price=round(ask * 1.5, 2))
        await until(lambda: _status(second, "rest") is OrderStatus.FILLED
                    and sum(f.quantity for f in _fills(later, "rest")) == 2)  # fmt: skip
        await second.cancel("big")
        await until(lambda: _status(second, "big") is OrderStatus.CANCELLED)
        assert second.order("big").filled_qty >= part.filled_qty
        await second.close()


async def test_live_gate_is_unchanged_for_ibkr(monkeypatch) -> None:
    market = MarketState()
    from kit.core.clock import LiveClock

    clock = LiveClock()
    env = {"IBKR_PORT": "7496", "IBKR_ACCOUNT_ID": ACCOUNT}
    with pytest.raises(ConfigError, match="live trading is off"):
        make_broker(clock, market, live=True, broker="ibkr", env=env)
    env["KIT_LIVE_TRADING"] = "yes"
    with pytest.raises(ConfigError, match="confirmation naming the account"):
        make_broker(clock, market, live=True, broker="ibkr", confirm="U999", env=env)
    broker = make_broker(clock, market, live=True, broker="ibkr", confirm=ACCOUNT, env=env)
    assert isinstance(broker, IbkrBroker) and broker.config.live_port
    assert make_broker(clock, market, broker="ibkr", env=env).name == "paper"  # the default
    monkeypatch.setenv("IBKR_PORT", "9")  # nothing listens there
    monkeypatch.setenv("IBKR_TIMEOUT_S", "1")
    with pytest.raises(ConfigError, match=r"cannot reach TWS API at 127\.0\.0\.1:9"):
        await build(RunSpec(feed=FeedSpec.parse("ibkr"), env_sinks=False))


def _status(broker: IbkrBroker, cid: str) -> OrderStatus | None:
    state = broker.order(cid)
    return None if state is None else state.status


def _fills(events: list[OrderState | Fill], cid: str) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill) and e.client_id == cid]

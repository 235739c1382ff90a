"""The Delta broker over the emulator: orders, fills over the private socket, reduce-only closes,
idempotent restarts, seq_no gaps reconciled over REST, clear refusals, and the live gate."""

from __future__ import annotations

import pytest
from venues import DELTA_KEY as KEY
from venues import delta_config, delta_emulator, delta_live_env, eth_call, until

from kit.adapters.delta.broker import DeltaBroker
from kit.adapters.delta.orders import client_order_id
from kit.adapters.delta.parsing import DeltaAuthError
from kit.core.config import ConfigError
from kit.core.model import Fill, Leg, Order, OrderType, Side
from kit.core.symbology import to_delta
from kit.execution.broker import OrderRejectedError, OrderStatus
from kit.execution.live import make_broker
from kit.portfolio.market import MarketState


async def test_orders_fills_reduce_only_close_and_restart():
    async with delta_emulator() as emu:
        broker = DeltaBroker(delta_config(emu))
        events: list = []
        broker.subscribe(events.append)
        await broker.connect()
        await broker.wait_stream()
        c, t = eth_call(emu)
        bid, ask = float(t["quotes"]["best_bid"]), float(t["quotes"]["best_ask"])
        cid = "pos-eth-1/entry/call/attempt-1"  # 30+ chars with '/': a safe head + a hash
        order = Order(cid, (Leg(c, 1),), Side.SELL, 2, OrderType.LIMIT, 0, ask * 3)
        state = await broker.place(order)
        assert state.status is OrderStatus.WORKING and state.broker_id
        assert emu.exchange.by_client == {client_order_id(cid): int(state.broker_id)}
        coid = client_order_id(cid)  # Delta's 32 characters: a readable head and a hash
        assert coid.startswith("pos-eth-1-entry-cal-") and len(coid) == 32
        # a restarted broker finds the order by its client id and sends nothing
        again = DeltaBroker(delta_config(emu), stream=False)
        await again.connect()
        assert (await again.place(order)).broker_id == state.broker_id
        assert len(emu.exchange.orders) == 1
        await again.close()
        # reprice to the bid: fills, and the fills arrive over the private socket
        await broker.replace(cid, limit_price=bid)
        await until(lambda: sum(isinstance(e, Fill) for e in events) >= 1
                    and broker.order(cid).status is OrderStatus.FILLED)  # fmt: skip
        fills = [e for e in events if isinstance(e, Fill)]
        assert sum(f.quantity for f in fills) == 2 and {f.client_id for f in fills} == {cid}
        assert all(f.side is Side.SELL and f.price >= bid - 1e-9 for f in fills)
        assert await broker.positions() == {c: -2}
        # the close is reduce-only: a market buy of 2
        close = Order("pos-eth-1/exit", (Leg(c, 1),), Side.BUY, 2, OrderType.MARKET, 0)
        closed = await broker.place(close)
        assert emu.exchange.orders[int(closed.broker_id)].reduce_only
        await until(lambda: broker.order("pos-eth-1/exit").status is OrderStatus.FILLED)
        assert await broker.positions() == {}
        acct = await broker.account()
        assert acct.commissions > 0 and acct.buying_power_used == 0
        await broker.close()


async def test_seq_gap_reconciles_and_refusals_are_clear():
    async with delta_emulator() as emu:
        broker = DeltaBroker(delta_config(emu))
        await broker.connect()
        await broker.wait_stream()
        c, t = eth_call(emu)
        ask = float(t["quotes"]["best_ask"])
        emu.exchange.skip_seq["orders"] = 1  # the next orders update jumps a seq_no
        before = broker.reconciliations
        await broker.place(Order("gap-1", (Leg(c, 1),), Side.SELL, 1, OrderType.LIMIT, 0, ask * 4))
        await until(lambda: broker.gaps >= 1)
        await until(lambda: broker.reconciliations > before)
        assert broker.order("gap-1").status is OrderStatus.WORKING
        emu.exchange.reject_margin = True
        with pytest.raises(OrderRejectedError, match="insufficient_margin"):
            await broker.place(Order("m-1", (Leg(c, 1),), Side.SELL, 1, OrderType.LIMIT, 0, ask))
        emu.exchange.reject_margin = False
        with pytest.raises(OrderRejectedError, match="single-leg"):
            await broker.place(Order("s-1", (Leg(c, 2),), Side.SELL, 1, OrderType.LIMIT, 0, ask))
        state = await broker.cancel("gap-1")
        assert state.status is OrderStatus.CANCELLED
        await broker.close()
        bad = DeltaBroker(delta_config(emu, secret="nope"))
        with pytest.raises(DeltaAuthError, match="Signature Mismatch: the API secret"):
            await bad.connect()
        await bad.close()


def test_live_gate_guards_the_delta_broker(tmp_path):
    from kit.core.clock import LiveClock

    env = {"DELTA_API_KEY": "key-1", "DELTA_API_SECRET": "x"}
    with pytest.raises(ConfigError, match="KIT_LIVE_TRADING"):
        make_broker(LiveClock(), MarketState(), live=True, broker="delta", env=env)
    env["KIT_LIVE_TRADING"] = "yes"
    with pytest.raises(ConfigError, match="DELTA_API_KEY"):
        make_broker(LiveClock(), MarketState(), live=True, broker="delta", confirm="other",
                    env=env)  # fmt: skip
    broker = make_broker(LiveClock(), MarketState(), live=True, broker="delta", confirm="key-1",
                         env=env)  # fmt: skip
    assert isinstance(broker, DeltaBroker) and broker.config.testnet
    assert not make_broker(LiveClock(), MarketState(), live=False, broker="delta").live


async def test_the_desks_order_manager_trades_a_btc_strangle_on_delta(monkeypatch):
    """The index strangles' machinery, unchanged, on Delta: the builder wires --feed delta and
    --broker delta (through the live gate), the order manager legs the strangle in (Delta has no
    combos) and closes it, and the desk's book follows the fills."""
    from kit.app.build import FeedSpec, RunSpec, build
    from kit.core.model import Position, StrategyType
    from kit.execution.intents import close_intent, open_intent
    from kit.execution.ladder import ManagerConfig

    async with delta_emulator() as emu:
        for k, v in delta_live_env(emu).items():
            monkeypatch.setenv(k, v)
        manager = ManagerConfig(tick=0.5, wait_s=0.1, retries=2, market_fallback_open=True,
                                cancel_timeout_s=5.0, market_wait_s=5.0)  # fmt: skip
        spec = RunSpec(mode="live", feed=FeedSpec.parse("delta"), broker="delta",
                       confirm_live=KEY, env_sinks=False, manager=manager)  # fmt: skip
        run = await build(spec)
        async with run:
            assert isinstance(run.broker, DeltaBroker) and run.broker.live
            chain = await run.subscribe_expiry("BTC", 1)
            ex = emu.exchange
            deltas = {ex.products[t["product_id"]]: float(t["greeks"]["delta"])
                      for t in ex.tickers([ex.ids[c] for c in chain])}  # fmt: skip
            call = min((c for c in deltas if c.is_call), key=lambda c: abs(deltas[c] - 0.25))
            put = min((c for c in deltas if not c.is_call), key=lambda c: abs(deltas[c] + 0.25))
            pos = Position("D1", StrategyType.STRANGLE, (Leg(put, -1), Leg(call, -1)), 1,
                           run.clock.now_ns())  # fmt: skip
            rec = run.orders.submit(open_intent(pos, "delta-daily", "test entry"))
            await until(lambda: not rec.active, 30)
            assert rec.status == "done", rec
            await until(lambda: run.desk.book.held("D1") is not None)
            assert {p["product_symbol"]: p["size"] for p in ex.positions()} == {
                to_delta(put): -1, to_delta(call): -1}  # fmt: skip
            held = run.desk.book.held("D1")
            out = run.orders.submit(close_intent(held, "delta-daily", 1.0, "test exit",
                                                 run.clock.now_ns(),
                                                 run.orders.next_id("D1", "close")))  # fmt: skip
            await until(lambda: not out.active, 30)
            assert out.status == "done" and ex.positions() == []

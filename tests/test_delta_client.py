"""The async Delta client and the feed, end to end over the emulator on 127.0.0.1.

Signing is checked by the emulator (the same rules the official client passes); the client must
measure and correct a clock offset, wait out 429s, walk cursor pages, and turn Delta's error codes
into one-line errors naming the fix. The feed must deliver quotes sized by the product, coin
prices and the exchange's Greeks, survive a dropped and a silent socket (resubscribing), and
report a refused (deprecated) channel.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from kit.adapters.base import FeedConfig
from kit.adapters.delta.client import DeltaClient
from kit.adapters.delta.config import DeltaConfig
from kit.adapters.delta.emulator import DeltaEmulator
from kit.adapters.delta.feed import DeltaFeed
from kit.adapters.delta.parsing import DeltaAuthError, DeltaError, DeltaRateLimitError
from kit.core.backoff import Backoff
from kit.core.config import ConfigError
from kit.core.model import FeedState, Quote, UnderlyingTick

KEY, SECRET = "k1", "s1"


def cfg(emu: DeltaEmulator, **kw) -> DeltaConfig:
    return DeltaConfig.from_env({"DELTA_BASE_URL": emu.base_url, "DELTA_API_KEY": KEY,
                                 "DELTA_API_SECRET": SECRET, **kw})  # fmt: skip


def test_settings_default_to_testnet_and_hide_the_secret():
    c = DeltaConfig.from_env({"DELTA_API_KEY": "abc", "DELTA_API_SECRET": "topsecret"})
    assert c.testnet and "testnet" in c.base_url and c.ws_url.startswith("wss://")
    assert "topsecret" not in repr(c)
    live = DeltaConfig.from_env({"DELTA_TESTNET": "no"})
    assert live.base_url == "https://api.india.delta.exchange"
    local = DeltaConfig.from_env({"DELTA_BASE_URL": "http://127.0.0.1:8900"})
    assert local.ws_url == "ws://127.0.0.1:8900/"
    with pytest.raises(ConfigError, match="DELTA_BASE_URL"):
        DeltaConfig.from_env({"DELTA_BASE_URL": "localhost:8900"})


async def test_client_signs_corrects_skew_backs_off_and_paginates():
    async with DeltaEmulator(api_key=KEY, api_secret=SECRET) as emu:
        async with DeltaClient(cfg(emu)) as client:
            products = await client.products()
            assert len(products) == len(emu.exchange.alive()) and emu.requests >= 2
            # a server clock 9 s ahead: the first private call is refused, re-signed, accepted
            emu.faults.skew_s = 9.0
            assert await client.open_orders() == []
            assert client.skew_s == pytest.approx(9.0, abs=1.5)
            # measured from the Date header too
            emu.faults.skew_s = -20.0
            assert await client.measure_skew() == pytest.approx(-20.0, abs=1.5)
            assert (await client.balances())[0]["asset_symbol"] == "USD"
            # 429s are waited out (X-RATE-LIMIT-RESET) and retried
            emu.faults.throttle, emu.faults.throttle_reset_ms = 2, 50
            assert (await client.ticker(products[0]["symbol"]))["symbol"] == products[0]["symbol"]
            assert client.rate_limited == 2
            emu.faults.throttle = 10
            with pytest.raises(DeltaRateLimitError, match="429 RateLimitExceeded"):
                await client.ticker(products[0]["symbol"])
            emu.faults.throttle = 0
            # clear errors
            emu.faults.refuse_ip = True
            with pytest.raises(DeltaAuthError, match="IP address is not whitelisted"):
                await client.positions()
            emu.faults.refuse_ip = False
            with pytest.raises(DeltaError, match="insufficient_margin: not enough available"):
                await client.place_order({"product_id": products[0]["id"], "size": 10**6,
                                          "side": "sell", "order_type": "limit_order",
                                          "limit_price": "1000"})  # fmt: skip
        bad = DeltaConfig.from_env({"DELTA_BASE_URL": emu.base_url, "DELTA_API_KEY": KEY,
                                    "DELTA_API_SECRET": "wrong"})  # fmt: skip
        async with DeltaClient(bad) as client:
            with pytest.raises(DeltaAuthError, match="401 Signature Mismatch: the API secret"):
                await client.positions()
            assert "wrong" not in str(client.config)
        nokey = DeltaConfig.from_env({"DELTA_BASE_URL": emu.base_url})
        async with DeltaClient(nokey) as client:
            with pytest.raises(DeltaAuthError, match="DELTA_API_KEY"):
                await client.positions()


async def _collect(feed: DeltaFeed, n: int, kinds=(Quote,)) -> list:
    out = []
    async with asyncio.timeout(20):
        async for ev in feed:
            if isinstance(ev, kinds):
                out.append(ev)
                if len(out) >= n:
                    return out
    return out


async def test_feed_streams_sized_quotes_and_survives_drop_and_silence():
    emu = DeltaEmulator(api_key=KEY, api_secret=SECRET, tick_s=0.05, heartbeat_s=0.2)
    async with emu:
        fc = FeedConfig(liveness_timeout_s=0.6, backoff=Backoff(0.05, 2.0, 0.2, 0.0))
        feed = DeltaFeed(cfg(emu), feed_config=fc)
        contracts = await feed.load_products()
        eth = [c for c in contracts.values() if c.root == "ETH"][:3]
        assert {c.multiplier for c in eth} == {0.01}
        async with feed:
            await feed.subscribe(eth)
            first = await _collect(feed, 3, (Quote, UnderlyingTick))
            assert any(isinstance(e, UnderlyingTick) and e.symbol == "ETH" for e in first) or \
                len(first) == 3  # fmt: skip
            quotes = await _collect(feed, 3)
            assert {q.contract for q in quotes} <= set(eth)
            assert all(q.contract.multiplier == 0.01 for q in quotes)
            assert set(feed.greeks) <= set(eth) and feed.greeks
            assert -1 <= next(iter(feed.greeks.values())).delta <= 1
            emu.drop()
            await _collect(feed, 1, (UnderlyingTick, Quote))
            t0 = time.monotonic()
            while feed.stats.reconnects < 1 and time.monotonic() - t0 < 10:
                await asyncio.sleep(0.05)
            assert feed.stats.reconnects >= 1
            assert await _collect(feed, 2)  # resubscribed on the new connection
            emu.go_silent(1.5)
            states = []
            async with asyncio.timeout(15):
                async for ev in feed:
                    if hasattr(ev, "state"):
                        states.append(ev.state)
                    if FeedState.STALE in states and FeedState.LIVE in states[states.index(
                            FeedState.STALE):]:  # fmt: skip
                        break
            assert feed.stats.stale >= 1


async def test_deprecated_channel_is_refused_with_its_replacement():
    async with DeltaEmulator(api_key=KEY, api_secret=SECRET, tick_s=0.05) as emu:
        feed = DeltaFeed(cfg(emu), channels=("v2/ticker",))
        contracts = await feed.load_products()
        async with feed:
            await feed.subscribe(list(contracts.values())[:1])
            async with asyncio.timeout(10):
                while not feed.errors:
                    await asyncio.sleep(0.05)
        assert feed.errors == ["v2/ticker is deprecated: use ticker"]
        assert feed.stats.rejected


async def test_builder_runs_a_desk_on_the_delta_feed(monkeypatch):
    from kit.app.build import FeedSpec, RunSpec, build

    async with DeltaEmulator(api_key=KEY, api_secret=SECRET, tick_s=0.05) as emu:
        monkeypatch.setenv("DELTA_BASE_URL", emu.base_url)
        run = await build(RunSpec(feed=FeedSpec.parse("delta"), env_sinks=False))
        async with run:
            chain = await run.subscribe_expiry("BTC", 1)
            assert chain and {c.multiplier for c in chain} == {0.001}
            m = run.desk.market
            assert m.spot_of("BTC") > 0
            rows = m.rows(chain)
            assert (m.ask[rows] > 0).all()
            assert abs(run.clock.now_ns() - emu.clock.now_ns()) < 5e9
    with pytest.raises(ValueError, match="--feed 'delta:x'"):
        FeedSpec.parse("delta:x")


async def test_socket_auth_codes_channels_heartbeat_and_idle_close():
    import json

    from websockets.asyncio.client import connect

    from kit.adapters.delta.signing import ws_auth_message

    emu = DeltaEmulator(api_key=KEY, api_secret=SECRET, tick_s=0.05, heartbeat_s=0.1,
                        idle_close_s=0.5)  # fmt: skip
    async with emu:
        url = f"ws://127.0.0.1:{emu.port}/"

        async def next_of(ws, kind: str) -> dict:
            async with asyncio.timeout(10):
                while True:
                    doc = json.loads(await ws.recv())
                    if doc.get("type") == kind:
                        return doc

        async with connect(url) as ws:
            now = str(int(time.time()))
            for msg, code in [
                (ws_auth_message("nobody", SECRET, now), "InvalidApiKey"),
                (ws_auth_message(KEY, SECRET, str(int(time.time()) - 30)), "SignatureExpired"),
                (ws_auth_message(KEY, "wrong", now), "Signature Mismatch"),
            ]:
                await ws.send(json.dumps(msg))
                refused = {"type": "key-auth", "success": False, "status_code": 401}
                assert await next_of(ws, "key-auth") == refused | {"message": code}
            await ws.send(json.dumps({"type": "subscribe",
                                      "payload": {"channels": [{"name": "orders"}]}}))  # fmt: skip
            assert "key-auth first" in (await next_of(ws, "error"))["message"]
            await ws.send(json.dumps(ws_auth_message(KEY, SECRET, str(int(time.time())))))
            assert (await next_of(ws, "key-auth"))["success"] is True
            sym = emu.exchange.product(emu.exchange.alive()[0])["symbol"]
            await ws.send(json.dumps({"type": "subscribe", "payload": {"channels": [
                {"name": "orders"}, {"name": "mark_price", "symbols": [f"MARK:{sym}"]},
                {"name": "ob_l1", "symbols": [sym]}]}}))  # fmt: skip
            snap = await next_of(ws, "orders")
            assert snap["action"] == "snapshot" and snap["result"] == []
            mark = await next_of(ws, "mark_price")
            assert mark["symbol"] == f"MARK:{sym}" and float(mark["price"]) > 0 and "delta" in mark
            l1 = await next_of(ws, "ob_l1")
            assert l1["symbol"] == sym and float(l1["best_ask"]) > 0
            await ws.send(json.dumps({"type": "enable_heartbeat"}))
            assert await next_of(ws, "heartbeat") == {"type": "heartbeat"}
        async with connect(url) as idle:  # no subscription: closed after idle_close_s
            async with asyncio.timeout(10):
                async for _ in idle:
                    pass
            assert idle.close_reason == "idle: no subscription"

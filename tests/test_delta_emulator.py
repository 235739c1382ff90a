"""The Delta Exchange emulator against the official ``delta-rest-client`` and Delta's rules.

The interface others rely on is exercised exactly as the issue states it: ``kit emulate delta``
in a subprocess, the official client lists option products, reads a ticker with Greeks, places a
limit order, and gets HTTP 401 with a wrong secret. The ticker's Greeks are checked against
QuantLib's Black calculator (an independent implementation).
"""

from __future__ import annotations

import asyncio
import math
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest
import QuantLib as ql
import requests
from delta_rest_client import DeltaRestClient

from kit.adapters.delta.emulator import DeltaEmulator
from kit.adapters.delta.parsing import DeltaError, settlement_ns
from kit.adapters.delta.signing import auth_headers, body_string

KEY, SECRET = "test-key", "test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator_process():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit", "emulate", "delta", "--port", str(port), "--api-key", KEY,
         "--api-secret", SECRET],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    line = proc.stdout.readline()  # the banner: printed once the port is listening
    assert line.startswith("Delta Exchange emulator"), line + proc.stderr.read()
    yield url
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    assert SECRET not in out  # the secret is never printed


def test_official_client_lists_quotes_trades_and_is_refused_with_a_wrong_secret(emulator_process):
    client = DeltaRestClient(base_url=emulator_process, api_key=KEY, api_secret=SECRET)
    products = client.get_products({"contract_types": "call_options,put_options"})
    assert products and {p["contract_type"] for p in products} == {"call_options", "put_options"}
    sizes = {p["underlying_asset"]["symbol"]: p["contract_value"] for p in products}
    assert sizes == {"BTC": "0.001", "ETH": "0.01"}
    # every expiry settles at 17:30 IST = 12:00 UTC
    assert {datetime.fromtimestamp(settlement_ns(p) / 1e9, UTC).hour for p in products} == {12}
    btc_calls = [p for p in products if p["contract_type"] == "call_options"
                 and p["underlying_asset"]["symbol"] == "BTC"]  # fmt: skip
    spot = float(client.get_ticker(btc_calls[0]["symbol"])["spot_price"])
    # the latest expiry's nearest-the-money call: its delta is strictly inside (0, 1) at any hour
    # (a deep in-the-money daily near its 12:00 UTC settlement is legitimately 1.0)
    last = max(settlement_ns(p) for p in btc_calls)
    call = min((p for p in btc_calls if settlement_ns(p) == last),
               key=lambda p: abs(float(p["strike_price"]) - spot))  # fmt: skip
    ticker = client.get_ticker(call["symbol"])
    assert 0 < float(ticker["greeks"]["delta"]) < 1 and float(ticker["quotes"]["mark_iv"]) > 0
    ask = float(ticker["quotes"]["best_ask"])
    order = client.place_order(call["id"], 1, "sell", limit_price=str(ask + 1000))
    assert order["state"] == "open" and order["unfilled_size"] == 1
    assert [o["id"] for o in client.get_live_orders()] == [order["id"]]
    wrong = DeltaRestClient(base_url=emulator_process, api_key=KEY, api_secret="not-it")
    with pytest.raises(requests.HTTPError) as err:
        wrong.place_order(call["id"], 1, "sell", limit_price=str(ask + 1000))
    assert err.value.response.status_code == 401
    assert "Signature Mismatch" in err.value.response.text
    assert [o["id"] for o in client.get_live_orders()] == [order["id"]]  # nothing placed
    client.cancel_order(call["id"], order["id"])
    assert client.get_live_orders() == []


def test_ticker_greeks_match_quantlib():
    async def run():
        async with DeltaEmulator(api_key=KEY, api_secret=SECRET) as emu:
            ex = emu.exchange
            pids = [p for p in ex.alive() if ex.products[p].root == "ETH"][:40]
            return ex.tickers(pids), [ex.product(p) for p in pids]

    tickers, products = asyncio.run(run())
    checked = 0
    for t, p in zip(tickers, products, strict=True):
        spot, iv = float(t["spot_price"]), float(t["quotes"]["mark_iv"])
        T = (settlement_ns(p) - t["timestamp"] * 1000) / 1e9 / (365 * 86400)
        kind = ql.Option.Call if p["contract_type"] == "call_options" else ql.Option.Put
        payoff = ql.PlainVanillaPayoff(kind, float(p["strike_price"]))
        calc = ql.BlackCalculator(payoff, spot, iv * math.sqrt(T), 1.0)
        assert float(t["mark_price"]) == pytest.approx(calc.value(), rel=1e-3, abs=1e-3)
        assert float(t["greeks"]["delta"]) == pytest.approx(calc.delta(spot), abs=2e-3)
        checked += 1
    assert checked == 40


async def _signed(client: httpx.AsyncClient, method: str, path: str, body=None, *, ts=None,
                  secret=SECRET, query: str = ""):  # fmt: skip
    text = body_string(body)
    stamp = str(int(ts if ts is not None else time.time()))
    headers = auth_headers(KEY, secret, method, stamp, path, query, text)
    return await client.request(method, path + query, content=text or None, headers=headers)


async def test_window_user_agent_rate_limit_and_account_rules():
    async with (
        DeltaEmulator(api_key=KEY, api_secret=SECRET) as emu,
        httpx.AsyncClient(base_url=emu.base_url) as c,
    ):
        if True:
            # a request stamped 10 s ago is expired, and says the server's time
            r = await _signed(c, "GET", "/v2/orders", ts=time.time() - 10)
            assert r.status_code == 401 and r.json()["error"]["code"] == "SignatureExpired"
            assert abs(r.json()["error"]["context"]["server_time"] - time.time()) < 5
            emu.faults.skew_s = 8.0  # the server's clock runs ahead: a fresh stamp is too old
            r = await _signed(c, "GET", "/v2/orders")
            assert r.json()["error"]["code"] == "SignatureExpired"
            emu.faults.skew_s = 0.0
            assert (await _signed(c, "GET", "/v2/orders")).json() == {
                "success": True, "result": [], "meta": {"after": None, "before": None,
                                                        "limit": 1, "total_count": 0}}  # fmt: skip
            r = await c.get("/v2/products", headers={"User-Agent": ""})
            assert r.status_code == 403 and r.json()["error"]["code"] == "MissingUserAgent"
            emu.faults.throttle, emu.faults.throttle_reset_ms = 1, 750
            r = await c.get("/v2/products", headers={"User-Agent": "t"})
            assert r.status_code == 429 and r.headers["X-RATE-LIMIT-RESET"] == "750"
            emu.faults.refuse_ip = True
            r = await _signed(c, "GET", "/v2/positions/margined")
            assert r.json()["error"]["code"] == "ip_not_whitelisted_for_api_key"
            emu.faults.refuse_ip = False
            # pagination: three pages of products through the after cursor
            seen, after = [], None
            while True:
                q = {"page_size": 200} | ({"after": after} if after else {})
                doc = (await c.get("/v2/products", params=q, headers={"User-Agent": "t"})).json()
                seen += [p["id"] for p in doc["result"]]
                after = doc["meta"]["after"]
                if after is None:
                    break
            assert len(seen) == len(set(seen)) == len(emu.exchange.alive())
            pid = emu.exchange.alive()[0]
            base = {"product_id": pid, "size": 1, "side": "sell", "order_type": "limit_order",
                    "limit_price": "100000"}  # fmt: skip
            r = await _signed(c, "POST", "/v2/orders", base | {"client_order_id": "x" * 33})
            assert r.json()["error"]["code"] == "bad_schema"
            r = await _signed(c, "POST", "/v2/orders", base | {"reduce_only": "true"})
            assert r.json()["error"]["code"] == "reduce_only_violation"
            r = await _signed(c, "POST", "/v2/orders", base | {"size": 100_000})
            assert r.status_code == 400 and r.json()["error"]["code"] == "insufficient_margin"
            emu.exchange.reject_margin = True
            r = await _signed(c, "POST", "/v2/orders", base)
            assert r.json()["error"]["code"] == "insufficient_margin"
            emu.exchange.reject_margin = False
            r = await _signed(c, "POST", "/v2/orders", base | {"client_order_id": "abc"})
            assert r.json()["result"]["client_order_id"] == "abc"
            r = await _signed(c, "POST", "/v2/orders", base | {"client_order_id": "abc"})
            assert r.json()["error"]["code"] == "duplicate_client_order_id"


async def test_an_order_the_book_has_no_quote_for_is_insufficient_liquidity(monkeypatch):
    """The paper venue under the emulator refuses a buy with no ask ("no ask to buy from"):
    Delta's answer is ``insufficient_liquidity``, not a schema error."""
    from kit.core.model import Quote

    async with DeltaEmulator(api_key=KEY, api_secret=SECRET) as emu:
        ex = emu.exchange
        pid = ex.alive()[0]
        empty = lambda c: ex.book.on_quote(Quote(c, 5.0, 0.0, 1.0, 0.0, ex.clock.now_ns()))  # noqa: E731
        monkeypatch.setattr(ex, "_quote", empty)
        body = {"product_id": pid, "size": 1, "side": "buy", "order_type": "limit_order",
                "limit_price": "10"}  # fmt: skip
        with pytest.raises(DeltaError) as err:
            await ex.place(body)
        assert err.value.code == "insufficient_liquidity" and "no ask" in str(err.value.context)

"""The tastytrade emulator served to the UNMODIFIED tastytrade SDK over real loopback sockets:
OAuth, the nested option chain, DXLinkStreamer Greeks/Quote/Summary, accounts, balances,
positions and orders (dry run and placement, single and multi-leg), and its auth faults."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from decimal import Decimal

import httpx
import pytest
from service_helpers import REPO, free_port
from tastytrade import Account, DXLinkStreamer, Session
from tastytrade.dxfeed import Greeks, Quote, Summary
from tastytrade.instruments import NestedOptionChain
from tastytrade.order import InstrumentType, Leg, LimitOrder, OrderAction
from tastytrade.utils import TastytradeError
from websockets.asyncio.client import connect

from kit.adapters.tastytrade import dxlink
from kit.adapters.tastytrade.emulator import TastytradeEmulator


@pytest.fixture
async def emu(monkeypatch):
    async with TastytradeEmulator() as e:
        monkeypatch.setattr("tastytrade.session.API_URL", e.url)  # the interface
        yield e


async def _chain(session: Session, root: str = "SPXW"):
    chains = await NestedOptionChain.get(session, "SPX")
    assert {c.root_symbol for c in chains} == {"SPX", "SPXW"}
    chain = next(c for c in chains if c.root_symbol == root)
    return chain.expirations[0].strikes


async def test_unmodified_streamer_receives_greeks_with_a_delta(emu):
    async with Session("any-secret", "any-refresh") as s:
        strikes = await _chain(s)
        mid = strikes[len(strikes) // 2]
        call, put = mid.call_streamer_symbol, mid.put_streamer_symbol
        async with DXLinkStreamer(s) as st:
            await st.subscribe(Greeks, [call, put])
            await st.subscribe(Quote, [call, "SPX"])
            await st.subscribe(Summary, [call])
            got = {}
            while len(got) < 2:
                g = await asyncio.wait_for(st.get_event(Greeks), 10)
                got[g.event_symbol] = g
            quote = await asyncio.wait_for(st.get_event(Quote), 10)
            summary = await asyncio.wait_for(st.get_event(Summary), 10)
    assert Decimal("0.05") < got[call].delta < Decimal("0.95")
    assert Decimal("-0.95") < got[put].delta < Decimal("-0.05")
    assert got[call].gamma > 0 and got[call].vega > 0 and got[call].volatility > 0
    assert quote.bid_price <= quote.ask_price
    assert summary.open_interest > 0
    # the SDK asked for its own field list; the emulator laid FEED_DATA out in that order
    setups = [json.loads(m) for m in emu.messages if '"FEED_SETUP"' in m]
    assert {"Greeks": list(dxlink.SDK_FIELDS["Greeks"])} in [m["acceptEventFields"] for m in setups]


async def test_compact_frames_follow_the_clients_field_order(emu):
    async with Session("x", "y") as s:
        strikes = await _chain(s)
        sym = strikes[len(strikes) // 2].call_streamer_symbol
        data = await s._get("/api-quote-tokens")
        url, token = data["dxlink-url"], data["token"]
    fields = ["delta", "eventSymbol", "volatility"]  # an unusual order on purpose
    async with connect(url) as ws:
        for m in (dxlink.setup(), dxlink.auth(token), dxlink.channel_request("Greeks"),
                  dxlink.feed_setup("Greeks", fields)):  # fmt: skip
            await ws.send(json.dumps(m))
        await ws.send(dxlink.subscriptions("Greeks", [sym])[0])
        async with asyncio.timeout(10):
            while True:
                doc = json.loads(await ws.recv())
                if doc["type"] == "FEED_CONFIG":
                    assert doc["eventFields"] == {"Greeks": fields}
                if doc["type"] == "FEED_DATA":
                    break
    kind, values = doc["data"]
    assert kind == "Greeks" and len(values) == 3 and values[1] == sym
    assert 0 < values[0] < 1 and 0 < values[2] < 2


async def test_orders_dry_run_then_placed_and_filled(emu):
    async with Session("any", "any") as s:
        strikes = await _chain(s)
        n = len(strikes) // 2
        put, call = strikes[n - 4].put, strikes[n + 4].call
        acct = (await Account.get(s))[0]
        opt, sto = InstrumentType.EQUITY_OPTION, OrderAction.SELL_TO_OPEN
        legs = [Leg(instrument_type=opt, symbol=sym, action=sto, quantity=1) for sym in (put, call)]
        strangle = LimitOrder(legs=legs, price=Decimal("0.05"))  # a credit (positive)
        dry = await acct.place_order(s, strangle, dry_run=True)
        assert dry.order.status.value == "Received"
        assert dry.buying_power_effect.change_in_buying_power < 0  # margin it would take
        assert await acct.get_positions(s) == []  # a dry run places nothing
        placed = await acct.place_order(s, strangle, dry_run=False)
        async with asyncio.timeout(10):
            while (o := await acct.get_order(s, placed.order.id)).status.value != "Filled":
                await asyncio.sleep(0.05)
        assert all(leg.fills for leg in o.legs)
        single = LimitOrder(
            legs=[
                Leg(
                    instrument_type=InstrumentType.EQUITY_OPTION,
                    symbol=put,
                    action=OrderAction.BUY_TO_CLOSE,
                    quantity=1,
                )
            ],
            price=Decimal("-500"),
        )  # fmt: skip  (a debit far through the ask)
        closed = await acct.place_order(s, single, dry_run=False)
        async with asyncio.timeout(10):
            while (o := await acct.get_order(s, closed.order.id)).status.value != "Filled":
                await asyncio.sleep(0.05)
        held = {p.symbol: (p.quantity, p.quantity_direction) for p in await acct.get_positions(s)}
        assert held == {call: (1, "Short")}
        bal = await acct.get_balances(s)
        assert bal.net_liquidating_value > 0


async def test_bad_order_and_unknown_symbol_are_one_line_errors(emu):
    async with Session("any", "any") as s:
        acct = (await Account.get(s))[0]
        bogus = Leg(instrument_type=InstrumentType.EQUITY_OPTION, symbol="SPXW  200101C01000000",
                    action=OrderAction.BUY_TO_OPEN, quantity=1)  # fmt: skip
        with pytest.raises(TastytradeError, match="not listed"):
            await acct.place_order(s, LimitOrder(legs=[bogus], price=Decimal("-1")), dry_run=True)


async def test_auth_faults_refused_grant_and_expired_token(emu):
    emu.bad_auth = True
    async with Session("any", "any") as s:
        with pytest.raises(TastytradeError, match="invalid_grant"):
            await s.refresh()
    emu.bad_auth = False
    async with Session("any", "any") as s:
        await Account.get(s)
        emu.expire_auth()
        with pytest.raises(TastytradeError, match="token_invalid"):
            await Account.get(s)  # the SDK trusts its clock: the server says otherwise
        await s.refresh(force=True)
        assert (await Account.get(s))[0].account_number == emu.account


def test_kit_emulate_tastytrade_serves_the_unmodified_sdk(tmp_path, monkeypatch) -> None:
    """The issue's interface: ``kit emulate tastytrade --port P`` on 127.0.0.1:P, the SDK's
    ``API_URL`` pointed at it, a DXLinkStreamer gets Greeks with a delta."""
    port = free_port()
    log = tmp_path / "emulator.log"
    with log.open("w") as out:
        cmd = [sys.executable, "-m", "kit", "emulate", "tastytrade", "--port", str(port)]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "tastytrade emulator:" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        monkeypatch.setattr("tastytrade.session.API_URL", f"http://127.0.0.1:{port}")

        async def greeks() -> Decimal:
            async with Session("any", "any") as s:
                strikes = await _chain(s)
                sym = strikes[len(strikes) // 2].call_streamer_symbol
                async with DXLinkStreamer(s) as st:
                    await st.subscribe(Greeks, [sym])
                    return (await asyncio.wait_for(st.get_event(Greeks), 10)).delta

        assert 0 < asyncio.run(greeks()) < 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def test_fault_switches_over_http(emu):
    async with httpx.AsyncClient(base_url=emu.url) as http:
        r = await http.post("/faults", json={"bad_auth": True, "nan_rows": 3, "inject": ["x"]})
        assert r.status_code == 200
        assert (emu.bad_auth, emu.nan_rows, emu.injected) == (True, 3, ["x"])
        r = await http.post("/oauth/token", json={"grant_type": "refresh_token"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_grant"
        assert (await http.post("/faults", content=b"[1]")).status_code == 400
        assert (await http.get("/customers/me/accounts")).status_code == 401  # no token

"""The TWS API emulator against the unmodified ``ib_async`` client over real sockets.

The interface others rely on is run exactly as the issue states it: ``kit emulate tws --port P``
in its own process and a script using only ``ib_async`` (connect, qualify the SPX index and an
SPXW option, bid/ask and model Greeks, a limit order that fills with a commission, the
position). The fault switches and combos run in-process against :class:`TwsEmulator`.
"""

from __future__ import annotations

import asyncio
import math
import socket
import subprocess
import sys

import pytest
from ib_async import IB, ComboLeg, Contract, Index, LimitOrder, Option

from kit.adapters.ibkr.emulator import TwsEmulator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def atm_option(ib: IB, right: str = "C", offset: float = 0.0) -> Option:
    """The nearest SPXW expiry's option nearest spot (+ offset), qualified."""
    [spx] = await ib.qualifyContractsAsync(Index("SPX", "CBOE"))
    params = await ib.reqSecDefOptParamsAsync("SPX", "", "IND", spx.conId)
    chain = next(p for p in params if p.tradingClass == "SPXW" and p.exchange == "SMART")
    [snap] = await ib.reqTickersAsync(spx)
    spot = snap.last
    assert spot > 1000
    strike = min(chain.strikes, key=lambda k: abs(k - spot - offset))
    opt = Option("SPX", chain.expirations[0], strike, right, "SMART", tradingClass="SPXW")
    [q] = await ib.qualifyContractsAsync(opt)
    assert q is not None and q.conId > 0
    return q


def test_unmodified_ib_async_script_against_kit_emulate_tws() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "kit", "emulate", "tws", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("TWS API emulator on 127.0.0.1:"), line + proc.stderr.read()
        asyncio.run(_script(port))
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


async def _script(port: int) -> None:
    ib = IB()
    await ib.connectAsync("127.0.0.1", port, clientId=1, timeout=10)
    try:
        assert ib.managedAccounts() == ["DU1234567"]
        [spx] = await ib.qualifyContractsAsync(Index("SPX", "CBOE"))
        assert (spx.conId, spx.secType) == (416904, "IND")
        opt = await atm_option(ib)
        assert (opt.tradingClass, opt.multiplier, opt.right) == ("SPXW", "100", "C")
        assert opt.localSymbol.startswith("SPXW  ")
        ticker = ib.reqMktData(opt, "101")
        await wait_for(lambda: ticker.modelGreeks is not None and ticker.bid > 0)
        g = ticker.modelGreeks
        assert 0 < ticker.bid < ticker.ask and 0.2 < g.delta < 0.8 and g.impliedVol > 0
        assert g.gamma > 0 and g.theta < 0 and g.undPrice > 1000
        assert ticker.callOpenInterest > 0
        trade = ib.placeOrder(opt, LimitOrder("BUY", 2, round(ticker.ask * 1.2, 1)))
        await wait_for(lambda: trade.isDone() and len(trade.fills) >= 1
                       and all(f.commissionReport.commission > 0 for f in trade.fills))  # fmt: skip
        assert trade.orderStatus.status == "Filled" and trade.orderStatus.filled == 2
        assert sum(f.execution.shares for f in trade.fills) == 2
        assert all(f.execution.price <= ticker.ask * 1.2 for f in trade.fills)
        await wait_for(lambda: any(p.contract.conId == opt.conId for p in ib.positions()))
        [pos] = [p for p in ib.positions() if p.contract.conId == opt.conId]
        assert pos.position == 2 and pos.avgCost > 0
    finally:
        ib.disconnect()


@pytest.fixture
async def emu():
    async with TwsEmulator(market_data_lines=3) as e:
        yield e


async def connected(emu: TwsEmulator, client_id: int = 1) -> IB:
    ib = IB()
    await ib.connectAsync("127.0.0.1", emu.port, clientId=client_id, timeout=10)
    return ib


async def test_combo_strangle_sold_for_a_credit_and_bought_back(emu: TwsEmulator) -> None:
    """A BAG SELL of (+1 put, +1 call) at a credit fills both legs short; the BUY back at a
    marketable debit closes them: IBKR's combo convention end to end."""
    ib = await connected(emu)
    try:
        put = await atm_option(ib, "P", -50)
        call = await atm_option(ib, "C", 50)
        bag = Contract(symbol="SPX", secType="BAG", currency="USD", exchange="SMART",
                       comboLegs=[ComboLeg(conId=put.conId, ratio=1, action="BUY",
                                           exchange="SMART"),
                                  ComboLeg(conId=call.conId, ratio=1, action="BUY",
                                           exchange="SMART")])  # fmt: skip
        sell = ib.placeOrder(bag, LimitOrder("SELL", 1, 0.05, orderRef="desk-open-1"))
        await wait_for(lambda: sell.orderStatus.status == "Filled" and len(sell.fills) == 2)
        assert {f.execution.side for f in sell.fills} == {"SLD"}
        assert sell.orderStatus.avgFillPrice > 0.05
        assert {f.execution.orderRef for f in sell.fills} == {"desk-open-1"}
        held = await ib.reqPositionsAsync()
        assert {p.contract.conId: p.position for p in held} == {put.conId: -1, call.conId: -1}
        close = ib.placeOrder(bag, LimitOrder("BUY", 1, 10_000.0))
        await wait_for(lambda: close.orderStatus.status == "Filled" and len(close.fills) == 2)
        held = await ib.reqPositionsAsync()
        assert all(p.position == 0 for p in held) or held == []
    finally:
        ib.disconnect()


async def test_faults_client_id_in_use_rejects_delayed_lines_and_what_if(emu: TwsEmulator) -> None:
    ib = await connected(emu)
    other = IB()
    errors: list[int] = []
    other.errorEvent += lambda req, code, text, c: errors.append(code)
    try:
        with pytest.raises((ConnectionError, asyncio.TimeoutError)):
            await other.connectAsync("127.0.0.1", emu.port, clientId=1, timeout=1)
        assert 326 in errors
        opt = await atm_option(ib)
        emu.faults.reject_orders = "margin deficiency (emulated)"
        rejected = ib.placeOrder(opt, LimitOrder("BUY", 1, 1.0))
        await wait_for(lambda: rejected.isDone())
        assert rejected.orderStatus.status == "Cancelled"
        assert "margin deficiency" in rejected.log[-1].message
        emu.faults.reject_orders = ""
        state = await ib.whatIfOrderAsync(opt, LimitOrder("SELL", 1, 1.0))
        assert float(state.initMarginChange) > 1000 and state.commission > 0
        assert emu.orders_received == 0  # neither the rejected order nor the what-if rests
        emu.faults.delayed_only = True
        codes: list[int] = []
        ib.errorEvent += lambda req, code, text, c: codes.append(code)
        t = ib.reqMktData(opt)
        await wait_for(lambda: t.bid > 0 and t.modelGreeks is not None)
        assert 10167 in codes and t.marketDataType == 3
        for k in (10, 20, 30):
            ib.reqMktData(await atm_option(ib, "P", k))
        await wait_for(lambda: 101 in codes)  # the 4th line of 3
    finally:
        ib.disconnect()
        other.disconnect()


async def test_connectivity_lost_and_restored_and_drop(emu: TwsEmulator) -> None:
    ib = await connected(emu)
    codes: list[int] = []
    ib.errorEvent += lambda req, code, text, c: codes.append(code)
    try:
        opt = await atm_option(ib)
        t = ib.reqMktData(opt)
        await wait_for(lambda: t.bid > 0)
        emu.connectivity(False)
        await wait_for(lambda: 1100 in codes)
        emu.connectivity(True)
        await wait_for(lambda: 1102 in codes)
        emu.drop()
        await wait_for(lambda: not ib.isConnected())
        assert not math.isnan(t.bid)
    finally:
        ib.disconnect()

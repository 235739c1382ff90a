from datetime import date

import pytest
from hypothesis import given
from strategies import crypto_contracts, us_contracts

from kit.core import symbology as sym
from kit.core.model import Contract, Right


@given(us_contracts())
def test_occ_round_trip(c):
    padded = sym.to_occ(c)
    assert len(padded) == 21 and sym.from_occ(padded) == c
    assert sym.from_occ(sym.to_occ(c, padded=False)) == c


@given(us_contracts())
def test_thetadata_round_trip(c):
    fields = sym.to_thetadata(c)
    assert isinstance(fields["strike"], int) and isinstance(fields["expiration"], int)
    assert sym.from_thetadata(**fields) == c


@given(us_contracts())
def test_dxlink_round_trip(c):
    s = sym.to_dxlink(c)
    assert s.startswith(".") and not s.endswith(".0")
    assert sym.from_dxlink(s) == c


@given(us_contracts())
def test_ibkr_round_trip(c):
    fields = sym.to_ibkr(c)
    assert fields["tradingClass"] == c.root and fields["symbol"] == c.underlying
    assert sym.from_ibkr(fields) == c


@given(crypto_contracts())
def test_delta_round_trip(c):
    assert sym.from_delta(sym.to_delta(c)) == c


def test_known_symbols():
    spxw = Contract("SPXW", date(2024, 1, 19), 4700, Right.CALL)
    assert sym.to_occ(spxw) == "SPXW  240119C04700000"
    assert sym.to_dxlink(spxw) == ".SPXW240119C4700"
    assert sym.to_thetadata(spxw) == {
        "root": "SPXW",
        "expiration": 20240119,
        "strike": 4_700_000,
        "right": "C",
    }
    spy = sym.from_dxlink(".SPY240119P470.5")
    assert (spy.root, spy.strike, spy.right) == ("SPY", 470.5, Right.PUT)
    assert sym.to_occ(spy) == "SPY   240119P00470500"
    btc = sym.from_delta("C-BTC-90000-310125")
    assert (btc.root, btc.expiry, btc.strike, btc.multiplier) == (
        "BTC",
        date(2025, 1, 31),
        90000,
        0.001,
    )
    assert sym.from_thetadata("SPXW", "20240119", 4_700_000, "call") == spxw


def test_ibkr_accepts_an_ib_async_contract():
    import ib_async

    ib_contract = ib_async.Contract(**sym.to_ibkr(Contract("SPX", date(2024, 3, 15), 5000, "P")))
    assert ib_contract.secType == "OPT" and ib_contract.lastTradeDateOrContractMonth == "20240315"
    c = sym.from_ibkr(ib_contract)
    assert (c.root, c.am_settled, c.right) == ("SPX", True, Right.PUT)
    # what IB sends back for a qualified contract uses the same attribute names
    weekly = sym.from_ibkr(
        ib_async.Option("SPX", "20240119", 4700, "C", "SMART", tradingClass="SPXW")
    )
    assert weekly == Contract("SPXW", date(2024, 1, 19), 4700, "C")


@pytest.mark.parametrize(
    ("parse", "text", "match"),
    [
        (sym.from_occ, "SPXW 240119X04700000", "not an OCC"),
        (sym.from_occ, "SPXW  241319C04700000", "bad expiry"),
        (sym.from_occ, "SPXW  240119C00000000", "strike"),
        (sym.from_dxlink, "SPXW240119C4700", "not a DxLink"),
        (sym.from_dxlink, ".SPXW240119C47a0", "not a DxLink"),
        (sym.from_delta, "C-BTC-90000-310225", "bad expiry"),
        (sym.from_delta, "C-DOGE-1-310125", "unknown Delta Exchange underlying"),
        (sym.from_delta, "X-BTC-90000-310125", "not a Delta"),
    ],
)
def test_malformed_symbols_raise_clear_errors(parse, text, match):
    with pytest.raises(sym.SymbolError, match=match):
        parse(text)


def test_vendor_field_errors():
    with pytest.raises(sym.SymbolError, match="1/10 cent"):
        sym.from_thetadata("SPXW", 20240119, "4700.5", "C")
    with pytest.raises(sym.SymbolError, match="right"):
        sym.from_thetadata("SPXW", 20240119, 4_700_000, "Z")
    with pytest.raises(sym.SymbolError, match="secType"):
        sym.from_ibkr({"secType": "STK", "symbol": "SPY"})
    with pytest.raises(sym.SymbolError, match="crypto options only"):
        sym.to_delta(Contract("SPY", date(2024, 1, 19), 470, "C"))
    with pytest.raises(sym.SymbolError, match="Delta Exchange, not IBKR"):
        sym.to_ibkr(Contract("ETH", date(2024, 1, 19), 3000, "C"))

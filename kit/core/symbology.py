"""One place that converts a :class:`~kit.core.model.Contract` to and from every vendor's symbol.

Each vendor names the same option differently; adapters call these functions and nothing else, so
a symbology bug is fixed once. Forms:

- OCC / OSI: ``SPXW  240119C04700000`` (root padded to 6, YYMMDD, right, strike x 1000 in 8 digits;
  the unpadded ``SPXW240119C04700000`` is accepted too).
- ThetaData: root, expiration as the integer YYYYMMDD, strike in 1/10 cent (x 1000), right.
- DxLink (Tastytrade) streamer symbol: ``.SPXW240119C4700`` (strike without trailing zeros).
- IBKR: the ``Contract`` fields (symbol = underlying, tradingClass = root, YYYYMMDD, float strike).
- Delta Exchange: ``C-BTC-90000-310125`` (right, coin, strike, DDMMYY).

Parsers raise :class:`SymbolError` (a ``ModelError``) naming the input, never return a guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from kit.core.model import CRYPTO_CONTRACT_SIZE, Contract, ModelError


class SymbolError(ModelError):
    """A vendor symbol could not be parsed into a contract."""


_OCC = re.compile(r"^([A-Z0-9]{1,6}) *(\d{6})([CP])(\d{8})$")
_DXLINK = re.compile(r"^\.([A-Z0-9]{1,6}?)(\d{6})([CP])(\d+(?:\.\d{1,3})?)$")
_DELTA = re.compile(r"^([CP])-([A-Z0-9]+)-(\d+(?:\.\d{1,3})?)-(\d{6})$")


def _date(text: str, fmt: str, symbol: object) -> date:
    try:
        return datetime.strptime(text, fmt).date()
    except ValueError:
        raise SymbolError(f"bad expiry {text!r} in {symbol!r}") from None


def _contract(root: str, expiry: date, strike: float, right: str, symbol: object) -> Contract:
    try:
        return Contract(root=root, expiry=expiry, strike=strike, right=right)
    except ModelError as exc:
        raise SymbolError(f"{symbol!r}: {exc}") from None


def right_code(value: object) -> str:
    """'C'/'P' from the spellings vendors use ('C', 'call', 'PUT', ...); unknown values pass
    through so the contract's own validation names them."""
    text = str(value).upper()
    return {"CALL": "C", "PUT": "P"}.get(text, text)


def _plain_strike(contract: Contract) -> str:
    """Strike without trailing zeros: 4700, 470.5, 12.345."""
    whole, milli = divmod(contract.strike_milli, 1000)
    return f"{whole}" if milli == 0 else f"{whole}.{milli:03d}".rstrip("0")


# --- OCC ---


def to_occ(contract: Contract, *, padded: bool = True) -> str:
    root = contract.root.ljust(6) if padded else contract.root
    return f"{root}{contract.expiry:%y%m%d}{contract.right.value}{contract.strike_milli:08d}"


def from_occ(symbol: str) -> Contract:
    m = _OCC.match(symbol.strip()) if isinstance(symbol, str) else None
    if m is None:
        raise SymbolError(f"not an OCC option symbol: {symbol!r}")
    root, ymd, right, strike = m.groups()
    return _contract(root, _date(ymd, "%y%m%d", symbol), int(strike) / 1000, right, symbol)


# --- ThetaData ---


def to_thetadata(contract: Contract) -> dict[str, Any]:
    """ThetaData request fields: ``root``, ``expiration`` (int YYYYMMDD), ``strike`` (1/10 cent)."""
    return {
        "root": contract.root,
        "expiration": int(f"{contract.expiry:%Y%m%d}"),
        "strike": contract.strike_milli,
        "right": contract.right.value,
    }


def from_thetadata(root: str, expiration: int | str, strike: int | str, right: str) -> Contract:
    symbol = (root, expiration, strike, right)
    try:
        strike_milli = int(strike)
    except (TypeError, ValueError):
        raise SymbolError(f"ThetaData strike must be an integer in 1/10 cent: {symbol!r}") from None
    expiry = _date(str(expiration), "%Y%m%d", symbol)
    return _contract(str(root), expiry, strike_milli / 1000, right_code(right), symbol)


# --- DxLink ---


def to_dxlink(contract: Contract) -> str:
    return (
        f".{contract.root}{contract.expiry:%y%m%d}{contract.right.value}{_plain_strike(contract)}"
    )


def from_dxlink(symbol: str) -> Contract:
    m = _DXLINK.match(symbol) if isinstance(symbol, str) else None
    if m is None:
        raise SymbolError(f"not a DxLink option streamer symbol: {symbol!r}")
    root, ymd, right, strike = m.groups()
    return _contract(root, _date(ymd, "%y%m%d", symbol), float(strike), right, symbol)


# --- IBKR ---


def to_ibkr(contract: Contract) -> dict[str, Any]:
    """Keyword arguments for ``ib_async.Contract(**fields)`` (or a Client Portal secdef lookup)."""
    if contract.is_crypto:
        raise SymbolError(f"{contract.root} options trade on Delta Exchange, not IBKR")
    return {
        "secType": "OPT",
        "symbol": contract.underlying,
        "lastTradeDateOrContractMonth": f"{contract.expiry:%Y%m%d}",
        "strike": contract.strike,
        "right": contract.right.value,
        "multiplier": f"{contract.multiplier:g}",
        "exchange": "SMART",
        "currency": "USD",
        "tradingClass": contract.root,
    }


def from_ibkr(fields: Mapping[str, Any] | Any) -> Contract:
    """From a mapping or any object with IB's attribute names (an ``ib_async.Contract``)."""

    def get(name: str) -> Any:
        if isinstance(fields, Mapping):
            return fields.get(name)
        return getattr(fields, name, None)

    if get("secType") not in (None, "", "OPT", "FOP"):
        raise SymbolError(f"not an option contract (secType {get('secType')!r}): {fields!r}")
    root = get("tradingClass") or get("symbol")
    ymd = str(get("lastTradeDateOrContractMonth") or "")
    if not root or len(ymd) != 8:
        raise SymbolError(
            f"IBKR contract needs tradingClass/symbol and a YYYYMMDD date: {fields!r}"
        )
    strike = get("strike")
    if not isinstance(strike, int | float):
        raise SymbolError(f"IBKR strike must be a number: {fields!r}")
    return _contract(
        root, _date(ymd, "%Y%m%d", fields), float(strike), right_code(get("right")), fields
    )


# --- Delta Exchange ---


def to_delta(contract: Contract) -> str:
    if not contract.is_crypto:
        raise SymbolError(f"Delta Exchange lists crypto options only, not {contract.root}")
    return (
        f"{contract.right.value}-{contract.root}-{_plain_strike(contract)}-{contract.expiry:%d%m%y}"
    )


def from_delta(symbol: str) -> Contract:
    m = _DELTA.match(symbol) if isinstance(symbol, str) else None
    if m is None:
        raise SymbolError(f"not a Delta Exchange option symbol: {symbol!r}")
    right, coin, strike, dmy = m.groups()
    if coin not in CRYPTO_CONTRACT_SIZE:
        raise SymbolError(f"unknown Delta Exchange underlying {coin!r} in {symbol!r}")
    return _contract(coin, _date(dmy, "%d%m%y", symbol), float(strike), right, symbol)

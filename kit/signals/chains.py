"""Option chains for the signals: one polars table, whatever the source.

Every signal is a pure function of a :class:`Chain`: the underlying's spot, the time the chain
was taken and one row per contract (``CHAIN_SCHEMA``). Loaders here build it from the simulator
(:func:`sim_chain`), from quotes such as ThetaData snapshots (:func:`chain_from_quotes`,
:func:`thetadata_chain`) and from CBOE's delayed-quotes download (:func:`read_cboe`).

CBOE's ``quotedata.csv``: a blank line, ``<name>,Last: <spot>,Change: ...``, ``"Date: <when>",
...``, a header, then one row per (expiration, strike) with the call's columns left of ``Strike``
and the put's to the right. Monthly dates are listed twice per strike (NDX and NDXP, SPX and SPXW:
AM- and PM-settled classes), and those are different contracts, told apart by the root of the
option symbol. IV is a decimal; Delta and Gamma are rounded to 4 decimals.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from kit.core.clock import (
    MINUTES_PER_YEAR,
    NEW_YORK,
    TRADING_MINUTES_PER_YEAR,
    expiry_time,
    from_ns,
    trading_minutes_between,
)
from kit.core.model import ROOT_UNDERLYING, Contract, ModelError, Quote, Right
from kit.core.pricing import implied_vol
from kit.signals.config import TimeBasis

if TYPE_CHECKING:
    from kit.adapters.sim.market import MarketSim
    from kit.adapters.thetadata.rest import ThetaDataREST

CHAIN_SCHEMA: dict[str, pl.DataType] = {
    "root": pl.String(),  # option class: SPX (AM-settled monthly), SPXW, NDX, NDXP, SPY...
    "expiry": pl.Date(),
    "strike": pl.Float64(),
    "is_call": pl.Boolean(),
    "iv": pl.Float64(),  # implied vol, decimal (0.16 = 16%); null or <= 0: no usable IV
    "open_interest": pl.Float64(),  # contracts
    "multiplier": pl.Float64(),  # underlying units per contract (100 for US index options)
    "gamma_vendor": pl.Float64(),  # the source's own gamma, when it has one (CBOE: 4 decimals)
    "bid": pl.Float64(),
    "ask": pl.Float64(),
}


@dataclass(frozen=True, eq=False)
class Chain:
    """An option chain at one instant: ``frame`` has the columns of ``CHAIN_SCHEMA``."""

    underlying: str
    spot: float
    asof: datetime  # timezone-aware; when the quotes were taken
    frame: pl.DataFrame
    source: str = ""

    def __post_init__(self) -> None:
        if self.asof.tzinfo is None:
            raise ValueError("Chain.asof must be timezone-aware")
        if not (np.isfinite(self.spot) and self.spot > 0):
            raise ValueError(f"spot must be a positive number, got {self.spot!r}")

    def __len__(self) -> int:
        return self.frame.height


def make_frame(columns: Mapping[str, object]) -> pl.DataFrame:
    """A chain table from column arrays: the required ones (root, expiry, strike, is_call, iv,
    open_interest) must be present, optional ones default to null (multiplier to 100)."""
    missing = [c for c in ("root", "expiry", "strike", "is_call", "iv", "open_interest")
               if c not in columns]  # fmt: skip
    if missing:
        raise ValueError(f"chain table lacks column(s) {', '.join(missing)}")
    n = len(columns["strike"])
    data = {name: columns.get(name) for name in CHAIN_SCHEMA}
    if data["multiplier"] is None:
        data["multiplier"] = np.full(n, 100.0)
    return pl.DataFrame(
        {
            k: (pl.Series(k, [None] * n, dtype=t) if data[k] is None else pl.Series(k, data[k]))
            for k, t in CHAIN_SCHEMA.items()
        }
    ).cast(CHAIN_SCHEMA)


# --- time to expiry ---


def years_to_expiry(
    frame: pl.DataFrame,
    asof: datetime,
    basis: TimeBasis = "calendar",
    *,
    days_per_year: float = 262,
) -> np.ndarray:
    """Years from ``asof`` to each row's expiry (0 once past it).

    ``calendar``: minutes to the real settlement time (AM-settled SPX/NDX monthlies at the open,
    PM-settled classes at the close) / 525,600. ``trading``: session minutes / (252 x 390).
    ``business_days``: weekdays from the as-of date (inclusive) to the expiry date (exclusive) /
    ``days_per_year`` (262), ignoring the time of day and holidays: what the popular public GEX
    scripts do (``numpy.busday_count``), so same-day expiries get T = 0.
    """
    pairs = frame.select("root", "expiry").unique(maintain_order=True)
    years = []
    for root, day in pairs.iter_rows():
        if basis == "business_days":
            years.append(np.busday_count(asof.astimezone(NEW_YORK).date(), day) / days_per_year)
            continue
        try:
            settle = expiry_time(Contract(root, day, 1.0, Right.CALL))
        except ModelError as exc:
            raise ValueError(f"cannot settle root {root!r}: {exc}") from None
        if basis == "calendar":
            minutes = (settle - asof).total_seconds() / 60
            years.append(max(minutes, 0.0) / MINUTES_PER_YEAR)
        elif basis == "trading":
            years.append(trading_minutes_between(asof, settle) / TRADING_MINUTES_PER_YEAR)
        else:
            raise ValueError(f"time basis must be calendar, trading or business_days: {basis!r}")
    per_pair = pairs.with_columns(pl.Series("_years", years, dtype=pl.Float64))
    joined = frame.select("root", "expiry").join(per_pair, on=["root", "expiry"], how="left",
                                                 maintain_order="left")  # fmt: skip
    return np.maximum(joined["_years"].to_numpy(), 0.0)


# --- CBOE delayed quotes ---

_SYMBOL = re.compile(r"^([A-Z]{1,6})\d{6}[CP]\d+$")
_DATE_FORMATS = ("%B %d %Y, %I:%M %p", "%B %d, %Y at %I:%M %p", "%B %d %Y at %I:%M %p",
                 "%B %d, %Y, %I:%M %p")  # fmt: skip
_ZONES = {"EST": NEW_YORK, "EDT": NEW_YORK, "ET": NEW_YORK}
_SIDE_COLUMNS = {"IV": "iv", "Open Interest": "open_interest", "Gamma": "gamma_vendor",
                 "Bid": "bid", "Ask": "ask"}  # fmt: skip


def _text(source: str | os.PathLike[str] | bytes) -> tuple[str, str]:
    """The file's text and a name for messages."""
    if isinstance(source, bytes):
        raw, name = source, "upload"
    else:
        name = os.fspath(source)
        try:
            with open(name, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise ValueError(f"cannot read {name}: {exc.strerror or exc}") from None
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            return raw.decode(encoding), name
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def _asof(cell: str, name: str) -> datetime:
    text = cell.split("Date:", 1)[1].strip()
    stamp, _, zone = text.rpartition(" ")
    if zone not in _ZONES:
        raise ValueError(f"{name}: download time {text!r} has no US Eastern zone (EST/EDT)")
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(stamp, fmt).replace(tzinfo=_ZONES[zone]).astimezone(UTC)
        except ValueError:
            continue
    raise ValueError(f"{name}: cannot read the download time {text!r}")


def _numbers(frame: pl.DataFrame, column: str, what: str, name: str, first_line: int) -> pl.Series:
    """``column`` as floats; a non-empty cell that is not a number is an error naming its line."""
    raw = frame[column].str.strip_chars()
    values = raw.cast(pl.Float64, strict=False)
    bad = values.is_null() & raw.is_not_null() & (raw != "")
    if bad.any():
        i = int(bad.arg_true()[0])
        raise ValueError(f"{name}: line {first_line + i}: {what} {raw[i]!r} is not a number")
    return values


def read_cboe(source: str | os.PathLike[str] | bytes) -> Chain:
    """Read a CBOE delayed-quotes ``quotedata.csv`` (a path, or the file's bytes from an upload).

    Raises ValueError naming the file and line when it is not in that format. Rows of the same
    contract (root, expiry, strike, right) listed twice are counted once.
    """
    text, name = _text(source)
    lines = text.splitlines()
    head = next((i for i, line in enumerate(lines[:20]) if line.startswith("Expiration Date,")),
                None)  # fmt: skip
    if head is None:
        raise ValueError(f"{name}: not a CBOE quotedata file (no 'Expiration Date,' header line)")
    meta = [cell for row in csv.reader(lines[:head]) for cell in row]
    last = next((c for c in meta if c.strip().startswith("Last:")), None)
    when = next((c for c in meta if "Date:" in c), None)
    if last is None or when is None:
        raise ValueError(f"{name}: the header lacks the underlying's 'Last:' price or 'Date:'")
    try:
        spot = float(last.split("Last:", 1)[1])
    except ValueError:
        raise ValueError(f"{name}: bad underlying price {last.strip()!r}") from None
    asof = _asof(when, name)
    header = next(csv.reader([lines[head]]))
    if "Strike" not in header:
        raise ValueError(f"{name}: the header has no Strike column")
    k = header.index("Strike")
    sides = {True: range(1, k), False: range(k + 1, len(header))}
    body = "\n".join(lines[head + 1 :])
    if not body.strip():
        raise ValueError(f"{name}: no option rows")
    try:
        raw = pl.read_csv(io.StringIO(body), has_header=False, infer_schema=False,
                          new_columns=[f"c{i}" for i in range(len(header))],
                          truncate_ragged_lines=False)  # fmt: skip
    except (pl.exceptions.PolarsError, ValueError) as exc:
        raise ValueError(f"{name}: malformed rows: {str(exc).splitlines()[0]}") from None
    first = head + 2  # 1-based line number of the first data row
    expiry = raw["c0"].str.strip_chars().str.to_date("%a %b %d %Y", strict=False)
    if expiry.null_count():
        i = int(expiry.is_null().arg_true()[0])
        raise ValueError(f"{name}: line {first + i}: bad expiration date {raw['c0'][i]!r}")
    strike = _numbers(raw, f"c{k}", "strike", name, first)
    parts = []
    for is_call, cols in sides.items():
        named = {header[i]: f"c{i}" for i in cols}
        for required in ("IV", "Open Interest"):
            if required not in named:
                raise ValueError(f"{name}: no {required!r} column for the "
                                 f"{'calls' if is_call else 'puts'}")  # fmt: skip
        symbol = raw[f"c{cols[0]}"].str.strip_chars()
        root = symbol.str.extract(_SYMBOL.pattern, 1)
        if root.null_count():
            i = int(root.is_null().arg_true()[0])
            raise ValueError(f"{name}: line {first + i}: option symbol {symbol[i]!r} is not "
                             f"ROOTyymmdd[C|P]strike")  # fmt: skip
        values = {col: _numbers(raw, named[label], label, name, first)
                  for label, col in _SIDE_COLUMNS.items() if label in named}  # fmt: skip
        parts.append(make_frame({"root": root, "expiry": expiry, "strike": strike,
                                 "is_call": np.full(raw.height, is_call), **values}))  # fmt: skip
    frame = pl.concat(parts).unique(["root", "expiry", "strike", "is_call"], keep="first",
                                    maintain_order=True)  # fmt: skip
    frame = frame.with_columns(pl.col("open_interest").fill_null(0.0))
    roots = Counter(frame["root"].to_list())
    underlying = ROOT_UNDERLYING.get(roots.most_common(1)[0][0], roots.most_common(1)[0][0])
    return Chain(underlying, spot, asof, frame, source=f"cboe:{os.path.basename(name)}")


# --- simulator, quotes, ThetaData ---


def sim_chain(market: MarketSim, underlying: str) -> Chain:
    """Every live contract the simulator lists on ``underlying`` (SPX: the SPX and SPXW roots),
    at the market's current step, with its model IV and the listing's open interest."""
    contracts = [c for c in market.chain(alive=True) if c.underlying == underlying]
    if not contracts:
        raise ValueError(f"the simulator lists no options on {underlying!r}")
    bid, ask, _, _, _, iv, alive = market.quote_arrays(contracts)
    keep = np.flatnonzero(alive)
    contracts = [contracts[i] for i in keep]
    frame = make_frame({
        "root": [c.root for c in contracts], "expiry": [c.expiry for c in contracts],
        "strike": [c.strike for c in contracts], "is_call": [c.is_call for c in contracts],
        "iv": iv[keep], "open_interest": market.open_interest(contracts).astype(float),
        "multiplier": [c.multiplier for c in contracts], "bid": bid[keep], "ask": ask[keep],
    })  # fmt: skip
    return Chain(underlying, market.spot(underlying), from_ns(market.now_ns), frame, source="sim")


def chain_from_quotes(
    quotes: Sequence[Quote],
    spot: float,
    asof: datetime,
    *,
    open_interest: Mapping[Contract, float],
    r: float = 0.0,
    q: float = 0.0,
    underlying: str | None = None,
    source: str = "quotes",
) -> Chain:
    """A chain from option quotes (ThetaData snapshots, the desk's tape): IV is implied from each
    mid on a calendar-minute T to settlement with rate ``r`` and yield ``q``.

    Quotes carry no open interest, and the ThetaData emulator serves none: pass it per contract
    (the Terminal's open-interest snapshot, or the simulator's listing). A contract missing from
    ``open_interest`` counts 0 contracts, so it carries no exposure.
    """
    if not quotes:
        raise ValueError("no quotes to build a chain from")
    cs = [qt.contract for qt in quotes]
    bid = np.array([qt.bid for qt in quotes])
    ask = np.array([qt.ask for qt in quotes])
    frame = make_frame({
        "root": [c.root for c in cs], "expiry": [c.expiry for c in cs],
        "strike": [c.strike for c in cs], "is_call": [c.is_call for c in cs],
        "iv": np.full(len(cs), np.nan),
        "open_interest": [float(open_interest.get(c, 0.0)) for c in cs],
        "multiplier": [c.multiplier for c in cs], "bid": bid, "ask": ask,
    })  # fmt: skip
    T = years_to_expiry(frame, asof)
    K, is_call = frame["strike"].to_numpy(), frame["is_call"].to_numpy()
    with np.errstate(invalid="ignore"):
        iv = np.where(T > 0, implied_vol(0.5 * (bid + ask), spot, K, np.maximum(T, 1e-12), r, q,
                                         is_call), np.nan)  # fmt: skip
    frame = frame.with_columns(pl.Series("iv", iv, dtype=pl.Float64))
    name = underlying or cs[0].underlying
    return Chain(name, float(spot), asof, frame, source=source)


async def thetadata_chain(
    rest: ThetaDataREST,
    root: str,
    expirations: Sequence[date],
    *,
    open_interest: Mapping[Contract, float],
    r: float = 0.0,
    q: float = 0.0,
) -> Chain:
    """Snapshot quotes of ``root`` for each expiration and the index price from the ThetaData
    Terminal, as a chain (see :func:`chain_from_quotes` for IV and open interest)."""
    quotes: list[Quote] = []
    for day in expirations:
        quotes.extend(await rest.snapshot_quotes(root, day))
    underlying = ROOT_UNDERLYING.get(root, root)
    tick = await rest.index_price(underlying)
    if tick is None:
        raise ValueError(f"ThetaData has no index price for {underlying}")
    if not quotes:
        raise ValueError(f"ThetaData returned no quotes for {root} {list(expirations)}")
    asof = from_ns(max(tick.ts_ns, *(qt.ts_ns for qt in quotes)))
    return chain_from_quotes(quotes, tick.price, asof, open_interest=open_interest, r=r, q=q,
                             underlying=underlying, source=f"thetadata:{root}")  # fmt: skip

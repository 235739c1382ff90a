"""The emulator's v3 history endpoints at an interval, as the Terminal documents them:

- ``option/history/quote`` with ``interval`` (``1m``, ``5m``...): per contract, the last NBBO
  quote at each interval timestamp from ``start_time`` to ``end_time`` inclusive (default
  09:30:00-16:00:00 New York); ``expiration=*`` for every expiry, ``max_dte`` to cap it. Without
  an interval (or ``tick``) the emulator's tick history answers, as before.
- ``option/history/ohlc``: one expiration, bars ``[t, t + interval)`` of the prints, with
  volume, count and VWAP (bars without prints are zeros).
- ``option/history/open_interest``: the open interest reported at 06:30 each day.
- ``index/history/price``: the index (SPX, SPY, VIX, NDX) at each interval timestamp. The
  Terminal's own example answers 0.0 at 09:30:00 (no print yet at the open); so does this.

Multi-day requests take ``start_date``/``end_date`` (a month at most, as documented) or
``date``. Data exists only where the simulator has been: before its start or after its present
an instant has no row (a day with none is NO_DATA).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import numpy as np

from kit.adapters.sim.market import MarketSim
from kit.adapters.thetadata.parsing import format_timestamp, parse_date, parse_timestamp
from kit.core.clock import expiry_time, to_ns
from kit.core.model import Contract

Rows = list[dict[str, Any]]
Route = Callable[[dict[str, str]], Rows]
INTERVALS_MS = {"10ms": 10, "100ms": 100, "500ms": 500, "1s": 1000, "5s": 5000, "10s": 10_000,
                "15s": 15_000, "30s": 30_000, "1m": 60_000, "5m": 300_000, "10m": 600_000,
                "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000}  # fmt: skip


def history_routes(
    market: MarketSim,
    contracts: Callable[[dict[str, str]], list[Contract]],
    tick_history: Route,
) -> dict[str, Route]:
    """Handlers keyed by endpoint; ``contracts`` filters the listing by symbol, expiration,
    strike and right (the emulator's own filter), ``tick_history`` answers tick requests."""

    def quote(args: dict[str, str]) -> Rows:
        if args.get("interval", "tick") == "tick":
            return tick_history(args)
        return _quotes(market, contracts(args), args)

    return {
        "option/history/quote": quote,
        "option/history/ohlc": lambda a: _ohlc(market, contracts(a), a),
        "option/history/open_interest": lambda a: _open_interest(market, contracts(a), a),
        "index/history/price": lambda a: _index(market, a),
    }


def _days(args: dict[str, str]) -> list[date]:
    if "date" in args:
        return [parse_date(args["date"])]
    start, end = parse_date(args["start_date"]), parse_date(args["end_date"])
    if end < start:
        raise ValueError("end_date is before start_date")
    if (end - start).days > 31:
        raise ValueError("multi-day requests are limited to 1 month of data")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _instants(market: MarketSim, day: date, args: dict[str, str]) -> tuple[list[int], list[int]]:
    """(UTC ns, simulator step) of every interval timestamp of ``day`` the path covers."""
    try:
        step_ms = INTERVALS_MS[args.get("interval", "1s")]
    except KeyError:
        raise ValueError(f"bad interval {args.get('interval')!r}") from None
    start = parse_timestamp(f"{day:%Y-%m-%d}T{args.get('start_time', '09:30:00')}")
    end = parse_timestamp(f"{day:%Y-%m-%d}T{args.get('end_time', '16:00:00')}")
    first, now = market.step_time(0), market.now_ns
    ts = [t for t in range(start, end + 1, step_ms * 1_000_000) if first <= t <= now]
    return ts, [market.step_index(t) for t in ts]


def _ident(c: Contract) -> dict[str, Any]:
    return {"symbol": c.root, "expiration": f"{c.expiry:%Y-%m-%d}", "strike": f"{c.strike:.3f}",
            "right": "CALL" if c.is_call else "PUT"}  # fmt: skip


def _alive(contracts: list[Contract], day: date, args: dict[str, str]) -> list[Contract]:
    """Contracts trading on ``day`` (and within ``max_dte`` calendar days, if asked)."""
    max_dte = int(args["max_dte"]) if "max_dte" in args else None
    return [c for c in contracts if c.expiry >= day
            and (max_dte is None or (c.expiry - day).days <= max_dte)]  # fmt: skip


def _quotes(market: MarketSim, contracts: list[Contract], args: dict[str, str]) -> Rows:
    rows: Rows = []
    for day in _days(args):
        live = _alive(contracts, day, args)
        ts, steps = _instants(market, day, args)
        if not live or not ts:
            continue
        bid, ask, bs, as_, *_ = market.quote_arrays(live, np.array(steps)[:, None])
        stamps = [format_timestamp(t) for t in ts]
        for j, c in enumerate(live):
            ident, stop = _ident(c), to_ns(expiry_time(c))
            rows.extend(
                {**ident, "timestamp": stamps[i], "bid_size": int(bs[i, j]), "bid_exchange": 5,
                 "bid": float(bid[i, j]), "bid_condition": 50, "ask_size": int(as_[i, j]),
                 "ask_exchange": 5, "ask": float(ask[i, j]), "ask_condition": 50}
                for i in range(len(ts)) if ts[i] <= stop
            )  # fmt: skip
    return rows


def _ohlc(market: MarketSim, contracts: list[Contract], args: dict[str, str]) -> Rows:
    if args.get("expiration", "*") == "*":
        raise ValueError("expiration is required for OHLC (no '*')")
    interval_ns = INTERVALS_MS.get(args.get("interval", "1m"), 0) * 1_000_000
    rows: Rows = []
    for day in _days(args):
        live = _alive(contracts, day, args)
        ts, _ = _instants(market, day, args)
        if not live or not ts:
            continue
        pos = {c: j for j, c in enumerate(live)}
        first = market.step_index(ts[0])
        first += market.step_time(first) < ts[0]
        last = market.step_index(min(ts[-1] + interval_ns - 1, market.now_ns))
        prints: list[list[tuple[float, float]]] = [[] for _ in range(len(ts) * len(live))]
        for step in range(first, last + 1):
            bar = (market.step_time(step) - ts[0]) // interval_ns
            for t in market.trades(live, step):
                prints[bar * len(live) + pos[t.contract]].append((t.price, t.size))
        for j, c in enumerate(live):
            ident = _ident(c)
            for i, t in enumerate(ts):
                rows.append({**ident, "timestamp": format_timestamp(t),
                             **_bar(prints[i * len(live) + j])})  # fmt: skip
    return rows


def _bar(p: list[tuple[float, float]]) -> dict[str, Any]:
    """OHLC, volume, count and VWAP of (price, size) prints; zeros for a bar without any."""
    if not p:
        return {"open": 0.0, "high": 0.0, "low": 0.0, "close": 0.0, "volume": 0, "count": 0,
                "vwap": 0.0}  # fmt: skip
    prices = [x for x, _ in p]
    vol = sum(s for _, s in p)
    return {"open": prices[0], "high": max(prices), "low": min(prices), "close": prices[-1],
            "volume": int(vol), "count": len(p),
            "vwap": round(sum(x * s for x, s in p) / vol, 4)}  # fmt: skip


def _open_interest(market: MarketSim, contracts: list[Contract], args: dict[str, str]) -> Rows:
    rows: Rows = []
    for day in _days(args):
        live = _alive(contracts, day, args)
        stamp = parse_timestamp(f"{day:%Y-%m-%d}T06:30:00")
        if not live or stamp > market.now_ns:
            continue
        oi = market.open_interest(live)
        rows.extend({**_ident(c), "timestamp": format_timestamp(stamp), "open_interest": int(n)}
                    for c, n in zip(live, oi, strict=True))  # fmt: skip
    return rows


def _index(market: MarketSim, args: dict[str, str]) -> Rows:
    symbol = args["symbol"]
    if symbol not in (*market.symbols, "SPY", "VIX"):
        return []
    rows: Rows = []
    for day in _days(args):
        ts, steps = _instants(market, day, args)
        opening = parse_timestamp(f"{day:%Y-%m-%d}T09:30:00")
        rows.extend({"timestamp": format_timestamp(t),
                     "price": 0.0 if t == opening else round(market.spot(symbol, s), 2)}
                    for t, s in zip(ts, steps, strict=True))  # fmt: skip
    return rows

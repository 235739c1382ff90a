"""The trade journal: past trades and what they earned, read back from the store.

Every function takes a :class:`~kit.store.base.Store` and returns a polars frame with a fixed
schema, whichever backend answered and however many rows came back (an empty PostgreSQL result
has no dtypes of its own), so notebooks and tests can rely on the columns.

Units, as the recorder writes them (:mod:`kit.store.recorder`):

- ``credit``, ``realized_pnl``, ``commissions``, ``equity``, ``drawdown`` and every ``*_pnl``:
  dollars for the whole position (all units × multiplier). ``realized_pnl`` is *net* of
  commissions, so a win (``realized_pnl > 0``) is a trade that made money after costs.
- ``entry_price`` / ``exit_price``: per unit (per share of the option), the credit received and
  the debit paid back, before commissions.
- ``entry_vix`` / ``exit_vix``: VIX index points; ``*_regime`` its band (see
  :func:`kit.signals.vix_regime`); ``entry_iv`` / ``exit_iv``: annualised, as a fraction.
- ``dte``: calendar days from the entry date (New York) to the nearest expiry.
- ``quantity``: the most units the position held at once (a partial close keeps it).
- ``holding_min``: minutes from the first fill to the close (null while open).
- ``win_rate``: a fraction in [0, 1], over closed trades only.
- Timestamps: UTC. Months are UTC calendar months of the *close*, because that is when P&L is
  realised; the ``start``/``end`` filters select trades by their *opening* time.

The SQL is portable (it runs unchanged on DuckDB and PostgreSQL): ``date_trunc``, ``FILTER``
aggregates, window functions and ``CAST(… AS DOUBLE PRECISION)`` only. Filters are added to the
``WHERE`` clause only when given, because PostgreSQL cannot type a bare ``NULL`` parameter
(``:x IS NULL`` fails there).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import polars as pl

from kit.store.base import Store

__all__ = [
    "BAR_SCHEMA",
    "BY",
    "EQUITY_SCHEMA",
    "NO_TRADES",
    "RECORD_COMMAND",
    "SUMMARY_SCHEMA",
    "TRADE_SCHEMA",
    "equity_curve",
    "minute_bars",
    "pnl_by",
    "strategy_names",
    "summary",
    "summary_text",
    "trades",
]

NO_TRADES = "No trades yet"  # the start of what summary_text says about an empty journal
RECORD_COMMAND = "kit run --feed sim --auto --db data/desk.duckdb"  # what fills an empty journal

When = date | datetime | None
By = Literal["strategy", "month", "dte"]
BY: tuple[str, ...] = ("strategy", "month", "dte")

_TS = pl.Datetime("us", "UTC")
_F, _I, _S = pl.Float64(), pl.Int64(), pl.String()

TRADE_SCHEMA: dict[str, pl.DataType] = {
    "position_id": _S, "strategy": _S, "structure": _S, "underlying": _S, "status": _S,
    "opened_at": _TS, "closed_at": _TS, "holding_min": _F, "quantity": _F, "dte": _I,
    "credit": _F, "entry_price": _F, "exit_price": _F, "realized_pnl": _F, "commissions": _F,
    "win": pl.Boolean(), "entry_vix": _F, "exit_vix": _F, "vix_change": _F, "entry_regime": _S,
    "exit_regime": _S, "entry_iv": _F, "exit_iv": _F, "entry_spot": _F, "exit_spot": _F,
    "entry_delta": _F, "exit_delta": _F,
}  # fmt: skip

_STATS: dict[str, pl.DataType] = {
    "trades": _I, "wins": _I, "win_rate": _F, "total_pnl": _F, "avg_pnl": _F, "avg_credit": _F,
}  # fmt: skip

SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    "trades": _I, "open": _I, "wins": _I, "win_rate": _F, "avg_credit": _F, "total_pnl": _F,
    "avg_pnl": _F, "best_pnl": _F, "worst_pnl": _F, "commissions": _F,
}  # fmt: skip

EQUITY_SCHEMA: dict[str, pl.DataType] = {
    "closed_at": _TS, "position_id": _S, "strategy": _S, "realized_pnl": _F, "equity": _F,
    "drawdown": _F,
}  # fmt: skip

BAR_SCHEMA: dict[str, pl.DataType] = {
    "minute": _TS, "open": _F, "high": _F, "low": _F, "close": _F, "ticks": _I,
}  # fmt: skip

# The strategy's own name when the recorder wrote one, else the structure (STRANGLE, …).
_NAME = "COALESCE(s.name, t.strategy)"
_FROM = "FROM trade_logs t LEFT JOIN strategies s ON s.id = t.strategy_id"
_GROUP_KEYS: dict[str, tuple[str, pl.DataType]] = {
    "strategy": (_NAME, _S),
    "month": ("date_trunc('month', t.closed_at)", pl.Date()),
    "dte": ("t.dte", _I),
}
_AGGREGATES = """count(*) AS trades,
       count(*) FILTER (WHERE t.realized_pnl > 0) AS wins,
       CAST(count(*) FILTER (WHERE t.realized_pnl > 0) AS DOUBLE PRECISION)
           / NULLIF(count(*), 0) AS win_rate,
       sum(t.realized_pnl) AS total_pnl,
       avg(t.realized_pnl) AS avg_pnl,
       avg(t.credit) AS avg_credit"""


def trades(
    store: Store, *, strategy: str | None = None, start: When = None, end: When = None
) -> pl.DataFrame:
    """Every trade, open and closed, oldest first, with the market it was opened and closed in.

    One row per position (``trade_logs`` keeps the latest state of each). ``strategy`` matches
    the strategy's name or its structure (``STRANGLE``); ``start``/``end`` bound the opening
    time (see :func:`_window`). ``win`` is null while a trade is open: an open trade has not
    won or lost yet, and counting it either way would bias the win rate.
    """
    where, params = _filters(strategy, start, end)
    frame = store.query(
        f"""SELECT t.position_id, {_NAME} AS strategy, t.strategy AS structure, t.underlying,
               t.status, t.opened_at, t.closed_at, t.quantity, t.dte, t.credit, t.entry_price,
               t.exit_price, t.realized_pnl, t.commissions, t.entry_vix, t.exit_vix,
               t.exit_vix - t.entry_vix AS vix_change, t.entry_regime, t.exit_regime,
               t.entry_iv, t.exit_iv, t.entry_spot, t.exit_spot, t.entry_delta, t.exit_delta
        {_FROM} {where}
        ORDER BY t.opened_at, t.position_id""",
        params,
    )
    frame = _typed(
        frame, {k: v for k, v in TRADE_SCHEMA.items() if k not in ("holding_min", "win")}
    )
    closed = pl.col("status") == "closed"
    return frame.with_columns(
        holding_min=(pl.col("closed_at") - pl.col("opened_at")).dt.total_microseconds() / 60e6,
        win=pl.when(closed).then(pl.col("realized_pnl") > 0),
    ).select(list(TRADE_SCHEMA))


def pnl_by(
    store: Store, by: By, *, strategy: str | None = None, start: When = None, end: When = None
) -> pl.DataFrame:
    """Closed trades grouped by strategy name, close month (UTC) or DTE at entry: ``trades``,
    ``wins``, ``win_rate``, ``total_pnl``, ``avg_pnl``, ``avg_credit``; sorted by the group.

    Only closed trades count: an open trade's realised P&L is partial and would understate
    both the average and the win rate.
    """
    if by not in _GROUP_KEYS:
        raise ValueError(f"pnl_by: by must be one of {BY}, not {by!r}")
    key, dtype = _GROUP_KEYS[by]
    where, params = _filters(strategy, start, end, closed=True)
    frame = store.query(
        f"SELECT {key} AS {by}, {_AGGREGATES} {_FROM} {where} GROUP BY {key} ORDER BY {key}",
        params,
    )
    if by == "month":  # a timestamp at midnight UTC on the 1st → the date of the 1st
        frame = frame.with_columns(_typed(frame.select("month"), {"month": _TS})["month"].dt.date())
    return _typed(frame, {by: dtype, **_STATS})


def equity_curve(
    store: Store, *, strategy: str | None = None, start: When = None, end: When = None
) -> pl.DataFrame:
    """Cumulative realised P&L, one point per closed trade in close order, with the drawdown
    from the running peak (≤ 0; the curve starts from a flat 0, so a first losing trade is a
    drawdown too)."""
    where, params = _filters(strategy, start, end, closed=True)
    frame = store.query(
        f"""SELECT t.closed_at, t.position_id, {_NAME} AS strategy,
               COALESCE(t.realized_pnl, 0) AS realized_pnl,
               sum(COALESCE(t.realized_pnl, 0)) OVER (
                   ORDER BY t.closed_at, t.position_id ROWS UNBOUNDED PRECEDING) AS equity
        {_FROM} {where}
        ORDER BY t.closed_at, t.position_id""",
        params,
    )
    frame = _typed(frame, {k: v for k, v in EQUITY_SCHEMA.items() if k != "drawdown"})
    peak = pl.max_horizontal(pl.col("equity").cum_max(), pl.lit(0.0))
    return frame.with_columns(drawdown=pl.col("equity") - peak)


def summary(
    store: Store, *, strategy: str | None = None, start: When = None, end: When = None
) -> pl.DataFrame:
    """One row: closed ``trades``, ``open`` trades, ``wins``, ``win_rate``, ``avg_credit``,
    ``total_pnl``, ``avg_pnl``, ``best_pnl``, ``worst_pnl``, ``commissions`` (dollars).

    The P&L figures cover closed trades; with none, they are null (not 0: "no result" and
    "broke even" are different answers).
    """
    where, params = _filters(strategy, start, end)
    closed = "FILTER (WHERE t.status = 'closed')"
    win = "FILTER (WHERE t.status = 'closed' AND t.realized_pnl > 0)"
    frame = store.query(
        f"""SELECT count(*) {closed} AS trades,
               count(*) FILTER (WHERE t.status <> 'closed') AS open,
               count(*) {win} AS wins,
               CAST(count(*) {win} AS DOUBLE PRECISION) / NULLIF(count(*) {closed}, 0)
                   AS win_rate,
               avg(t.credit) {closed} AS avg_credit,
               sum(t.realized_pnl) {closed} AS total_pnl,
               avg(t.realized_pnl) {closed} AS avg_pnl,
               max(t.realized_pnl) {closed} AS best_pnl,
               min(t.realized_pnl) {closed} AS worst_pnl,
               sum(t.commissions) {closed} AS commissions
        {_FROM} {where}""",
        params,
    )
    return _typed(frame, SUMMARY_SCHEMA)


def summary_text(stats: pl.DataFrame, *, filtered: bool = False) -> str:
    """A few readable lines from :func:`summary`'s row (what the journal notebook prints).
    ``filtered`` says the row was computed with filters, so an empty one blames them rather
    than the store."""
    s = stats.row(0, named=True)
    if not s["trades"] and not s["open"]:
        if filtered:
            return "No trades match these filters."
        return (f"{NO_TRADES}: the store holds no trade logs. Record a day with "
                f"`{RECORD_COMMAND}`, then come back.")  # fmt: skip
    lines = [f"trades: {s['trades']} closed, {s['open']} open"]
    if s["trades"]:
        lines += [
            f"win rate: {s['win_rate']:.0%} ({s['wins']} of {s['trades']})",
            f"average credit: {_usd(s['avg_credit'])}",
            f"P&L: {_usd(s['total_pnl'])} total, {_usd(s['avg_pnl'])} average per trade "
            f"(net of {_usd(s['commissions'])} commissions)",
            f"best trade: {_usd(s['best_pnl'])}, worst trade: {_usd(s['worst_pnl'])}",
        ]
    return "\n".join(lines)


def strategy_names(store: Store) -> list[str]:
    """The strategies that have trades, for a filter's choices."""
    frame = store.query(f"SELECT DISTINCT {_NAME} AS strategy {_FROM} ORDER BY 1")
    return [str(s) for s in frame["strategy"].to_list()] if frame.height else []


def minute_bars(store: Store, contract: str, start: When = None, end: When = None) -> pl.DataFrame:
    """One-minute OHLC bars (UTC minute starts) of one contract's quotes, with the tick count.

    ``contract`` is an OCC symbol as recorded (``SPXW240312P04985000``) or an underlying
    (``SPX``, ``VIX``). Options are charted at the mid, (bid + ask) / 2: their trade prints are
    sparse and jumpy, and a bar mixing prints with mids would show spikes that never were
    tradable. Underlying rows (``contract`` equal to ``underlying``) carry ``price``. Rows
    without a usable price (one-sided quotes, option prints) are left out of the bar and its
    count. Open and close are the first and last quote in the minute by time, picked with
    ``row_number()`` (portable; two quotes with the same microsecond are ordered arbitrarily).
    """
    where: list[str] = ["q.contract = :contract"]
    params: dict[str, Any] = {"contract": contract}
    _time_range("q.ts", start, end, where, params)
    frame = store.query(
        f"""WITH px AS (
            SELECT date_trunc('minute', q.ts) AS minute, q.ts,
                   CASE WHEN q.contract = q.underlying THEN q.price
                        ELSE (q.bid + q.ask) / 2 END AS px
            FROM quotes q WHERE {" AND ".join(where)}
        ), ranked AS (
            SELECT minute, px,
                   row_number() OVER (PARTITION BY minute ORDER BY ts) AS first_n,
                   row_number() OVER (PARTITION BY minute ORDER BY ts DESC) AS last_n
            FROM px WHERE px IS NOT NULL
        )
        SELECT minute,
               max(CASE WHEN first_n = 1 THEN px END) AS open,
               max(px) AS high, min(px) AS low,
               max(CASE WHEN last_n = 1 THEN px END) AS close,
               count(*) AS ticks
        FROM ranked GROUP BY minute ORDER BY minute""",
        params,
    )
    return _typed(frame, BAR_SCHEMA)


# --- helpers ---


def _filters(
    strategy: str | None, start: When, end: When, *, closed: bool = False
) -> tuple[str, dict[str, Any]]:
    """The ``WHERE`` clause (or "") and parameters for the common filters."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if closed:
        clauses.append("t.status = 'closed'")
    if strategy is not None:
        clauses.append(f"({_NAME} = :strategy OR t.strategy = :strategy)")
        params["strategy"] = strategy
    _time_range("t.opened_at", start, end, clauses, params)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _time_range(
    column: str, start: When, end: When, clauses: list[str], params: dict[str, Any]
) -> None:
    """Add ``start <= column < end`` (each bound only when given: PostgreSQL cannot type a
    bare NULL parameter)."""
    lo, hi = _window(start, end)
    if lo is not None:
        clauses.append(f"{column} >= :start")
        params["start"] = lo
    if hi is not None:
        clauses.append(f"{column} < :end")
        params["end"] = hi


def _window(start: When, end: When) -> tuple[datetime | None, datetime | None]:
    """``[start, end)`` as UTC instants. A date is a whole UTC day and ``end`` is inclusive
    of it (a date picker's "to 12 March" means through the 12th); a datetime is an instant
    (naive means UTC) and ``end`` excludes it."""
    lo, hi = _instant(start, "start"), _instant(end, "end")
    if hi is not None and not isinstance(end, datetime):
        hi += timedelta(days=1)
    if lo is not None and hi is not None and hi <= lo:
        raise ValueError(f"empty time range: start {start} is not before end {end}")
    return lo, hi


def _instant(value: When, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), UTC)
    raise ValueError(f"{name} must be a date or datetime, not {type(value).__name__}")


def _typed(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """``frame`` with exactly ``schema``'s columns and dtypes (PostgreSQL returns untyped
    columns for an empty result, and integer aggregates may come back wider or as floats)."""
    return frame.select(
        pl.col(name).cast(dtype) if name in frame.columns else pl.lit(None, dtype).alias(name)
        for name, dtype in schema.items()
    )


def _usd(x: float | None) -> str:
    return "n/a" if x is None else f"{'-' if x < 0 else ''}${abs(x):,.2f}"

"""The ThetaData Terminal (REST v3) as a history source, one session at a time.

Per session: the index at the interval (``/index/history/price`` for the underlying and VIX),
the expirations of each root (``/option/list/expirations``), then for every expiry the
:class:`~kit.research.history.band.Band` keeps, the quotes at the interval
(``/option/history/quote``) and the prints' bars (``/option/history/ohlc``, for volume), and
each root's open interest that morning (``/option/history/open_interest``). These are Value-tier
endpoints; IV and Greeks are computed here with the desk's pricing rather than asked of the
Professional tier's ``greeks`` endpoints.

Requests go through :class:`~kit.adapters.thetadata.rest.ThetaDataREST` (429 OS_LIMIT, 474
and 571 retried with backoff there); 5xx answers are retried here too, and at most
``concurrency`` requests are in flight (the plan's limit: 2 Value, 4 Standard, 8 Pro -- more
only queues at the Terminal). The client lives on its own event-loop thread, so the synchronous
build loop drives it the same way from a terminal or from a running notebook kernel.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import httpx
import polars as pl

from kit.adapters.thetadata.config import ThetaDataConfig, ThetaDataError
from kit.adapters.thetadata.rest import ThetaDataREST
from kit.core.clock import NEW_YORK, Session
from kit.research.history.band import Band, BandError, roots_of, snapshot_times
from kit.research.history.enrich import in_band, quoted, with_greeks

log = logging.getLogger(__name__)
T = TypeVar("T")
INDEX = {"SPX": "SPX", "NDX": "NDX"}  # SPY's price is a stock quote: not an index endpoint
INTERVALS = {1: "1s", 5: "5s", 10: "10s", 15: "15s", 30: "30s", 60: "1m", 300: "5m", 600: "10m",
             900: "15m", 1800: "30m", 3600: "1h"}  # fmt: skip
NY = "America/New_York"


@dataclass
class ThetaHistory:
    """A ThetaData history build's options; use as a context manager around the build."""

    underlying: str = "SPX"
    interval_s: int = 60
    band: Band = field(default_factory=Band)
    config: ThetaDataConfig | None = None
    concurrency: int = 2
    rate: float = 0.045  # for IV and Greeks (continuous, decimal)
    div_yield: float = 0.013
    retries_5xx: int = 4
    event_hooks: dict[str, list[Any]] | None = None  # httpx hooks (tests count requests)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _rest: ThetaDataREST | None = field(default=None, init=False, repr=False)
    _client: httpx.AsyncClient | None = field(default=None, init=False, repr=False)
    _gate: asyncio.Semaphore | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        roots_of(self.underlying)
        if self.underlying not in INDEX:
            raise BandError(f"thetadata histories cover {', '.join(INDEX)} (index options)")
        if self.interval_s not in INTERVALS:
            raise BandError(f"ThetaData has no {self.interval_s} s interval "
                            f"(one of {', '.join(INTERVALS.values())})")  # fmt: skip
        if not 1 <= self.concurrency <= 64:
            raise BandError(f"concurrency must be 1..64, not {self.concurrency}")

    @property
    def signature(self) -> dict[str, Any]:
        b = self.band
        return {"source": "thetadata", "interval_s": self.interval_s,
                "band": [b.max_dte, b.strike_pct, b.daily_dte, b.far_strike_pct]}  # fmt: skip

    # --- the loop thread ---

    def __enter__(self) -> ThetaHistory:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="thetadata-history",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        self._run(self._open())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is None:
            return
        if self._client is not None:
            self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join()
        self._loop.close()
        self._loop = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            raise RuntimeError("use ThetaHistory as a context manager: with ThetaHistory(...)")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _open(self) -> None:
        cfg = self.config or ThetaDataConfig.from_env()
        self._client = client = httpx.AsyncClient(
            timeout=cfg.timeout_s,
            limits=httpx.Limits(max_connections=self.concurrency),
            event_hooks=self.event_hooks or {},
        )
        self._rest = ThetaDataREST(cfg, client=client)
        self._gate = asyncio.Semaphore(self.concurrency)

    async def _close(self) -> None:
        """Cancel what is still running (a build interrupted mid-session), then close."""
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in others:
            t.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        assert self._client is not None
        await self._client.aclose()  # ours: ThetaDataREST leaves a client it was given open

    async def _get(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """One request under the concurrency gate; 5xx retried with backoff (429 and the
        Terminal's own retryable codes already are, inside ThetaDataREST)."""
        assert self._rest is not None and self._gate is not None
        delay = self._rest.config.retry_initial_s
        for attempt in range(self.retries_5xx + 1):
            async with self._gate:
                try:
                    return await self._rest.get(path, **params)
                except ThetaDataError as exc:
                    if not 500 <= exc.code < 600 or exc.code == 570 or attempt == self.retries_5xx:
                        raise
                    log.info("ThetaData %s on %s; retry %d", exc.code, path, attempt + 1)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- one session ---

    def make_day(
        self, session: Session, previous: dict[str, Any] | None
    ) -> tuple[pl.DataFrame, dict[str, Any]]:
        return self._run(self._day(session)), {}

    async def _day(self, session: Session) -> pl.DataFrame:
        day = session.day
        window = {
            "date": f"{day:%Y%m%d}",
            "interval": INTERVALS[self.interval_s],
            "start_time": f"{session.open.astimezone(NEW_YORK):%H:%M:%S}",
            "end_time": f"{session.close.astimezone(NEW_YORK):%H:%M:%S}",
        }
        grid = pl.DataFrame({"ts": snapshot_times(session, self.interval_s)}).with_columns(
            pl.col("ts").dt.cast_time_unit("us").dt.convert_time_zone("UTC")
        )
        roots = roots_of(self.underlying)
        spot_rows, vix_rows, *exp_rows = await _all(
            self._get("/index/history/price", symbol=INDEX[self.underlying], **window),
            self._get("/index/history/price", symbol="VIX", **window),
            *(self._get("/option/list/expirations", symbol=r) for r in roots),
        )
        spot = _prices(spot_rows, grid, "spot")
        if spot["spot"].is_null().all():
            return pl.DataFrame()
        spot_open = float(spot["spot"].drop_nulls()[0])  # the band's centre: the first print
        wanted = [(r, e) for r, rows in zip(roots, exp_rows, strict=True) for e in _dates(rows)
                  if self.band.keep_expiry(r, e, day)]  # fmt: skip
        answers = await _all(
            *(self._get("/option/history/quote", symbol=r, expiration=f"{e:%Y%m%d}", **window)
              for r, e in wanted),
            *(self._get("/option/history/ohlc", symbol=r, expiration=f"{e:%Y%m%d}", **window)
              for r, e in wanted),
            *(self._get("/option/history/open_interest", symbol=r, expiration="*",
                        date=window["date"]) for r in roots),
        )  # fmt: skip
        n = len(wanted)
        quotes, bars, ois = answers[:n], answers[n : 2 * n], answers[2 * n :]
        frame = quoted(contract_rows([row for rows in quotes for row in rows], ["bid", "ask"]))
        if frame.height == 0:
            return pl.DataFrame()
        frame = in_band(frame.join(grid, on="ts", how="semi"), self.band, day, spot_open)
        frame = frame.join(spot, on="ts", how="left").join(
            _prices(vix_rows, grid, "vix"), on="ts", how="left"
        )
        frame = frame.join(_open_interest(ois), on=["root", "expiry", "strike", "right"],
                           how="left")  # fmt: skip
        frame = _with_volume(frame, [row for rows in bars for row in rows], self.interval_s)
        frame = with_greeks(frame, self.rate, self.div_yield)
        return frame.with_columns(underlying=pl.lit(self.underlying))


async def _all(*coros: Coroutine[Any, Any, T]) -> list[T]:
    """``gather`` that, when one request fails, cancels and awaits the others before raising
    its error: no request outlives a failed session (or the loop it ran on)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _dates(rows: list[dict[str, Any]]) -> list[date]:
    out = []
    for r in rows:
        text = str(r.get("expiration", "")).replace("-", "")
        try:
            out.append(datetime.strptime(text, "%Y%m%d").date())
        except ValueError:
            log.warning("ThetaData: bad expiration row %r", r)
    return out


def _ts(col: str = "timestamp") -> pl.Expr:
    """REST v3 New York wall time (``2024-03-11T09:31:00[.123]``) -> UTC microseconds."""
    return (
        pl.col(col).cast(pl.String).str.to_datetime(strict=False, time_unit="us")
        .dt.replace_time_zone(NY, ambiguous="earliest").dt.convert_time_zone("UTC")
    )  # fmt: skip


def _prices(rows: list[dict[str, Any]], grid: pl.DataFrame, name: str) -> pl.DataFrame:
    """An index on the snapshot grid: a price of 0 (the Terminal's answer at 09:30:00, before
    the first print of the day) is no price, and a gap takes the last price before it. Nothing
    is taken from a later snapshot, so the open's row has no spot rather than 09:31's."""
    if not rows:
        return grid.with_columns(pl.lit(None, dtype=pl.Float64).alias(name))
    f = pl.DataFrame(rows).select(ts=_ts(), price=pl.col("price").cast(pl.Float64, strict=False))
    f = f.filter(pl.col("price") > 0).drop_nulls().sort("ts")
    out = grid.sort("ts").join_asof(f, on="ts", strategy="backward")
    return out.rename({"price": name}).select("ts", name)


def contract_rows(rows: list[dict[str, Any]], values: list[str]) -> pl.DataFrame:
    """Vendor rows -> (ts, root, expiry, strike, right, *values), bad rows dropped."""
    if not rows:
        return pl.DataFrame()
    f = pl.DataFrame(rows, infer_schema_length=None)
    return f.select(
        ts=_ts(),
        root=pl.col("symbol").cast(pl.String),
        expiry=pl.col("expiration").cast(pl.String).str.replace_all("-", "")
        .str.to_date("%Y%m%d", strict=False),
        strike=pl.col("strike").cast(pl.Float64, strict=False),
        right=pl.col("right").cast(pl.String).str.slice(0, 1).str.to_uppercase(),
        **{v: pl.col(v).cast(pl.Float64, strict=False) for v in values},
    ).drop_nulls(["ts", "root", "expiry", "strike", "right"])  # fmt: skip


def _open_interest(per_root: list[list[dict[str, Any]]]) -> pl.DataFrame:
    rows = [r for rows in per_root for r in rows]
    keys = ["root", "expiry", "strike", "right"]
    if not rows:
        return pl.DataFrame(schema={"root": pl.String, "expiry": pl.Date, "strike": pl.Float64,
                                    "right": pl.String, "oi": pl.Int64})  # fmt: skip
    f = contract_rows(rows, ["open_interest"]).sort("ts")
    return f.group_by(keys).agg(oi=pl.col("open_interest").last().cast(pl.Int64))


def _with_volume(frame: pl.DataFrame, rows: list[dict[str, Any]], interval_s: int):
    """Contracts traded before each snapshot: the running sum of the bars that ended by it."""
    keys = ["root", "expiry", "strike", "right"]
    if not rows:
        return frame.with_columns(volume=pl.lit(0, dtype=pl.Int64))
    bars = contract_rows(rows, ["volume"])
    bars = bars.with_columns(pl.col("ts") + timedelta(seconds=interval_s))  # the bar's end
    cum = bars.sort("ts").with_columns(pl.col("volume").cum_sum().over(keys).alias("cum"))
    out = frame.sort("ts").join_asof(cum.select(*keys, "ts", "cum"), on="ts", by=keys,
                                     strategy="backward", check_sortedness=False)  # fmt: skip
    return out.with_columns(volume=pl.col("cum").fill_null(0).cast(pl.Int64)).drop("cum")

"""ThetaData Terminal adapter: REST v3 (port 25503) and the streaming socket (port 25520).

The Terminal is a local process that holds the vendor connection; this adapter talks to it on
loopback. Formats follow the vendor docs (docs.thetadata.us):

- Stream: one WebSocket to ``ws://HOST:25520/v1/events`` (the Terminal allows one). Requests are
  ``{"msg_type": "STREAM", "sec_type": "OPTION", "req_type": "QUOTE", "add": true, "id": N,
  "contract": {"root", "expiration": YYYYMMDD, "strike": 1/10 cent, "right": "C"|"P"}}`` with a
  strictly increasing ``id`` (the Terminal needs it to resubscribe after its own reconnects);
  each is acknowledged by a ``REQ_RESPONSE`` (SUBSCRIBED / ERROR / MAX_STREAMS_REACHED /
  INVALID_PERMS). ``STATUS`` frames arrive every second and are our liveness signal; QUOTE and
  TRADE frames carry ``ms_of_day`` (ms since midnight New York) and ``date``.
- REST v3: ``symbol``, ``expiration`` YYYYMMDD, ``strike`` in dollars, ``right`` call/put;
  ``format=csv`` (default) or ``ndjson``; timestamps are New York wall time without an offset.
  Errors are HTTP codes with a plain-text body: 472 NO_DATA means "empty", 429/474/571 are
  retried with backoff, the rest raise :class:`ThetaDataError` with the code's name.

ThetaData streams no Greeks: the desk computes them (``kit.core.pricing``). Index prices are polled
from ``/v3/index/snapshot/price`` (subscribe with the symbol, e.g. ``"SPX"``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import httpx
import msgspec
from websockets.asyncio.client import connect

from kit.adapters.base import FeedConfig, MalformedFrameError, StreamingFeed, SubKey, cancel
from kit.core.clock import NEW_YORK, Clock, from_ns, to_ns
from kit.core.config import load_env
from kit.core.model import Contract, Event, ModelError, Quote, Trade, UnderlyingTick
from kit.core.symbology import from_thetadata, right_code, to_thetadata

log = logging.getLogger(__name__)

ERROR_CODES: dict[int, str] = {
    404: "NO_IMPL", 429: "OS_LIMIT", 470: "GENERAL", 471: "PERMISSION", 472: "NO_DATA",
    473: "INVALID_PARAMS", 474: "DISCONNECTED", 475: "TERMINAL_PARSE", 476: "WRONG_IP",
    477: "NO_PAGE_FOUND", 478: "INVALID_SESSION_ID", 570: "LARGE_REQUEST", 571: "SERVER_STARTING",
    572: "UNCAUGHT_ERROR",
}  # fmt: skip
RETRYABLE = frozenset({429, 474, 571})


class ThetaDataError(RuntimeError):
    """The Terminal refused a request; ``code``/``name`` are ThetaData's, ``detail`` its text."""

    def __init__(self, code: int, detail: str, url: str) -> None:
        self.code, self.name, self.detail = code, ERROR_CODES.get(code, "UNKNOWN"), detail
        super().__init__(f"ThetaData {code} {self.name}: {detail.strip() or 'no detail'} ({url})")


@dataclass(frozen=True)
class ThetaDataConfig:
    host: str = "127.0.0.1"
    rest_port: int = 25503
    ws_port: int = 25520
    rest_format: str = "csv"  # or "ndjson"
    retries: int = 5
    retry_initial_s: float = 0.25
    index_poll_s: float = 1.0
    stream_trades: bool = False
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls) -> ThetaDataConfig:
        """``THETADATA_HOST``, ``THETADATA_REST_PORT``, ``THETADATA_WS_PORT`` (and ``.env``)."""
        load_env()
        env = os.environ
        try:
            return cls(
                host=env.get("THETADATA_HOST", cls.host),
                rest_port=int(env.get("THETADATA_REST_PORT", cls.rest_port)),
                ws_port=int(env.get("THETADATA_WS_PORT", cls.ws_port)),
            )
        except ValueError as exc:
            raise ValueError(f"THETADATA_*_PORT must be integers: {exc}") from None

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}/v3"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/v1/events"


# --- time ---


@lru_cache(maxsize=64)
def _midnight_ns(yyyymmdd: int) -> int:
    """UTC ns of midnight New York wall time on that date (offset taken at noon: no DST jump
    happens during market hours)."""
    d = date(yyyymmdd // 10000, yyyymmdd // 100 % 100, yyyymmdd % 100)
    noon = datetime(d.year, d.month, d.day, 12, tzinfo=NEW_YORK)
    return to_ns(noon) - 12 * 3600 * 1_000_000_000


def ms_of_day_to_ns(yyyymmdd: int, ms_of_day: int) -> int:
    return _midnight_ns(yyyymmdd) + ms_of_day * 1_000_000


def parse_timestamp(text: str) -> int:
    """REST v3 ``2024-01-19T10:00:01.5`` (New York, no offset) -> UTC ns."""
    dt = datetime.fromisoformat(text)
    day = dt.year * 10000 + dt.month * 100 + dt.day
    ms = ((dt.hour * 60 + dt.minute) * 60 + dt.second) * 1000 + dt.microsecond // 1000
    return ms_of_day_to_ns(day, ms)


def format_timestamp(ts_ns: int) -> str:
    """UTC ns -> the REST v3 form (New York wall time, milliseconds)."""
    return from_ns(ts_ns).astimezone(NEW_YORK).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


# --- REST ---


def _rows(text: str, fmt: str) -> list[dict[str, str]]:
    if not text.strip():
        return []
    if fmt == "ndjson":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return list(csv.DictReader(io.StringIO(text)))


def parse_date(text: object) -> date:
    """``YYYYMMDD`` or ``YYYY-MM-DD`` (both appear in ThetaData's APIs)."""
    t = str(text).replace("-", "")
    if len(t) != 8 or not t.isdigit():
        raise ValueError(f"bad date {text!r} (YYYYMMDD)")
    return date(int(t[:4]), int(t[4:6]), int(t[6:8]))


class ThetaDataREST:
    """Async client for the Terminal's REST v3 API, returning domain records."""

    def __init__(
        self,
        config: ThetaDataConfig | None = None,
        *,
        clock: Clock | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config or ThetaDataConfig.from_env()
        self._clock = clock
        self._client = client or httpx.AsyncClient(timeout=self.config.timeout_s)
        self._own_client = client is None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def _sleep(self, seconds: float) -> None:
        await (self._clock.sleep(seconds) if self._clock else asyncio.sleep(seconds))

    async def get(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """GET ``/v3{path}``; rows as dicts. NO_DATA -> []; 429/474/571 retried with backoff."""
        params = {k: v for k, v in params.items() if v is not None}
        params.setdefault("format", self.config.rest_format)
        url = f"{self.config.rest_url}{path}"
        delay = self.config.retry_initial_s
        for attempt in range(self.config.retries + 1):
            try:
                resp = await self._client.get(url, params=params)
            except httpx.TransportError as exc:
                if attempt == self.config.retries:
                    raise ThetaDataError(474, f"Terminal unreachable: {exc}", url) from None
            else:
                if resp.status_code == 200:
                    try:
                        return _rows(resp.text, params["format"])
                    except (ValueError, csv.Error) as exc:
                        raise ThetaDataError(470, f"unparseable response: {exc}", url) from None
                if resp.status_code == 472:
                    return []
                if resp.status_code not in RETRYABLE or attempt == self.config.retries:
                    raise ThetaDataError(resp.status_code, resp.text, str(resp.url))
                log.info("ThetaData %s on %s; retry %d", resp.status_code, path, attempt + 1)
            await self._sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")  # pragma: no cover

    async def expirations(self, symbol: str) -> list[date]:
        rows = await self.get("/option/list/expirations", symbol=symbol)
        return sorted(parse_date(r["expiration"]) for r in rows)

    async def strikes(self, symbol: str, expiration: date) -> list[float]:
        rows = await self.get(
            "/option/list/strikes", symbol=symbol, expiration=f"{expiration:%Y%m%d}"
        )
        return sorted(float(r["strike"]) for r in rows)

    async def snapshot_quotes(
        self, symbol: str, expiration: date, strike: float | None = None, right: str | None = None
    ) -> list[Quote]:
        rows = await self.get(
            "/option/snapshot/quote",
            symbol=symbol,
            expiration=f"{expiration:%Y%m%d}",
            strike=None if strike is None else f"{strike:.3f}",
            right={"C": "call", "P": "put"}.get(right or "", right),
        )
        return [q for r in rows if (q := _quote_row(r)) is not None]

    async def history_quotes(
        self, contract: Contract, start_ns: int, end_ns: int | None = None
    ) -> list[Quote]:
        """Every quote from ``start_ns`` (inclusive) through ``end_ns`` or the latest."""
        start = from_ns(start_ns).astimezone(NEW_YORK)
        end = from_ns(end_ns).astimezone(NEW_YORK) if end_ns else None
        rows = await self.get(
            "/option/history/quote",
            symbol=contract.root,
            expiration=f"{contract.expiry:%Y%m%d}",
            strike=f"{contract.strike:.3f}",
            right="call" if contract.is_call else "put",
            start_date=f"{start:%Y%m%d}",
            # open-ended: the Terminal stops at its present; a gap never spans a week
            end_date=f"{end if end else start + timedelta(days=7):%Y%m%d}",
            start_time=start.strftime("%H:%M:%S.%f")[:-3],
            end_time=end.strftime("%H:%M:%S.%f")[:-3] if end else None,
            interval="tick",
        )
        quotes = [q for r in rows if (q := _quote_row(r, contract)) is not None]
        return [q for q in quotes if q.ts_ns >= start_ns and (end_ns is None or q.ts_ns <= end_ns)]

    async def index_price(self, symbol: str) -> UnderlyingTick | None:
        rows = await self.get("/index/snapshot/price", symbol=symbol)
        if not rows:
            return None
        r = rows[-1]
        try:
            return UnderlyingTick(symbol, float(r["price"]), parse_timestamp(r["timestamp"]))
        except (KeyError, ValueError) as exc:
            log.warning("ThetaData: bad index row %r: %s", r, exc)
            return None


def _quote_row(r: dict[str, Any], contract: Contract | None = None) -> Quote | None:
    """One REST quote row -> Quote; a bad row is logged and skipped, never raised."""
    try:
        if contract is None:
            contract = Contract(
                str(r["symbol"]), parse_date(r["expiration"]), float(r["strike"]),
                right_code(r["right"]),
            )  # fmt: skip
        return Quote(
            contract, float(r["bid"]), float(r["ask"]), float(r["bid_size"]), float(r["ask_size"]),
            parse_timestamp(str(r["timestamp"])),
        )  # fmt: skip
    except (KeyError, ValueError, TypeError) as exc:  # ModelError is a ValueError
        log.warning("ThetaData: skipping bad quote row %r: %s", r, exc)
        return None


# --- stream ---


class _Header(msgspec.Struct, kw_only=True):
    type: str
    status: str | None = None
    response: str | None = None
    req_id: int | None = None


class _Contract(msgspec.Struct, kw_only=True):
    security_type: str | None = None
    root: str
    expiration: int
    strike: int
    right: str


class _QuoteBody(msgspec.Struct, kw_only=True):
    ms_of_day: int
    bid_size: float
    bid: float
    ask_size: float
    ask: float
    date: int


class _TradeBody(msgspec.Struct, kw_only=True):
    ms_of_day: int
    size: float
    price: float
    date: int


class _Frame(msgspec.Struct, kw_only=True):
    header: _Header
    contract: _Contract | None = None
    quote: _QuoteBody | None = None
    trade: _TradeBody | None = None


_decode = msgspec.json.Decoder(_Frame).decode


class ThetaDataFeed(StreamingFeed):
    """Streams option quotes (and optionally trades) from the Terminal; polls index prices."""

    def __init__(
        self,
        config: ThetaDataConfig | None = None,
        *,
        clock: Clock | None = None,
        feed_config: FeedConfig | None = None,
        name: str = "thetadata",
    ) -> None:
        super().__init__(
            name, clock=clock, config=feed_config or FeedConfig(liveness_timeout_s=3.0)
        )
        self.td = config or ThetaDataConfig.from_env()
        self.rest = ThetaDataREST(self.td, clock=self.clock)
        self._next_id = 0
        self._pending: dict[int, tuple[SubKey, bool]] = {}
        self._contracts: dict[tuple[str, int, int, str], Contract] = {}
        self._poller: asyncio.Task[None] | None = None

    async def _on_start(self) -> None:
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_indices(), name=f"{self.name}:index")

    async def _on_close(self) -> None:
        poller, self._poller = self._poller, None
        await cancel(poller)
        await super()._on_close()
        await self.rest.aclose()

    async def _connect(self) -> Any:
        return await connect(self.td.ws_url, compression=None, open_timeout=self.td.timeout_s,
                             max_size=2**20, ping_interval=None)  # fmt: skip

    async def _send_subscribe(self, conn: Any, keys: Sequence[SubKey], add: bool) -> None:
        for key in keys:
            if not isinstance(key, Contract):
                continue  # index symbols are polled over REST
            for req_type in ("QUOTE", "TRADE") if self.td.stream_trades else ("QUOTE",):
                req_id, self._next_id = self._next_id, self._next_id + 1
                self._pending[req_id] = (key, add)
                await conn.send(json.dumps({
                    "msg_type": "STREAM", "sec_type": "OPTION", "req_type": req_type, "add": add,
                    "id": req_id, "contract": to_thetadata(key),
                }))  # fmt: skip

    async def _frames(self, conn: Any) -> AsyncIterator[Any]:
        async for message in conn:
            yield message

    def _contract(self, c: _Contract) -> Contract:
        key = (c.root, c.expiration, c.strike, c.right)
        contract = self._contracts.get(key)
        if contract is None:
            contract = self._contracts[key] = from_thetadata(
                c.root, c.expiration, c.strike, c.right
            )
        return contract

    def _parse(self, frame: Any) -> Iterable[Event]:
        try:
            f = _decode(frame)
            kind = f.header.type
            if kind == "QUOTE" and f.quote is not None and f.contract is not None:
                q = f.quote
                ts = ms_of_day_to_ns(q.date, q.ms_of_day)
                return (
                    Quote(self._contract(f.contract), q.bid, q.ask, q.bid_size, q.ask_size, ts),
                )
            if kind == "TRADE" and f.trade is not None and f.contract is not None:
                t = f.trade
                ts = ms_of_day_to_ns(t.date, t.ms_of_day)
                return (Trade(self._contract(f.contract), t.price, t.size, ts),)
            if kind == "STATUS":
                if f.header.status == "CONNECTED":
                    self.vendor_up()
                else:
                    self.vendor_down(f"Terminal status {f.header.status}")
                return ()
            if kind == "REQ_RESPONSE":
                self._ack(f.header)
                return ()
            if kind == "OHLC":
                return ()
        except (msgspec.DecodeError, msgspec.ValidationError, ModelError) as exc:
            raise MalformedFrameError(f"{exc}: {str(frame)[:200]!r}") from None
        raise MalformedFrameError(f"unexpected frame: {str(frame)[:200]!r}")

    def _ack(self, header: _Header) -> None:
        key, add = (
            self._pending.pop(header.req_id, (None, True))
            if header.req_id is not None
            else (None, True)
        )
        if header.response in (None, "SUBSCRIBED"):
            return
        self._reject(str(header.response), f"{'subscribe' if add else 'unsubscribe'} {key}")

    async def _fetch_history(self, key: SubKey, start_ns: int) -> list[Event]:
        if not isinstance(key, Contract):
            return []
        return list(await self.rest.history_quotes(key, start_ns))

    async def _poll_indices(self) -> None:
        while True:
            for sym in [k for k in self._subs if isinstance(k, str)]:
                try:
                    tick = await self.rest.index_price(sym)
                except Exception as exc:  # one bad answer must not stop the polling
                    log.warning("%s: index %s: %s", self.name, sym, exc)
                    continue
                if tick is not None:
                    self._sink.emit(tick)
            await self.clock.sleep(self.td.index_poll_s)

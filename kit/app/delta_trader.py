"""The daily BTC/ETH short strangle on Delta Exchange (``kit delta run``).

A day: prerequisite checks (API reachable, keys valid, **no position or open order on the
exchange** that this trader did not make), the trading window (09:00-17:30 IST by default;
outside it the trader warns and waits), the next-day expiry's chain, the strangle by delta band
(:func:`~kit.app.delta_strategy.select_strangle`), both legs sold with the limit ladder and a
market fallback (a leg that cannot be sold unwinds the other), then monitoring every ``poll_s``
from the socket's marks (REST tickers when the socket is quiet) until an exit fires
(:class:`~kit.app.delta_strategy.ExitTracker`), a status report every ``status_every_s``, the
buy-back, and a trade report (settings, fills, premium, P&L, exit reason).

Dry run is the default: orders go to the paper broker filling against Delta's live quotes; with
``live`` they go to the Delta broker, which only the live-trading gate hands out. Progress is
saved after each phase (``state``), so a restart resumes the same day's trade and, because
client ids are deterministic, adopts its orders instead of sending them again. Logs: a detailed
and a summary file in ``log_dir``; ``status.json`` there is what the control panel reads, and a
``STOP`` file there is the panel's "Stop & Exit Positions".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from kit.adapters.delta.chains import DeltaChainSource
from kit.adapters.delta.client import DeltaClient
from kit.adapters.delta.orders import coid_prefix
from kit.adapters.delta.parsing import DeltaError, num
from kit.app.delta_legs import LegExecutor, LegResult
from kit.app.delta_strategy import (
    Candidate,
    ExitTracker,
    Strangle,
    TraderSettings,
    clock_time,
    select_strangle,
)
from kit.core.clock import KOLKATA, Clock, expiry_time, from_ns, to_ns
from kit.core.model import Quote, Side
from kit.core.symbology import to_delta
from kit.execution.broker import Broker
from kit.execution.state import StateStore
from kit.portfolio.market import MarketState

log = logging.getLogger("kit.delta_trader")


class TraderBlockedError(RuntimeError):
    """A prerequisite failed; the message says which and what to do."""


@dataclass
class TradeState:
    """The saved progress of one day's trade."""

    day: str
    phase: str = "idle"  # idle | entering | open | exiting | done
    strangle: dict[str, Any] = field(default_factory=dict)
    legs: dict[str, dict[str, Any]] = field(default_factory=dict)
    premium: float = 0.0
    exit_reason: str | None = None
    closed: dict[str, dict[str, Any]] = field(default_factory=dict)


class DeltaTrader:
    def __init__(self, settings: TraderSettings, client: DeltaClient, broker: Broker, *,
                 clock: Clock, state: StateStore, log_dir: Path, live: bool = False,
                 market: MarketState | None = None, feed: Any = None,
                 desk: Any = None) -> None:  # fmt: skip
        self.s, self.client, self.broker, self.clock = settings, client, broker, clock
        self.state_store, self.log_dir, self.live = state, Path(log_dir), live
        self.market, self.feed = market, feed
        self.chains = DeltaChainSource(client)
        self.desk = desk  # a DeskExecution: the desk's order manager works the legs
        self.stop_file = self.log_dir / "STOP"
        self.day = from_ns(clock.now_ns()).astimezone(KOLKATA).date()
        self.key = f"delta_{self.day:%Y%m%d}_{settings.underlying}"
        raw = state.load(self.key)
        self.trade = TradeState(**raw) if raw else TradeState(self.day.isoformat())
        self.tracker: ExitTracker | None = None
        self._drain: asyncio.Task[None] | None = None
        self.legs: dict[str, Candidate] = {}

    # --- helpers ---

    def now_ist(self) -> datetime:
        return from_ns(self.clock.now_ns()).astimezone(KOLKATA)

    def in_window(self) -> bool:
        t = self.now_ist().time()
        return clock_time(self.s.window_start) <= t < clock_time(self.s.window_end)

    def save(self) -> None:
        self.state_store.save(self.key, self.trade.__dict__)

    def prefix(self, leg: str, step: str) -> str:
        return f"dx{self.day:%y%m%d}{self.s.underlying}{leg}{step}"

    # --- prerequisites and selection ---

    async def prerequisites(self) -> dict[str, Any]:
        """API reachable, keys valid, and no foreign position or open order on the exchange."""
        out: dict[str, Any] = {}
        try:
            products = await self.client.products(self.s.underlying)
        except DeltaError as exc:
            raise TraderBlockedError(f"Delta Exchange unreachable: {exc}") from None
        out["api"] = f"ok ({len(products)} {self.s.underlying} options)"
        if not self.client.config.has_keys:
            if self.live:
                raise TraderBlockedError("live trading needs DELTA_API_KEY and DELTA_API_SECRET")
            out["keys"] = "not set: account checks skipped (dry run)"
            return out
        try:
            await self.client.balances()
            positions = [p for p in await self.client.positions() if int(num(p.get("size"), 0))]
            orders = await self.client.open_orders()
        except DeltaError as exc:
            raise TraderBlockedError(f"account check failed: {exc}") from None
        mine = (f"dx{self.day:%y%m%d}{self.s.underlying}",)  # the legs engine's client ids
        s = self.trade.strangle  # a restart mid-trade: this trader's own legs are expected
        ours: set[Any] = set()
        if self.trade.phase not in ("idle", "done"):
            ours = {s.get("call"), s.get("put")}
            mine += (coid_prefix(f"{self.key}."),)  # the desk's order manager's, mid-trade
        foreign_pos = [p["product_symbol"] for p in positions if p["product_symbol"] not in ours]
        foreign_ord = [o["product_symbol"] for o in orders
                       if not str(o.get("client_order_id") or "").startswith(mine)]  # fmt: skip
        out |= {"keys": "ok", "positions": len(positions), "open_orders": len(orders)}
        if self.live and (foreign_pos or foreign_ord):
            raise TraderBlockedError(
                "the exchange already holds "
                + ", ".join(filter(None, [f"positions in {', '.join(foreign_pos)}" if foreign_pos
                                          else "", f"open orders on {', '.join(foreign_ord)}"
                                          if foreign_ord else ""]))
                + ": close them first (duplicate-trade prevention)")  # fmt: skip
        return out

    async def candidates(self) -> list[Candidate]:
        expiry = self.day + timedelta(days=self.s.expiry_days)
        chain = await self.chains.contracts(self.s.underlying, expiry)
        if not chain:
            have = await self.chains.expirations(self.s.underlying)
            raise TraderBlockedError(f"no {self.s.underlying} expiry on {expiry} (listed: "
                                f"{', '.join(map(str, have))})")  # fmt: skip
        snap = await self.chains.snapshot(chain)
        if self.market is not None:
            for ev in snap.events:
                (self.market.on_quote if hasattr(ev, "contract") else self.market.on_underlying)(ev)
        out = []
        for c in chain:
            t, g = self.chains.tickers.get(c), self.chains.greeks.get(c)
            if t is None or g is None:
                continue
            q = t.get("quotes") or {}
            out.append(Candidate(c, to_delta(c), g.delta, num(q.get("best_bid"), 0.0),
                                 num(q.get("best_ask"), 0.0), num(t.get("mark_price"), 0.0),
                                 num(t.get("oi_contracts"), 0.0), g.iv))  # fmt: skip
        return out

    async def select(self) -> Strangle:
        chosen, why = select_strangle(await self.candidates(), self.s)
        if chosen is None:
            raise TraderBlockedError(f"no strangle to sell: {why}")
        return chosen

    async def once(self) -> dict[str, Any]:
        """Checks and the selection, nothing traded (``--once``)."""
        checks = await self.prerequisites()
        chosen = await self.select()
        return {"underlying": self.s.underlying, "dry_run": not self.live,
                "in_window": self.in_window(), "checks": checks, **chosen.to_dict()}  # fmt: skip

    # --- the day ---

    async def refresh(self) -> None:
        """Feed the paper venue (dry run) the legs' current quotes from REST."""
        if self.market is None or not self.legs:
            return
        for c in self.legs.values():
            try:
                t = await self.client.ticker(c.symbol)
            except DeltaError as exc:
                log.warning("quote of %s: %s", c.symbol, exc)
                continue
            q = t.get("quotes") or {}
            bid, ask = num(q.get("best_bid"), 0.0), num(q.get("best_ask"), 0.0)
            if ask > 0:
                bs, az = num(q.get("bid_size"), 1.0), num(q.get("ask_size"), 1.0)
                self.market.on_quote(Quote(c.contract, bid, ask, bs, az, self.clock.now_ns()))
        on_market = getattr(self.broker, "on_market", None)
        if on_market is not None:
            on_market()

    def executor(self) -> LegExecutor:
        return LegExecutor(self.broker, self.clock, fill_wait_s=self.s.fill_wait_s,
                           steps=self.s.entry_retries, refresh=self.refresh)  # fmt: skip

    async def enter(self, chosen: Strangle) -> None:
        self.legs = {"C": chosen.call, "P": chosen.put}
        self.trade.phase, self.trade.strangle = "entering", chosen.to_dict()
        self.save()
        log.info("entering %s / %s (premium %.4g per coin at the mids)", chosen.call.symbol,
                 chosen.put.symbol, chosen.premium)  # fmt: skip
        results: dict[str, LegResult] = {}
        if self.desk is not None:  # the desk's order manager works the strangle
            results = await self.desk.enter(chosen, self.s.quantity)
            for name, res in results.items():
                self.trade.legs[name] = {"symbol": res.symbol, "filled": res.filled,
                                         "avg": res.avg}  # fmt: skip
            self.save()
        ex = self.executor()
        for name, cand in self.legs.items() if self.desk is None else ():
            tick = self.chains.ticks.get(cand.contract, 0.1)
            results[name] = await ex.trade(cand, self.s.quantity, Side.SELL,
                                           self.prefix(name, "e"), tick=tick)  # fmt: skip
            self.trade.legs[name] = {"symbol": cand.symbol, "filled": results[name].filled,
                                     "avg": results[name].avg}  # fmt: skip
            self.save()
            if results[name].filled < self.s.quantity:
                break  # the other leg is not sold alone: unwind what there is
        if len(results) < len(self.legs) or any(
            r.filled < self.s.quantity for r in results.values()
        ):
            log.error("a leg did not fill completely: unwinding the strangle")
            await self.close_legs("entry_incomplete")
            raise TraderBlockedError("entry incomplete: both legs unwound")
        self.trade.premium = sum(r.avg for r in results.values())
        self.trade.phase = "open"
        self.save()
        usd = self.trade.premium * self.s.quantity * chosen.call.contract.multiplier
        log.info("entered: premium %.4g per coin (%.2f USD)", self.trade.premium, usd)

    async def watch_legs(self) -> None:
        """Subscribe the legs on the socket (its marks beat REST polling) and drain its events
        into the paper venue's market, if any."""
        if self.feed is None or self.desk is not None:  # the desk consumes its own feed
            return
        await self.feed.subscribe([c.contract for c in self.legs.values()])

        async def drain() -> None:
            async for ev in self.feed:
                if self.market is not None and isinstance(ev, Quote):
                    self.market.on_quote(ev)

        self._drain = asyncio.create_task(drain(), name="delta-trader:feed")

    async def marks(self) -> dict[str, float]:
        """Each leg's mark: the socket's when it has one, else the REST ticker's."""
        out = {}
        fresh_ns = self.clock.now_ns() - int(3 * max(self.s.poll_s, 1.0) * 1e9)
        for name, c in self.legs.items():
            mark = None
            if self.feed is not None and self.feed.mark_ts.get(c.contract, 0) >= fresh_ns:
                mark = self.feed.marks.get(c.contract)  # the socket's, while it is fresh
            if mark is None:
                try:
                    mark = num((await self.client.ticker(c.symbol)).get("mark_price"))
                except DeltaError as exc:
                    log.warning("mark of %s: %s", c.symbol, exc)
                    continue
            out[name] = mark
        return out

    def exit_due(self) -> bool:
        expiry = self.legs["C"].contract.expiry
        at = datetime.combine(expiry, clock_time(self.s.exit_time), KOLKATA)
        return self.now_ist() >= at

    async def monitor(self) -> str:
        self.tracker = ExitTracker(self.s, self.trade.premium)
        next_status = 0.0
        elapsed = 0.0
        while True:
            await self.refresh()
            marks = await self.marks()
            if len(marks) == len(self.legs):
                cost = sum(marks.values())
                reason = self.tracker.update(cost, scheduled=self.exit_due(),
                                             forced=self.stop_file.exists())  # fmt: skip
                status = self.tracker.status(cost, self.s.quantity,
                                             self.legs["C"].contract.multiplier)  # fmt: skip
                self.write_status(status)
                if elapsed >= next_status:
                    log.info("status: %s", json.dumps(status))
                    next_status = elapsed + self.s.status_every_s
                if reason is not None:
                    log.info("exit: %s at profit %.1f%%", reason, status["profit_pct"])
                    return reason
            await self.clock.sleep(self.s.poll_s)
            elapsed += self.s.poll_s

    def write_status(self, status: dict[str, Any]) -> None:
        doc = {"ts": self.now_ist().isoformat(), "phase": self.trade.phase,
               "legs": self.trade.legs, **status}  # fmt: skip
        tmp = self.log_dir / "status.json.tmp"
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.log_dir / "status.json")

    async def close_legs(self, reason: str) -> None:
        self.trade.phase, self.trade.exit_reason = "exiting", reason
        self.save()
        if self.desk is not None:
            await self._close_on_desk(reason)
            return
        ex = self.executor()
        for name, leg in list(self.trade.legs.items()):
            cand = self.legs[name]
            if leg["filled"] <= 0:
                continue
            if self.clock.now_ns() >= to_ns(expiry_time(cand.contract)):
                log.warning("%s has expired: Delta settles it at 17:30 IST, nothing to buy back",
                            cand.symbol)  # fmt: skip
                self.trade.closed[name] = {"filled": 0, "avg": 0.0, "settled": True}
                continue
            fresh = await self.candidates_for(cand)
            res = await ex.trade(fresh, leg["filled"], Side.BUY, self.prefix(name, "x"),
                                 tick=self.chains.ticks.get(cand.contract, 0.1))  # fmt: skip
            self.trade.closed[name] = {"filled": res.filled, "avg": res.avg}
            self.save()
            if res.filled < leg["filled"]:
                log.critical("%s: only %d of %d bought back: the position is OPEN", cand.symbol,
                             res.filled, leg["filled"])  # fmt: skip
                raise TraderBlockedError(f"could not buy back {cand.symbol} ({res.filled} of "
                                         f"{leg['filled']}): close it on the exchange")  # fmt: skip

    async def _close_on_desk(self, reason: str) -> None:
        assert self.desk is not None
        results = await self.desk.exit(Strangle(self.legs["C"], self.legs["P"]), reason)
        for name, res in results.items():
            self.trade.closed[name] = {"filled": res.filled, "avg": res.avg}
        self.save()
        held = self.desk.run.desk.book.held(self.desk.pid)
        if held is not None:
            log.critical("the desk still holds %s after the exit: the position is OPEN", held.id)
            raise TraderBlockedError(f"could not close {held.id}: close it on the exchange")

    async def candidates_for(self, cand: Candidate) -> Candidate:
        t = await self.client.ticker(cand.symbol)
        q = t.get("quotes") or {}
        bid, ask = num(q.get("best_bid"), 0.0), num(q.get("best_ask"), 0.0)
        mark = num(t.get("mark_price"), 0.0)
        return Candidate(cand.contract, cand.symbol, cand.delta, bid, ask, mark, cand.oi)

    async def run(self) -> dict[str, Any]:
        """The whole day; returns the trade report."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        checks = await self.prerequisites()
        log.info("prerequisites: %s", checks)
        if self.trade.phase == "done":
            return self.report()
        while not self.in_window() and self.trade.phase == "idle":
            log.warning("outside the trading window %s-%s IST (now %s): waiting",
                        self.s.window_start, self.s.window_end, self.now_ist().time())  # fmt: skip
            await self.clock.sleep(60)
        if self.trade.phase in ("idle", "entering"):
            chosen = await self.select() if self.trade.phase == "idle" else await self._resume()
            await self.enter(chosen)
        else:
            await self._resume()
        if self.trade.phase == "open":
            await self.watch_legs()
            reason = await self.monitor()
            await self.close_legs(reason)
        self.trade.phase = "done"
        self.save()
        report = self.report()
        report["fills"] = [msgspec.to_builtins(f) for f in await self.broker.fills()]
        self.state_store.save(f"{self.key}_report", report)
        (self.log_dir / f"{self.key}_report.json").write_text(json.dumps(report, indent=2))
        log.info("done: %s", json.dumps({k: report[k] for k in ("exit_reason", "pnl_usd")}))
        return report

    async def _resume(self) -> Strangle:
        """The saved strangle, re-read from the chain (a restart mid-trade)."""
        chain = {c.symbol: c for c in await self.candidates()}
        s = self.trade.strangle
        call, put = chain.get(s.get("call", "")), chain.get(s.get("put", ""))
        if call is None or put is None:
            raise TraderBlockedError(f"saved strangle {s.get('call')}/{s.get('put')} is not listed")
        self.legs = {"C": call, "P": put}
        log.warning("resuming the %s trade in phase %s", self.day, self.trade.phase)
        return Strangle(call, put)

    def report(self) -> dict[str, Any]:
        size = self.legs["C"].contract.multiplier if self.legs else 0.0
        bought = sum(v["avg"] for v in self.trade.closed.values())
        pnl = (self.trade.premium - bought) * self.s.quantity * size
        return {"day": self.trade.day, "underlying": self.s.underlying, "live": self.live,
                "settings": self.s.to_dict(), "strangle": self.trade.strangle,
                "legs": self.trade.legs, "closed": self.trade.closed,
                "premium": self.trade.premium, "exit_reason": self.trade.exit_reason,
                "pnl_usd": round(pnl, 4)}  # fmt: skip


class StoreDocs:
    """A StateStore on the desk's store (its ``state`` table): ``kit delta run --db`` keeps the
    trader's progress and trade reports beside the desk's records."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def load(self, key: str) -> dict[str, Any] | None:
        return self.store.load_state(key)

    def save(self, key: str, state: dict[str, Any]) -> None:
        import polars as pl

        row = {"key": [key], "doc": [json.dumps(state)], "updated_at": [datetime.now(KOLKATA)]}
        self.store.write([("state", pl.DataFrame(row))])


def attach_logs(log_dir: Path) -> list[logging.Handler]:
    """A detailed (DEBUG) and a summary (INFO) log file for the trader."""
    log_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers = []
    for name, level in (("delta_trader_detailed.log", logging.DEBUG),
                        ("delta_trader_summary.log", logging.INFO)):  # fmt: skip
        h = logging.FileHandler(log_dir / name)
        h.setLevel(level)
        h.setFormatter(fmt)
        handlers.append(h)
    for lg in (log, logging.getLogger("kit.adapters.delta")):
        lg.setLevel(logging.DEBUG)
        for h in handlers:
            lg.addHandler(h)
    return handlers


def detach_logs(handlers: list[logging.Handler]) -> None:
    for lg in (log, logging.getLogger("kit.adapters.delta")):
        for h in handlers:
            lg.removeHandler(h)
    for h in handlers:
        with contextlib.suppress(Exception):
            h.close()

"""``kit watch``: the desk in mode ``alert_only``: market context, a grid-driven opportunity
scan and the manual positions' exits, alerted and never traded.

Why a mode of the one builder (:mod:`kit.app.build`) rather than a separate program: the
context, the exits and the alerts are the desk's own (its market state, risk rules, alert
manager and sinks, store), so an alert here reads exactly as it would on ``kit serve``. Mode
``alert_only`` builds no broker and no order manager, and the desk's auto-manage is off, so
nothing here can send an order (``tests/test_watch.py`` proves it).

Three loops on the desk's clock (simulated time on the simulator, so a whole day runs in
seconds when stepped): the market context (``context_interval_s``, default 60 s), the
opportunity scan (``scan_interval_s``, 300 s) and the position tracker
(``positions_interval_s``, 60 s). After each pass the state (context, opportunities, reasons,
positions, last alerts) is written atomically to ``state_file`` (``--once --json``, scripts)
and, when :meth:`Watch.serve` started it, published as a snapshot on the project's loopback
gateway (:mod:`kit.remote.gateway`: token, newest wins), which the scanner page follows live
with ``kit.connect``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time as wall
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from kit.adapters.chains import ChainSource
from kit.app.build import FeedSpec, Run, RunSpec, build
from kit.app.service import sync_manual
from kit.app.watch_config import WatchConfig
from kit.app.watch_exits import ManualExits
from kit.app.watch_grid import band_keys, history_context
from kit.app.watch_scan import GridResults, load_results, scan, today_ny, window
from kit.core.clock import NEW_YORK, Clock, SimClock
from kit.core.config import env
from kit.core.model import Alert, Quote, Severity
from kit.core.tasks import cancel
from kit.engine.alerts import AlertSink
from kit.engine.records import record_to_json
from kit.engine.snapshot import build_snapshot
from kit.positions.manual import ManualBook, manual_path
from kit.remote.gateway import Gateway, GatewayConfig, service_token
from kit.research.grid.context import DayContext
from kit.risk.rules import load_rules
from kit.signals.regimes import RegimeTracker, gamma_regime, vix_regimes
from kit.sinks.jsonl import RotatingJsonlSink

log = logging.getLogger(__name__)

ROOTS = {"SPX": ("SPXW", "SPX"), "NDX": ("NDXP", "NDX")}
TRENDS = ("up", "down", "sideways", "auto")
# The watch's exits and limits when neither --rules nor KIT_RULES names a file: the desk's rules
# (kit/risk/rules.toml) with one profit-target alert at 50 % of the credit and tighter limits
# for a hand-traded book; the stop (2x the credit) and the time stop are the desk's.
WATCH_RULES: dict[str, Any] = {
    "profit_target": {"levels": [{"at": 50.0, "severity": "INFO", "action": "close_all"}]},
    "limits": {"max_open_positions": 5, "max_total_risk": 50_000.0},
}
CHAIN_DAYS = 7  # calendar days of expiries read for GEX and the scan (more when the grid asks)


@dataclass(frozen=True)
class WatchSpec:
    """What ``kit watch`` watches, on which feed; the simulator's day/start/seed as ``kit run``."""

    underlying: str = "SPX"
    trend: str = "auto"
    grid: str | None = None
    history: str | None = None  # for trend auto and P-bands; None: the grid's own, if beside it
    config: WatchConfig = field(default_factory=WatchConfig)
    feed: str = "sim"
    rules: str | None = None
    db: str | None = None
    day: date | None = None
    start: time | None = None
    seed: int | None = None
    speed: float | None = 1.0
    script: str = ""
    manual: Path | None = None
    sinks: tuple[AlertSink, ...] = ()

    def __post_init__(self) -> None:
        if self.underlying not in ROOTS:
            raise ValueError(f"--underlying {self.underlying!r}: use one of {', '.join(ROOTS)}")
        if self.trend not in TRENDS:
            raise ValueError(f"--trend {self.trend!r}: use one of {', '.join(TRENDS)}")

    def run_spec(self) -> RunSpec:
        sim = {k: v for k, v in (("day", self.day), ("start", self.start), ("seed", self.seed))
               if v is not None}  # fmt: skip
        log_sink = RotatingJsonlSink(self.config.alert_log, self.config.alert_log_bytes)
        path = self.rules or env("KIT_RULES")
        rules = load_rules(path, None if path else WATCH_RULES)
        return RunSpec(mode="alert_only", feed=FeedSpec.parse(self.feed), rules=rules,
                       db=self.db, speed=self.speed, script=self.script or (),
                       sinks=(*self.sinks, log_sink), resume_key="watch", **sim)  # fmt: skip


async def _no_commands(message: Any, who: str) -> dict[str, Any]:
    """The watch's gateway answers every command with a refusal: alert-only, nothing to drive."""
    raise ValueError("kit watch is alert-only: it takes no commands")


def _num(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 4)


class Watch:
    """One alert-only desk and its three passes. ``await start()``, then :meth:`once` or
    :meth:`run_loops`, then ``await close()``."""

    def __init__(self, spec: WatchSpec) -> None:
        self.spec, self.cfg = spec, spec.config
        self.grid: GridResults | None = load_results(spec.grid) if spec.grid else None
        beside = Path(spec.grid) / "history" if spec.grid else None
        self.history = (Path(spec.history) if spec.history else
                        beside if beside is not None and beside.is_dir() else None)  # fmt: skip
        self._keys = band_keys(self.grid.results) if self.grid is not None else set()
        self._bands: dict[tuple[int, int, float], tuple[float, float]] = {}
        self.manual = ManualBook(spec.manual or manual_path())
        self.exits = ManualExits(self.manual, self.cfg)
        self._manual_seen: tuple[int, int, int] | None = None
        self.regimes = RegimeTracker()
        self.context: dict[str, Any] = {}
        self.opportunities: list[dict[str, Any]] = []
        self.reasons: list[str] = []
        self._frame: Any = None
        self._session_open: tuple[date, float] | None = None
        self._summarised: date | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.run: Run | None = None
        self.gateway: Gateway | None = None

    async def start(self) -> Watch:
        self.run = run = await build(self.spec.run_spec())
        if run.broker is not None or run.orders is not None:  # the builder's promise, checked
            raise RuntimeError("alert_only desk was built with a broker")
        self.clock: Clock = run.clock
        self.desk = run.desk
        self.chains: ChainSource = run.chains
        await run.start()
        await self.desk.subscribe([self.spec.underlying])
        return self

    async def _first_tick(self, timeout_s: float = 5.0) -> None:
        """Wait (market time) for the underlying's first price when the chain snapshot did not
        carry it (the simulator's has SPX, not NDX): the feed's next step does. A stepped clock
        is moved on by the second, so ``--once`` reads at most a few seconds later."""
        u, waited = self.spec.underlying, 0.0
        while not math.isfinite(self.desk.market.spot_of(u)) and waited < timeout_s:
            if isinstance(self.clock, SimClock) and self.clock.speed is None:
                await self.clock.run_until(self.clock.now() + timedelta(seconds=1))
                waited += 1.0
            else:
                await asyncio.sleep(0.1)
                waited += 0.1

    async def close(self) -> None:
        await cancel(*self._tasks)
        if self.gateway is not None:
            await self.gateway.close()
        if self.run is not None:
            await self.run.close()

    # --- market context ---

    async def _chain(self) -> tuple[list[Quote], dict[Any, float]]:
        """Quotes and open interest of the underlying's expiries within the horizon."""
        today = today_ny(self.clock.now())
        horizon = CHAIN_DAYS
        if self.grid is not None and self.grid.results.height:
            horizon = max(horizon, int(max(float(d) for d in self.grid.results["dte"])) + 3)
        quotes: list[Quote] = []
        oi: dict[Any, float] = {}
        for root in ROOTS[self.spec.underlying]:
            for expiry in await self.chains.expirations(root):
                if not 0 <= (expiry - today).days <= horizon:
                    continue
                contracts = await self.chains.contracts(root, expiry)
                if not contracts:
                    continue
                snap = await self.chains.snapshot(contracts)
                self.desk.process(snap.events)
                quotes.extend(e for e in snap.events if type(e) is Quote)
                oi.update(snap.open_interest)
        return quotes, oi

    async def update_context(self) -> dict[str, Any]:
        """Price and change, VIX level and regime, IV rank, gamma regime, volume ratio, market
        open; alerts a regime change (VIX or gamma) as ``Regime change: LOW → MEDIUM``."""
        from kit.signals.chains import chain_from_quotes
        from kit.signals.gex import gex_levels

        now = self.clock.now()
        u = self.spec.underlying
        quotes, oi = await self._chain()
        m = self.desk.market
        if not math.isfinite(m.spot_of(u)):  # not in the chain snapshot: the feed's next tick
            await self._first_tick()
            now = self.clock.now()
        spot, vix = float(m.spot_of(u)), float(m.spot_of("VIX"))
        market_open, entry_open, why = window(now, self.cfg)
        day = today_ny(now)
        if self._session_open is None or self._session_open[0] != day:
            self._session_open = (day, spot) if math.isfinite(spot) else None
        first = self._session_open[1] if self._session_open else math.nan
        history = await self.chains.iv_history("SPX")  # daily VIX closes (the SPX's vol index)
        past = np.asarray(history if history is not None else [], dtype=float)
        regime = vix_regimes(np.append(past, vix))[-1] if math.isfinite(vix) else None
        iv_rank = self.desk.iv_rank("SPX")
        chain, levels, gamma = None, None, "UNKNOWN"
        if quotes and math.isfinite(spot) and spot > 0:
            chain = chain_from_quotes(quotes, spot, now, open_interest=oi, underlying=u,
                                      source=f"watch:{u}")  # fmt: skip
            levels = gex_levels(chain)
            gamma = str(gamma_regime(spot, levels.zero_gamma, total_gex=levels.total_gex,
                                     vix=vix))  # fmt: skip
        trend, source, note = self._trend(now, spot, vix)
        self.context = {
            "ts": now.isoformat(), "underlying": u, "price": _num(spot),
            "change": _num(spot - first), "change_pct": _num((spot / first - 1) * 100),
            "vix": _num(vix), "regime": regime, "iv_rank": _num(iv_rank),
            "gamma_regime": gamma,
            "zero_gamma": _num(levels.zero_gamma) if levels and levels.zero_gamma else None,
            "volume_ratio": self._volume_ratio(quotes),
            "market_open": market_open, "entry_window": entry_open, "why_not": why,
            "trend": trend, "trend_source": source, "history_note": note,
        }  # fmt: skip
        self._frame = None
        if chain is not None:
            from kit.app.watch_scan import live_frame

            self._frame = live_frame(chain, vix)
        ts = self.clock.now_ns()
        for kind, value in (("vix", regime), ("gamma", gamma if gamma != "UNKNOWN" else None)):
            change = self.regimes.update(ts, kind, value, {"vix": vix, "spot": spot})
            if change is not None:
                text = (f"Regime change: {str(change.previous).upper()} → "
                        f"{str(change.current).upper()} ({kind.upper()}"
                        f"{f' {vix:.1f}' if kind == 'vix' else ''})")  # fmt: skip
                self._publish(msgspec.structs.replace(change.alert(), message=text))
        return self.context

    def _trend(self, now: datetime, spot: float, vix: float) -> tuple[str | None, str, str | None]:
        """(trend, where it came from, why unknown) and today's P-band edges from the history
        by the grid's rules; ``--trend`` other than auto wins."""
        hctx, why = None, "no history: trend auto matches configs without a trend filter"
        if self.history is not None and math.isfinite(spot):
            hctx, why = history_context(self.history, self.spec.underlying, now, spot, vix,
                                        self._keys)  # fmt: skip
        self._bands = hctx.bands if hctx is not None else {}
        if self.spec.trend != "auto":
            return self.spec.trend, "--trend", why
        return (hctx.trend if hctx else None), "history" if hctx else "unknown", why

    def _volume_ratio(self, quotes: list[Quote]) -> float | None:
        """Put/call volume ratio of today's option trades on the read expiries, where the feed
        reports volume (the simulator); None elsewhere."""
        market = getattr(self.run.feed, "market", None) if self.run else None
        if market is None or not hasattr(market, "volume") or not quotes:
            return None
        nearest = min(q.contract.expiry for q in quotes)
        contracts = [q.contract for q in quotes if q.contract.expiry == nearest]
        vol = market.volume(contracts)
        calls = np.array([c.is_call for c in contracts])
        c, p = float(vol[calls].sum()), float(vol[~calls].sum())
        return round(p / c, 4) if c > 0 else None

    def _publish(self, alert: Alert) -> None:
        record = self.desk.alerts.notify(alert)
        self.desk.hooks.publish(record)

    # --- the opportunity scan ---

    async def scan_once(self) -> list[dict[str, Any]]:
        """Top-N opportunities on the live chain; each new one in its entry window is an INFO
        ``opportunity`` alert, de-duplicated by the desk's alert manager (config and strikes)."""
        if not self.context:
            await self.update_context()
        now = self.clock.now()
        if self.grid is None:
            self.opportunities, self.reasons = [], ["no grid results (--grid DIR)"]
            return []
        if not self.context.get("market_open"):
            self.opportunities, self.reasons = [], ["outside trading hours"]
            return []
        if self._frame is None:
            self.opportunities = []
            self.reasons = [f"no live {self.spec.underlying} chain or price from the feed"]
            return []
        c = self.context
        ctx = DayContext(day=today_ny(now), weekday=now.astimezone(NEW_YORK).strftime("%a").lower(),
                         vix_regime=c["regime"], iv_rank=c["iv_rank"] or math.nan,
                         trend=c["trend"], bands=self._bands)  # fmt: skip
        self.opportunities, self.reasons = scan(self.grid, self._frame, ctx, now, self.cfg)
        ts = self.clock.now_ns()
        offers = []
        for o in self.opportunities:
            if not o["in_entry_window"]:
                continue
            strikes = "/".join(f"{leg['strike']:g}" for leg in o["legs"])
            msg = (f"OPPORTUNITY {self.spec.underlying} {o['strategy']} {o['expiry']} {strikes}: "
                   f"credit {o['credit']:.2f} mid / {o['credit_natural']:.2f} natural, max risk "
                   f"${o['max_risk']:,.0f}; backtest win {o['win_rate']}% ROI {o['roi']}% "
                   f"score {o['score']} (config {o['config_id']}, {o['stats_for']})")  # fmt: skip
            offers.append(Alert(ts, Severity.INFO, "opportunity", msg, "watch:scan", o,
                                key=f"{o['config_id']}:{o['expiry']}:{strikes}"))  # fmt: skip
        for record in self.desk.alerts.offer(offers, scope={"watch:scan"}):
            self.desk.hooks.publish(record)
        return self.opportunities

    # --- positions ---

    def track(self) -> list[dict[str, Any]]:
        """Load new or changed manual positions into the book (alert-only), re-evaluate: the
        desk's rules raise their exits (profit target, stop, time stop, limits)."""

        def spawn(job: Awaitable[None]) -> None:
            self._tasks.append(asyncio.ensure_future(job))  # type: ignore[arg-type]

        self._manual_seen, _ = sync_manual(self.desk, self.manual, self._manual_seen, spawn)
        self.desk.evaluate()
        rows = self.exits.with_stated(build_snapshot(self.desk).positions)
        for alert in self.exits.check(rows, self.desk.rules, self.clock.now()):
            self._publish(alert)
        self._end_of_day()
        return rows

    def _end_of_day(self) -> None:
        """Once a day at ``trading_end``: an INFO ``end_of_day`` alert summing up the session
        (opportunities alerted, regime changes, positions, capital at risk, P&L)."""
        local = self.clock.now().astimezone(self.cfg.zone)
        if local.time() < self.cfg.trading_end or self._summarised == local.date():
            return
        self._summarised = local.date()
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        since = int(start.timestamp() * 1e9)
        today = [r.alert.rule for r in self.desk.alerts.history if r.alert.ts_ns >= since]
        p = self.state()["portfolio"]
        counts = {"opportunities": today.count("opportunity"),
                  "regime_changes": today.count("regime_change")}  # fmt: skip
        msg = (f"End of day {local:%Y-%m-%d}: {counts['opportunities']} opportunities alerted, "
               f"{counts['regime_changes']} regime changes; {p['open']} open / {p['closed']} "
               f"closed positions, capital at risk ${p['capital_at_risk']:,.0f}, unrealized "
               f"${p['unrealized_pnl']:,.2f}, realized ${p['realized_pnl']:,.2f}")  # fmt: skip
        self._publish(Alert(self.clock.now_ns(), Severity.INFO, "end_of_day", msg,
                            inputs={**counts, **p}, key=f"{local:%Y-%m-%d}"))  # fmt: skip

    # --- state and loops ---

    def state(self) -> dict[str, Any]:
        """What the dashboard shows, JSON-ready."""
        snap = build_snapshot(self.desk)
        positions = self.exits.with_stated(snap.positions)
        open_rows = [p for p in positions if p["open"]]
        return {
            "context": self.context, "opportunities": self.opportunities,
            "reasons": self.reasons, "positions": snap.positions,
            "portfolio": {"open": len(open_rows),
                          "closed": len(snap.positions) - len(open_rows),
                          "capital_at_risk": sum(p["risk"] for p in open_rows),
                          "unrealized_pnl": sum(p["open_pnl"] for p in open_rows),
                          "realized_pnl": sum(p["realized_pnl"] for p in snap.positions)},
            "alerts": [record_to_json(r) for r in snap.log],
        }  # fmt: skip

    def write_state(self) -> None:
        """The state to ``state_file`` (atomically) and, when serving, to the gateway's viewers
        as a ``snapshot`` frame stamped ``wall_ns`` (newest wins; a slow page skips passes)."""
        text = json.dumps(self.state(), default=str)
        path = Path(self.cfg.state_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(path)
        if self.gateway is not None:
            doc = {"type": "snapshot", **json.loads(text), "wall_ns": wall.time_ns()}
            self.gateway.publish_snapshot(doc)

    async def serve(self, port: int = 0, token: str | None = None) -> Gateway:
        """Serve the state on the loopback gateway at ``port`` (0: any free one; the real one is
        ``gateway.port``) with the desk service's token (``KIT_TOKEN`` or its token file). The
        hello says ``mode: alert_only`` and lists no commands; every command is refused."""
        hello = {"engine": {"mode": "alert_only", "pid": os.getpid(),
                            "underlying": self.spec.underlying}, "commands": []}  # fmt: skip
        self.gateway = Gateway(token or service_token(), _no_commands, lambda: hello,
                               GatewayConfig(host="127.0.0.1", port=port))  # fmt: skip
        await self.gateway.start()
        if self.context:
            self.write_state()
        return self.gateway

    async def once(self) -> dict[str, Any]:
        """One market-context pass, one position pass and one scan (``--once``)."""
        await self.update_context()
        self.track()
        await self.scan_once()
        self.write_state()
        return {"context": self.context, "opportunities": self.opportunities,
                "reasons": self.reasons}  # fmt: skip

    async def _every(self, seconds: float, name: str, body: Callable[[], Any]) -> None:
        while True:
            try:
                result = body()
                if asyncio.iscoroutine(result):
                    await result
                self.write_state()
                self.desk.health.ok(f"watch:{name}")
            except Exception as exc:  # one bad pass is reported; the watch goes on
                self.desk.health.failed(f"watch:{name}", exc)
            await self.clock.sleep(seconds)

    def start_loops(self) -> None:
        """The three loops, as tasks on the desk's clock."""
        c = self.cfg
        for seconds, name, body in ((c.context_interval_s, "context", self.update_context),
                                    (c.positions_interval_s, "positions", self.track),
                                    (c.scan_interval_s, "scan", self.scan_once)):  # fmt: skip
            self._tasks.append(asyncio.create_task(self._every(seconds, name, body)))

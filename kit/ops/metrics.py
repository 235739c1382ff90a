"""Every Prometheus metric of the desk service, in one registry per service.

Two kinds of numbers, measured two ways so the tick path pays almost nothing:

* **Events** (latencies, alerts, orders, commands) are observed as they pass: the desk's
  ``process`` and ``evaluate`` are timed by wrapping the bound methods of that one desk (no edit
  to the hot path, nothing at all when metrics are off), and a desk listener
  (:class:`~kit.engine.hooks.DeskHooks`) counts alerts, order states and decisions.
* **State the objects already keep** (feed stats, the desk's counters and feed states, the
  store writer's stats, the gateway's viewers) is read at scrape time by a collector, so the
  feeds' and the writer's own loops are untouched.

Label sets are bounded: feeds, rules, severities, order statuses, commands and rejection stages
are names from code, and :class:`_Bounded` folds anything past a cap into ``other``. Contract
and position ids are never labels.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kit.core.clock import NS_PER_S
from kit.core.model import Decision, FeedState
from kit.engine.records import AlertRecord
from kit.execution.broker import OrderState, OrderStatus

if TYPE_CHECKING:
    from kit.engine.desk import Desk
    from kit.remote.gateway import Gateway
    from kit.store.writer import StoreWriter

# Seconds: sub-millisecond evaluations up to the targets (50 ms data, 200 ms alert)
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0)
SLOW_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LABEL_CAP = 32  # distinct values per label before the rest read "other"
LAG_PERIOD_S = 0.25  # how often the event-loop probe wakes


class _Bounded:
    """Label values as given until ``cap`` distinct ones were seen; then ``other``."""

    def __init__(self, cap: int = LABEL_CAP) -> None:
        self.cap = cap
        self.seen: set[str] = set()

    def __call__(self, value: object) -> str:
        text = str(value)[:40] or "none"
        if text in self.seen:
            return text
        if len(self.seen) >= self.cap:
            return "other"
        self.seen.add(text)
        return text


def rejection_stage(decision: Decision) -> str:
    """Why the order manager refused, as a bounded reason: ``pretrade`` (an intent refused by
    the pre-trade checks), ``action`` (a rule's action not carried out)."""
    return "action" if "rule" in decision.inputs else "pretrade"


class DeskMetrics:
    """The registry and its metrics; ``watch_*`` attach them to a running service's parts."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.started = time.time()
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes
        self.tick_to_evaluation = Histogram(
            "kit_tick_to_evaluation_seconds",
            "Wall time from a batch of market events entering "
            "the desk to the end of its evaluation",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tick_to_alert = Histogram(
            "kit_tick_to_alert_seconds",
            "Wall time from a batch entering the desk to its alerts "
            "being published (batches that raised one)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.evaluation = Histogram(
            "kit_evaluation_seconds",
            "One desk evaluation (reprice legs, revalue book, run "
            "every rule), ticks and heartbeats",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.alerts = Counter("kit_alerts_total", "Alerts raised", ["rule", "severity"], registry=r)
        self.orders = Counter(
            "kit_orders_total", "Order state reports by status", ["status"], registry=r
        )
        self.round_trip = Histogram(
            "kit_order_round_trip_seconds",
            "Wall time from an order's first report (sent) to "
            "the broker's first answer (working, filled or rejected)",
            buckets=SLOW_BUCKETS,
            registry=r,
        )
        self.rejections = Counter(
            "kit_order_rejections_total",
            "Orders or intents refused, by stage (pretrade, action, broker)",
            ["reason"],
            registry=r,
        )
        self.store_write = Histogram(
            "kit_store_write_seconds",
            "One batch written to the store",
            buckets=SLOW_BUCKETS,
            registry=r,
        )
        self.snapshots = Counter(
            "kit_gateway_snapshots_total", "Snapshots published to viewers", registry=r
        )
        self.commands = Counter(
            "kit_gateway_commands_total",
            "Commands handled, by outcome",
            ["cmd", "outcome"],
            registry=r,
        )
        self.command_time = Histogram(
            "kit_gateway_command_seconds",
            "Time to answer a command",
            ["cmd"],
            buckets=SLOW_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "kit_event_loop_lag_seconds",
            "How late the event loop ran a timer that was due",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        for status in OrderStatus:  # every series exists from the first scrape (rates need it)
            self.orders.labels(status.value)
        for stage in ("pretrade", "action", "broker"):
            self.rejections.labels(stage)
        self._rules, self._cmds = _Bounded(), _Bounded()
        self._sent: OrderedDict[str, float] = OrderedDict()  # client id -> wall time first seen
        self._state = _StateCollector(self)
        r.register(self._state)

    # --- attaching ---

    def watch_desk(self, desk: Desk) -> None:
        """Time this desk's ``process`` and ``evaluate`` and listen to its events."""
        process, evaluate = desk.process, desk.evaluate
        perf = time.perf_counter
        to_eval, to_alert, ev = (
            self.tick_to_evaluation.observe,
            self.tick_to_alert.observe,
            self.evaluation.observe,
        )

        def timed_process(events: Any) -> list[AlertRecord]:
            t0 = perf()
            emitted = process(events)
            dt = perf() - t0
            to_eval(dt)
            if emitted:
                to_alert(dt)
            return emitted

        def timed_evaluate() -> list[AlertRecord]:
            t0 = perf()
            emitted = evaluate()
            ev(perf() - t0)
            return emitted

        desk.process = timed_process  # type: ignore[method-assign]
        desk.evaluate = timed_evaluate  # type: ignore[method-assign]
        desk.hooks.add_listener(self.on_event)
        self._state.desk = desk

    def watch_writer(self, writer: StoreWriter) -> None:
        writer.on_write = self.store_write.observe
        self._state.writer = writer

    def watch_gateway(self, gateway: Gateway) -> None:
        self._state.gateway = gateway

    # --- events ---

    def on_event(self, event: Any) -> None:
        """A desk listener: alerts (first emission only, not acknowledgements), order states,
        the order manager's refusals."""
        t = type(event)
        if t is AlertRecord:
            if event.acked_ts_ns is None:
                a = event.alert
                self.alerts.labels(self._rules(a.rule), a.severity.value).inc()
        elif t is OrderState:
            self._on_order(event)
        elif t is Decision and event.kind == "rejected":
            self.rejections.labels(rejection_stage(event)).inc()

    def _on_order(self, state: OrderState) -> None:
        self.orders.labels(state.status.value).inc()
        cid, now = state.client_id, time.perf_counter()
        if state.status is OrderStatus.PENDING:
            self._sent.setdefault(cid, now)
            while len(self._sent) > 10_000:  # orders never answered must not grow this forever
                self._sent.popitem(last=False)
            return
        sent = self._sent.pop(cid, None)
        if sent is not None:
            self.round_trip.observe(now - sent)
        if state.status is OrderStatus.REJECTED:
            self.rejections.labels("broker").inc()

    def command(self, cmd: object, seconds: float, outcome: str) -> None:
        """A gateway command was answered (``outcome``: ok, refused, error)."""
        name = self._cmds(cmd)
        self.commands.labels(name, outcome).inc()
        self.command_time.labels(name).observe(seconds)

    async def probe_loop(self) -> None:
        """Event-loop lag: how much later than asked a short sleep wakes (a blocked loop delays
        every feed, command and snapshot by as much)."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_PERIOD_S
            await asyncio.sleep(LAG_PERIOD_S)
            self.loop_lag.observe(max(0.0, loop.time() - due))


class _StateCollector(Collector):
    """What the desk, feeds, store writer and gateway already count, read at scrape time."""

    def __init__(self, metrics: DeskMetrics) -> None:
        self.metrics = metrics
        self.desk: Desk | None = None
        self.writer: StoreWriter | None = None
        self.gateway: Gateway | None = None

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield _gauge(
            "kit_uptime_seconds", "Seconds since the service started", time.time() - m.started
        )
        if self.desk is not None:
            yield from _desk(self.desk)
        if self.writer is not None:
            yield from _writer(self.writer)
        if self.gateway is not None:
            yield _gauge("kit_gateway_clients", "Viewers connected", len(self.gateway.viewers))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


FEED_COUNTERS: tuple[tuple[str, str, Callable[[Any], float]], ...] = (
    ("kit_feed_messages_total", "Market events received", lambda s: s.events),
    ("kit_feed_frames_total", "Network frames received", lambda s: s.frames),
    ("kit_feed_bytes_total", "Bytes received (text frames: characters)", lambda s: s.bytes),
    ("kit_feed_malformed_frames_total", "Frames that could not be parsed", lambda s: s.malformed),
    ("kit_feed_reconnects_total", "Reconnections after a drop", lambda s: s.reconnects),
    (
        "kit_feed_gaps_total",
        "Silences on a live connection (each one backfilled)",
        lambda s: s.silences,
    ),
    (
        "kit_feed_gaps_lost_total",
        "Gaps given up after repeated backfill failures",
        lambda s: s.gaps_lost,
    ),
    ("kit_feed_backfilled_events_total", "Events recovered by backfills", lambda s: s.backfilled),
    (
        "kit_feed_duplicates_dropped_total",
        "Duplicate events dropped",
        lambda s: s.duplicates_dropped,
    ),
    (
        "kit_feed_out_of_window_total",
        "Events stamped outside the clock's sane window",
        lambda s: s.out_of_window,
    ),
)


def _desk(desk: Desk) -> Iterator[Metric]:
    feeds = [f for f in desk.feeds if getattr(f, "stats", None) is not None]
    for name, doc, get in FEED_COUNTERS:
        family = CounterMetricFamily(name, doc, labels=["feed"])
        for f in feeds:
            family.add_metric([f.name], get(f.stats))
        yield family
    state = GaugeMetricFamily(
        "kit_feed_state",
        "1 for the feed's current state (LIVE, STALE, CONNECTING, DISCONNECTED, CLOSED)",
        labels=["feed", "state"],
    )
    for f in desk.feeds:
        now = feed_state(desk, f)
        for s in FeedState:
            state.add_metric([f.name, s.value], 1.0 if s is now else 0.0)
    yield state
    now_ns = desk.clock.now_ns()
    age = (now_ns - desk.last_data_ns) / NS_PER_S
    yield _gauge("kit_data_age_seconds", "Clock seconds since the last market data", max(age, 0))
    per_feed = GaugeMetricFamily("kit_feed_data_age_seconds",
                                 "Clock seconds since each feed last delivered events",
                                 labels=["feed"])  # fmt: skip
    for f in desk.feeds:
        seen = desk.feed_seen_ns.get(f.name)
        if seen is not None:
            per_feed.add_metric([f.name], max(0.0, (now_ns - seen) / NS_PER_S))
    yield per_feed
    st = desk.stats
    yield _counter("kit_desk_events_total", "Events the desk applied", st["events"])
    yield _counter("kit_desk_events_rejected_total", "Events the desk refused", st["rejected"])
    yield _counter("kit_desk_evaluations_total", "Desk evaluations", st["evaluations"])
    yield _counter(
        "kit_actions_executed_total", "Actions sent to the order manager", st["actions_executed"]
    )
    yield _gauge("kit_engine_degraded", "1 while a desk stage is failing", desk.health.degraded)
    yield _gauge("kit_engine_killed", "1 while the kill switch is on", desk.killed)
    yield _gauge("kit_positions", "Positions in the book", len(desk.book.ids))


def feed_state(desk: Desk, feed: Any) -> FeedState:
    """A feed's state: its own when it keeps one, else the last status the desk heard."""
    own = getattr(feed, "state", None)
    return own if isinstance(own, FeedState) else desk.feed_states.get(feed.name, FeedState.CLOSED)


def _writer(w: StoreWriter) -> Iterator[Metric]:
    st = w.stats
    yield _counter("kit_store_rows_written_total", "Rows written to the store", st["written"])
    yield _counter(
        "kit_store_rows_dropped_total", "Rows dropped (buffer bound, spool failure)", st["dropped"]
    )
    yield _counter("kit_store_rows_rejected_total", "Rows refused as invalid", st["rejected"])
    yield _counter(
        "kit_store_rows_spooled_total",
        "Rows spooled to disk on close during an outage",
        st["spooled"],
    )
    yield _counter("kit_store_outages_total", "Times the store became unavailable", st["outages"])
    yield _gauge("kit_store_rows_buffered", "Rows not yet in the database", w.buffered)
    yield _gauge("kit_store_available", "1 while the store accepts writes", w.available)

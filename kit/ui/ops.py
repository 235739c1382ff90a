"""The operations page (``?page=ops`` in the monitor): is the desk healthy, before a trader
notices a stale price?

It reads what any operator's tool would: the service's ``/readyz`` and ``/metrics`` over HTTP
on the metrics port (``kit serve --metrics-port``; the port is announced in the gateway's hello),
and the alert log of the snapshots it already receives. It imports no engine module.

Colours (green / amber / red), the documented thresholds:

* feed: green LIVE with data younger than ``FRESH_S``; amber LIVE but older, or STALE /
  CONNECTING; red DISCONNECTED / CLOSED or data past the feed-stale limit (not ready).
* latency: green when the histogram's p99 bucket is within the target, amber within twice the
  target, red beyond (targets: data processing 50 ms, alert 200 ms, UI 500 ms).
* store, broker, engine: green when their readiness check passes, red when not; the store is
  amber while its backlog exceeds ``BACKLOG_AMBER`` rows.
* errors: amber when a count grew since the previous refresh.
"""

from __future__ import annotations

import asyncio
import html
import math
import time
from typing import Any
from urllib.parse import parse_qs

import httpx
import ipywidgets as w
from prometheus_client.parser import text_string_to_metric_families

from kit.core.config import env
from kit.core.tasks import cancel
from kit.remote.client import DeskClient, connect
from kit.ui.panels import CSS, html_widget, set_html

FRESH_S = 5.0
BACKLOG_AMBER = 10_000
# (metric, label on the page, target in seconds): the latency targets
TARGETS = (("kit_tick_to_evaluation_seconds", "data processing (tick to evaluation)", 0.050),
           ("kit_tick_to_alert_seconds", "tick to alert", 0.200),
           ("kit_evaluation_seconds", "one evaluation (risk)", 0.100))  # fmt: skip
UI_TARGET_S = 0.500
ERRORS = (("kit_feed_malformed_frames_total", "malformed frames"),
          ("kit_feed_reconnects_total", "feed reconnects"),
          ("kit_feed_gaps_lost_total", "gaps lost"),
          ("kit_desk_events_rejected_total", "events rejected"),
          ("kit_order_rejections_total", "order rejections"),
          ("kit_store_rows_dropped_total", "store rows dropped"),
          ("kit_store_rows_rejected_total", "store rows rejected"))  # fmt: skip
STYLE = "<style>.kit-ops td { padding: 2px 12px 2px 0; }</style>"
COLOURS = {"green": "#1a7f37", "amber": "#b7791f", "red": "#c62828"}
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def parse(text: str) -> Samples:
    """Prometheus text → every sample by name, keyed by its sorted label pairs."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def total(samples: Samples, name: str) -> float:
    return sum(samples.get(name, {}).values())


def quantile(samples: Samples, name: str, q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (None before any observation)."""
    buckets = sorted(
        (float(dict(k)["le"]), v) for k, v in samples.get(f"{name}_bucket", {}).items()
    )
    count = buckets[-1][1] if buckets else 0.0
    if not count:
        return None
    return next(le for le, n in buckets if n >= q * count)


def grade(value: float | None, target: float) -> str:
    if value is None or value <= target:
        return "green"
    return "amber" if value <= 2 * target else "red"


def _dot(colour: str) -> str:
    return f'<span class="kit-ops-{colour}" style="color:{COLOURS[colour]}">&#9679;</span>'


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "> 1 s" if math.isinf(seconds) else f"{seconds * 1e3:,.1f} ms"


def render(ready: dict[str, Any], now: Samples, before: Samples | None, dt: float,
           snapshot: dict[str, Any] | None) -> str:  # fmt: skip
    """The page as HTML, from one readiness answer, two scrapes ``dt`` seconds apart and the
    newest snapshot (pure: the test renders real answers through it)."""
    checks = ready.get("checks", {})
    feeds = checks.get("feeds", {})
    age = feeds.get("data_age_s")
    rows = []
    for feed, state in feeds.get("states", {}).items():
        key = (("feed", feed),)
        own = now.get("kit_feed_data_age_seconds", {}).get(key, age)  # this feed's own age
        if state == "LIVE" and feeds.get("ok"):
            colour = "green" if own is not None and own < FRESH_S else "amber"
        else:
            colour = "amber" if state in ("STALE", "CONNECTING") else "red"
        rate = ""
        if before is not None and dt > 0:
            moved = now.get("kit_feed_messages_total", {}).get(key, 0.0) - before.get(
                "kit_feed_messages_total", {}).get(key, 0.0)  # fmt: skip
            rate = f"{moved / dt:,.0f} msg/s"
        rows.append((colour, f"feed {feed}", state, f"data {own:.1f} s old" if own is not None
                     else "", rate))  # fmt: skip
    for name in ("broker", "store", "engine"):
        c = checks.get(name, {})
        colour = "green" if c.get("ok") else "red"
        if name == "store" and c.get("ok") and c.get("buffered", 0) > BACKLOG_AMBER:
            colour = "amber"
        rows.append((colour, name, "ok" if c.get("ok") else "NOT OK", c.get("detail", ""), ""))
    status = "".join(f"<tr><td>{_dot(c)}</td><td>{html.escape(a)}</td><td>{html.escape(b)}</td>"
                     f"<td>{html.escape(d)}</td><td>{html.escape(r)}</td></tr>"
                     for c, a, b, d, r in rows)  # fmt: skip
    lat = []
    for metric, label, target in TARGETS:
        p50, p99 = quantile(now, metric, 0.5), quantile(now, metric, 0.99)
        lat.append((grade(p99, target), label, _ms(p50), _ms(p99), _ms(target)))
    ui = None
    if snapshot and snapshot.get("wall_ns"):
        ui = max(0.0, (time.time_ns() - snapshot["wall_ns"]) / 1e9)
    lat.append((grade(ui, UI_TARGET_S), "UI (snapshot age on this page)", _ms(ui), "",
                _ms(UI_TARGET_S)))  # fmt: skip
    latency = "".join(f"<tr><td>{_dot(c)}</td><td>{a}</td><td>{b}</td><td>{p}</td><td>{t}</td>"
                      "</tr>" for c, a, b, p, t in lat)  # fmt: skip
    errs = []
    for metric, label in ERRORS:
        n = total(now, metric)
        grew = before is not None and n > total(before, metric)
        errs.append(f"<tr><td>{_dot('amber' if grew else 'green')}</td><td>{label}</td>"
                    f"<td>{n:,.0f}</td></tr>")  # fmt: skip
    recent = [a for a in (snapshot or {}).get("alert_log", [])
              if a.get("severity") in ("WARNING", "CRITICAL")][-10:]  # fmt: skip
    log = (
        "".join(
            f"<li>{html.escape(a['severity'])} {html.escape(a['rule'])}: "
            f"{html.escape(a['message'])}</li>"
            for a in reversed(recent)
        )
        or "<li>none</li>"
    )
    uptime = total(now, "kit_uptime_seconds")
    head = (f"<h3>Operations: engine {html.escape(str(ready.get('engine')))} "
            f"{'ready' if ready.get('ready') else 'NOT READY'}, up {uptime / 60:,.1f} min, "
            f"viewers {total(now, 'kit_gateway_clients'):.0f}, store backlog "
            f"{total(now, 'kit_store_rows_buffered'):,.0f} rows</h3>")  # fmt: skip
    return (
        f'<div class="kit-ops">{STYLE}{head}<table class="kit-ops-status">{status}</table>'
        "<h4>Latency (p50, p99 as histogram bucket bounds; target)</h4>"
        f'<table class="kit-ops-latency">{latency}</table><h4>Errors</h4>'
        f'<table class="kit-ops-errors">{"".join(errs)}</table>'
        f'<h4>Recent warnings and errors</h4><ul class="kit-ops-log">{log}</ul></div>'
    )


class OpsPage:
    """Refreshes every ``period_s`` from the service's metrics port; ``.widget`` to display."""

    def __init__(self, client: DeskClient, port: int | None, period_s: float = 2.0) -> None:
        self.client, self.port, self.period_s = client, port, period_s
        self.body = html_widget("kit-ops-body", "waiting for the service's metrics...")
        self.widget = w.VBox([w.HTML(CSS), self.body]).add_class("kit-ops-page")
        self._before: tuple[float, Samples] | None = None
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> str:
        """One look at the service; the page's HTML (also shown)."""
        if self.port is None:
            text = ("<b>No metrics port</b>: start the service with <code>kit serve "
                    "--metrics-port M</code> (or set KIT_METRICS_PORT).")  # fmt: skip
            set_html(self.body, text)
            return text
        base = f"http://127.0.0.1:{self.port}"
        try:
            async with httpx.AsyncClient(timeout=5.0) as http:
                ready = (await http.get(f"{base}/readyz")).json()
                samples = parse((await http.get(f"{base}/metrics")).text)
        except (httpx.HTTPError, ValueError) as exc:
            text = f"<b>The service does not answer on {base}</b> ({html.escape(str(exc))})"
            set_html(self.body, text)
            return text
        t = time.monotonic()
        before, dt = (None, 0.0) if self._before is None else (self._before[1],
                                                                t - self._before[0])  # fmt: skip
        self._before = (t, samples)
        text = render(ready, samples, before, dt, self.client.snapshot)
        set_html(self.body, text)
        return text

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="ops-page")

    async def stop(self) -> None:
        await cancel(self._task)
        await self.client.close()

    async def _loop(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.period_s)


def query_page() -> str:
    """``?page=ops`` in the Voila URL selects this page ("" otherwise)."""
    values = parse_qs(env("QUERY_STRING", "")).get("page")
    return values[0].lower() if values and values[0].isalnum() else ""


def metrics_port(client: DeskClient) -> int | None:
    """KIT_METRICS_PORT, else the port the service announced in its hello."""
    if env("KIT_METRICS_PORT", "").isdigit():
        return int(env("KIT_METRICS_PORT", ""))
    port = ((client.hello or {}).get("engine") or {}).get("metrics_port")
    return int(port) if port else None


async def ops_page(port: int | None = None, **connect_kw: Any) -> OpsPage:
    """Connect, draw once and keep refreshing; display ``.widget`` in the same cell."""
    client = await connect(name="ops", **connect_kw)
    page = OpsPage(client, port if port is not None else metrics_port(client))
    await page.refresh()
    page.start()
    return page

"""The watch dashboard (``notebooks/scanner.ipynb``): the state ``kit watch`` publishes after each
pass (market context, opportunities, reasons, portfolio, positions, last alerts) as one page.

:func:`render` is pure (a JSON document in, an HTML string out), so the page is tested without a
browser. :func:`attach` is the live part: it connects to the watch's loopback gateway with
``kit.connect`` (token, newest snapshot wins, reconnects by itself) and re-renders on each
snapshot, as the monitor does (:mod:`kit.ui.monitor`); nothing polls a file. Like the monitor,
an invisible ``Play`` ticks in the page once a second and the render loop pauses when it has not
ticked for ``viewer_timeout_s``, so a closed tab's kernel goes quiet and is culled. Only
``kit.remote.client`` is loaded here, never an engine module.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from html import escape
from typing import Any

import ipywidgets as w

from kit.core.config import env
from kit.core.tasks import cancel
from kit.remote.client import DeskClient, connect

DEFAULT_URL = "ws://127.0.0.1:8766"  # kit watch --service-port's default

STYLE = """<style>
.kw table{border-collapse:collapse;font:13px monospace;margin:4px 0 12px}
.kw td,.kw th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}
.kw th{background:#f3f3f3}.kw td.l,.kw th.l{text-align:left}
.kw tr.now{background:#e4f6e4;font-weight:bold}.kw .ctx span{margin-right:18px}
.kw .WARNING{color:#b36b00}.kw .CRITICAL{color:#c00}.kw .why{color:#666}
</style>"""


def _fmt(x: Any, spec: str = ",.2f") -> str:
    if x is None:
        return "–"
    if isinstance(x, int | float):
        return format(x, spec)
    return escape(str(x))


def _table(head: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    th = "".join(f"<th class='l'>{h}</th>" if i == 0 else f"<th>{h}</th>"
                 for i, h in enumerate(head))  # fmt: skip
    body = "".join(
        f"<tr class='{(classes or [''] * len(rows))[i]}'>"
        + "".join(f"<td class='l'>{c}</td>" if j == 0 else f"<td>{c}</td>" for j, c in enumerate(r))
        + "</tr>"
        for i, r in enumerate(rows)
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def render(state: dict[str, Any]) -> str:
    """The whole page for one state document."""
    c = state.get("context") or {}
    ctx = (f"<div class='ctx'><span><b>{_fmt(c.get('underlying'))}</b> {_fmt(c.get('price'))} "
           f"({_fmt(c.get('change_pct'), '+.2f')}%)</span><span>VIX {_fmt(c.get('vix'))} "
           f"<b>{_fmt(c.get('regime'))}</b></span><span>IV rank {_fmt(c.get('iv_rank'), '.0f')}"
           f"</span><span>gamma {_fmt(c.get('gamma_regime'))}</span><span>P/C volume "
           f"{_fmt(c.get('volume_ratio'))}</span><span>market "
           f"{'open' if c.get('market_open') else 'closed'}</span><span>{_fmt(c.get('ts'))}"
           "</span></div>")  # fmt: skip
    opps = state.get("opportunities") or []
    rows = [[f"#{o['config_id']} {escape(o['strategy'])}", escape(o["expiry"]),
             "/".join(f"{leg['strike']:g}" for leg in o["legs"]), _fmt(o["credit"]),
             _fmt(o["credit_natural"]), _fmt(o["max_risk"], ",.0f"), _fmt(o["win_rate"], ".1f"),
             _fmt(o.get("roi")), _fmt(o["score"], ".1f"),
             "yes" if o["in_entry_window"] else "no"] for o in opps]  # fmt: skip
    marks = ["now" if o["in_entry_window"] else "" for o in opps]
    opp_html = _table(["config", "expiry", "strikes", "credit mid", "natural", "max risk $",
                       "win %", "ROI %", "score", "in window"], rows, marks)  # fmt: skip
    why = "".join(f"<div class='why'>{escape(r)}</div>" for r in state.get("reasons") or [])
    p = state.get("portfolio") or {}
    port = (f"<div class='ctx'><span>open {p.get('open', 0)}</span><span>closed "
            f"{p.get('closed', 0)}</span><span>capital at risk $"
            f"{_fmt(p.get('capital_at_risk'), ',.0f')}</span><span>unrealized $"
            f"{_fmt(p.get('unrealized_pnl'))}</span><span>realized $"
            f"{_fmt(p.get('realized_pnl'))}</span></div>")  # fmt: skip
    pos = [[escape(x["id"]), escape(x["strategy"]), _fmt(x["quantity"], "g"), _fmt(x["credit"]),
            _fmt(x["pnl"]), _fmt(x["pnl_pct"], ".1f"), _fmt(x["risk"], ",.0f"),
            "open" if x["open"] else "closed"] for x in state.get("positions") or []]  # fmt: skip
    pos_html = _table(["position", "strategy", "qty", "credit", "P&L $", "P&L %", "risk $",
                       "status"], pos)  # fmt: skip
    alerts = list(reversed(state.get("alerts") or []))[:30]
    al = "".join(f"<div class='{escape(str(a.get('severity')))}'>{escape(str(a.get('severity')))} "
                 f"{escape(str(a.get('rule')))}: {escape(str(a.get('message')))}</div>"
                 for a in alerts)  # fmt: skip
    return (f"{STYLE}<div class='kw'><h3>Market</h3>{ctx}<h3>Opportunities</h3>{opp_html}{why}"
            f"<h3>Portfolio</h3>{port}{pos_html}<h3>Last alerts</h3>{al}</div>")  # fmt: skip


class ScannerPage:
    """One HTML widget kept at the newest snapshot of a :class:`DeskClient`; a status line says
    when the watch is not reachable (the client reconnects by itself)."""

    def __init__(self, client: DeskClient, viewer_timeout_s: float = 120.0) -> None:
        self.client, self.viewer_timeout_s = client, viewer_timeout_s
        self.page = w.HTML("<i>waiting for kit watch's first pass ...</i>")
        self.status = w.HTML()
        self.heartbeat = w.Play(interval=1000, max=10**9, show_repeat=False, playing=True)
        self.heartbeat.layout.display = "none"
        self.heartbeat.observe(lambda _: self._seen(), "value")
        self.widget = w.VBox([self.status, self.page, self.heartbeat])
        self._latest: dict[str, Any] | None = client.snapshot
        self._drawn: dict[str, Any] | None = None
        self._wake = asyncio.Event()
        self._last_seen = time.monotonic()
        self.paused, self.frames = False, 0
        self._task: asyncio.Task[None] | None = None
        client.on_snapshot.append(self._on_snapshot)

    def _on_snapshot(self, doc: dict[str, Any]) -> None:
        self._latest = doc
        self._wake.set()

    def _seen(self) -> None:
        self._last_seen = time.monotonic()
        if self.paused:
            self.paused = False
            self._wake.set()

    def render(self) -> bool:
        """Draw the newest snapshot if it is not on screen yet; True when it drew."""
        why = escape(str(self.client.error))
        status = ("" if self.client.connected else "<div style='color:#c00'>kit watch not "
                  f"reachable ({why}); reconnecting ...</div>")  # fmt: skip
        if self.status.value != status:
            self.status.value = status
        doc = self._latest
        if doc is None or doc is self._drawn:
            return False
        self._drawn = doc
        self.page.value = render(doc)
        self.frames += 1
        return True

    def start(self) -> None:
        self.render()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="kit.scanner")

    async def stop(self) -> None:
        await cancel(self._task)
        await self.client.close()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):  # once a second at least: the status line
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            self._wake.clear()
            if time.monotonic() - self._last_seen > self.viewer_timeout_s:
                self.paused = True  # nobody is looking: quiet until the page ticks again
                continue
            self.render()


async def attach(url: str | None = None, **connect_kw: Any) -> ScannerPage:
    """Connect to ``kit watch`` (``url``, else ``KIT_WATCH_URL``, else the default port) with the
    service token, draw its newest snapshot and follow it; display ``.widget``."""
    url = url or env("KIT_WATCH_URL", DEFAULT_URL)
    try:
        client = await connect(url, name="scanner", **connect_kw)
    except ConnectionError as exc:
        raise ConnectionError(f"no kit watch at {url}: start it with `kit watch` or `make "
                              f"scanner` ({exc})") from None  # fmt: skip
    with contextlib.suppress(TimeoutError):
        await client.next_snapshot(timeout_s=2.0)
    page = ScannerPage(client)
    page.start()
    return page

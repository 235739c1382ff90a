"""The live monitor: every panel, the action bar, and the loop that feeds them snapshots.

``await kit.ui.monitor()`` in a notebook cell connects to the desk service, builds the whole
layout while the cell executes (Voila shows nothing displayed later) and starts one render task
on the kernel's loop. The task draws the newest snapshot as soon as it arrives, inside
``hold_sync`` (one message per widget per frame), newest wins. The service sends at most 10 a
second; ``max_hz`` (20) only guards against bursts and sits above that rate on purpose: a cap
equal to the arrival rate makes each frame wait out the previous frame's pause, which measured
as ~100 ms of extra lag (benchmarks/monitor_lag.py).

A closed tab's kernel must not stream forever: an invisible ``Play`` widget ticks in the page
once a second, and when it has not ticked for ``viewer_timeout_s`` the render loop pauses, so a
kernel without a viewer sends nothing, goes idle and is culled by the server (voila.json). The
loop resumes the moment the page ticks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from typing import Any
from urllib.parse import parse_qs

import ipywidgets as w

from kit.core.config import env
from kit.core.tasks import cancel
from kit.remote.client import CommandRefusedError, DeskClient, connect
from kit.ui.panels import (
    CSS,
    STALE_AFTER_S,
    AlertsFeed,
    Greeks,
    Header,
    Metrics,
    PositionsTable,
    Summary,
    banner_html,
    html_widget,
    set_html,
)
from kit.ui.riskgraph import RiskGraph
from kit.ui.settings import SettingsPanel
from kit.ui.ticket import Ticket, WorkingOrders, confirm_text, why

log = logging.getLogger(__name__)

# (command, button label, CSS class); the confirmation text says what each will send
# (kit.ui.ticket.confirm_text)
ACTIONS = (
    ("close_all", "Close All", "kit-btn-close-all"),
    ("close_half", "Close 50%", "kit-btn-close-half"),
    ("reduce_25", "Reduce 25%", "kit-btn-reduce"),
    ("roll_put", "Roll Put", "kit-btn-roll-put"),
    ("roll_call", "Roll Call", "kit-btn-roll-call"),
    ("add_protection", "Add Protection", "kit-btn-protect"),
)


def query_symbol(default: str = "SPX") -> str:
    """``?symbol=NDX`` in the Voila URL (Voila passes the query string to the kernel)."""
    values = parse_qs(env("QUERY_STRING", "")).get("symbol")
    return values[0].upper() if values and values[0].isalnum() else default


class Monitor:
    def __init__(
        self, client: DeskClient, symbol: str = "SPX", *, max_hz: float = 20.0,
        viewer_timeout_s: float = 120.0,
    ) -> None:  # fmt: skip
        self.client, self.symbol = client, symbol
        self.period_s = 1.0 / max_hz
        self.viewer_timeout_s = viewer_timeout_s
        self.header, self.summary, self.metrics = Header(), Summary(), Metrics()
        self.banner = html_widget("kit-banner")
        self.greeks, self.graph, self.table = Greeks(), RiskGraph(), PositionsTable()
        self.alerts = AlertsFeed(self._ack)
        self.selector = w.Dropdown(description="Position", options=[])
        self.selector.add_class("kit-position-select")
        self.result = html_widget("kit-result")
        self.confirm_text = html_widget("kit-confirm-text")
        self.yes = w.Button(description="Confirm", button_style="danger").add_class(
            "kit-confirm-yes"
        )
        self.no = w.Button(description="Cancel").add_class("kit-confirm-no")
        self.confirm = w.HBox([self.confirm_text, self.yes, self.no]).add_class("kit-confirm")
        self.confirm.layout.display = "none"
        self.yes.on_click(lambda _: self._confirmed())
        self.no.on_click(lambda _: self._ask(None))
        self.buttons = []
        for cmd, label, css in ACTIONS:
            b = w.Button(description=label).add_class(css)
            b.on_click(lambda _b, cmd=cmd: self._ask(cmd))
            self.buttons.append(b)
        self.auto = w.Button(description="Auto-Manage").add_class("kit-btn-auto")
        self.auto.on_click(lambda _: self._ask("auto_manage"))
        self.kill = w.Button(description="KILL SWITCH", button_style="danger")
        self.kill.add_class("kit-btn-kill")
        self.kill.on_click(lambda _: self._ask("kill"))
        self.ticket = Ticket(client)
        self.working = WorkingOrders(lambda iid: self.send("cancel", intent=iid))
        self.graph.portfolio.observe(lambda _: self._redraw_now(), "value")
        self.settings_btn = w.Button(description="Settings").add_class("kit-btn-settings")
        self.settings_btn.on_click(lambda _: self._toggle_settings())
        self.settings_panel = SettingsPanel(self.send)
        self.settings = self.settings_panel.widget
        self.heartbeat = w.Play(interval=1000, max=10**9, show_repeat=False, playing=True)
        self.heartbeat.layout.display = "none"
        self.heartbeat.observe(lambda _: self._seen(), "value")
        self.lag = html_widget("kit-lag")  # the wall_ns of the snapshot on screen (benchmark)
        self.lag.layout.display = "none"
        actions = w.HBox([*self.buttons, self.auto, self.kill, self.settings_btn])
        actions.add_class("kit-actions")
        self.widget = w.VBox([
            w.HTML(CSS), self.banner, self.header.widget,
            w.HBox([self.selector, self.result]),
            w.HBox([w.VBox([self.summary.widget, self.metrics.widget, self.greeks.widget],
                           layout=w.Layout(width="55%")),
                    w.VBox([self.graph.widget], layout=w.Layout(width="45%"))]),
            actions, self.confirm, self.settings, self.working.widget, self.ticket.widget,
            self.table.widget, self.alerts.widget,
            self.heartbeat, self.lag,
        ]).add_class("kit-monitor")  # fmt: skip
        self._pending: str | None = None
        self._latest: dict[str, Any] | None = None
        self._drawn: dict[str, Any] | None = None
        # a switch's state as its command answered, with when: the next click toggles from it
        # until a snapshot built after the answer is drawn (a click right after "✓ auto_manage"
        # otherwise read the snapshot before it and asked to turn it ON again)
        self._switches: dict[str, tuple[bool, int]] = {}
        self._wake = asyncio.Event()
        self._last_seen = time.monotonic()
        self._arrived = time.monotonic()  # when the newest snapshot came in (staleness)
        self._arrived_ns: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.paused = False
        self.frames = 0
        client.on_snapshot.append(self._on_snapshot)

    # --- rendering ---

    def _on_snapshot(self, doc: dict[str, Any]) -> None:
        self._latest = doc
        self._arrived, self._arrived_ns = time.monotonic(), time.time_ns()
        self._wake.set()

    def check_stale(self) -> bool:
        """Show or clear the banner from the page's own clock; True while stale."""
        silent = time.monotonic() - self._arrived
        set_html(self.banner, banner_html(self._latest, silent, self._arrived_ns))
        return silent >= STALE_AFTER_S

    def _seen(self) -> None:
        self._last_seen = time.monotonic()
        if self.paused:
            self.paused = False
            self._wake.set()

    def start(self) -> None:
        if self._latest is None and self.client.snapshot is not None:
            self._latest = self.client.snapshot
        self.render()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="kit.monitor")

    async def stop(self) -> None:
        await cancel(self._task)

    async def _loop(self) -> None:
        while True:
            # wake at least once a second (staleness); asyncio.timeout, not wait_for: on 3.11
            # wait_for swallows a cancel that lands as the event is set, and stop() hangs
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            self._wake.clear()
            if self.check_stale():
                continue
            if time.monotonic() - self._last_seen > self.viewer_timeout_s:
                self.paused = True  # nobody is looking: stay quiet until the page ticks again
                continue
            started = time.perf_counter()
            try:
                self.render()
            except Exception:
                log.exception("monitor: render failed")
            await asyncio.sleep(max(0.0, self.period_s - (time.perf_counter() - started)))

    def selected(self, s: dict[str, Any]) -> dict[str, Any] | None:
        open_ = [p for p in s["positions"] if p["open"]]
        mine = [p for p in open_ if p["underlying"] == self.symbol] or open_
        ids = [p["id"] for p in mine]
        if list(self.selector.options) != ids:
            keep = self.selector.value if self.selector.value in ids else None
            self.selector.options = ids
            self.selector.value = keep or (ids[0] if ids else None)
        return next((p for p in mine if p["id"] == self.selector.value), None)

    def render(self) -> None:
        s = self._latest
        if s is None or s is self._drawn:
            return
        self._drawn = s
        p = self.selected(s)
        viewers = s["engine"].get("clients", 1)
        with contextlib.ExitStack() as stack:
            for widget in (self.header.account, self.header.feed, self.summary.widget,
                           self.metrics.text, self.table.widget, self.lag):  # fmt: skip
                stack.enter_context(widget.hold_sync())
            self.check_stale()
            self.header.update(s, self.client.connected, viewers)
            self.summary.update(p)
            self.metrics.update(s, p, self.symbol)
            self.greeks.update(s, p)
            self.table.update(s)
            self.alerts.update(s["alerts"])
            self.alerts.update_log(s.get("alert_log", []),
                                   {q["id"] for q in s["positions"] if q["open"]})  # fmt: skip
            self.auto.description = f"Auto-Manage: {'ON' if self._switch('auto_manage') else 'OFF'}"
            self.kill.description = "Reset kill switch" if self._switch("killed") else "KILL SWITCH"
            self.working.update(s.get("working", []))
            if self.graph.portfolio.value:
                self.graph.update_portfolio([q for q in s["positions"] if q["open"]],
                                            s["spots"], self.symbol)  # fmt: skip
            else:
                und = p["underlying"] if p else self.symbol  # the position's own spot
                self.graph.update(p, (s["spots"].get(und) or {}).get("last"))
            set_html(self.lag, str(s.get("wall_ns", "")))
        self.frames += 1

    def _redraw_now(self) -> None:
        """Draw the newest snapshot again at once (a view switch must not wait for data)."""
        self._drawn = None
        self.render()

    # --- actions ---

    def _ask(self, cmd: str | None) -> None:
        """Show the confirmation bar for ``cmd`` (None hides it)."""
        self._pending = cmd
        if cmd is None:
            self.confirm.layout.display = "none"
            return
        drawn = self._drawn or {}
        if cmd == "auto_manage":
            on = not self._switch("auto_manage")
            text = f"Turn auto-manage {'ON: rules will trade' if on else 'OFF'}?"
        elif cmd == "kill":
            text = ("Reset the kill switch: entries and automation allowed again?"
                    if self._switch("killed") else "KILL SWITCH: stop automation, cancel every "
                    "working order and refuse new entries until reset?")  # fmt: skip
        else:
            pos = next((p for p in drawn.get("positions", [])
                        if p["id"] == self.selector.value), None)  # fmt: skip
            text = confirm_text(cmd, pos)
        set_html(self.confirm_text, f"<b>{html.escape(text)}</b>")
        self.confirm.layout.display = "flex"

    def _confirmed(self) -> None:
        cmd, self._pending = self._pending, None
        self.confirm.layout.display = "none"
        if cmd is None:
            return
        params: dict[str, Any] = {}
        if cmd in ("auto_manage", "kill"):
            params["on"] = not self._switch("auto_manage" if cmd == "auto_manage" else "killed")
        elif cmd != "close_all" and self.selector.value:
            params["position"] = self.selector.value
        self.send(cmd, **params)

    def send(self, cmd: str, **params: Any) -> None:
        """Send a command in the background; its result or refusal shows in the result bar."""
        set_html(self.result, f"<span class='kit-dim'>{cmd}: sending…</span>")

        async def run() -> None:
            try:
                out = await self.client.command(cmd, **params)
                now = time.time_ns()
                self._switches.update({k: (out[k], now) for k in ("auto_manage", "killed")
                                       if isinstance(out.get(k), bool)})  # fmt: skip
                text = f"<span class='kit-pos'>✓ {cmd}: {_summary(out)}</span>"
            except (CommandRefusedError, ConnectionError, TimeoutError) as exc:
                text = f"<span class='kit-neg'>✗ {cmd}: {html.escape(why(exc))}</span>"
            set_html(self.result, text)

        asyncio.get_running_loop().create_task(run())

    def _switch(self, key: str) -> bool:
        """``auto_manage`` or ``killed``: as the last command answered, unless the drawn
        snapshot was built after that answer (then as it says)."""
        drawn = self._drawn or {}
        answered = self._switches.get(key)
        if answered is not None and answered[1] >= int(drawn.get("wall_ns") or 0):
            return answered[0]
        return bool(drawn.get(key, False))

    def _ack(self, seq: int) -> None:
        self.send("ack", seq=seq)

    def _toggle_settings(self) -> None:
        shown = self.settings.layout.display != "none"
        if not shown and self._drawn:
            self.settings_panel.show(self._drawn.get("settings", {}))
        self.settings.layout.display = "none" if shown else "flex"


def _summary(result: dict[str, Any]) -> str:
    if "summary" in result:
        return str(result["summary"])
    if "intents" in result:
        return ", ".join(f"{i['intent']} {i['status']}" for i in result["intents"])
    return ", ".join(f"{k}={v}" for k, v in result.items() if not isinstance(v, dict | list))


async def monitor(symbol: str | None = None, **connect_kw: Any) -> Monitor:
    """Connect, build the monitor, draw the first snapshot and start streaming; display
    ``.widget`` in the same cell."""
    client = await connect(name="monitor", **connect_kw)
    with contextlib.suppress(TimeoutError):
        await client.next_snapshot(timeout_s=2.0)
    m = Monitor(client, symbol or query_symbol())
    m.start()
    return m

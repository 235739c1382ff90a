"""The monitor's read-only panels: header, position summary, metrics, tables, alerts.

Each panel is built once (while the notebook executes: Voila shows nothing displayed later)
and then only has its traits set from a snapshot (:mod:`kit.app.view`). HTML panels are rebuilt as
one string and assigned only when the text changed, so an unchanged panel costs no message.
Every widget carries a stable ``kit-*`` CSS class: the browser tests and the lag benchmark find
them by it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import ipywidgets as w

from kit.ui.gauges import BAD, OK, WARN, Gauge, GaugeSpec

NY = ZoneInfo("America/New_York")
SEVERITY_COLOURS = {"INFO": "#58a6ff", "WARNING": WARN, "CRITICAL": BAD}

CSS = """
<style>
.kit-monitor { font-family: -apple-system, 'Segoe UI', Roboto, sans-serif; color: #c9d1d9; }
.kit-monitor .kit-card { background: #161b22; border: 1px solid #30363d; border-radius: 6px;
  padding: 6px 10px; margin: 3px; }
.kit-stat { display: inline-block; margin-right: 22px; }
.kit-stat .lbl { font-size: 11px; color: #8b949e; text-transform: uppercase; }
.kit-stat .val { font-size: 18px; font-family: monospace; }
.kit-pos { color: #3fb950; } .kit-neg { color: #f85149; } .kit-dim { color: #8b949e; }
.kit-table { border-collapse: collapse; font-family: monospace; font-size: 12px; width: 100%; }
.kit-table th { color: #8b949e; text-align: right; padding: 2px 8px; font-weight: normal; }
.kit-table td { text-align: right; padding: 2px 8px; border-top: 1px solid #21262d; }
.kit-table td:first-child, .kit-table th:first-child { text-align: left; }
.kit-gauge { text-align: center; } .kit-gauge-title { font-size: 11px; color: #8b949e; }
.kit-alert-row { border-left: 4px solid; padding-left: 6px; margin: 2px 0; }
.kit-banner-alarm { background: #4a0d0d; border: 2px solid #f85149; border-radius: 6px;
  color: #ffdcd7; font-weight: bold; padding: 6px 10px; margin: 3px; }
.kit-confirm { background: #3d2f00; border: 1px solid #d29922; border-radius: 6px; padding: 4px; }
.kit-vendor-diff { text-decoration: underline dotted #d29922; cursor: help; }
</style>
"""


def money(x: float | None, *, sign: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:+,.2f}" if sign else f"{x:,.2f}"


def signed_class(x: float | None) -> str:
    return "kit-dim" if not x else ("kit-pos" if x > 0 else "kit-neg")


def stat(label: str, value: str, cls: str = "", key: str = "") -> str:
    data = f' data-key="{key}"' if key else ""
    return (f'<div class="kit-stat"{data}><div class="lbl">{html.escape(label)}</div>'
            f'<div class="val {cls}">{value}</div></div>')  # fmt: skip


def html_widget(css: str, value: str = "") -> w.HTML:
    widget = w.HTML(value)
    widget.add_class(css)
    return widget


def set_html(widget: w.HTML, value: str) -> None:
    if widget.value != value:
        widget.value = value


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = max(0, int(seconds))
    return (
        f"{s // 86400}d {s % 86400 // 3600}h"
        if s >= 86400
        else f"{s // 3600}h {s % 3600 // 60:02d}m"
    )


def ny_time(ts_ns: int | None) -> str:
    if not ts_ns:
        return "—"
    return datetime.fromtimestamp(ts_ns / 1e9, UTC).astimezone(NY).strftime("%H:%M:%S")


STALE_AFTER_S = 3.0  # no snapshot for this long: the page says the engine is not updating


def banner_html(s: dict[str, Any] | None, silent_s: float, last_ns: int | None) -> str:
    """The red banner over everything: the page's own staleness check first (whatever the
    last snapshot claimed), then the engine's DEGRADED state. Empty when all is well."""
    if silent_s >= STALE_AFTER_S:
        since = ny_time(last_ns) if last_ns else "start"
        return (f'<div class="kit-banner-alarm kit-banner-stale">engine not updating since '
                f"{since} New York ({silent_s:.0f}s without a snapshot): every number below "
                "is old</div>")  # fmt: skip
    health = (s or {}).get("engine_health") or {}
    if health.get("state") == "DEGRADED":
        faults = "; ".join(f"{html.escape(f['stage'])}: {html.escape(f['error'])} "
                           f"(×{f['count']}, since {ny_time(f['since_ns'])})"
                           for f in health.get("faults", []))  # fmt: skip
        return (
            f'<div class="kit-banner-alarm kit-banner-degraded">ENGINE DEGRADED: {faults}. '
            "Automation is frozen; Close All and the kill switch still work.</div>"
        )
    return ""


class Header:
    """Account value, day and open P&L, buying power, feed status and data age, switches."""

    def __init__(self) -> None:
        self.account = html_widget("kit-header-account")
        self.feed = html_widget("kit-header-feed")
        self.widget = w.HBox([self.account, self.feed]).add_class("kit-header")
        self.widget.add_class("kit-card")

    def update(self, s: dict[str, Any], connected: bool, viewers: int) -> None:
        acct, t = s.get("account") or {}, s["totals"]
        # open P&L: marks against the average prices of what is held (realised parts of a
        # partial close belong to the day's P&L, not here)
        open_pnl = sum(p.get("open_pnl", p["pnl"]) or 0 for p in s["positions"] if p["open"])
        set_html(self.account, "".join([
            stat("Account value", money(acct.get("value")), key="account-value"),
            stat("Day P&L", money(t.get("day_pnl"), sign=True), signed_class(t.get("day_pnl")),
                 "day-pnl"),
            stat("Open P&L", money(open_pnl, sign=True), signed_class(open_pnl), "open-pnl"),
            stat("Buying power used", money(acct.get("buying_power_used")), key="bp-used"),
            stat("Risk (stress)", money(t.get("risk")), key="risk"),
        ]))  # fmt: skip
        feed, age = s["feed"], s["feed"]["age_s"]
        ok = connected and feed["state"] == "LIVE" and age < 5
        auto = "KILLED" if s["killed"] else ("ON" if s["auto_manage"] else "OFF")
        auto_cls = "kit-neg" if s["killed"] else ("kit-pos" if s["auto_manage"] else "kit-dim")
        set_html(self.feed, "".join([
            stat("Feed", feed["state"] if connected else "DISCONNECTED",
                 "kit-pos" if ok else "kit-neg", "feed-status"),
            stat("Source", " + ".join(feed.get("feeds") or {}) or "–", "kit-dim", "feed-name"),
            stat("Data age", f"{age:.1f}s", "kit-pos" if age < 2 else "kit-neg", "data-age"),
            stat("Auto-manage", auto, auto_cls, "auto-manage"),
            stat("Engine", f"{s['engine']['id']} · {viewers} viewer{'s' * (viewers != 1)}",
                 "kit-dim", "engine"),
            stat("Market time", ny_time(s["ts_ns"]), "kit-dim", "market-time"),
        ]))  # fmt: skip


class Summary:
    """The selected position: entry time, strikes, credit, time remaining, status."""

    def __init__(self) -> None:
        self.widget = html_widget("kit-summary")
        self.widget.add_class("kit-card")

    def update(self, p: dict[str, Any] | None) -> None:
        if p is None:
            set_html(self.widget, stat("Position", "none open", "kit-dim"))
            return
        strikes = " / ".join(
            f"{'+' if leg['qty'] > 0 else '−'}{leg['label']}" for leg in p["legs"] if leg["qty"]
        )  # rolled-out legs are flat
        set_html(self.widget, "".join([
            stat("Position", html.escape(p["id"]), key="position"),
            stat("Entered", ny_time(p["opened_ns"])),
            stat("Strikes", html.escape(strikes) or "—", key="strikes"),
            stat("Lots", f'<span class="kit-quantity">{p["quantity"]:g}</span>', key="quantity"),
            stat("Credit", money(p["credit"]), key="credit"),
            stat("Net credit", money(p.get("net_credit")), key="net-credit"),
            stat("Original", money(p.get("original_credit")), key="original-credit"),
            stat("Time left", duration(p["time_left_s"]), key="time-left"),
            stat("Status", html.escape(p["status"]) + (" · alert-only" if p["alert_only"] else ""),
                 key="status"),
        ]))  # fmt: skip


class Metrics:
    """Underlying with change, P&L with progress to the profit target, each leg's market."""

    def __init__(self) -> None:
        self.text = html_widget("kit-metrics-text")
        self.progress = w.FloatProgress(min=0, max=100, description="to target",
                                        layout=w.Layout(width="98%"))  # fmt: skip
        self.progress.add_class("kit-target-progress")
        self.legs = html_widget("kit-legs")
        self.widget = w.VBox([self.text, self.progress, self.legs]).add_class("kit-metrics")
        self.widget.add_class("kit-card")

    def update(self, s: dict[str, Any], p: dict[str, Any] | None, symbol: str) -> None:
        spot = s["spots"].get(symbol) or {}
        change = spot.get("change")
        parts = [stat(symbol, f"{spot['last']:,.2f}" if spot else "—", key="spot"),
                 stat("Change", f"{change:+,.2f} ({spot['change_pct']:+.2f}%)" if spot else "—",
                      signed_class(change), "change")]  # fmt: skip
        if not spot and s["spots"]:  # ?symbol=NDX on a service whose feed has no NDX
            have = html.escape(", ".join(sorted(s["spots"])))
            why = f"no {html.escape(symbol)} on this service (it streams {have})"
            parts.append(stat("Feed", why, "kit-neg", "symbol-missing"))
        if p is not None:
            pct = f"{p['pnl_pct'] or 0:+.1f}%"
            parts += [stat("P&L", money(p["pnl"], sign=True), signed_class(p["pnl"]), "pnl"),
                      stat("P&L % credit", pct, key="pnl-pct")]  # fmt: skip
        set_html(self.text, "".join(parts))
        target = (p or {}).get("target_pct") or 100.0
        self.progress.max = target
        self.progress.value = min(max((p or {}).get("pnl_pct") or 0.0, 0.0), target)
        self.progress.description = f"→ {target:g}%"
        rows = "".join(
            f"<tr><td>{html.escape(leg['label'])}</td><td>{leg['qty']:+g}</td>"
            f"<td>{money(leg['bid'])}</td><td>{money(leg['ask'])}</td>"
            f"<td>{100 * leg['iv']:.1f}%</td><td>{money(leg['entry'])}</td>"
            f"<td>{'—' if leg['delta'] is None else format(leg['delta'], '+.3f')}</td></tr>"
            for leg in (p or {}).get("legs", [])
        )
        head = "".join(
            f"<th>{h}</th>" for h in ("leg", "qty", "bid", "ask", "IV", "entry", "delta")
        )
        set_html(self.legs, f"<table class='kit-table'><tr>{head}</tr>{rows}</table>")


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def decay_left(p: dict[str, Any] | None, spot: float | None) -> float | None:
    """Dollars the position earns from time alone if spot stays where it is until expiry:
    ``Σ qty x multiplier x (intrinsic - mark)`` over its legs (positive for a short premium
    position). None unless it expires within a day and every leg is marked."""
    if not p or not p.get("legs") or spot is None or (p.get("time_left_s") or 1e9) >= 86_400:
        return None
    total = 0.0
    for leg in p["legs"]:
        if leg.get("mark") is None:
            return None
        k = leg["strike"]
        intrinsic = max(spot - k, 0.0) if leg["is_call"] else max(k - spot, 0.0)
        total += leg["qty"] * leg["multiplier"] * (intrinsic - leg["mark"])
    return total


class Greeks:
    """Live gauges: delta per unit (±band), gamma (warning level), theta/day, vega, β-delta."""

    def __init__(self) -> None:
        # in the rules' units: per unit, after (delta) or for (gamma) a 1-sigma move over the
        # time left, so the bands mean the same at 0 and 45 DTE (kit/risk/tenor.py)
        self.delta = Gauge(GaugeSpec("Δ after 1σ", 1.25, 0.60, 1.00, css="kit-gauge-delta"))
        self.gamma = Gauge(GaugeSpec("Γ per 1σ", 1.0, 0.50, 0.60, css="kit-gauge-gamma"))
        self.theta = Gauge(GaugeSpec("Θ $/day", 1000, fmt="{:+,.0f}", css="kit-gauge-theta"))
        self.vega = Gauge(GaugeSpec("Vega $/pt", 1000, fmt="{:+,.0f}", css="kit-gauge-vega"))
        self.beta = Gauge(GaugeSpec("β-Δ SPY sh", 500, fmt="{:+,.0f}", css="kit-gauge-beta"))
        gauges = [self.delta, self.gamma, self.theta, self.vega, self.beta]
        self.widget = w.HBox([g.widget for g in gauges]).add_class("kit-greeks")
        self.widget.add_class("kit-card")

    def update(self, s: dict[str, Any], p: dict[str, Any] | None) -> None:
        rules = s.get("rules", {})
        src = p or {}
        self.delta.set(_finite(src.get("delta_1s")), warn=rules.get("delta_band"))
        self.gamma.set(_finite(src.get("gamma_1s")), warn=rules.get("gamma_warn"))
        spot = ((s.get("spots") or {}).get(src.get("underlying", "")) or {}).get("last")
        left = decay_left(p, spot)
        # under a day to expiry a rate per day overstates what is left to earn: show the
        # decay still to come if spot stays (the extrinsic value held), in dollars
        title = "Θ $ to expiry" if left is not None else "Θ $/day"
        if self.theta.spec.title != title:
            self.theta.spec = GaugeSpec(**{**self.theta.spec.__dict__, "title": title})
        for gauge, key in ((self.theta, "theta_per_day"), (self.vega, "vega_per_point"),
                           (self.beta, "beta_delta_spy")):  # fmt: skip
            value = src.get(key) if p else s["totals"].get(key)
            if gauge is self.theta and left is not None:
                value = left
            if value is not None and abs(value) > gauge.spec.span:  # the dial grows with the book
                gauge.spec = GaugeSpec(**{**gauge.spec.__dict__, "span": 2 * abs(value)})
            gauge.set(value)


def vendor_delta_cell(p: dict[str, Any]) -> str:
    """The desk's delta per unit, with the vendor's delta (shares) and the difference in a
    tooltip; ``kit-vendor-diff`` marks a difference over 5% of the position's delta (at least
    one share), the sign of a stale or wrong vendor model."""
    cell = f"{(p.get('delta_unit') or 0):+.3f}"
    diff, shares = p.get("vendor_delta_diff_shares"), p.get("vendor_delta_shares")
    if diff is None:
        return f"<td>{cell}</td>"
    desk = p.get("delta_shares") or 0.0
    vendor = "incomplete" if shares is None else f"{shares:+.1f}"
    tip = (f"{html.escape(p.get('vendor') or 'vendor')} delta {vendor} sh, desk {desk:+.1f} sh, "
           f"difference {diff:+.1f} sh")  # fmt: skip
    flag = " class='kit-vendor-diff'" if abs(diff) > max(1.0, 0.05 * abs(desk)) else ""
    return f"<td title='{tip}'{flag}>{cell}</td>"


class PositionsTable:
    def __init__(self) -> None:
        self.widget = html_widget("kit-positions")
        self.widget.add_class("kit-card")

    def update(self, s: dict[str, Any]) -> None:
        rows = "".join(
            f"<tr data-id='{html.escape(p['id'])}'><td>{html.escape(p['id'])}</td>"
            f"<td>{p['underlying']}</td><td>{p['strategy']}</td><td>{p['quantity']:g}</td>"
            f"<td class='{signed_class(p['pnl'])}'>{money(p['pnl'], sign=True)}</td>"
            f"<td>{money(p['credit'])}</td>{vendor_delta_cell(p)}"
            f"<td>{html.escape(p['status'])}</td></tr>"
            for p in s["positions"]
            if p["open"]
        )
        fills = "".join(
            f"<tr class='kit-fill'><td>{ny_time(f['ts_ns'])}</td><td>{f.get('position_id') or ''}"
            f"</td><td>{f['side']}</td><td>{f['qty']:g}</td><td>{html.escape(f['contract'])}</td>"
            f"<td>{money(f['price'])}</td></tr>"
            for f in s["fills"][:8]
        )
        set_html(self.widget,
                 "<table class='kit-table'><tr><th>position</th><th>und</th><th>type</th>"
                 "<th>lots</th><th>P&amp;L</th><th>credit</th><th>Δ/unit</th><th>status</th></tr>"
                 f"{rows}</table><div class='lbl kit-dim'>recent fills</div>"
                 "<table class='kit-table kit-fills'><tr><th>time</th><th>position</th>"
                 "<th>side</th><th>qty</th><th>contract</th><th>price</th></tr>"
                 f"{fills}</table>")  # fmt: skip


def beep_wav(freq_hz: float = 880.0, seconds: float = 0.35, rate: int = 8000) -> str:
    """A short sine beep as a data: URL (the CRITICAL alert sound; no file to serve)."""
    n = int(seconds * rate)
    frames = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq_hz * i / rate)))
                      for i in range(n))  # fmt: skip
    buf = io.BytesIO()
    buf.write(b"RIFF" + struct.pack("<I", 36 + len(frames)) + b"WAVEfmt ")
    buf.write(struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16))
    buf.write(b"data" + struct.pack("<I", len(frames)) + frames)
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()


def notification_html(seq: int, title: str, body: str) -> str:
    """A browser notification for a CRITICAL alert, shown by the page itself (the Notification
    API, asking the user's permission the first time; nothing when denied or unsupported).
    Widget HTML runs no ``<script>``, so an image that cannot load runs it from its error
    handler; the texts are JSON in an HTML-escaped attribute, so an alert cannot inject code."""
    args = html.escape(json.dumps([title, {"body": body[:300], "tag": f"kit-alert-{seq}"}]))
    js = (
        "if('Notification' in window){const a=" + args + ";const f=()=>new Notification(a[0],"
        "a[1]);if(Notification.permission==='granted')f();else if(Notification.permission!=="
        "'denied')Notification.requestPermission().then(p=>{if(p==='granted')f();});}"
    )
    return f'<img alt="" style="display:none" src="data:," data-seq="{seq}" onerror="{js}">'


class AlertsFeed:
    """Unacknowledged alerts, newest first, coloured by severity, each with an Ack button;
    a new CRITICAL alert plays a beep."""

    def __init__(self, acknowledge: Callable[[int], None], limit: int = 12) -> None:
        self.acknowledge, self.limit = acknowledge, limit
        self.rows = w.VBox().add_class("kit-alerts")
        self.sound = html_widget("kit-alert-sound")
        self.log = html_widget("kit-alert-log")
        self.log_box = w.Accordion(children=[self.log], titles=("Alert log",))
        self.log_box.selected_index = None
        self.widget = w.VBox([html_widget("kit-alerts-title", "<b>Risk alerts</b>"), self.rows,
                              self.log_box, self.sound]).add_class("kit-card")  # fmt: skip
        self._logged = -1
        self._shown: tuple[int, ...] = ()
        self._beeped = 0
        self._wav = beep_wav()

    def update(self, alerts: list[dict[str, Any]]) -> None:
        newest = sorted(alerts, key=lambda a: a["seq"], reverse=True)[: self.limit]
        seqs = tuple(a["seq"] for a in newest)
        if seqs == self._shown:
            return
        self._shown = seqs
        self.rows.children = [self._row(a) for a in newest]
        critical = [
            a["seq"] for a in newest if a["severity"] == "CRITICAL" and a["seq"] > self._beeped
        ]
        if critical:
            self._beeped = max(critical)
            top = next(a for a in newest if a["seq"] == self._beeped)
            self.sound.value = (
                f'<audio autoplay data-seq="{self._beeped}" src="{self._wav}"></audio>'
                + notification_html(
                    self._beeped, f"Theta Desk CRITICAL: {top['rule']}", top["message"]
                )
            )

    def update_log(self, log: list[dict[str, Any]], open_ids: set[str]) -> None:
        """Every recent alert, newest first, including cleared and acknowledged ones and those
        of positions that are gone (marked closed): why a position closed stays readable."""
        newest = max((a["seq"] for a in log), default=0)
        if newest == self._logged:
            return
        self._logged = newest
        rows = "".join(
            f"<tr class='kit-log-{a['severity'].lower()}'><td>{ny_time(a['ts_ns'])}</td>"
            f"<td style='color:{SEVERITY_COLOURS.get(a['severity'], OK)}'>{a['severity']}</td>"
            f"<td>{html.escape(a['rule'])}</td><td>{html.escape(a['position_id'] or '')}"
            f"{' (closed)' if a['position_id'] and a['position_id'] not in open_ids else ''}</td>"
            f"<td>{html.escape(a['message'])}{' ✓' if a['acked'] else ''}</td></tr>"
            for a in sorted(log, key=lambda a: a["seq"], reverse=True)
        )
        head = "".join(f"<th>{h}</th>" for h in ("time", "severity", "rule", "position", "message"))
        set_html(self.log, f"<table class='kit-table'><tr>{head}</tr>{rows}</table>")

    def _row(self, a: dict[str, Any]) -> w.Widget:
        colour = SEVERITY_COLOURS.get(a["severity"], OK)
        text = html_widget("kit-alert-text", (
            f"<div class='kit-alert-row' style='border-color:{colour}'>"
            f"<span style='color:{colour}'>{a['severity']}</span> "
            f"<span class='kit-dim'>{ny_time(a['ts_ns'])} #{a['seq']} {a['rule']}</span> "
            f"{html.escape(a['message'])}</div>"))  # fmt: skip
        ack = w.Button(description="Ack", layout=w.Layout(width="60px"))
        ack.add_class("kit-ack")
        ack.on_click(lambda _b, seq=a["seq"]: self.acknowledge(seq))
        row = w.HBox([ack, text]).add_class("kit-alert")
        row.add_class(f"kit-alert-{a['severity'].lower()}")
        return row

"""The monitor's order ticket, working-orders list and confirmation texts.

A trader opens a strangle or an iron condor by delta from the page in two steps: **Preview**
asks the service to price the entry at the current quotes and run the entry checks without
sending anything (legs, credit at mid and at the natural price, buying power, stress loss,
verdicts); **Send** is enabled only for a preview whose checks passed, and sends exactly the
previewed parameters once (the preview is used up by the send, so a double click sends one
order; the client's request id makes the entry's intent id). Working orders are listed with a
Cancel button each.

Only the client protocol is used (``client.command``): no engine module is imported here.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from kit.remote.client import CommandRefusedError, DeskClient
from kit.ui.panels import html_widget, money, set_html

STYLE = {"description_width": "110px"}
NARROW = w.Layout(width="210px")

# what each position action sends, in words (the confirmation bar shows it before sending)
SENDS = {
    "close_all": "buy back every open position in full",
    "close_half": "buy back {n} of {q} units",
    "reduce_25": "buy back {n} of {q} units",
    "roll_put": "buy back the short put and sell a new one further out of the money",
    "roll_call": "buy back the short call and sell a new one further out of the money",
    "add_protection": "buy {q} wing{s} beyond each naked short (makes an iron condor)",
}
FRACTION = {"close_half": 0.5, "reduce_25": 0.25}
NAMES = {"close_half": "Close 50% of", "reduce_25": "Reduce 25% of", "roll_put": "Roll the put of",
         "roll_call": "Roll the call of", "add_protection": "Add protection to"}  # fmt: skip


def units(quantity: float, fraction: float) -> int:
    """Units a partial close takes: at least one, never more than held (the manager's rule)."""
    return max(1, min(int(quantity), round(quantity * fraction)))


def legs_text(position: dict[str, Any]) -> str:
    legs = position.get("legs") or []
    return " / ".join(f"{'+' if g['qty'] > 0 else '−'}{g['label']}" for g in legs) or "its legs"


def confirm_text(cmd: str, position: dict[str, Any] | None) -> str:
    """The confirmation sentence: which position, what will be sent, how it is worked."""
    if cmd == "close_all":
        return ("Close ALL open positions: " + SENDS[cmd] + ", limit ladder from mid toward "
                "the natural price, market order if it does not fill?")  # fmt: skip
    if position is None:
        return "No position selected."
    q = position["quantity"]
    n = units(q, FRACTION.get(cmd, 1.0))
    what = SENDS[cmd].format(n=n, q=f"{q:g}", s="s" if q != 1 else "")
    return (f"{NAMES[cmd]} {position['id']} ({legs_text(position)}): {what}, "
            "limit ladder from mid toward the natural price?")  # fmt: skip


def preview_html(p: dict[str, Any]) -> str:
    """The preview as a small table and the figures a trader confirms."""
    rows = "".join(
        f"<tr><td>{'buy' if g['ratio'] > 0 else 'sell'} {abs(g['ratio'])}</td>"
        f"<td>{html.escape(g['label'])}</td><td>{money(g['bid'])}</td><td>{money(g['ask'])}</td>"
        f"<td>{money(g['mid'])}</td><td>{(g['delta'] or 0):+.3f}</td></tr>"
        for g in p["legs"]
    )
    checks = p["checks"]
    verdict = ("<span class='kit-pos'>entry checks passed</span>" if checks["ok"] else
               "<span class='kit-neg'>entry refused: "
               + html.escape("; ".join(checks["failures"])) + "</span>")  # fmt: skip
    return (
        f"<div class='kit-preview-summary'><b>{html.escape(p['summary'])}</b></div>"
        "<table class='kit-table kit-preview-legs'><tr><th>side</th><th>contract</th><th>bid</th>"
        f"<th>ask</th><th>mid</th><th>Δ</th></tr>{rows}</table>"
        f"<div class='kit-preview-figures'>credit {money(p['credit_mid'])} at mid, "
        f"{money(p['credit_natural'])} at natural · buying power "
        f"{money(p['buying_power'])} (Reg-T estimate) · stress loss "
        f"{money(p['stress_loss'])} (±{p['stress_move_pct']:g}%)</div>"
        f"<div class='kit-preview-verdict'>{verdict}</div>"
    )


def why(exc: BaseException) -> str:
    """An exception in words (a timeout's message is empty)."""
    if isinstance(exc, TimeoutError):
        return "no answer from the desk service in time"
    return str(exc) or type(exc).__name__


class Ticket:
    """Open a strangle or condor by delta: Preview, then Send (enabled by a clean preview)."""

    def __init__(self, client: DeskClient) -> None:
        self.client = client
        self.structure = w.ToggleButtons(options=["Strangle", "Iron condor"], value="Strangle")
        self.root = w.Text(value="SPXW", description="Root", style=STYLE, layout=NARROW)
        self.dte = w.BoundedIntText(value=0, min=0, max=30, description="DTE", style=STYLE,
                                    layout=NARROW)  # fmt: skip
        self.delta_low = w.BoundedFloatText(value=0.10, min=0.01, max=0.49, step=0.01,
                                            description="Short Δ from", style=STYLE,
                                            layout=NARROW)  # fmt: skip
        self.delta_high = w.BoundedFloatText(value=0.15, min=0.01, max=0.49, step=0.01,
                                             description="to", style=STYLE,
                                             layout=NARROW)  # fmt: skip
        self.wing_delta = w.BoundedFloatText(value=0.05, min=0.01, max=0.3, step=0.01,
                                             description="Wing Δ", style=STYLE,
                                             layout=NARROW)  # fmt: skip
        self.quantity = w.BoundedIntText(value=1, min=1, max=1000, description="Quantity",
                                         style=STYLE, layout=NARROW)  # fmt: skip
        self.preview_btn = w.Button(description="Preview").add_class("kit-ticket-preview")
        self.send_btn = w.Button(description="Send order", button_style="danger",
                                 disabled=True).add_class("kit-ticket-send")  # fmt: skip
        self.shown = html_widget("kit-ticket-shown")
        self.result = html_widget("kit-ticket-result")
        self.previewed: dict[str, Any] | None = None  # the parameters the preview priced
        self.preview_btn.on_click(lambda _: self._spawn(self.preview()))
        self.send_btn.on_click(lambda _: self._spawn(self.send()))
        for field in (self.structure, self.root, self.dte, self.delta_low, self.delta_high,
                      self.wing_delta, self.quantity):  # fmt: skip
            field.observe(lambda _: self._stale(), "value")
        self.structure.observe(lambda _: self._show_wings(), "value")
        self._show_wings()
        self.widget = w.VBox([
            w.HTML("<div class='lbl'>Order ticket</div>"), self.structure,
            w.HBox([self.root, self.dte, self.quantity]),
            w.HBox([self.delta_low, self.delta_high, self.wing_delta]),
            w.HBox([self.preview_btn, self.send_btn]), self.shown, self.result,
        ]).add_class("kit-ticket").add_class("kit-card")  # fmt: skip
        self._tasks: set[asyncio.Task[Any]] = set()

    def params(self) -> dict[str, Any]:
        p = {"root": self.root.value.strip().upper(), "dte": self.dte.value,
             "delta_low": self.delta_low.value, "delta_high": self.delta_high.value,
             "quantity": self.quantity.value,
             "strategy": "ticket-" + ("condor" if self.structure.value != "Strangle" else
                                      "strangle")}  # fmt: skip
        if self.structure.value != "Strangle":
            p["wing_delta"] = self.wing_delta.value
        return p

    def _show_wings(self) -> None:
        self.wing_delta.layout.display = "none" if self.structure.value == "Strangle" else ""

    def _stale(self) -> None:
        """Any change after a preview needs a new preview before anything can be sent."""
        if self.previewed is not None:
            self.previewed = None
            self.send_btn.disabled = True
            set_html(self.result, "<span class='kit-dim'>changed: preview again</span>")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def preview(self) -> dict[str, Any] | None:
        params = self.params()
        set_html(self.result, "<span class='kit-dim'>pricing…</span>")
        try:
            p = await self.client.command("open_strangle", preview=True, **params)
        except (CommandRefusedError, ConnectionError, TimeoutError) as exc:
            self.previewed, self.send_btn.disabled = None, True
            set_html(self.shown, "")
            set_html(self.result, f"<span class='kit-neg'>✗ {html.escape(why(exc))}</span>")
            return None
        set_html(self.shown, preview_html(p))
        ok = bool(p["checks"]["ok"])
        self.previewed, self.send_btn.disabled = (params if ok else None), not ok
        set_html(self.result, "<span class='kit-dim'>check the figures, then Send order</span>"
                 if ok else "")  # fmt: skip
        return p

    async def send(self) -> dict[str, Any] | None:
        params, self.previewed = self.previewed, None
        self.send_btn.disabled = True
        if params is None:
            set_html(self.result, "<span class='kit-neg'>preview first</span>")
            return None
        try:  # the client gives the command a request id of its own: it is never sent twice
            out = await self.client.command("open_strangle", **params)
        except (CommandRefusedError, ConnectionError, TimeoutError) as exc:
            set_html(self.result, f"<span class='kit-neg'>✗ {html.escape(why(exc))}</span>")
            return None
        set_html(self.result, f"<span class='kit-pos'>✓ {html.escape(out['summary'])}</span>")
        return out


class WorkingOrders:
    """The intents being worked, each with a Cancel button (rebuilt only when they change)."""

    def __init__(self, cancel: Callable[[str], None]) -> None:
        self.cancel = cancel
        self.widget = w.VBox([]).add_class("kit-working")
        self._shown: list[tuple[str, str, int, int]] = []

    def update(self, working: list[dict[str, Any]]) -> None:
        key = [(r["intent"], r["status"], r["filled"], r["quantity"]) for r in working]
        if key == self._shown:
            return
        self._shown = key
        rows: list[w.Widget] = []
        if working:
            rows.append(w.HTML("<div class='lbl'>working orders</div>"))
        for r in working:
            text = (f"{html.escape(r['kind'])} {html.escape(r['position'])}: {r['status']}, "
                    f"{r['filled']} of {r['quantity']} filled")  # fmt: skip
            btn = w.Button(description="Cancel", layout=w.Layout(width="90px"))
            btn.add_class("kit-btn-cancel-order")
            btn.on_click(lambda _b, iid=r["intent"]: self.cancel(iid))
            rows.append(w.HBox([w.HTML(text), btn]).add_class("kit-working-row"))
        self.widget.children = rows

"""The watch dashboard's HTML (``notebooks/watch.ipynb``): the state ``kit watch`` writes after
each pass (market context, opportunities, reasons, portfolio, positions, last alerts) as one
page. Pure: a JSON document in, an HTML string out, so the page is tested without a browser and
the notebook only reads the file and sets a widget's value."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

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


def read_state(path: str | Path) -> dict[str, Any] | None:
    """The state file, None while ``kit watch`` has not written one yet."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None

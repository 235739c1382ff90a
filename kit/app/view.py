"""What a dashboard shows: one desk snapshot as plain JSON-ready data.

The desk service builds this at most 10 times a second and sends the same encoded bytes to every
viewer, so the work is done once however many tabs are open. It carries the inputs of the risk
graph (each leg's strike, quantity, entry price, time to expiry and IV), not the curves: a viewer
redraws P&L at expiry / T+0 / vol ±15% / T+1 locally with :mod:`kit.core.payoff`, only when it shows
them, and the service's loop stays free for the market.

Units: money in dollars, prices per share, IV and rates as decimals, times in ns since the epoch
(``*_ns``) or seconds (``*_s``), Greeks as in :class:`kit.portfolio.book.PositionView`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import numpy as np

from kit.core.clock import NS_PER_S, from_ns
from kit.core.model import Fill
from kit.engine.desk import Desk
from kit.engine.records import AlertRecord, record_to_json
from kit.execution.broker import AccountSummary
from kit.execution.manager import OrderManager
from kit.risk.rules import Rules

__all__ = ["RECENT_FILLS", "ViewBuilder", "rule_settings"]
RECENT_FILLS = 20  # fills a viewer lists; the journal holds them all


def _num(x: float) -> float | None:
    """JSON has no NaN: unknown numbers travel as null."""
    x = float(x)
    return x if math.isfinite(x) else None


def _label(strike: float, is_call: bool) -> str:
    return f"{strike:g}{'C' if is_call else 'P'}"


class ViewBuilder:
    """Turns the desk's state into the snapshot document; remembers each underlying's first
    spot of the day (the change shown next to the price) and the recent fills."""

    def __init__(
        self,
        desk: Desk,
        engine: dict[str, Any],
        orders: OrderManager | None = None,
        durable: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.desk = desk
        self.durable = durable  # the store's when_durable: a fill is listed once it is stored
        self.orders = orders  # the working intents and which position a fill belongs to
        self.engine = engine  # id, pid, started: which process serves this view
        self.fills: deque[dict[str, Any]] = deque(maxlen=RECENT_FILLS)
        self._open_spot: dict[str, tuple[str, float]] = {}  # symbol -> (day, first spot)
        desk.listeners.append(self._on_event)

    def _on_event(self, event: Any) -> None:
        if type(event) is Fill:
            doc = record_to_json(event)
            doc["position_id"] = self.orders.position_of(event) if self.orders else None
            if self.durable is None:
                self.fills.appendleft(doc)
            else:  # a crash before the store has it must not rewrite what a trader saw
                self.durable(lambda: self.fills.appendleft(doc))

    def _spots(self, now_ns: int) -> dict[str, dict[str, float | None]]:
        day = from_ns(now_ns).date().isoformat()
        out = {}
        for symbol, row in self.desk.market.underlyings.items():
            last = float(self.desk.market.spot[row])
            if not math.isfinite(last):
                continue
            seen = self._open_spot.get(symbol)
            if seen is None or seen[0] != day:
                seen = self._open_spot[symbol] = (day, last)
            change = last - seen[1]
            out[symbol] = {"last": last, "change": change, "change_pct": 100 * change / seen[1]}
        return out

    def _legs(self, pid: str, now_ns: int) -> list[dict[str, Any]]:
        book, m = self.desk.book, self.desk.market
        j = book.legs_of(pid)
        legs = book.legs(pid, now_ns)
        out = []
        for k, r in enumerate(book.leg_row[j]):
            r = int(r)
            c = m.contracts[r]
            out.append({
                "label": _label(c.strike, c.is_call), "symbol": c.root, "strike": c.strike,
                "is_call": c.is_call, "expiry": c.expiry.isoformat(), "qty": float(legs.qty[k]),
                "multiplier": float(legs.multiplier[k]), "entry": float(legs.entry_price[k]),
                "T_years": float(legs.T_years[k]), "iv": float(legs.iv[k]),
                "bid": _num(m.bid[r]), "ask": _num(m.ask[r]), "mark": _num(m.mark[r]),
                "delta": _num(m.delta[r]), "rate": float(np.nan_to_num(m.rate[r])),
                "vendor_delta": _num(m.vendor_delta[r]), "vendor_iv": _num(m.vendor_iv[r]),
                "div_yield": float(np.nan_to_num(m.div_yield[r])),
            })  # fmt: skip
        return out

    def build(self, account: AccountSummary | None, clients: int) -> dict[str, Any]:
        desk = self.desk
        snap = desk.snapshot()
        now = desk.clock.now_ns()
        target = _action_level(desk.rules.profit_target.levels)
        working = self.orders.pending() if self.orders else []
        pending = {r.intent.position_id: r.intent.kind.value for r in working}
        positions = []
        for row in snap.positions:
            pid = row["id"]
            pos = desk.book.positions[pid]
            i = desk.book.rows[pid]
            expiry_ns = float(desk.view.nearest_expiry_ns[i])
            status = "open" if row["open"] else "closed"
            if pid in pending:
                status = f"working: {pending[pid]}"
            positions.append({
                **{k: _num(v) if isinstance(v, float) else v for k, v in row.items()},
                "note": pos.note, "alert_only": pid in desk.alert_only,
                "beta": desk.book.config.betas.get(pos.underlying, 1.0),
                "opened_ns": pos.opened_ts_ns,
                "time_left_s": _num((expiry_ns - now) / NS_PER_S),
                "status": status, "target_pct": target,
                "legs": self._legs(pid, now) if row["open"] else [],
            })  # fmt: skip
        age_s = (now - desk.last_data_ns) / NS_PER_S
        feeds = snap.feeds or {}
        return {
            "type": "snapshot", "ts_ns": now, "engine": {**self.engine, "clients": clients},
            "account": None if account is None else {
                "value": account.net_liquidation, "cash": account.cash,
                "realized_pnl": account.realized_pnl, "commissions": account.commissions,
                "buying_power_used": account.buying_power_used,
            },
            "feed": {"state": next(iter(feeds.values()), "unknown"), "feeds": feeds,
                     "age_s": age_s},
            "engine_health": snap.engine,
            "auto_manage": snap.auto_manage, "killed": snap.killed, "frozen": snap.frozen,
            "blocked_by": snap.blocked_by, "spots": self._spots(now),
            "totals": {k: _num(v) for k, v in snap.totals.items()},
            "positions": positions,
            "alerts": [record_to_json(a) for a in snap.alerts][-50:],
            "alert_log": [_logged(a) for a in snap.log],
            "fills": list(self.fills),
            "working": [
                {"intent": r.intent.id, "kind": r.intent.kind.value,
                 "position": r.intent.position_id, "status": r.status, "filled": r.filled,
                 "quantity": r.quantity, "reason": r.intent.reason}
                for r in working
            ],
            "settings": _settings(desk),
            "rules": {"delta_band": _action_level(desk.rules.delta.levels),
                      "gamma_warn": _action_level(desk.rules.gamma.levels, first=True),
                      "profit_target_pct": target},
        }  # fmt: skip


def _logged(record: AlertRecord) -> dict[str, Any]:
    """An alert in the page's log: what it said and when, without its inputs (the snapshot
    goes out ten times a second; the store and the event stream keep the inputs)."""
    a = record.alert
    return {"seq": record.seq, "ts_ns": a.ts_ns, "severity": a.severity.value, "rule": a.rule,
            "message": a.message, "position_id": a.position_id,
            "acked": record.acked_ts_ns is not None}  # fmt: skip


def _settings(desk: Desk) -> dict[str, dict[str, Any]]:
    return rule_settings(desk.rules)


def rule_settings(rules: Rules) -> dict[str, dict[str, Any]]:
    """Every rule's numbers, switches and levels, as the Settings panel shows them and the
    `settings` command takes them back (lists and words such as actions are not editable
    there: they need the rules file)."""
    out: dict[str, dict[str, Any]] = {}
    for f in fields(rules):
        rule = getattr(rules, f.name)
        table: dict[str, Any] = {}
        for g in fields(rule):
            value = getattr(rule, g.name)
            if g.name == "levels":
                table["levels"] = [{"at": lv.at, "severity": lv.severity.value,
                                    "action": lv.action, "profitable_only": lv.profitable_only}
                                   for lv in value]  # fmt: skip
            elif isinstance(value, bool | int | float):
                table[g.name] = value
        out[f.name] = table
    return out


def _action_level(levels: tuple[Any, ...], *, first: bool = False) -> float | None:
    """The first threshold that acts (what a gauge band or progress bar aims at), or with
    ``first`` the first that warns."""
    acting = [lv.at for lv in levels if first or lv.action]
    return acting[0] if acting else None

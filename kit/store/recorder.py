"""Turns what the desk sees and does into store rows, and keeps its state persisted.

Attached to a :class:`~kit.engine.desk.Desk`, the recorder gets:

- every accepted market event from ``desk.tape`` → ``quotes`` (option quotes with the desk's
  latest IV and Greeks for that contract, underlying ticks with ``price``); O(1) per tick;
- every desk event from ``desk.listeners`` → ``alerts`` (re-written when acknowledged),
  ``orders`` (latest state per client id), ``fills``, and one ``audit`` row per action, decision,
  order state, fill and feed status, holding the record exactly as sinks and ``kit run --jsonl``
  show it;
- each heartbeat (every second of desk time) → ``risk_snapshots`` (per open position and the
  portfolio), ``positions``/``legs``/``trade_logs``/``strategies`` for positions whose fills
  changed, and the desk's own state document (switches, alert memory).

Trade logs: the entry columns are taken when a position is first seen with fills; ``entry_price``
is its original credit per unit (the entry's premium / (units × multiplier), a roll does not
change it); the exit columns when it is flat, with ``exit_price`` the per-unit debit that yields
the realised P&L before commissions. ``positions.credit`` is the net credit (cash: premiums sold
minus bought back minus fees; README "Accounting").
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from kit.core.clock import NEW_YORK, from_ns
from kit.core.model import (
    Action,
    Contract,
    Decision,
    FeedStatus,
    Fill,
    Quote,
    Trade,
    UnderlyingTick,
)
from kit.core.symbology import to_occ
from kit.engine.records import AlertRecord, DeskRecord, record_to_json
from kit.execution.broker import OrderState
from kit.signals import vix_regime
from kit.store.schema import TABLES
from kit.store.writer import StoreWriter

if TYPE_CHECKING:
    from kit.engine.desk import Desk

TRADE_LOG_COLUMNS = TABLES["trade_logs"].names
STRATEGY_NAMESPACE = uuid.UUID("5b0f1c3e-6f3a-4d55-9a8e-7d1a2c0e9b41")  # strategy name → UUID


def strategy_uuid(name: str) -> str:
    """A stable UUID for a strategy name: the same strategy keeps its id across restarts."""
    return str(uuid.uuid5(STRATEGY_NAMESPACE, name))


@dataclass(frozen=True)
class StrategyInfo:
    """What the journal knows about a strategy beyond its positions."""

    thesis: str | None = None
    target_theta: float | None = None
    max_drawdown: float | None = None


@dataclass(frozen=True)
class RecorderConfig:
    desk: str = "desk"  # names this desk's alerts and state documents in a shared database
    ticks: bool = True  # record every quote and tick
    snapshot_every_s: float = 1.0  # risk snapshots, in desk time
    vix: str = "VIX"
    strategies: Mapping[str, StrategyInfo] = field(default_factory=dict)


@dataclass
class _Trade:
    """A position's trade-log row as it builds up."""

    row: dict[str, Any]
    multiplier: float
    last_iv: float = float("nan")
    last_delta: float = float("nan")


class StoreStateStore:
    """A :class:`~kit.execution.state.StateStore` on the store's ``state`` table.

    ``save`` is O(1) for the desk: the document is encoded and queued; the writer commits it
    with the rows of the same instant (at most ``flush_s`` later). ``load`` reads what was
    saved in this process first, then the database (at startup).
    """

    def __init__(self, writer: StoreWriter, now_ns: Any, prefix: str = "") -> None:
        self.writer, self.now_ns, self.prefix = writer, now_ns, prefix
        self._docs: dict[str, str] = {}

    def load(self, key: str) -> dict[str, Any] | None:
        key = self.prefix + key
        if key in self._docs:
            return json.loads(self._docs[key])
        return self.writer.store.load_state(key)

    def save(self, key: str, state: dict[str, Any]) -> None:
        key = self.prefix + key
        text = self._docs[key] = json.dumps(state)
        self.writer.put("state", (key, text, self.now_ns()))


class Recorder:
    """Writes the desk's ticks, events, snapshots and state through a :class:`StoreWriter`."""

    def __init__(
        self, desk: Desk, writer: StoreWriter, config: RecorderConfig | None = None
    ) -> None:
        self.desk, self.writer = desk, writer
        self.config = cfg = config or RecorderConfig()
        self.state = StoreStateStore(writer, desk.clock.now_ns, f"{cfg.desk}.")
        self._occ: dict[Contract, tuple[str, str]] = {}
        self._dirty: set[str] = set()
        self._trades: dict[str, _Trade] = {}
        self._strategies: set[str] = set()
        self._names: dict[str, str] = {}  # position → strategy name
        self._commissions: dict[str, float] = {}
        self._snapshot_ns = 0
        self._every_ns = int(cfg.snapshot_every_s * 1e9)

    def attach(self) -> Recorder:
        d = self.desk
        d.listeners.append(self.on_event)
        d.on_heartbeat.append(self.on_heartbeat)
        if self.config.ticks:
            d.tape = self.on_tick
        return self

    def restore(self) -> bool:
        """Give the desk back its saved state and alert records; False on a fresh database."""
        doc = self.state.load("desk")
        if doc is None:
            return False
        rows = self.writer.store.query(
            "SELECT * FROM alerts WHERE desk = :d ORDER BY seq DESC LIMIT :n",
            {"d": self.config.desk, "n": self.desk.alerts.config.history},
        )
        self.desk.restore(doc, [_alert_record(r) for r in rows.iter_rows(named=True)])
        return True

    def save_state(self) -> None:
        self.state.save("desk", self.desk.state())

    # --- ticks: the hot path ---

    def on_tick(self, event: Any) -> None:
        t = type(event)
        if t is Quote:
            c = event.contract
            names = self._occ.get(c)
            if names is None:
                names = self._occ[c] = (to_occ(c, padded=False), c.underlying)
            m = self.desk.market
            i = m.index[c]
            self.writer.put("quotes", (
                event.ts_ns, names[0], names[1], event.bid, event.ask, event.bid_size,
                event.ask_size, None, m.iv[i], m.delta[i], m.gamma[i], m.theta_per_day[i],
                m.vega_per_point[i],
            ))  # fmt: skip
        elif t is UnderlyingTick:
            sym = event.symbol
            self.writer.put("quotes", (event.ts_ns, sym, sym, None, None, None, None, event.price,
                                       None, None, None, None, None))  # fmt: skip
        elif t is Trade:
            c = event.contract
            self.writer.put("quotes", (event.ts_ns, to_occ(c, padded=False), c.underlying, None,
                                       None, None, None, event.price, None, None, None, None,
                                       None))  # fmt: skip

    # --- events ---

    def on_event(self, event: DeskRecord) -> None:
        put = self.writer.put
        if isinstance(event, AlertRecord):
            a = event.alert
            put("alerts", (self.config.desk, event.seq, a.ts_ns, a.severity.value, a.rule,
                           a.position_id, a.message, a.inputs, event.acked_ts_ns is not None,
                           event.acked_ts_ns, event.acked_by))  # fmt: skip
            if a.rule == "desk" or event.acked_ts_ns is not None:  # a switch flipped, an ack
                self.save_state()
            return
        doc = record_to_json(event)
        if isinstance(event, OrderState):
            o = event.order
            put("orders", (o.client_id, doc["ts_ns"], o.position_id, doc["status"], doc["side"],
                           o.quantity, float(event.filled_qty), event.avg_price, doc["order_type"],
                           o.limit_price, doc["legs"], event.broker_id, event.reason))  # fmt: skip
            what, pid, message = doc["status"], o.position_id, event.reason
        elif isinstance(event, Fill):
            pid = self.desk.orders.position_of(event) if self.desk.orders is not None else None
            put("fills", (event.fill_id, event.ts_ns, event.client_id, pid, doc["contract"],
                          doc["side"], float(event.quantity), event.price, doc["multiplier"],
                          event.commission, event.cash_flow))  # fmt: skip
            if pid is not None:
                self._dirty.add(pid)
                self._commissions[pid] = self._commissions.get(pid, 0.0) + event.commission
            what, message = doc["side"], None
            doc |= self._quote_at(event.contract)  # what the desk saw: kit validate's slippage
        elif isinstance(event, Action):
            what, pid, message = event.kind.value, event.position_id, event.reason
        elif isinstance(event, Decision):
            what, pid, message = event.kind, event.position_id, event.message
        else:
            assert isinstance(event, FeedStatus)
            what, pid, message = event.state.value, None, f"{event.feed}: {event.detail}"
        put("audit", (doc["ts_ns"], doc["kind"], what, pid, message, doc))

    def _quote_at(self, contract: Contract) -> dict[str, float | None]:
        """The desk's bid/ask of ``contract`` now (a fill's audit row keeps the quote it was
        filled against, so slippage and a different quote seen by a replay can be told)."""
        m = self.desk.market
        i = m.index.get(contract)
        if i is None:
            return {"bid": None, "ask": None}
        return {"bid": _num(m.bid[i]), "ask": _num(m.ask[i])}

    # --- once a second ---

    def on_heartbeat(self) -> None:
        now = self.desk.clock.now_ns()
        if now - self._snapshot_ns >= self._every_ns:
            self._snapshot_ns = now
            self._snapshot(now)
        if self._dirty:
            self.positions(now)
        self.save_state()

    def _snapshot(self, now: int) -> None:
        view, m = self.desk.view, self.desk.market
        vix = m.spot_of(self.config.vix)
        regime = vix_regime(vix)
        vix_value = None if np.isnan(vix) else vix
        open_rows = np.flatnonzero(view.is_open)
        for i in open_rows:
            self._track_trade(view.ids[i], i)
            self.writer.put("risk_snapshots", (
                now, view.ids[i], view.underlying[i], _num(view.spot[i]),
                _num(view.delta_shares[i]), _num(view.gamma_unit[i] * view.quantity[i]),
                _num(view.theta_per_day[i]), _num(view.vega_per_point[i]),
                _num(view.total_pnl[i]), vix_value, regime,
            ))  # fmt: skip
        live = view.is_open
        self.writer.put("risk_snapshots", (
            now, None, None, None, float(np.nansum(view.beta_delta_spy[live])), None,
            float(np.nansum(view.theta_per_day[live])), float(np.nansum(view.vega_per_point[live])),
            float(np.nansum(view.total_pnl[live])), vix_value, regime,
        ))  # fmt: skip

    def _track_trade(self, pid: str, i: int) -> None:
        trade = self._trades.get(pid)
        if trade is not None:
            iv = self._iv(pid)
            trade.last_iv = iv if np.isfinite(iv) else trade.last_iv
            delta = float(self.desk.view.delta_unit[i])
            trade.last_delta = delta if np.isfinite(delta) else trade.last_delta

    def positions(self, now: int | None = None) -> None:
        """Write positions, legs, trade logs (and new strategies) of positions whose fills
        changed since the last call."""
        now = self.desk.clock.now_ns() if now is None else now
        book = self.desk.book
        view = book.view(now)
        m = self.desk.market
        for pid in sorted(self._dirty):
            i = book.rows.get(pid)
            if i is None:
                continue
            pos = book.positions[pid]
            held = book.held(pid)
            strategy = self._strategy(pid, pos.strategy.value, pos.legs[0].contract.underlying, now)
            status = "open" if held is not None else "closed"
            credit = round(float(view.net_credit[i]), 2)  # net credit: the cash so far
            realized = round(float(view.realized[i]), 2)
            self.writer.put("positions", (
                pid, strategy, pos.strategy.value, pos.legs[0].contract.underlying,
                float(view.quantity[i]), status, credit, realized, pos.opened_ts_ns,
                None if held is not None else now, pos.note, now,
            ))  # fmt: skip
            legs = book.legs_of(pid)
            for k, j in enumerate(legs):
                c = m.contracts[int(book.leg_row[j])]
                self.writer.put("legs", (
                    pid, k, to_occ(c, padded=False), c.root,
                    c.underlying, c.expiry, c.strike, c.right.value,
                    int(book.leg_ratio[j]), float(book.leg_qty[j]), _num(book.leg_avg[j]), now,
                ))  # fmt: skip
            self._trade_log(pid, i, view, strategy, status, now)
        self._dirty.clear()

    def _trade_log(self, pid: str, i: int, view: Any, strategy: str, status: str,
                   now: int) -> None:  # fmt: skip
        book, m = self.desk.book, self.desk.market
        pos = book.positions[pid]
        trade = self._trades.get(pid)
        vix = m.spot_of(self.config.vix)
        if trade is None:
            c = pos.legs[0].contract
            mult = c.multiplier or 100.0
            opened = from_ns(pos.opened_ts_ns).astimezone(NEW_YORK).date()
            expiry = min(leg.contract.expiry for leg in pos.legs)
            trade = self._trades[pid] = _Trade({
                "position_id": pid, "strategy_id": strategy, "strategy": pos.strategy.value,
                "underlying": c.underlying, "opened_at": pos.opened_ts_ns, "closed_at": None,
                "status": status, "quantity": 0.0, "dte": (expiry - opened).days,
                "entry_price": None, "exit_price": None, "entry_iv": _num(self._iv(pid)),
                "exit_iv": None, "entry_delta": _num(view.delta_unit[i]), "exit_delta": None,
                "entry_spot": _num(view.spot[i]), "exit_spot": None, "entry_vix": _num(vix),
                "exit_vix": None, "entry_regime": vix_regime(vix), "exit_regime": None,
                "credit": None, "realized_pnl": None, "commissions": None,
            }, mult)  # fmt: skip
        row = trade.row
        row["quantity"] = max(row["quantity"], float(view.quantity[i]))
        credit = round(float(view.original_credit[i]), 2)  # the entry's: a roll keeps it
        units = row["quantity"] * trade.multiplier
        row["credit"] = credit
        row["entry_price"] = credit / units if units else None
        row["commissions"] = round(self._commissions.get(pid, 0.0), 2)
        row["realized_pnl"] = round(float(view.realized[i]), 2)  # dollars: to the cent
        row["status"] = status
        if status == "closed" and row["closed_at"] is None:
            gross = row["realized_pnl"] + row["commissions"]
            row["closed_at"] = now
            row["exit_price"] = (credit - gross) / units if units else None
            row["exit_iv"] = _num(trade.last_iv)
            row["exit_delta"] = _num(trade.last_delta)
            row["exit_spot"] = _num(view.spot[i])
            row["exit_vix"], row["exit_regime"] = _num(vix), vix_regime(vix)
        self.writer.put("trade_logs", tuple(row[n] for n in TRADE_LOG_COLUMNS))

    def _iv(self, pid: str) -> float:
        """IV of a position: the mean over its short legs (all legs when none is short)."""
        book, m = self.desk.book, self.desk.market
        legs = book.legs_of(pid)
        short = legs[book.leg_ratio[legs] < 0]
        rows = book.leg_row[short if short.size else legs]
        iv = m.iv[rows]
        return float(np.nanmean(iv)) if np.isfinite(iv).any() else float("nan")

    def _strategy(self, pid: str, kind: str, underlying: str, now: int) -> str:
        """The position's strategy UUID; its name is taken at first sight (the order manager
        forgets which strategy a position was once it is closed)."""
        name = self._names.get(pid)
        if name is None:
            orders = self.desk.orders
            name = self._names[pid] = orders.strategy_of(pid) if orders is not None else pid
        sid = strategy_uuid(name)
        if name not in self._strategies:
            self._strategies.add(name)
            info = self.config.strategies.get(name, StrategyInfo())
            self.writer.put("strategies", (sid, name, kind, underlying, info.thesis,
                                           info.target_theta, info.max_drawdown, now))  # fmt: skip
        return sid

    def close(self) -> None:
        """Final rows before the writer closes: positions changed since the last heartbeat,
        and the desk's state."""
        if self._dirty:
            self.positions()
        self.save_state()


def _num(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _alert_record(row: dict[str, Any]) -> AlertRecord:
    from kit.core.model import Alert, Severity

    inputs = row["inputs"]
    acked: datetime | None = row["acked_at"]
    return AlertRecord(
        int(row["seq"]),
        Alert(
            _ns(row["triggered_at"]),
            Severity(row["severity"]),
            row["rule"],
            row["message"],
            row["position_id"],
            json.loads(inputs) if inputs else {},
        ),
        None if acked is None else _ns(acked),
        row["acked_by"],
    )


def _ns(ts: datetime) -> int:
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000

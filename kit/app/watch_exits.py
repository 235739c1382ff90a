"""The watch's exits for manual positions that the desk's rules cannot raise themselves.

- *Stated P&L*: for contracts no feed quotes, the trader states the open P&L with ``kit
  positions update ID --pnl X``. The desk holds such a leg's mark (stale), so its rules never see
  the number; here the stated P&L stands in on the position's row and the rules' profit-target
  and stop levels (% of the credit) are checked on it, once per statement and level.
- *Time exit*: ``time_exit_days`` (1) calendar days before expiry, from ``trading_start`` in the
  configured zone, one WARNING ``time_exit`` per position. Only for positions opened before that
  moment: on a 0DTE or 1DTE entry it would fire at once, so those keep the desk's time stop
  (the last 30 minutes of the expiry, if profitable).

Pure bookkeeping over the journal and the snapshot rows: the caller publishes the alerts.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from kit.app.watch_config import WatchConfig
from kit.core.clock import expiry_time, to_ns
from kit.core.model import Alert, Severity
from kit.positions.manual import ManualBook, ManualPosition, Row
from kit.positions.records import DESK_PREFIX
from kit.risk.rules import Rules


class ManualExits:
    """What has been alerted already (per statement, per position), so each fires once."""

    def __init__(self, manual: ManualBook, cfg: WatchConfig) -> None:
        self.manual, self.cfg = manual, cfg
        self._stated_alerted: set[tuple[str, str, int]] = set()
        self._time_exited: set[str] = set()

    def _journal(self) -> tuple[list[ManualPosition], dict[str, Row]]:
        """The journal's positions and the stated rows by desk id; an unreadable journal is
        the tracker's WARNING (``sync_manual``), so nothing here."""
        try:
            positions, rows = self.manual.positions(), self.manual.rows()
        except ValueError:
            return [], {}
        return positions, {DESK_PREFIX + r.id: r for r in rows if r.pnl_usd is not None}

    def with_stated(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Where the feed has no two-sided quote for a leg of a manual position (the desk
        marks it ``stale``: held at the last good quote, at the entry credit when the feed never
        quoted it) the stated P&L stands in, flagged ``pnl_source: stated`` with its time; a
        live mark wins. ``rows`` are changed in place and returned."""
        _, stated = self._journal()
        for row in rows:
            r = stated.get(row["id"])
            live = math.isfinite(row["open_pnl"]) and not row["stale"]
            if r is None or r.pnl_usd is None or not row["open"] or live:
                continue
            realized = row["realized_pnl"] if math.isfinite(row["realized_pnl"]) else 0.0
            row.update(open_pnl=r.pnl_usd, pnl=r.pnl_usd + realized, pnl_source="stated",
                       pnl_pct=(r.pnl_usd / r.credit_usd * 100 if r.credit_usd else math.nan),
                       pnl_at=r.pnl_at.isoformat() if r.pnl_at else None)  # fmt: skip
        return rows

    def check(self, rows: list[dict[str, Any]], rules: Rules, now: datetime) -> Iterator[Alert]:
        """The alerts due now: stated-P&L exits on ``rows`` (after :meth:`with_stated`), then
        time exits."""
        ts = to_ns(now)
        for row in rows:
            if row.get("pnl_source") != "stated" or not math.isfinite(row["pnl_pct"]):
                continue
            stamp = int(datetime.fromisoformat(row["pnl_at"]).timestamp()) if row["pnl_at"] else 0
            pct = row["pnl_pct"]
            for name, rule, sign in (("profit_target", rules.profit_target, 1.0),
                                     ("stop_loss", rules.stop_loss, -1.0)):  # fmt: skip
                if not rule.enabled:
                    continue
                for level in rule.levels:
                    seen = (row["id"], f"{name}:{level.at:g}", stamp)
                    if sign * pct < level.at or seen in self._stated_alerted:
                        continue
                    self._stated_alerted.add(seen)
                    msg = (f"{row['id']}: stated P&L ${row['open_pnl']:,.2f} is "
                           f"{pct:+.1f}% of the credit ({name.replace('_', ' ')} at "
                           f"{level.at:g}%; stated {row['pnl_at']}, no live mark)")  # fmt: skip
                    yield Alert(ts, level.severity, name, msg, row["id"],
                                {"stated_pnl": row["open_pnl"], "pnl_pct": pct},
                                key=f"stated:{level.at:g}:{stamp}")  # fmt: skip
        yield from self._time_exits(now)

    def _time_exits(self, now: datetime) -> Iterator[Alert]:
        positions, _ = self._journal()
        for p in positions:
            if not p.held or p.id in self._time_exited:
                continue
            day = p.expiry - timedelta(days=self.cfg.time_exit_days)
            due = datetime.combine(day, self.cfg.trading_start, self.cfg.zone)
            settles = expiry_time(p.legs[0].contract)
            if p.opened_ts_ns >= to_ns(due) or not due <= now < settles:
                continue
            self._time_exited.add(p.id)
            msg = (f"{p.desk_id}: time exit, {p.strategy} expires {p.expiry} (settles "
                   f"{settles.astimezone(self.cfg.zone):%Y-%m-%d %H:%M}); close it today rather "
                   "than hold it into expiry")  # fmt: skip
            yield Alert(to_ns(now), Severity.WARNING, "time_exit", msg, p.desk_id,
                        {"expiry": str(p.expiry), "held": p.held}, key=f"{p.expiry}")  # fmt: skip

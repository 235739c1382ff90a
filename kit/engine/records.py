"""What the desk emits, and the one JSON shape every consumer writes it in.

:class:`AlertRecord` is an emitted alert; a :data:`DeskRecord` is anything the desk publishes
(alerts, rule actions, decisions, order states, fills, feed statuses). :func:`record_to_json` is
shared by the sinks (:mod:`kit.sinks`), the store, the gateway's event stream and ``kit run
--jsonl``, so they all agree field for field. This module sits below both the alert manager and
the sinks, so neither imports the other.
"""

from __future__ import annotations

from typing import Any

import msgspec

from kit.core.clock import from_ns
from kit.core.model import Action, Alert, Decision, FeedStatus, Fill, Severity
from kit.core.symbology import to_occ
from kit.execution.broker import OrderState

SEVERITIES = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)  # by rank, least severe first
RANK = {s: i for i, s in enumerate(SEVERITIES)}


class AlertRecord(msgspec.Struct, frozen=True):
    """An emitted alert, numbered by the manager so a user can acknowledge exactly this one."""

    seq: int
    alert: Alert
    acked_ts_ns: int | None = None
    acked_by: str | None = None


SinkRecord = AlertRecord | Action | Decision | OrderState | Fill  # audit sinks get all but alerts
DeskRecord = SinkRecord | FeedStatus


def _plain(obj: Any) -> Any:
    """msgspec enc_hook: NumPy scalars and arrays (rule inputs) become Python numbers and lists;
    anything else unknown becomes its ``str``, since one odd input must not lose the alert."""
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def record_to_json(record: DeskRecord) -> dict[str, Any]:
    """Any desk record as plain JSON-ready Python: the one shape every sink and ``kit run
    --jsonl`` writes. ``kind`` says what it is: ``alert``, ``decision`` (rule actions, with
    ``decision`` = ``action``, and the order manager's decisions), ``order``, ``fill`` or
    ``feed``; every record has ``ts`` (ISO, UTC) and ``ts_ns``."""
    if isinstance(record, AlertRecord):
        a = record.alert
        out: dict[str, Any] = {
            "kind": "alert", "ts_ns": a.ts_ns, "seq": record.seq,
            "severity": a.severity.value, "rule": a.rule, "message": a.message,
            "position_id": a.position_id, "inputs": a.inputs, "acked_ts_ns": record.acked_ts_ns,
            "acked_by": record.acked_by,
        }  # fmt: skip
    elif isinstance(record, Action):
        out = {
            "kind": "decision", "decision": "action", "ts_ns": record.ts_ns,
            "action": record.kind.value, "status": record.params.get("status"),
            "rule": record.rule, "reason": record.reason, "position_id": record.position_id,
            "params": record.params, "inputs": record.inputs,
        }  # fmt: skip
    elif isinstance(record, Decision):
        out = {
            "kind": "decision", "decision": record.kind, "ts_ns": record.ts_ns,
            "message": record.message, "position_id": record.position_id,
            "inputs": record.inputs,
        }  # fmt: skip
    elif isinstance(record, OrderState):
        o = record.order
        out = {
            "kind": "order", "ts_ns": record.ts_ns or o.ts_ns, "client_id": o.client_id,
            "status": record.status.value, "side": o.side.value, "qty": o.quantity,
            "filled_qty": record.filled_qty, "avg_price": record.avg_price,
            "order_type": o.order_type.value, "limit_price": o.limit_price,
            "legs": [{"contract": to_occ(leg.contract, padded=False), "ratio": leg.ratio}
                     for leg in o.legs],
            "position_id": o.position_id, "broker_id": record.broker_id,
            "reason": record.reason,
        }  # fmt: skip
    elif isinstance(record, Fill):
        out = {
            "kind": "fill", "ts_ns": record.ts_ns, "fill_id": record.fill_id,
            "client_id": record.client_id, "contract": to_occ(record.contract, padded=False),
            "side": record.side.value, "qty": record.quantity, "price": record.price,
            "multiplier": record.contract.multiplier, "commission": record.commission,
            "cash_flow": record.cash_flow,
        }  # fmt: skip
    else:
        out = {"kind": "feed", "ts_ns": record.ts_ns, "feed": record.feed,
               "state": record.state.value, "detail": record.detail}  # fmt: skip
    out["ts"] = from_ns(out["ts_ns"]).isoformat()
    return msgspec.to_builtins(out, enc_hook=_plain)

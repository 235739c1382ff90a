"""Two timelines of one day, live and replayed, compared decision by decision; pure.

What is compared: entries (time, legs), rule actions, intents (with their source: autopilot,
a rule, or a person), settlements, rejections and cancels; each fill (contract, side, time,
quantity, price, and the quote it met); alerts (rule, position, time); P&L per position and
in total. Items are paired by what they are (an intent by its id, a fill by contract, side and
order of arrival), never by position in the list, so one extra item does not shift the rest.

Each divergence names a cause. Root causes are found on the live side first:

- ``manual action``: a live intent whose source is a person (``manual:...``); the replay, which
  has no person, cannot take it;
- ``rule changed during the day``: a live ``settings changed`` alert;
- ``different quote seen``: a live fill whose quote (kept in its audit row) is not the quote
  the recording holds at that instant, so the replay decided on other data;
- ``slippage``: a fill at the same instant and quote as the replay's but at a worse price;
- ``partial fill``: the same fill with less quantity;
- ``latency``: the same item later (or earlier) than in the replay;
- ``desk health``: an engine, store or feed alert on one side only (outages are not replayed).

Any other divergence on the same position after a root cause inherits it (a manual close
changes every later exit and the P&L); what is left is ``unexplained``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kit.core.clock import from_ns
from kit.core.symbology import from_occ
from kit.execution.costs import tick_size

TIME_TOLERANCE_NS = 1_000_000_000  # the same decision within a second is the same decision
PRICE_TOLERANCE = 1e-6
DECISIONS = ("entry", "action", "intent", "settlement", "rejected", "cancel")
# alerts about the desk itself (its engine, store, feeds, switches): a replay does not live
# through the live process's outages and restarts, so these are told apart, not explained
HEALTH_RULES = frozenset({"engine", "store", "feed_stale", "desk"})
DESK_HEALTH = "desk health (engine, store or feed): not replayed"
OTHER_SETTINGS = "replayed with other settings (--config/--rules)"


@dataclass
class Divergence:
    ts_ns: int
    kind: str  # entry | exit | action | fill | quote | alert | rules | pnl
    cause: str
    detail: str
    position_id: str | None = None
    live: dict[str, Any] | None = None
    replay: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ts": from_ns(self.ts_ns).isoformat(), "kind": self.kind, "cause": self.cause,
                "detail": self.detail, "position_id": self.position_id}  # fmt: skip


@dataclass
class Comparison:
    decisions_live: int
    decisions_replay: int
    pnl_live: float
    pnl_replay: float
    divergences: list[Divergence] = field(default_factory=list)
    position_pnl: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"decisions_live": self.decisions_live, "decisions_replay": self.decisions_replay,
                "divergences": [d.to_json() for d in self.divergences],
                "pnl_live": self.pnl_live, "pnl_replay": self.pnl_replay,
                "position_pnl": self.position_pnl}  # fmt: skip


def decision_key(r: dict[str, Any]) -> tuple | None:
    """What a decision record is, for pairing; None for records not compared."""
    if r["kind"] != "decision" or r["decision"] not in DECISIONS:
        return None
    d = r["decision"]
    if d == "entry":
        taken = r.get("position_id") is not None
        return ("entry", r.get("position_id")) if taken else ("no_entry",)
    if d == "action":
        return ("action", r.get("position_id"), r.get("action"), r.get("rule"), r.get("status"))
    if d == "intent":
        return ("intent", (r.get("inputs") or {}).get("intent"))
    return (d, r.get("position_id"))


def _pairs(
    live: Iterable[dict[str, Any]], replay: Iterable[dict[str, Any]], key: Callable
) -> list[tuple[dict | None, dict | None]]:
    """Pair records with the same key in order of arrival (the n-th with the n-th)."""
    seen: dict[tuple, list[dict]] = {}
    for r in replay:
        k = key(r)
        if k is not None:
            seen.setdefault(k, []).append(r)
    out: list[tuple[dict | None, dict | None]] = []
    for r in live:
        k = key(r)
        if k is None:
            continue
        queue = seen.get(k)
        out.append((r, queue.pop(0) if queue else None))
    out += [(None, r) for queue in seen.values() for r in queue]
    return out


def _fill_key(r: dict[str, Any]) -> tuple | None:
    return (r["contract"], r["side"]) if r["kind"] == "fill" else None


def _alert_key(r: dict[str, Any]) -> tuple | None:
    if r["rule"] == "desk" and r["message"].startswith("settings changed"):
        return None  # a rule change is a root cause, reported on its own
    return (r["rule"], r.get("position_id"), r.get("severity"))


def _quote(r: dict[str, Any], prefix: str = "") -> tuple[float | None, float | None]:
    return r.get(f"{prefix}bid"), r.get(f"{prefix}ask")


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= PRICE_TOLERANCE


def _ticks(r: dict[str, Any], diff: float) -> str:
    tick = tick_size(from_occ(r["contract"]).root, r["price"])
    return f"{abs(diff) / tick:.0f} tick{'s' if abs(diff) > tick + PRICE_TOLERANCE else ''}"


def _hms(ts_ns: int) -> str:
    from kit.core.clock import NEW_YORK

    return from_ns(ts_ns).astimezone(NEW_YORK).strftime("%H:%M:%S")


def compare(
    live: Any, replay: Any, positions: dict[str, str] | None = None, other_settings: bool = False
) -> Comparison:
    """Compare two :class:`~kit.research.validate.replay.Timeline` objects of one day.

    Live fills may carry ``recorded_bid``/``recorded_ask``: the quote the recording (what the
    replay was fed) holds at the fill's instant, beside ``bid``/``ask``, the quote the live desk
    saw. ``positions`` maps a fill's client id to its position (default: from order records).
    ``other_settings``: the replay ran with other rules or strategy settings than the day (a
    what-if), the cause of whatever nothing else explains.
    """
    owner = dict(positions or {})
    for r in (*live.records, *replay.records):
        if r["kind"] == "order" and r.get("position_id"):
            owner.setdefault(r["client_id"], r["position_id"])
    out: list[Divergence] = []
    roots: list[Divergence] = []  # root causes, by time: later divergences inherit them

    # root causes on the live side alone
    for r in live.records:
        if r["kind"] == "decision" and r["decision"] == "intent":
            source = (r.get("inputs") or {}).get("source") or ""
            if source.startswith("manual"):
                roots.append(Divergence(r["ts_ns"], "exit" if "close" in r["message"] else
                                        "action", "manual action",
                                        f"{r['message']} (by {source.partition(':')[2] or 'hand'})"
                                        ": the replay has no hand on the desk",
                                        r.get("position_id"), live=r))  # fmt: skip
        if r["kind"] == "decision" and r["decision"] == "recovery":
            roots.append(Divergence(r["ts_ns"], "action", DESK_HEALTH, f"the live desk "
                                    f"restarted: {r['message']}", None, live=r))  # fmt: skip
        if r["kind"] == "fill" and r["client_id"] not in owner and r["client_id"] != "settlement":
            roots.append(Divergence(r["ts_ns"], "entry", "manual action",
                                    f"{r['side']} {r['contract']} at {_hms(r['ts_ns'])} outside "
                                    "the order manager (a demo or hand-entered position)", None,
                                    live=r))  # fmt: skip
        if r["kind"] == "fill" and "recorded_bid" in r:
            seen, recorded = _quote(r), _quote(r, "recorded_")
            if not (_same(seen[0], recorded[0]) and _same(seen[1], recorded[1])):
                roots.append(Divergence(
                    r["ts_ns"], "quote", "different quote seen",
                    f"{r['contract']} at {_hms(r['ts_ns'])}: live filled against {seen[0]}/"
                    f"{seen[1]}, the recording the replay runs on holds {recorded[0]}/"
                    f"{recorded[1]} (a quote missed by the recording or the desk)",
                    owner.get(r["client_id"]), live=r))  # fmt: skip
    for a in live.alerts:
        if a["rule"] == "desk" and a["message"].startswith("settings changed"):
            roots.append(Divergence(a["ts_ns"], "rules", "rule changed during the day",
                                    f"{a['message']} at {_hms(a['ts_ns'])}; the replay keeps "
                                    "the rules the day began with", None, live=a))  # fmt: skip
    manual_ids = {(d.live or {}).get("inputs", {}).get("intent") for d in roots
                  if d.cause == "manual action"}  # fmt: skip

    def inherited(ts_ns: int, pid: str | None) -> str | None:
        found = [d for d in (*roots, *derived) if d.ts_ns <= ts_ns + TIME_TOLERANCE_NS
                 and (d.position_id is None or pid is None or d.position_id == pid)]  # fmt: skip
        return max(found, key=lambda d: d.ts_ns).cause if found else None

    derived: list[Divergence] = []  # a fill's own cause (slippage...) explains what follows

    def report(ts_ns: int, kind: str, detail: str, pid: str | None, cause: str | None,
               lv: dict | None, rp: dict | None) -> None:  # fmt: skip
        why = (
            cause
            or inherited(ts_ns, pid)
            or (OTHER_SETTINGS if other_settings else "latency" if lv and rp else "unexplained")
        )
        out.append(Divergence(ts_ns, kind, why, detail, pid, lv, rp))
        if cause is not None and kind == "fill":
            derived.append(out[-1])

    # fills
    for lv, rp in _pairs(live.records, replay.records, _fill_key):
        r = lv or rp
        assert r is not None
        pid = owner.get(r["client_id"])
        what = f"{r['side']} {r['contract']}"
        if lv is None or rp is None:
            side = "only live" if rp is None else "only in the replay"
            report(r["ts_ns"], "fill", f"{side}: {what} {r['qty']:g} @ {r['price']:g} at "
                   f"{_hms(r['ts_ns'])}", pid, None, lv, rp)  # fmt: skip
            continue
        seen_l, seen_r = _quote(lv), _quote(rp)
        same_quote = _same(seen_l[0], seen_r[0]) and _same(seen_l[1], seen_r[1])
        diff = lv["price"] - rp["price"]
        worse = diff if lv["side"] == "buy" else -diff
        dt = lv["ts_ns"] - rp["ts_ns"]
        if abs(dt) > TIME_TOLERANCE_NS:
            report(lv["ts_ns"], "fill", f"{what}: live {_hms(lv['ts_ns'])} @ {lv['price']:g}, "
                   f"replay {_hms(rp['ts_ns'])} @ {rp['price']:g} ({dt / 1e9:+.1f} s)", pid,
                   None, lv, rp)  # fmt: skip
        elif abs(lv["qty"] - rp["qty"]) > PRICE_TOLERANCE:
            report(lv["ts_ns"], "fill", f"{what}: live {lv['qty']:g}, replay {rp['qty']:g} "
                   "contracts", pid, "partial fill" if lv["qty"] < rp["qty"] else None, lv,
                   rp)  # fmt: skip
        elif abs(diff) > PRICE_TOLERANCE:
            cause = (
                "slippage"
                if same_quote
                else (inherited(lv["ts_ns"], pid) or "different quote seen")
            )
            report(lv["ts_ns"], "fill", f"{what} at {_hms(lv['ts_ns'])}: live @ {lv['price']:g}"
                   f", replay @ {rp['price']:g}: {_ticks(lv, diff)} "
                   f"{'worse' if worse > 0 else 'better'} against {seen_l[0]}/{seen_l[1]}"
                   + ("" if same_quote else f" (replay saw {seen_r[0]}/{seen_r[1]})"), pid,
                   cause, lv, rp)  # fmt: skip

    # decisions
    for lv, rp in _pairs(live.records, replay.records, decision_key):
        r = lv or rp
        assert r is not None
        pid, key = r.get("position_id"), decision_key(r)
        kind = (
            "entry"
            if key[0] in ("entry", "no_entry")
            else ("exit" if "close" in str(r.get("message") or r.get("action") or "") else "action")
        )
        what = r.get("message") or f"{r.get('action')} by {r.get('rule')}"
        if lv is not None and key[0] == "intent" and key[1] in manual_ids:
            continue  # reported as its root cause
        if lv is None or rp is None:
            side = "only live" if rp is None else "only in the replay"
            report(r["ts_ns"], kind, f"{side}: {what}", pid, None, lv, rp)
        elif abs(lv["ts_ns"] - rp["ts_ns"]) > TIME_TOLERANCE_NS:
            late = (lv["ts_ns"] - rp["ts_ns"]) / 1e9
            report(lv["ts_ns"], kind, f"{what}: live {_hms(lv['ts_ns'])}, replay "
                   f"{_hms(rp['ts_ns'])} ({late:+.1f} s)", pid, None, lv, rp)  # fmt: skip
        elif key[0] == "entry" and (lv.get("inputs") or {}).get("legs") != (
                rp.get("inputs") or {}).get("legs"):  # fmt: skip
            report(lv["ts_ns"], kind, f"entry strikes differ: live {lv['inputs'].get('legs')}, "
                   f"replay {rp['inputs'].get('legs')}", pid, None, lv, rp)  # fmt: skip

    # alerts
    for lv, rp in _pairs(live.alerts, replay.alerts, _alert_key):
        r = lv or rp
        assert r is not None
        health = DESK_HEALTH if r["rule"] in HEALTH_RULES else None
        if lv is None or rp is None:
            side = "only live" if rp is None else "only in the replay"
            report(r["ts_ns"], "alert", f"{side}: {r['rule']} at {_hms(r['ts_ns'])}: "
                   f"{r['message']}", r.get("position_id"), health, lv, rp)  # fmt: skip
        elif abs(lv["ts_ns"] - rp["ts_ns"]) > TIME_TOLERANCE_NS:
            report(lv["ts_ns"], "alert", f"{r['rule']}: live {_hms(lv['ts_ns'])}, replay "
                   f"{_hms(rp['ts_ns'])}", r.get("position_id"), None, lv, rp)  # fmt: skip

    # P&L per position
    pnl: dict[str, dict[str, float | None]] = {}
    for pid in sorted(set(live.position_pnl) | set(replay.position_pnl)):
        a, b = live.position_pnl.get(pid), replay.position_pnl.get(pid)
        pnl[pid] = {"live": a, "replay": b}
        if a is None or b is None or abs(a - b) > 0.005:
            last = max((d.ts_ns for d in out if d.position_id == pid), default=None)
            when = last if last is not None else max(
                (r["ts_ns"] for r in live.records), default=0)  # fmt: skip
            report(when, "pnl", f"{pid}: live {a}, replay {b}", pid, None, None, None)
    if abs(live.pnl - replay.pnl) > 0.005 and not any(d.kind == "pnl" for d in out):
        when = max((r["ts_ns"] for r in live.records), default=0)
        report(when, "pnl", f"day: live {live.pnl}, replay {replay.pnl}", None, None, None, None)
    out += roots
    out.sort(key=lambda d: d.ts_ns)
    return Comparison(
        sum(decision_key(r) is not None for r in live.records),
        sum(decision_key(r) is not None for r in replay.records),
        live.pnl, replay.pnl, out, pnl,
    )  # fmt: skip

"""Commands a dashboard may send the desk service, validated before anything is done.

Every command arrives as a JSON object ``{"cmd": NAME, ...params}``. Its parameters are checked
against a small schema (unknown names, wrong types and out-of-range values are refused with a
message a person can act on). Trading commands become intents for the order manager, which
applies the desk's risk limits and duplicate-trade prevention: nothing here bypasses them, and
a request id (``id``) becomes part of the intent id, so a command resent after a reconnect
cannot trade twice. Switches and acknowledgements go to the desk, which audits them.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.app.ticket import describe, preview
from kit.core.clock import NEW_YORK, from_ns
from kit.core.config import ConfigError
from kit.core.model import (
    ActionKind,
    Contract,
    ModelError,
    Order,
    OrderType,
    Position,
    Right,
    Severity,
    Side,
)
from kit.engine.desk import Desk
from kit.execution.broker import OrderRejectedError
from kit.execution.intents import (
    CLOSE_FRACTIONS,
    Intent,
    close_intent,
    open_intent,
    protect_intent,
    roll_intent,
)
from kit.execution.manager import OrderManager
from kit.execution.pretrade import check_intent
from kit.portfolio.strategies import (
    DeltaBand,
    LiquidityFilter,
    StrategyError,
    protected,
    strangle,
    units_to_close,
    wings,
)
from kit.risk.limits import loosened
from kit.risk.rules import Rules, load_rules

log = logging.getLogger(__name__)

ChainLoader = Callable[[str, int], Awaitable[list[Contract]]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_ANY = object()


class CommandError(ValueError):
    """A command refused: malformed, unknown, or not allowed now. The message says why."""


@dataclass(frozen=True)
class Param:
    kind: type
    default: Any = _ANY  # _ANY: required
    low: float | None = None
    high: float | None = None


_POSITION = {"position": Param(str, None)}
SCHEMA: dict[str, dict[str, Param]] = {
    "open_strangle": {
        "root": Param(str, "SPXW"), "dte": Param(int, 0, 0, 30),
        "delta_low": Param(float, 0.10, 0.01, 0.49), "delta_high": Param(float, 0.15, 0.01, 0.49),
        "quantity": Param(int, 1, 1, 1000), "strategy": Param(str, "manual-strangle"),
        # wings at this |delta| beyond both shorts make it an iron condor; 0: a strangle
        "wing_delta": Param(float, 0.0, 0.0, 0.3),
        # price it and run the entry checks, send nothing (the ticket's Preview)
        "preview": Param(bool, False),
    },
    "cancel": {"intent": Param(str)},
    "close_all": _POSITION, "close_half": _POSITION, "reduce_25": _POSITION,
    "roll_put": _POSITION, "roll_call": _POSITION, "add_protection": _POSITION,
    "auto_manage": {"on": Param(bool)},
    "kill": {"on": Param(bool), "reason": Param(str, "kill switch from the monitor")},
    "ack": {"seq": Param(int, _ANY, 1)},
    "settings": {"rules": Param(dict)},
}  # fmt: skip


def validate(message: Any) -> tuple[str, dict[str, Any]]:
    """(command name, parameters with defaults) or CommandError naming the first problem."""
    if not isinstance(message, dict):
        raise CommandError("a command is a JSON object")
    name = message.get("cmd")
    if name not in SCHEMA:
        raise CommandError(f"unknown command {name!r} (have {', '.join(SCHEMA)})")
    schema = SCHEMA[name]
    given = {k: v for k, v in message.items() if k not in ("cmd", "id", "type")}
    if unknown := sorted(set(given) - set(schema)):
        raise CommandError(f"{name}: unknown parameter {unknown[0]!r} (takes: "
                           f"{', '.join(schema) or 'nothing'})")  # fmt: skip
    out = {}
    for key, p in schema.items():
        value = given.get(key, p.default)
        if value is _ANY:
            raise CommandError(f"{name}: missing parameter {key!r}")
        if value is not None:
            value = _typed(f"{name}.{key}", p, value)
        out[key] = value
    return name, out


def _typed(where: str, p: Param, value: Any) -> Any:
    ok = isinstance(value, p.kind) and not (p.kind is not bool and isinstance(value, bool))
    if p.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise CommandError(f"{where}: expected {p.kind.__name__}, got {value!r}")
    if p.kind in (int, float):
        if not math.isfinite(value):
            raise CommandError(f"{where}: must be finite, got {value!r}")
        if (p.low is not None and value < p.low) or (p.high is not None and value > p.high):
            raise CommandError(f"{where}: {value!r} is outside {p.low:g}..{p.high or math.inf:g}")
    if p.kind is str and not value.strip():
        raise CommandError(f"{where}: must not be empty")
    return value


def _said(kind: ActionKind, pid: str, quantity: int, intent: Intent) -> str:
    """What a position command set in motion, in a trader's words (not the intent's id)."""
    if kind in CLOSE_FRACTIONS:
        units = units_to_close(quantity, CLOSE_FRACTIONS[kind])
        return f"closing {units} of {quantity} units of {pid} (limit ladder from mid)"
    if kind is ActionKind.ADD_PROTECTION:
        return f"buying wings for {pid}: {_strikes(intent)}"
    side = "put" if kind is ActionKind.ROLL_PUT else "call"
    return f"rolling the {side} of {pid}: {_strikes(intent)}"


def _strikes(intent: Intent) -> str:
    legs = [f"{'buy' if g.ratio > 0 else 'sell'} {g.contract.strike:g}{g.contract.right.value}"
            for g in intent.legs]  # fmt: skip
    return ", ".join(legs) or "as planned"


class Commands:
    """Carries out validated commands on one desk and its order manager."""

    def __init__(
        self,
        desk: Desk,
        orders: OrderManager,
        chain: ChainLoader,
        rules_path: str | Path | None = None,
    ) -> None:
        self.desk, self.orders, self.chain = desk, orders, chain
        self.rules_path = rules_path
        self.overrides: dict[str, dict[str, Any]] = {}

    async def run(self, message: Any, who: str = "monitor") -> dict[str, Any]:
        """Run one command; returns its result, raises CommandError with the reason."""
        name, params = validate(message)
        request = message.get("id")
        if request is not None and not (isinstance(request, str) and _REQUEST_ID.match(request)):
            raise CommandError("id: use 1-40 letters, digits, _ or -")
        try:
            if name in CLOSE_FRACTIONS or name in ("roll_put", "roll_call", "add_protection"):
                return self._position_command(ActionKind(name), params["position"], request, who)
            handler = getattr(self, f"_{name}")
            return await handler(params, request, who)
        except (OrderRejectedError, StrategyError, ModelError, ConfigError, RuntimeError) as exc:
            raise CommandError(f"{name}: {exc}") from None

    # --- trading ---

    async def _open_strangle(self, p: dict[str, Any], request: str | None, who: str) -> dict:
        # a request id names the entry for good: a resend answers with what the first did,
        # even once that position is flat again, and never trades a second time
        iid = f"{p['strategy']}.open.{request}" if request else None
        known = self.orders.records.get(iid) if iid else None
        if known is not None:
            target = known.intent.target
            return {"intent": iid, "position": known.intent.position_id, "status": known.status,
                    "legs": [str(leg.contract) for leg in target.legs] if target else [],
                    "duplicate": True}  # fmt: skip
        if p["delta_low"] > p["delta_high"]:
            raise CommandError(f"open_strangle: delta_low {p['delta_low']:g} is above "
                               f"delta_high {p['delta_high']:g}")  # fmt: skip
        band = DeltaBand(p["delta_low"], p["delta_high"])
        chain = await self.chain(p["root"], p["dte"])
        if not chain:
            raise CommandError(f"open_strangle: no {p['root']} expiry {p['dte']} sessions out")
        desk, now = self.desk, self.desk.clock.now_ns()
        pid = f"{p['strategy']}-{from_ns(now).astimezone(NEW_YORK):%H%M%S}"
        liquidity = LiquidityFilter.for_entry(desk.rules.entry)
        position = strangle(desk.market, chain, pid, now, band=band, liquidity=liquidity,
                            quantity=p["quantity"])  # fmt: skip
        if p["wing_delta"]:
            if not p["wing_delta"] < band.low:
                raise CommandError(
                    f"open_strangle: wing_delta {p['wing_delta']:g} must be below the shorts' "
                    f"delta band {band.low:g}-{band.high:g}"
                )
            legs = wings(desk.market, chain, position, wing_delta=p["wing_delta"],
                         liquidity=liquidity)  # fmt: skip
            position = protected(position, legs)
        if p["preview"]:  # what the entry checks and the order manager would say, unsent
            check = desk.check_entry(position, publish=False)
            refusals = []
            try:
                check_intent(open_intent(position, p["strategy"], "preview", intent_id=iid),
                             desk, self.orders.strategies,
                             [r.intent for r in self.orders.pending()])  # fmt: skip
            except OrderRejectedError as exc:
                refusals.append(str(exc))
            return await self._broker_margin(preview(desk, position, check, refusals), position)
        check = desk.check_entry(position)
        if not check.ok:
            raise CommandError("open_strangle: entry check failed: " + "; ".join(check.failures))
        intent = open_intent(position, p["strategy"], f"{who}: {check.finding.alert.message}",
                             intent_id=iid, source=f"manual:{who}")  # fmt: skip
        rec = self.orders.submit(intent)
        return {"intent": rec.intent.id, "position": pid, "status": rec.status,
                "legs": [str(leg.contract) for leg in position.legs],
                "summary": "sent: sell " + describe(position)}  # fmt: skip

    async def _broker_margin(self, doc: dict[str, Any], position: Position) -> dict[str, Any]:
        """A broker that prices margin itself (IBKR's what-if orders: ``what_if``) gives the
        preview's buying power; the Reg-T estimate stays when it cannot answer."""
        what_if = getattr(self.orders.broker, "what_if", None)
        legs = doc.get("legs") or []
        if what_if is None or any(leg.get("mid") is None for leg in legs):
            return doc
        net = round(sum(leg["ratio"] * leg["mid"] for leg in legs), 2)
        order = Order(f"what-if-{position.id}", position.legs, Side.BUY, position.quantity,
                      OrderType.LIMIT, self.desk.clock.now_ns(), limit_price=net)  # fmt: skip
        try:
            margin = await what_if(order)
        except Exception as exc:  # the estimate is still shown; the broker's reason logged
            log.warning("what-if margin for %s unavailable: %s", position.id, exc)
            return doc
        return {**doc, "buying_power": round(float(margin), 2),
                "buying_power_source": f"{self.orders.broker.name} what-if"}  # fmt: skip

    async def _cancel(self, p: dict[str, Any], request: str | None, who: str) -> dict:
        await self.orders.cancel(p["intent"], f"cancelled from the {who}")
        rec = self.orders.records[p["intent"]]
        return {"intent": rec.intent.id, "status": rec.status, "filled": rec.filled,
                "summary": f"cancelled {rec.intent.kind} {rec.intent.position_id}: "
                           f"{rec.filled} of {rec.quantity} units had filled"}  # fmt: skip

    def _targets(self, kind: ActionKind, position: str | None) -> list[str]:
        book = self.desk.book
        if position is not None:
            if position not in book.rows or book.held(position) is None:
                raise CommandError(f"{kind}: position {position!r} is not held")
            if position in self.desk.alert_only:
                raise CommandError(f"{kind}: {position!r} is alert-only (traded elsewhere): "
                                   "log its trades with `kit positions`")  # fmt: skip
            return [position]
        held = [p for p in book.ids if book.held(p) is not None and p not in self.desk.alert_only]
        if kind is ActionKind.CLOSE_ALL:
            return held
        if len(held) != 1:
            raise CommandError(f"{kind}: name the position ({len(held)} are open)")
        return held

    def _position_command(
        self, kind: ActionKind, position: str | None, request: str | None, who: str
    ) -> dict[str, Any]:
        targets = self._targets(kind, position)
        if not targets:
            raise CommandError(f"{kind}: no open position")
        desk, now = self.desk, self.desk.clock.now_ns()
        out = []
        for pid in targets:
            held = desk.book.held(pid)
            assert held is not None
            strategy = self.orders.strategy_of(pid)
            iid = f"{pid}.{kind}.{request}" if request else self.orders.next_id(pid, kind)
            why, source = f"{kind} from the {who}", f"manual:{who}"
            intent: Intent
            if kind in CLOSE_FRACTIONS:
                intent = close_intent(held, strategy, CLOSE_FRACTIONS[kind], why, now, iid, source)
            elif kind is ActionKind.ADD_PROTECTION:
                intent = protect_intent(desk.market, held, strategy, why, now, iid, source)
            else:
                side = Right.PUT if kind is ActionKind.ROLL_PUT else Right.CALL
                intent = roll_intent(desk.market, held, strategy, side, why, now, iid, source)
            rec = self.orders.submit(intent)
            out.append({"intent": rec.intent.id, "position": pid, "status": rec.status,
                        "summary": _said(kind, pid, held.quantity, intent)})  # fmt: skip
        return {"intents": out, "summary": "; ".join(i["summary"] for i in out)}

    # --- switches ---

    async def _auto_manage(self, p: dict[str, Any], request: str | None, who: str) -> dict:
        self.desk.set_auto_manage(p["on"])
        return {"auto_manage": self.desk.auto_manage}

    async def _kill(self, p: dict[str, Any], request: str | None, who: str) -> dict:
        if p["on"]:
            self.desk.kill(f"{p['reason']} ({who})")
        else:
            self.desk.reset_kill()
        return {"killed": self.desk.killed, "auto_manage": self.desk.auto_manage}

    async def _ack(self, p: dict[str, Any], request: str | None, who: str) -> dict:
        try:
            record = self.desk.acknowledge(p["seq"], who)
        except (KeyError, IndexError, ValueError) as exc:
            raise CommandError(f"ack: {exc}") from None
        return {"seq": record.seq, "acked_by": record.acked_by}

    async def _settings(self, p: dict[str, Any], request: str | None, who: str) -> dict:
        """Change rule thresholds (the same strict checks as a rules file); the windows the
        market keeps were sized at start, so changing them needs a restart."""
        merged = {k: dict(v) for k, v in self.overrides.items()}
        for rule, table in p["rules"].items():
            if not isinstance(table, dict):
                raise CommandError(f"settings: [{rule}] must be an object of settings")
            merged.setdefault(rule, {}).update(table)
        rules: Rules = load_rules(self.rules_path, merged)
        if why := loosened(rules.limits, self.desk.limit_ceiling):
            raise CommandError("settings: " + "; ".join(why) + " (loosening the risk limits "
                               "needs a restart with a new rules file)")  # fmt: skip
        old = self.desk.rules
        if (rules.rapid_move.window_s, rules.correlation_break.window_s) != (
            old.rapid_move.window_s, old.correlation_break.window_s):  # fmt: skip
            raise CommandError("settings: window_s changes need a restart of the service")
        self.desk.rules, self.overrides = rules, merged
        self.desk.notify(Severity.INFO, "desk", f"settings changed by {who}: {p['rules']}")
        return {"rules": merged}

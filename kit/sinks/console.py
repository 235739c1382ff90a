"""The console sink: one colored line per record on a ``rich`` console (times in New York)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from kit.core.model import Action, Decision, Fill, Severity
from kit.core.symbology import to_occ
from kit.engine.records import AlertRecord, SinkRecord
from kit.execution.broker import OrderState
from kit.sinks.base import ny_time

_STYLE = {Severity.CRITICAL: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _console_line(item: SinkRecord) -> Text:
    if not isinstance(item, AlertRecord):
        return Text.assemble((ny_time(item.ts_ns), "dim"), f" → {_audit_text(item)}")
    a = item.alert
    return Text.assemble(
        (ny_time(a.ts_ns), "dim"),
        " ",
        (f"{a.severity.value:<8}", _STYLE[a.severity]),
        f" {a.rule} {a.position_id or 'portfolio'} {a.message}",
    )


def _audit_text(item: Action | Decision | OrderState | Fill) -> str:
    if isinstance(item, Action):
        return f"{item.kind.value} ({item.rule}): {item.reason} [{item.position_id or 'book'}]"
    if isinstance(item, Decision):
        return f"{item.kind}: {item.message}"
    if isinstance(item, OrderState):
        o = item.order
        price = "market" if o.limit_price is None else f"{o.limit_price:g}"
        return (f"order {o.client_id} {o.side.value} {o.quantity} @ {price}: "
                f"{item.status.value} {item.filled_qty}/{o.quantity}")  # fmt: skip
    return (f"fill {item.side.value} {item.quantity:g} {to_occ(item.contract, padded=False)} "
            f"@ {item.price:g} (commission {item.commission:.2f})")  # fmt: skip


class ConsoleSink:
    """One colored line per record on a ``rich`` console (times in New York)."""

    def __init__(
        self, console: Console | None = None, *, min_severity: Severity = Severity.INFO
    ) -> None:
        self.name, self.audit, self.min_severity = "console", True, min_severity
        self.console = console or Console()

    async def send(self, records: Sequence[SinkRecord]) -> None:
        for item in records:  # Text, not markup: a message with "[...]" prints as written
            self.console.print(_console_line(item), soft_wrap=True)

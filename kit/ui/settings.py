"""The monitor's Settings panel: every rule threshold the service reports, editable.

The panel is built from the snapshot's ``settings`` (every rule's numbers, switches and
levels, :func:`kit.app.view.rule_settings`), not from a list kept here, so a rule added to the
rules file shows up without a UI change. Apply sends only the rules whose values changed, as the
`settings` command; the service checks them with the rules file's strict validation (finite,
in range, the key named) and the engine's law (risk limits may be tightened, never loosened
remotely), and the refusal comes back in words.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import ipywidgets as w

STYLE = {"description_width": "190px"}
FIELD = w.Layout(width="300px")
NAMES = {  # how a trader reads the rule ids
    "entry": "Entry checks", "delta": "Delta (after a 1σ move)", "gamma": "Gamma (Δ change per 1σ)",
    "profit_target": "Profit target (% of credit)", "stop_loss": "Stop loss (% of credit)",
    "trailing_stop": "Trailing stop", "strike_breach": "Strike breach (% of spot)",
    "leg_delta": "Short leg |delta|",
    "time_stop": "Time stop", "rapid_move": "Rapid move", "liquidity": "Liquidity",
    "feed_stale": "Stale feed", "correlation_break": "Correlation break",
    "limits": "Risk limits (tighten only)",
}  # fmt: skip


def _label(key: str) -> str:
    return key.replace("_", " ")


class SettingsPanel:
    """Inputs for every setting; ``show(settings)`` fills them, ``changes()`` diffs them."""

    def __init__(self, send: Callable[..., None]) -> None:
        self.send = send
        self.inputs: dict[tuple[str, str, int | None], w.ValueWidget] = {}
        self.shown: dict[str, dict[str, Any]] = {}
        self.body = w.VBox([])
        self.apply = w.Button(description="Apply settings", button_style="warning")
        self.apply.add_class("kit-settings-apply")
        self.apply.on_click(lambda _: self.submit())
        self.note = w.HTML("<span class='kit-dim'>Changed values are checked by the service "
                           "with the rules file's validation; limits can only be tightened "
                           "here.</span>")  # fmt: skip
        self.widget = w.VBox([self.note, self.body, self.apply]).add_class("kit-settings")
        self.widget.layout.display = "none"

    def show(self, settings: dict[str, dict[str, Any]]) -> None:
        """(Re)build the inputs from the service's current settings."""
        self.shown = copy.deepcopy(settings)
        self.inputs.clear()
        sections = []
        for rule, table in settings.items():
            rows: list[w.Widget] = []
            for key, value in table.items():
                if key == "levels":
                    for i, level in enumerate(value):
                        then = f" → {level['action']}" if level.get("action") else ""
                        text = f"level {i + 1} ({level['severity']}{then})"
                        rows.append(self._number(rule, "levels", i, level["at"], text))
                elif isinstance(value, bool):
                    box = w.Checkbox(value=value, description=_label(key), indent=False)
                    box.add_class(f"kit-setting-{rule}-{key}".replace("_", "-"))
                    self.inputs[rule, key, None] = box
                    rows.append(box)
                elif isinstance(value, int | float):
                    rows.append(self._number(rule, key, None, value, _label(key)))
            if rows:
                head = w.HTML(f"<div class='lbl'>{NAMES.get(rule, _label(rule))}</div>")
                sections.append(w.VBox([head, *rows]).add_class("kit-settings-rule"))
        self.body.children = sections

    def _number(self, rule: str, key: str, i: int | None, value: float, label: str) -> w.Widget:
        field = w.FloatText(value=value, description=label, style=STYLE, layout=FIELD)
        suffix = f"-{i + 1}" if i is not None else ""
        field.add_class(f"kit-setting-{rule}-{key}{suffix}".replace("_", "-"))
        self.inputs[rule, key, i] = field
        return field

    def changes(self) -> dict[str, dict[str, Any]]:
        """Only the rules whose values changed, each as the table the command takes (a changed
        level sends the rule's whole list of levels)."""
        out: dict[str, dict[str, Any]] = {}
        for (rule, key, i), field in self.inputs.items():
            old = self.shown[rule][key] if i is None else self.shown[rule][key][i]["at"]
            new = field.value
            if new == old:
                continue
            table = out.setdefault(rule, {})
            if i is None:
                table[key] = new
            else:
                levels = table.setdefault("levels", copy.deepcopy(self.shown[rule]["levels"]))
                levels[i]["at"] = new
        return out

    def submit(self) -> None:
        rules = self.changes()
        if rules:
            self.send("settings", rules=rules)

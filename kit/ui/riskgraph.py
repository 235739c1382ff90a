"""The risk graph: P&L at expiry and today (T+0) against spot, with what-if toggles.

The curves are computed here, in the viewer's kernel, from the legs the snapshot carries
(:mod:`kit.app.view`), with the same :mod:`kit.core.payoff` functions the desk's rules use: the
service sends a few numbers per leg instead of four 201-point curves ten times a second. The grid is
fixed per position (±3 expected moves around the spot when it was first drawn, 201 points), so
an update moves y values only and the chart does not jitter; it is re-centred when spot leaves
the middle 80%.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import bqplot as bq
import ipywidgets as w
import numpy as np

from kit.core.payoff import Legs, breakevens, expected_move, pnl_at_expiry, pnl_t0, spot_grid

POINTS = 201
VOL_SHIFT = 0.15  # the "vol ±15%" toggles: relative to each leg's IV
FG, GRID = "#c9d1d9", "#30363d"
COLOURS = {"expiry": "#58a6ff", "t0": "#f0883e", "vol_up": "#bc8cff", "vol_down": "#3fb950",
           "t1": "#e3b341"}  # fmt: skip


def legs_of(position: dict[str, Any]) -> tuple[Legs, float, float]:
    """(payoff legs, rate, dividend yield) of a snapshot position."""
    legs = position["legs"]
    col = {k: [leg[k] for leg in legs] for k in ("strike", "is_call", "qty", "multiplier",
                                                 "entry", "T_years", "iv")}  # fmt: skip
    return (
        Legs(strike=col["strike"], is_call=col["is_call"], qty=col["qty"],
             multiplier=col["multiplier"], entry_price=col["entry"], T_years=col["T_years"],
             iv=col["iv"]),
        float(legs[0]["rate"]), float(legs[0]["div_yield"]),
    )  # fmt: skip


class RiskGraph:
    def __init__(self) -> None:
        self.x = bq.LinearScale()
        self.y = bq.LinearScale()
        sc = {"x": self.x, "y": self.y}
        self.lines = {
            name: bq.Lines(x=[], y=[], scales=sc, colors=[c], stroke_width=2 if name in (
                "expiry", "t0") else 1.5, line_style="solid" if name != "t1" else "dashed",
                labels=[name], display_legend=False)
            for name, c in COLOURS.items()
        }  # fmt: skip
        self.zero = bq.Lines(x=[0, 1], y=[0, 0], scales=sc, colors=[GRID])
        self.bands = bq.Lines(x=[], y=[], scales=sc, colors=["#6e7681"], line_style="dotted")
        self.spot = bq.Lines(x=[], y=[], scales=sc, colors=["#f85149"], stroke_width=2)
        self.breakevens = bq.Scatter(x=[], y=[], scales=sc, colors=["#ffffff"], default_size=40)
        ax = {"color": FG, "grid_color": GRID, "label_color": FG, "tick_style": {"fill": FG}}
        self.figure = bq.Figure(
            marks=[self.zero, self.bands, *self.lines.values(), self.spot, self.breakevens],
            axes=[bq.Axis(scale=self.x, label="spot", **ax),
                  bq.Axis(scale=self.y, side="left", label="P&L $", label_offset="-55px",
                          tick_format=",.0f", **ax)],
            animation_duration=0, background_style={"fill": "#0d1117"},
            fig_margin={"top": 10, "bottom": 40, "left": 70, "right": 10},
            layout=w.Layout(width="100%", height="320px"),
        )  # fmt: skip
        self.figure.add_class("kit-riskgraph")
        self.vol_up = w.ToggleButton(description="Vol +15%").add_class("kit-toggle-vol-up")
        self.vol_down = w.ToggleButton(description="Vol −15%").add_class("kit-toggle-vol-down")
        self.t1 = w.ToggleButton(description="T+1 day").add_class("kit-toggle-t1")
        self.caption = w.HTML().add_class("kit-riskgraph-caption")
        for toggle in (self.vol_up, self.vol_down, self.t1):
            toggle.observe(lambda _: self.redraw(), "value")
        self.widget = w.VBox([w.HBox([self.vol_up, self.vol_down, self.t1, self.caption]),
                              self.figure]).add_class("kit-riskgraph-box")  # fmt: skip
        self._grid: np.ndarray | None = None
        self._key: tuple[Any, ...] | None = None
        self._position: dict[str, Any] | None = None
        self._spot: float | None = None

    def update(self, position: dict[str, Any] | None, spot: float | None) -> None:
        self._position = position if position and position.get("legs") else None
        self._spot = spot
        self.redraw()

    def redraw(self) -> None:
        p, spot = self._position, self._spot
        if p is None or spot is None:
            for line in self.lines.values():
                line.x, line.y = [], []
            self.caption.value = "no open position"
            return
        legs, r, q = legs_of(p)
        days = max(float(np.min(legs.T_years)) * 365.0, 0.0)
        iv = float(np.mean(legs.iv))
        key = (p["id"], tuple(legs.strike), tuple(legs.qty))
        grid = self._grid
        if (
            key != self._key
            or grid is None
            or not (
                grid[0] + 0.1 * (grid[-1] - grid[0]) < spot < grid[-1] - 0.1 * (grid[-1] - grid[0])
            )
        ):  # a new position, or spot left the middle 80%: a new fixed grid
            grid = self._grid = spot_grid(spot, iv, max(days, 1.0), POINTS)
            self._key = key
        curves = {"expiry": pnl_at_expiry(legs, grid), "t0": pnl_t0(legs, grid, r, q)}
        if self.vol_up.value:
            curves["vol_up"] = _shifted(legs, grid, r, q, 1 + VOL_SHIFT)
        if self.vol_down.value:
            curves["vol_down"] = _shifted(legs, grid, r, q, 1 - VOL_SHIFT)
        if self.t1.value:
            curves["t1"] = pnl_t0(legs, grid, r, q, days_forward=1.0)
        move = expected_move(spot, iv, max(days, 1 / 365))
        lo = float(min(c.min() for c in curves.values()))
        hi = float(max(c.max() for c in curves.values()))
        with self.figure.hold_sync():
            for name, line in self.lines.items():
                y = curves.get(name)
                line.x, line.y = (grid, y) if y is not None else ([], [])
            self.zero.x = [grid[0], grid[-1]]
            self.spot.x, self.spot.y = [spot, spot], [lo, hi]
            levels = [spot + k * move for k in (-2, -1, 1, 2)]
            self.bands.x = np.repeat(levels, 2).reshape(4, 2)
            self.bands.y = np.tile([lo, hi], (4, 1))
            be = breakevens(grid, curves["expiry"])
            self.breakevens.x, self.breakevens.y = be, np.zeros(len(be))
        bes = ", ".join(f"{b:,.0f}" for b in be) or "none"
        self.caption.value = (f"<span class='kit-caption'>±1σ {move:,.0f} pts · breakevens "
                              f"{bes}</span>")  # fmt: skip


def _shifted(legs: Legs, grid: np.ndarray, r: float, q: float, factor: float) -> np.ndarray:
    """T+0 P&L with every leg's IV scaled by ``factor`` (vol ±15% is relative, as traders
    mean it: 20% IV becomes 23%, not 35%)."""
    return pnl_t0(replace(legs, iv=legs.iv * factor), grid, r, q)

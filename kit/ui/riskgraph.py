"""The risk graph: P&L at expiry and today (T+0) against spot, with what-ifs a trader expects.

The curves are computed here, in the viewer's kernel, from the legs the snapshot carries
(:mod:`kit.app.view`), with the same :mod:`kit.core.payoff` functions the desk's rules use: the
service sends a few numbers per leg instead of four 201-point curves ten times a second. The grid is
fixed per position (±3 expected moves around the spot when it was first drawn, 201 points), so
an update moves y values only and the chart does not jitter; it is re-centred when spot leaves
the middle 80%.

What is on it: a legend; the strikes (▲ long, ▼ short) and the breakevens labelled with their
levels; a readout of every curve's P&L under the pointer; zoom presets (±1σ, ±2σ, ±10%) that
frame the profit tent rather than the far tails; a later-date curve (T+N, only for dates before
expiry) with a date slider and an IV-shift slider; the vol ±15% toggles; and a portfolio view
that beta-weights every open position onto the selected underlying's moves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
NAMES = {"expiry": "at expiry", "t0": "today (T+0)", "vol_up": "vol +15%", "vol_down": "vol −15%",
         "t1": "later (T+N)"}  # fmt: skip
ZOOMS = ("±1σ", "±2σ", "±10%", "all")
HOUR = 1 / 24


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


def days_label(days: float) -> str:
    return f"T+{days * 24:.1f}h" if days < 1 else f"T+{days:.1f}d"


class RiskGraph:
    def __init__(self) -> None:
        self.x = bq.LinearScale()
        self.y = bq.LinearScale()
        sc = {"x": self.x, "y": self.y}
        self.lines = {
            name: bq.Lines(x=[], y=[], scales=sc, colors=[c], stroke_width=2 if name in (
                "expiry", "t0") else 1.5, line_style="solid" if name != "t1" else "dashed",
                labels=[NAMES[name]], display_legend=True)
            for name, c in COLOURS.items()
        }  # fmt: skip
        self.zero = bq.Lines(x=[0, 1], y=[0, 0], scales=sc, colors=[GRID])
        self.bands = bq.Lines(x=[], y=[], scales=sc, colors=["#6e7681"], line_style="dotted")
        self.spot = bq.Lines(x=[], y=[], scales=sc, colors=["#f85149"], stroke_width=2)
        self.breakevens = bq.Scatter(x=[], y=[], scales=sc, colors=["#ffffff"], default_size=40,
                                     display_names=True, names=[],
                                     label_display_horizontal_offset=4,
                                     label_display_vertical_offset=-8)  # fmt: skip
        self.strikes = bq.Scatter(x=[], y=[], scales=sc, marker="triangle-down",
                                  colors=["#f85149"], default_size=50, display_names=True,
                                  names=[], label_display_vertical_offset=16)  # fmt: skip
        self.long_strikes = bq.Scatter(x=[], y=[], scales=sc, marker="triangle-up",
                                       colors=["#3fb950"], default_size=50, display_names=True,
                                       names=[], label_display_vertical_offset=16)  # fmt: skip
        ax = {"color": FG, "grid_color": GRID, "label_color": FG, "tick_style": {"fill": FG}}
        self.pointer = bq.interacts.IndexSelector(scale=self.x, marks=[self.lines["expiry"]],
                                                  color="#8b949e")  # fmt: skip
        self.figure = bq.Figure(
            marks=[self.zero, self.bands, *self.lines.values(), self.spot, self.strikes,
                   self.long_strikes, self.breakevens],
            axes=[bq.Axis(scale=self.x, label="spot", label_offset="32px", **ax),
                  bq.Axis(scale=self.y, side="left", label="P&L $", label_offset="-60px",
                          tick_format=",.0f", **ax)],
            animation_duration=0, background_style={"fill": "#0d1117"}, interaction=self.pointer,
            legend_location="top-right", legend_text={"fill": FG},
            legend_style={"fill": "#161b22", "stroke": GRID},
            fig_margin={"top": 10, "bottom": 45, "left": 75, "right": 10},
            layout=w.Layout(width="100%", height="340px"),
        )  # fmt: skip
        self.figure.add_class("kit-riskgraph")
        self.vol_up = w.ToggleButton(description="Vol +15%").add_class("kit-toggle-vol-up")
        self.vol_down = w.ToggleButton(description="Vol −15%").add_class("kit-toggle-vol-down")
        self.t1 = w.ToggleButton(description="T+1 day").add_class("kit-toggle-t1")
        self.zoom = w.ToggleButtons(options=ZOOMS, value="±2σ", style={"button_width": "52px"})
        self.zoom.add_class("kit-riskgraph-zoom")
        self.later = w.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.01, description="Date",
                                   readout=False, continuous_update=False)  # fmt: skip
        self.later.add_class("kit-riskgraph-date")
        self.later_text = w.HTML().add_class("kit-riskgraph-date-label")
        self.iv_shift = w.IntSlider(value=0, min=-50, max=50, step=5, description="IV shift %",
                                    continuous_update=False)  # fmt: skip
        self.iv_shift.add_class("kit-riskgraph-iv")
        self.portfolio = w.ToggleButton(description="Portfolio β").add_class("kit-toggle-portfolio")
        self.caption = w.HTML().add_class("kit-riskgraph-caption")
        self.readout = w.HTML().add_class("kit-riskgraph-readout")
        for control in (self.vol_up, self.vol_down, self.t1, self.zoom, self.later, self.iv_shift):
            control.observe(lambda _: self.redraw(), "value")
        self.pointer.observe(lambda _: self._read(), "selected")
        self.widget = w.VBox([
            w.HBox([self.vol_up, self.vol_down, self.t1, self.portfolio, self.zoom]),
            w.HBox([self.later, self.later_text, self.iv_shift]),
            self.figure, self.readout, self.caption,
        ]).add_class("kit-riskgraph-box")  # fmt: skip
        self._grid: np.ndarray | None = None
        self._key: tuple[Any, ...] | None = None
        self._parts: list[tuple[Legs, float, float, float]] = []  # legs, r, q, spot scale
        self._title = ""
        self._key_id: tuple[Any, ...] | None = None
        self._spot: float | None = None
        self._curves: dict[str, np.ndarray] = {}

    # --- inputs ---

    def update(self, position: dict[str, Any] | None, spot: float | None) -> None:
        """One position's graph (the monitor's selection) at the underlying's ``spot``."""
        p = position if position and position.get("legs") else None
        self._parts = [(*legs_of(p), 1.0)] if p is not None else []
        self._title = p["id"] if p is not None else ""
        self._key_id = ("one", p["id"]) if p is not None else None
        self._spot = spot
        self.redraw()

    def update_portfolio(self, positions: Sequence[dict[str, Any]],
                         spots: Mapping[str, dict[str, Any]], benchmark: str) -> None:  # fmt: skip
        """Every open position on one axis: the ``benchmark``'s spot. A position on another
        underlying moves by its beta (relative to the benchmark's) times the benchmark's
        percentage move: ``S_u * (1 + beta * (x / S_bench - 1))``."""
        bench = (spots.get(benchmark) or {}).get("last")
        parts = []
        betas = {p["underlying"]: float(p.get("beta") or 1.0) for p in positions}
        bench_beta = betas.get(benchmark, 1.0) or 1.0
        for p in positions:
            s_u = (spots.get(p["underlying"]) or {}).get("last")
            if not p.get("legs") or not s_u or not bench:
                continue
            legs, r, q = legs_of(p)
            parts.append((legs, r, q, betas[p["underlying"]] / bench_beta, s_u / bench))
        self._parts = [(legs, r, q, (beta, ratio)) for legs, r, q, beta, ratio in parts]
        self._title = f"portfolio β-weighted to {benchmark} ({len(parts)} positions)"
        self._key_id = ("portfolio", tuple(p["id"] for p in positions))
        self._spot = bench
        self.redraw()

    # --- drawing ---

    def _underlying_grid(self, grid: np.ndarray, scale: Any) -> np.ndarray:
        if scale == 1.0:
            return grid
        beta, ratio = scale
        return ratio * self._spot * (1 + beta * (grid / self._spot - 1))

    def _sum(self, fn: Any, grid: np.ndarray) -> np.ndarray:
        total = np.zeros_like(grid)
        for legs, r, q, scale in self._parts:
            total += fn(legs, self._underlying_grid(grid, scale), r, q)
        return total

    def redraw(self) -> None:
        spot = self._spot
        if not self._parts or spot is None:
            for line in self.lines.values():
                line.x, line.y = [], []
            for marks in (self.strikes, self.long_strikes, self.breakevens):
                marks.x, marks.y, marks.names = [], [], []
            self.caption.value = "no open position"
            self.readout.value = ""
            return
        all_legs = [p[0] for p in self._parts]
        days = max(min(float(np.min(legs.T_years)) for legs in all_legs) * 365.0, 0.0)
        iv = float(np.mean(np.concatenate([legs.iv for legs in all_legs])))
        key = (self._key_id, self.zoom.value,
               tuple(tuple(legs.strike) + tuple(legs.qty) for legs in all_legs))  # fmt: skip
        grid = self._grid
        move = expected_move(spot, iv, max(days, 1 / 365))
        width = 0.0 if grid is None else grid[-1] - grid[0]
        if (
            key != self._key
            or grid is None
            or not (grid[0] + 0.1 * width < spot < grid[-1] - 0.1 * width)
        ):  # a new position or zoom, or spot left the middle 80%: a new fixed grid
            half = self._half_width(spot, move)
            bounds = None if half is None else (spot - 1.2 * half, spot + 1.2 * half)
            grid = self._grid = spot_grid(spot, iv, max(days, 1.0), POINTS, bounds=bounds)
            self._key = key
        # the later date: only before expiry; its slider runs over the time left
        self.later.max = max(days, 0.0)
        self.later.step = max(days / 50, 1 / 1440)
        self.later.layout.display = "" if days > HOUR else "none"
        later = min(self.later.value, days)
        self.t1.disabled = days <= HOUR
        self.t1.description = days_label(later) if days > HOUR else "T+N (expiring)"
        self.later_text.value = f"<span class='kit-dim'>{days_label(later)} of {days:.2f}d</span>"
        shift = self.iv_shift.value / 100.0

        def at(days_fwd: float, factor: float = 1.0) -> Any:
            def fn(legs: Legs, g: np.ndarray, r: float, q: float) -> np.ndarray:
                scaled = replace(legs, iv=legs.iv * factor * (1 + shift))
                return pnl_t0(scaled, g, r, q, days_forward=days_fwd)

            return fn

        curves = {"expiry": self._sum(lambda legs, g, r, q: pnl_at_expiry(legs, g), grid),
                  "t0": self._sum(at(0.0), grid)}  # fmt: skip
        if self.vol_up.value:
            curves["vol_up"] = self._sum(at(0.0, 1 + VOL_SHIFT), grid)
        if self.vol_down.value:
            curves["vol_down"] = self._sum(at(0.0, 1 - VOL_SHIFT), grid)
        if self.t1.value and days > HOUR:
            curves["t1"] = self._sum(at(later), grid)
        self._curves = curves
        x_lo, x_hi = self._window(grid, spot, move)
        inside = (grid >= x_lo) & (grid <= x_hi)
        lo = min(0.0, float(min(c[inside].min() for c in curves.values())))
        hi = max(0.0, float(max(c[inside].max() for c in curves.values())))
        pad = 0.08 * (hi - lo or 1.0)
        be = breakevens(grid, curves["expiry"])
        with self.figure.hold_sync():
            for name, line in self.lines.items():
                y = curves.get(name)
                line.x, line.y = (grid, y) if y is not None else ([], [])
            self.x.min, self.x.max = float(x_lo), float(x_hi)
            self.y.min, self.y.max = lo - pad, hi + pad
            self.zero.x = [grid[0], grid[-1]]
            self.spot.x, self.spot.y = [spot, spot], [lo - pad, hi + pad]
            levels = [spot + k * move for k in (-2, -1, 1, 2)]
            self.bands.x = np.repeat(levels, 2).reshape(4, 2)
            self.bands.y = np.tile([lo - pad, hi + pad], (4, 1))
            self.breakevens.x, self.breakevens.y = be, np.zeros(len(be))
            self.breakevens.names = [f"{b:,.0f}" for b in be]
            self._draw_strikes(lo - pad)
        bes = ", ".join(f"{b:,.0f}" for b in be) or "none"
        self.caption.value = (f"<span class='kit-caption'>{self._title} · ±1σ {move:,.0f} pts · "
                              f"breakevens {bes}</span>")  # fmt: skip
        self._read()

    def _half_width(self, spot: float, move: float) -> float | None:
        """Half the x range the zoom preset shows (None: the whole ±3σ grid)."""
        return {"±1σ": 1.5 * move, "±2σ": 2.5 * move, "±10%": 0.10 * spot}.get(self.zoom.value)

    def _window(self, grid: np.ndarray, spot: float, move: float) -> tuple[float, float]:
        half = self._half_width(spot, move)
        if half is None:
            return float(grid[0]), float(grid[-1])
        return max(float(grid[0]), spot - half), min(float(grid[-1]), spot + half)

    def _draw_strikes(self, y: float) -> None:
        """Short strikes ▼ and long strikes ▲ along the bottom of the plot, labelled."""
        shorts: dict[float, str] = {}
        longs: dict[float, str] = {}
        for legs, _r, _q, scale in self._parts:
            if scale != 1.0:  # the portfolio view: other underlyings' strikes mean nothing here
                continue
            for k, call, qty in zip(legs.strike, legs.is_call, legs.qty, strict=True):
                if qty:
                    (shorts if qty < 0 else longs)[float(k)] = f"{k:g}{'C' if call else 'P'}"
        for marks, found in ((self.strikes, shorts), (self.long_strikes, longs)):
            marks.x = list(found)
            marks.y = [y] * len(found)
            marks.names = list(found.values())

    def _read(self) -> None:
        """The P&L of every drawn curve at the pointer (or at spot before the pointer moves)."""
        grid = self._grid
        if grid is None or not self._curves:
            return
        picked = self.pointer.selected
        x = float(picked[0]) if picked is not None and len(picked) else float(self._spot or 0)
        i = int(np.clip(np.searchsorted(grid, x), 0, len(grid) - 1))
        parts = " · ".join(f"{NAMES[name]} {y[i]:+,.0f}" for name, y in self._curves.items())
        self.readout.value = f"<span class='kit-caption'>at {grid[i]:,.0f}: {parts} $</span>"

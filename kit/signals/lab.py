"""The Signal Lab's widgets (bqplot + ipywidgets): GEX by strike, the GEX profile, vanna and
charm by strike, GEX levels over a session, and a loader for CBOE csv files.

Every widget is built when :class:`SignalLab` is created (while the notebook executes); loading a
chain only sets traits under ``hold_sync``, so it behaves the same in JupyterLab and Voila.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import replace

import bqplot as bq
import ipywidgets as w
import numpy as np
import polars as pl

from kit.core.clock import NEW_YORK
from kit.signals.chains import Chain, read_cboe
from kit.signals.config import COMPAT
from kit.signals.flows import PinSignal
from kit.signals.gex import GexLevels, gex_levels

# Colours readable on Voila's dark theme (and on a light one): no black series.
MARKS = {"spot": "#eceff1", "zero gamma": "#66bb6a", "call wall": "#4fc3f7", "put wall": "#ff8a65"}
CALLS, PUTS = "#4fc3f7", "#ff8a65"
PROFILE = ["#eceff1", "#ce93d8", "#ffd54f"]
LAYOUT = {"width": "100%", "height": "360px"}
# Room for tick labels such as "-12.3G" left of the plot, so axis titles never overlap them.
MARGIN = {"top": 50, "bottom": 60, "left": 90, "right": 30}


def _figure(marks: list[bq.Mark], x: bq.Scale, y: bq.Scale, x_label: str, y_label: str,
            title: str, css: str) -> bq.Figure:  # fmt: skip
    axes = [bq.Axis(scale=x, label=x_label, label_offset="40px"),
            bq.Axis(scale=y, orientation="vertical", label=y_label, tick_format=".3s",
                    label_offset="70px")]  # fmt: skip
    fig = bq.Figure(marks=marks, axes=axes, title=title, animation_duration=0,
                    legend_location="top-left", fig_margin=MARGIN,
                    layout=w.Layout(**LAYOUT))  # fmt: skip
    fig.add_class(css)
    return fig


def table(frame: pl.DataFrame, css: str = "signal-lab-table", digits: int = 2) -> w.HTML:
    """A frame as a plain HTML table widget: column names, thousands separators, no dtype row
    and no ``shape: (…)`` line (what a bare polars repr would print on the page)."""

    def cell(v: object) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return "–" if not np.isfinite(v) else f"{v:,.{digits}f}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        if isinstance(v, list):
            return ", ".join(cell(x) for x in v) or "–"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>"
                   for r in frame.iter_rows())  # fmt: skip
    style = ("<style>.signal-lab-table table{border-collapse:collapse;font-size:12px}"
             ".signal-lab-table th,.signal-lab-table td{padding:2px 10px;text-align:right;"
             "border-bottom:1px solid rgba(128,128,128,.35)}</style>")  # fmt: skip
    out = w.HTML(f"{style}<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    out.add_class(css)
    return out


def pin_text(sig: PinSignal) -> str:
    """The pinning signal in words (never the dataclass repr)."""
    if not sig.active or sig.strike is None or sig.expiry is None:
        return "Pinning: not active (no high open-interest strike close to spot near settlement)."
    return (f"Pinning: active at {sig.strike:,.0f} for the {sig.expiry:%a %b %d} expiry, spot "
            f"{sig.distance_pct:.2f}% away, {sig.hours_to_expiry:.1f} h to settlement, "
            f"{sig.oi_share:.0%} of that expiry's open interest, "
            f"strength {sig.strength:.2f}.")  # fmt: skip


def new_york(ts: pl.Series) -> np.ndarray:
    """UTC timestamps as naive New York wall-clock times (what a US trader reads on an axis)."""
    return ts.dt.convert_time_zone(str(NEW_YORK)).dt.replace_time_zone(None).to_numpy()


def _markers(x: bq.Scale, y: bq.Scale) -> bq.Lines:
    """Vertical lines for spot, zero gamma and the walls (set by :func:`_place`)."""
    return bq.Lines(scales={"x": x, "y": y}, colors=list(MARKS.values()), labels=list(MARKS),
                    display_legend=True, line_style="dashed")  # fmt: skip


def _place(marker: bq.Lines, where: Mapping[str, float | None], lo: float, hi: float) -> None:
    """Move the level lines and write each level's value into its legend entry."""
    values = [where.get(k) for k in MARKS]
    xs = [[v, v] if v is not None else [np.nan, np.nan] for v in values]
    with marker.hold_sync():
        marker.x, marker.y = np.array(xs), np.tile([lo, hi], (len(xs), 1))
        marker.labels = [f"{k} {v:,.0f}" if v is not None else f"{k} –"
                         for k, v in zip(MARKS, values, strict=True)]  # fmt: skip


class SignalLab:
    """Charts for one chain at a time; ``window_pct`` limits strike charts around spot."""

    def __init__(self, compat: str = "desk", window_pct: float = 8.0) -> None:
        self.window_pct = window_pct
        self.levels: GexLevels | None = None
        self.chain: Chain | None = None
        self.compat = w.Dropdown(options=sorted(COMPAT), value=compat, description="Conventions")
        self.gamma_source = w.Dropdown(options=["iv", "vendor"], value="iv",
                                       description="Gamma at spot")  # fmt: skip
        self.upload = w.FileUpload(accept=".csv", multiple=False, description="CBOE csv")
        self.path = w.Text(placeholder="path/to/quotedata.csv", description="or path")
        self.load = w.Button(description="Load")
        self.status = w.HTML()
        self.controls = w.VBox(
            [
                w.HBox([self.compat, self.gamma_source]),
                w.HBox([self.upload, self.path, self.load]),
                self.status,
            ]
        )
        self.controls.add_class("signal-lab-controls")
        self.upload.observe(self._on_upload, names="value")
        self.load.on_click(lambda _b: self._load(self.path.value.strip()))
        for dd in (self.compat, self.gamma_source):
            dd.observe(self._redraw, names="value")

        x, y = bq.LinearScale(), bq.LinearScale()
        self.strike_bars = bq.Bars(scales={"x": x, "y": y}, type="stacked",
                                   colors=[CALLS, PUTS], labels=["calls", "puts"],
                                   display_legend=True)  # fmt: skip
        self.strike_markers = _markers(x, y)
        self.strike_figure = _figure(
            [self.strike_bars, self.strike_markers],
            x,
            y,
            "strike",
            "GEX ($ per 1% move)",
            "GEX by strike",
            "signal-lab-strikes",
        )

        x, y = bq.LinearScale(), bq.LinearScale()
        self.profile_lines = bq.Lines(scales={"x": x, "y": y},
                                      colors=PROFILE, display_legend=True,
                                      labels=["all expiries", "ex next expiry",
                                              "ex next monthly"])  # fmt: skip
        self.profile_markers = _markers(x, y)
        self.profile_figure = _figure(
            [self.profile_lines, self.profile_markers],
            x,
            y,
            "spot",
            "GEX ($ per 1% move)",
            "GEX profile",
            "signal-lab-profile",
        )

        self.vanna_bars, self.charm_bars = (
            bq.Bars(scales={"x": bq.LinearScale(), "y": bq.LinearScale()}, colors=[c])
            for c in ("#4db6ac", "#9fa8da")
        )  # fmt: skip
        self.vanna_figure = _figure([self.vanna_bars], self.vanna_bars.scales["x"],
                                    self.vanna_bars.scales["y"], "strike",
                                    "$ delta per vol point", "Vanna exposure by strike",
                                    "signal-lab-vanna")  # fmt: skip
        self.charm_figure = _figure([self.charm_bars], self.charm_bars.scales["x"],
                                    self.charm_bars.scales["y"], "strike", "$ delta per day",
                                    "Charm exposure by strike", "signal-lab-charm")  # fmt: skip

        x, y = bq.DateScale(), bq.LinearScale()
        self.history_lines = bq.Lines(scales={"x": x, "y": y}, colors=list(MARKS.values()),
                                      labels=["spot", "zero gamma", "call wall", "put wall"],
                                      display_legend=True)  # fmt: skip
        self.history_figure = _figure(
            [self.history_lines],
            x,
            y,
            "time (New York)",
            "index level",
            "GEX levels vs price",
            "signal-lab-history",
        )

    # --- loading ---

    def _redraw(self, _change: dict) -> None:
        if self.chain is not None:
            self.show(self.chain)

    def _on_upload(self, change: dict) -> None:
        files = change["new"]
        if files:
            self._load(bytes(files[0]["content"]), files[0].get("name", "upload"))

    def _load(self, source: str | bytes, name: str | None = None) -> None:
        if not source:
            self.status.value = "<b>give a path or upload a file</b>"
            return
        try:
            chain = read_cboe(source)
        except ValueError as exc:
            self.status.value = f"<b>cannot load {name or ''}: {exc}</b>"
            return
        self.show(chain)

    # --- rendering ---

    def show(self, chain: Chain) -> GexLevels:
        """Compute the chain's levels with the chosen conventions and draw them."""
        cfg = replace(COMPAT[self.compat.value], gamma_source=self.gamma_source.value)
        lv = gex_levels(chain, cfg)
        self.chain, self.levels = chain, lv
        where = {"spot": lv.spot, "zero gamma": lv.zero_gamma, "call wall": lv.call_wall,
                 "put wall": lv.put_wall}  # fmt: skip
        near = lv.by_strike.filter((pl.col("strike") / lv.spot - 1).abs() * 100 <= self.window_pct)
        k = near["strike"].to_numpy()
        calls, puts = near["call_gex"].to_numpy(), near["put_gex"].to_numpy()
        with self.strike_bars.hold_sync():
            self.strike_bars.x, self.strike_bars.y = k, np.stack([calls, puts])
        lo, hi = (float(min(puts.min(initial=0), 0)), float(max(calls.max(initial=0), 0)))
        _place(self.strike_markers, where, lo, hi)
        p = lv.profile
        curves = np.stack([p.total, p.ex_next, p.ex_monthly])
        with self.profile_lines.hold_sync():
            self.profile_lines.x, self.profile_lines.y = p.levels, curves
        _place(self.profile_markers, where, float(curves.min()), float(curves.max()))
        for bars, col in ((self.vanna_bars, "vanna_exposure"), (self.charm_bars, "charm_exposure")):
            with bars.hold_sync():
                bars.x, bars.y = k, near[col].to_numpy()
        asof = lv.asof.astimezone(NEW_YORK)
        self.status.value = (f"{lv.underlying} {lv.spot:,.2f} at {asof:%Y-%m-%d %H:%M} New York: "
                             f"{lv.contracts:,} contracts, total GEX "
                             f"${lv.total_gex / 1e9:,.2f} bn per 1%")  # fmt: skip
        return lv

    def show_history(self, day: pl.DataFrame) -> None:
        """Draw :func:`kit.signals.history.sim_day_levels` output (NaN where a level is None)."""
        cols = ["spot", "zero_gamma", "call_wall", "put_wall"]
        y = day.select(pl.col(c).cast(pl.Float64).fill_null(np.nan) for c in cols).to_numpy().T
        with self.history_lines.hold_sync():
            self.history_lines.x = new_york(day["ts"])
            self.history_lines.y = y

"""Greek "speedometers": half-dial gauges drawn as SVG inside one HTML widget each.

An SVG string is one trait update per refresh, renders in any front end (Voila, JupyterLab,
a static export) and needs no JavaScript of its own; a bqplot figure per gauge would cost a
WebGL/SVG scene and several comm messages each time.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import ipywidgets as w

OK, WARN, BAD, IDLE = "#3fb950", "#d29922", "#f85149", "#6e7681"


@dataclass(frozen=True)
class GaugeSpec:
    """``span`` is the |value| at the end of the dial; ``warn``/``limit`` colour the needle
    (None: never). ``fmt`` formats the value printed under the dial."""

    title: str
    span: float
    warn: float | None = None
    limit: float | None = None
    fmt: str = "{:+.2f}"
    css: str = ""


def colour(value: float | None, warn: float | None, limit: float | None) -> str:
    if value is None or not math.isfinite(value):
        return IDLE
    a = abs(value)
    if limit is not None and a >= limit:
        return BAD
    if warn is not None and a >= warn:
        return WARN
    return OK


def svg(spec: GaugeSpec, value: float | None) -> str:
    """The dial: -span at the left, 0 at the top, +span at the right; bands at ±warn/±limit."""
    r, cx, cy = 52.0, 60.0, 62.0

    def point(v: float, radius: float) -> tuple[float, float]:
        angle = math.pi * (0.5 - max(-1.0, min(1.0, v / spec.span)) / 2)  # 0 = straight up
        return cx + radius * math.cos(angle), cy - radius * math.sin(angle)

    def arc(v0: float, v1: float, stroke: str) -> str:
        (x0, y0), (x1, y1) = point(v0, r), point(v1, r)
        return (f'<path d="M{x0:.1f},{y0:.1f} A{r},{r} 0 0,1 {x1:.1f},{y1:.1f}" '
                f'stroke="{stroke}" stroke-width="7" fill="none"/>')  # fmt: skip

    s = spec.span
    bands = [arc(-s, s, "#30363d")]
    if spec.warn is not None:
        bands += [arc(-s, -spec.warn, WARN + "80"), arc(spec.warn, s, WARN + "80")]
    if spec.limit is not None and spec.limit < s:
        bands += [arc(-s, -spec.limit, BAD + "a0"), arc(spec.limit, s, BAD + "a0")]
    known = value is not None and math.isfinite(value)
    tip = point(value if known else 0.0, r - 10)
    c = colour(value, spec.warn, spec.limit)
    text = spec.fmt.format(value) if known else "—"
    return (
        f'<svg viewBox="0 0 120 84" width="120" height="84" class="kit-gauge-svg">'
        f"{''.join(bands)}"
        f'<line x1="{cx}" y1="{cy}" x2="{tip[0]:.1f}" y2="{tip[1]:.1f}" stroke="{c}" '
        f'stroke-width="3" stroke-linecap="round"/><circle cx="{cx}" cy="{cy}" r="4" fill="{c}"/>'
        f'<text x="{cx}" y="80" text-anchor="middle" fill="{c}" font-size="13" '
        f'font-family="monospace">{html.escape(text)}</text></svg>'
        f'<div class="kit-gauge-title">{html.escape(spec.title)}</div>'
    )


class Gauge:
    """One live gauge; ``set`` redraws only when the shown text or colour changes."""

    def __init__(self, spec: GaugeSpec) -> None:
        self.spec = spec
        self.widget = w.HTML(svg(spec, None))
        self.widget.add_class("kit-gauge")
        if spec.css:
            self.widget.add_class(spec.css)
        self.value: float | None = None

    def set(self, value: float | None, *, warn: float | None = None) -> None:
        if warn is not None and warn != self.spec.warn:
            self.spec = GaugeSpec(**{**self.spec.__dict__, "warn": warn})
        self.value = value
        out = svg(self.spec, value)
        if out != self.widget.value:
            self.widget.value = out

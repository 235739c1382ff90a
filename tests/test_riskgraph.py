"""The monitor's risk graph on snapshot-shaped positions: framing, markers, readout, the later
date only before expiry, and the beta-weighted portfolio against curves computed here."""

from __future__ import annotations

import numpy as np
import pytest

from kit.core.payoff import Legs, pnl_at_expiry
from kit.ui.riskgraph import RiskGraph

YEAR_MIN = 365 * 24 * 60


def leg(strike: float, is_call: bool, qty: float, entry: float, minutes: float) -> dict:
    return {"label": f"{strike:g} {'C' if is_call else 'P'}", "strike": strike,
            "is_call": is_call, "qty": qty, "multiplier": 100.0, "entry": entry,
            "T_years": minutes / YEAR_MIN, "iv": 0.18, "rate": 0.05, "div_yield": 0.0}  # fmt: skip


def strangle(pid: str, put: float, call: float, minutes: float, und: str = "SPX",
             beta: float = 1.0) -> dict:  # fmt: skip
    return {
        "id": pid,
        "underlying": und,
        "beta": beta,
        "open": True,
        "legs": [leg(put, False, -1, 2.0, minutes), leg(call, True, -1, 2.0, minutes)],
    }


def test_zoom_frames_the_tent_and_markers_name_their_levels() -> None:
    g = RiskGraph()
    g.update(strangle("S", 4950, 5050, 3 * 24 * 60), 5000.0)
    assert len(g.lines["expiry"].y) == 201 and len(g.lines["t0"].y) == 201
    assert list(g.strikes.names) == ["4950P", "5050C"] and list(g.long_strikes.x) == []
    assert [float(b) for b in g.breakevens.x] == pytest.approx([4946.0, 5054.0], abs=0.6)
    assert list(g.breakevens.names) == ["4,946", "5,054"]
    g.zoom.value = "±1σ"
    narrow = g.x.max - g.x.min
    g.zoom.value = "±10%"
    assert g.x.max - g.x.min > narrow and g.x.min == pytest.approx(4500.0)
    grid, expiry = np.asarray(g.lines["expiry"].x), np.asarray(g.lines["expiry"].y)
    inside = (grid >= g.x.min) & (grid <= g.x.max)
    assert g.y.min <= expiry[inside].min() and g.y.max >= 400  # the tent's top: $400 credit
    assert g.y.max < 0.2 * abs(g.y.min) + 1000  # framed on the window, not the far tails


def test_the_readout_follows_the_pointer() -> None:
    g = RiskGraph()
    g.update(strangle("S", 4950, 5050, 3 * 24 * 60), 5000.0)
    assert "at 5,000: at expiry +400" in g.readout.value  # before the pointer moves: spot
    g.pointer.selected = np.array([4850.0])
    grid = np.asarray(g.lines["expiry"].x)
    x = grid[int(np.searchsorted(grid, 4850.0))]
    assert 4849 < x < 4853
    want = -(4950 - x) * 100 + 400  # the put's intrinsic value less the credit
    assert f"at {x:,.0f}: at expiry {want:+,.0f}" in g.readout.value


def test_the_later_date_runs_to_expiry_and_disappears_on_the_last_hour() -> None:
    g = RiskGraph()
    g.update(strangle("S", 4950, 5050, 3 * 24 * 60), 5000.0)
    assert g.later.max == pytest.approx(3.0) and not g.t1.disabled
    g.later.value = 2.0
    g.t1.value = True
    assert len(g.lines["t1"].y) == 201 and g.t1.description == "T+2.0d"
    g.update(strangle("S", 4950, 5050, 30), 5000.0)  # 30 minutes left
    assert g.t1.disabled and g.later.layout.display == "none" and len(g.lines["t1"].y) == 0


def test_the_iv_shift_moves_today_but_not_expiry() -> None:
    g = RiskGraph()
    g.update(strangle("S", 4950, 5050, 3 * 24 * 60), 5000.0)
    t0, expiry = np.array(g.lines["t0"].y), np.array(g.lines["expiry"].y)
    g.iv_shift.value = 30
    assert np.all(np.array(g.lines["t0"].y) < t0 + 1e-9)  # short vega: more IV, less P&L
    assert np.array_equal(np.array(g.lines["expiry"].y), expiry)


def test_the_portfolio_beta_weights_other_underlyings() -> None:
    g = RiskGraph()
    spx = strangle("A", 4950, 5050, 3 * 24 * 60)
    ndx = strangle("B", 17800, 18200, 3 * 24 * 60, und="NDX", beta=1.2)
    spots = {"SPX": {"last": 5000.0}, "NDX": {"last": 18000.0}}
    g.update_portfolio([spx, ndx], spots, "SPX")
    grid = np.asarray(g.lines["expiry"].x)
    # independent: each position's expiry P&L on its own underlying's move
    ndx_grid = 18000.0 * (1 + 1.2 * (grid / 5000.0 - 1))

    def curve(p: dict, x: np.ndarray) -> np.ndarray:
        legs = Legs(strike=[g_["strike"] for g_ in p["legs"]],
                    is_call=[g_["is_call"] for g_ in p["legs"]],
                    qty=[g_["qty"] for g_ in p["legs"]], multiplier=[100.0, 100.0],
                    entry_price=[2.0, 2.0], T_years=[g_["T_years"] for g_ in p["legs"]],
                    iv=[0.18, 0.18])  # fmt: skip
        return pnl_at_expiry(legs, x)

    want = curve(spx, grid) + curve(ndx, ndx_grid)
    assert np.allclose(np.asarray(g.lines["expiry"].y), want)
    assert "β-weighted to SPX (2 positions)" in g.caption.value
    assert list(g.strikes.x) == []  # strikes of two underlyings mean nothing on one axis

"""kit validate's pure parts on hand-made timelines: causes the end-to-end day does not produce
(a rule changed during the day, a partial fill, latency) and the slippage fit."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from kit.execution.costs import CostModel
from kit.research.validate.compare import compare
from kit.research.validate.replay import Timeline
from kit.research.validate.slippage import FEATURES, fill_table, fit, mean_dollars

T0 = 1_710_270_000_000_000_000  # 2024-03-12 19:00 UTC, 15:00 New York
S = 1_000_000_000
PID = "p1"
PUT = "SPXW240312P05010000"


def _order(ts: int, cid: str = "c1") -> dict:
    return {"kind": "order", "ts_ns": ts, "client_id": cid, "position_id": PID, "status": "filled"}


def _fill(ts: int, price: float, qty: float = 2.0, side: str = "sell", cid: str = "c1",
          bid: float = 0.55, ask: float = 0.60) -> dict:  # fmt: skip
    sign = -1 if side == "buy" else 1
    return {"kind": "fill", "ts_ns": ts, "fill_id": f"f{ts}", "client_id": cid, "contract": PUT,
            "side": side, "qty": qty, "price": price, "multiplier": 100.0, "commission": 1.0,
            "cash_flow": sign * qty * price * 100 - 1.0, "bid": bid, "ask": ask,
            "recorded_bid": bid, "recorded_ask": ask, "recorded_delta": -0.1}  # fmt: skip


def _action(ts: int, rule: str = "profit_target") -> dict:
    return {"kind": "decision", "decision": "action", "ts_ns": ts, "action": "close_all",
            "status": "executed", "rule": rule, "reason": "target", "position_id": PID}  # fmt: skip


def _timeline(records: list[dict], alerts: list[dict] | None = None) -> Timeline:
    pnl = round(sum(r["cash_flow"] for r in records if r["kind"] == "fill"), 2)
    return Timeline(None, records, alerts or [], {PID: pnl})  # type: ignore[arg-type]


def test_identical_timelines_have_no_divergence():
    recs = [_order(T0), _fill(T0 + 5 * S, 0.55), _action(T0 + 60 * S)]
    c = compare(_timeline(recs), _timeline([dict(r) for r in recs]))
    assert c.divergences == [] and c.decisions_live == c.decisions_replay == 1


def test_a_rule_changed_during_the_day_explains_what_follows():
    change = {"kind": "alert", "ts_ns": T0 + 30 * S, "seq": 2, "rule": "desk",
              "severity": "INFO", "position_id": None,
              "message": "settings changed by monitor: {'profit_target': ...}"}  # fmt: skip
    live = _timeline([_order(T0), _fill(T0 + 5 * S, 0.55), _action(T0 + 40 * S)], [change])
    replay = _timeline([_order(T0), _fill(T0 + 5 * S, 0.55), _action(T0 + 300 * S)])
    found = compare(live, replay).divergences
    assert [d.kind for d in found] == ["rules", "exit"]
    assert {d.cause for d in found} == {"rule changed during the day"}
    assert "-260.0 s" in found[1].detail  # live closed 4m20s before the replay


def test_a_partial_fill_and_latency_are_told_apart():
    live = _timeline([_order(T0), _fill(T0 + 5 * S, 0.55, qty=1.0), _order(T0, "c2"),
                      _fill(T0 + 20 * S, 0.55, cid="c2", side="buy")])  # fmt: skip
    replay = _timeline([_order(T0), _fill(T0 + 5 * S, 0.55, qty=2.0), _order(T0, "c2"),
                        _fill(T0 + 12 * S, 0.55, cid="c2", side="buy")])  # fmt: skip
    causes = [(d.kind, d.cause) for d in compare(live, replay).divergences]
    assert causes[0] == ("fill", "partial fill")
    assert ("fill", "partial fill") in causes and ("pnl", "partial fill") in causes


def test_latency_when_nothing_else_differs():
    live = _timeline([_order(T0), _fill(T0 + 9 * S, 0.55)])
    replay = _timeline([_order(T0), _fill(T0 + 5 * S, 0.55)])
    (d,) = compare(live, replay).divergences
    assert (d.kind, d.cause) == ("fill", "latency") and "+4.0 s" in d.detail


def test_fill_table_measures_against_the_quote_met():
    sold_at_bid = _fill(T0, 0.55)  # mid 0.575: a sale at the bid slips half the spread
    bought_above = _fill(T0 + S, 0.65, side="buy")  # 0.075 above the mid
    table = fill_table([sold_at_bid, bought_above, {**_fill(T0, 3.0), "client_id": "settlement"}])
    assert table.height == 2
    assert table["frac"].to_list() == pytest.approx([0.5, 1.5])
    assert table["slip_dollars"].to_list() == pytest.approx([2.5, 7.5])
    assert mean_dollars(table) == pytest.approx(5.0)
    assert table["hours"][0] == pytest.approx(5.5)  # 15:00 is 5.5 h after the open


def test_fit_recovers_a_known_slippage_surface_and_writes_a_cost_model():
    rng = np.random.default_rng(7)
    n = 200
    x = {"dte": rng.integers(0, 5, n).astype(float), "abs_delta": rng.uniform(0.05, 0.3, n),
         "hours": rng.uniform(0, 6.5, n), "spread": rng.uniform(0.05, 0.5, n)}  # fmt: skip
    frac = 0.2 + 0.01 * x["dte"] + 0.5 * x["abs_delta"] - 0.02 * x["hours"] + 0.3 * x["spread"]
    table = pl.DataFrame({**x, "frac": frac, "legs": np.where(np.arange(n) % 2, 2, 4)})
    model = fit(table)
    assert model is not None and model.n == n
    assert model.intercept == pytest.approx(0.2, abs=1e-9)
    assert [model.coef[f] for f in FEATURES] == pytest.approx([0.01, 0.5, -0.02, 0.3])
    cost = model.cost_model()
    assert isinstance(cost, CostModel) and set(cost.slippage_frac) == {1, 2, 4}
    assert cost.slippage_frac[2] == pytest.approx(float(frac[1::2].mean()), abs=1e-4)
    assert "[costs.live]" in model.toml() and "slippage_frac = {" in model.toml()
    surface = model.surface("dte", "spread", [0, 1], [0.1, 0.2], at={"hours": 1.0})
    assert surface.height == 4


def test_few_fills_fit_only_their_mean():
    table = fill_table([_fill(T0, 0.55), _fill(T0 + S, 0.60, side="buy")])
    model = fit(table)
    assert model is not None and model.coef == {} and model.intercept == pytest.approx(0.5)
    assert fit(table.clear()) is None

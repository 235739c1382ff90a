"""Vanna and charm exposure against finite differences of dealers' dollar delta, the flows
into expiry, max pain against a brute force, and the pinning signal."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.core.pricing import greeks
from kit.signals import (
    DESK,
    PUBLIC,
    Chain,
    PinConfig,
    expiry_flows,
    exposures,
    make_frame,
    max_pain,
    pinning,
)

ASOF = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)  # Monday 10:00 New York
SPOT = 5000.0
NAMES = ("root", "expiry", "strike", "is_call", "iv", "open_interest")


def chain(rows: list[tuple], spot: float = SPOT, asof: datetime = ASOF) -> Chain:
    """Rows of (root, expiry, strike, is_call, iv, open_interest)."""
    frame = make_frame(dict(zip(NAMES, zip(*rows, strict=True), strict=True)))
    return Chain("SPX", spot, asof, frame, source="test")


BOOK = chain([(root, day, k, c, 0.13 + 0.1 * abs(k / SPOT - 1) + 0.01 * i, 50.0 + k % 700)
              for i, (root, day) in enumerate([("SPXW", date(2024, 3, 4)),
                                               ("SPXW", date(2024, 3, 8)),
                                               ("SPX", date(2024, 3, 15)),
                                               ("SPX", date(2024, 6, 21))])
              for k in np.arange(4700.0, 5301.0, 25.0) for c in (True, False)])  # fmt: skip


def dollar_delta(ex, cfg=DESK, *, sigma_shift: float = 0.0, years_shift: float = 0.0):
    """Dealers' $ delta of every row with IV and time to expiry shifted."""
    g = greeks(SPOT, ex["strike"].to_numpy(), ex["years"].to_numpy() + years_shift, cfg.r, cfg.q,
               ex["iv"].to_numpy() + sigma_shift, ex["is_call"].to_numpy())  # fmt: skip
    return ex["weight"].to_numpy() * g.delta * SPOT


@pytest.mark.parametrize("cfg", [DESK, replace(DESK, q=0.013, r=0.045), PUBLIC])
def test_vanna_exposure_is_dollar_delta_per_vol_point(cfg) -> None:
    ex = exposures(BOOK, cfg)
    h = 1e-5  # of sigma; a vol point is 0.01
    up, down = (dollar_delta(ex, cfg, sigma_shift=s) for s in (h, -h))
    fd = (up - down) / (2 * h) * 0.01
    np.testing.assert_allclose(ex["vanna_exposure"], fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


def test_charm_exposure_is_dollar_delta_drift_per_day() -> None:
    for cfg, day_years in ((DESK, 1 / 365), (PUBLIC, 1 / 262)):
        ex = exposures(BOOK, cfg)
        eps = 1e-7
        later, earlier = (dollar_delta(ex, cfg, years_shift=s) for s in (-eps, eps))
        fd = (later - earlier) / (2 * eps)
        np.testing.assert_allclose(ex["charm_exposure"], fd * day_years, rtol=1e-4,
                                   atol=1e-7 * np.abs(fd).max())  # fmt: skip


def test_units_of_one_contract() -> None:
    one = chain([("SPXW", date(2024, 3, 15), 5100.0, False, 0.2, 300.0)])
    ex = exposures(one)
    g = greeks(SPOT, 5100.0, ex["years"][0], 0.0, 0.0, 0.2, False)
    assert ex["vanna_exposure"][0] == pytest.approx(-1 * g.vanna * 300 * 100 * SPOT * 0.01)
    assert ex["charm_exposure"][0] == pytest.approx(-1 * g.charm_per_day * 300 * 100 * SPOT)
    assert ex["dollar_delta"][0] == pytest.approx(-1 * g.delta * 300 * 100 * SPOT)


def test_expiry_flows() -> None:
    flows = expiry_flows(BOOK)
    ex = exposures(BOOK)
    assert flows["expiry"].to_list() == sorted(set(ex["expiry"]))
    first = ex.filter(expiry=date(2024, 3, 4))
    K, call, w = first["strike"].to_numpy(), first["is_call"].to_numpy(), first["weight"]
    settled = np.where(call, (SPOT > K) + 0.5 * (SPOT == K), -((SPOT < K) + 0.5 * (SPOT == K)))
    at_expiry = float((w * settled * SPOT).sum())
    row = flows.row(0, named=True)
    assert row["delta_at_expiry"] == pytest.approx(at_expiry)
    assert row["charm_flow_to_expiry"] == pytest.approx(first["dollar_delta"].sum() - at_expiry)
    assert row["vanna_flow_per_point_drop"] == pytest.approx(first["vanna_exposure"].sum())
    assert row["days_to_expiry"] == pytest.approx(6 / 24)  # 10:00 to the 16:00 close
    np.testing.assert_allclose(flows["cum_charm_flow"], np.cumsum(flows["charm_flow_to_expiry"]))
    # the AM-settled monthly settles at the open: 10 days 23.5 hours (less the DST hour)
    monthly = flows.filter(expiry=date(2024, 3, 15))["days_to_expiry"][0]
    assert monthly == pytest.approx(10 + 22.5 / 24)


# --- max pain ---


def brute_max_pain(rows: list[tuple]) -> dict[date, tuple[float, float]]:
    out = {}
    for day in sorted({r[1] for r in rows}):
        mine = [r for r in rows if r[1] == day]
        best = None
        for s in sorted({r[2] for r in mine}):
            pay = sum(oi * 100 * max((s - k) if c else (k - s), 0.0)
                      for _, _, k, c, _, oi in mine)  # fmt: skip
            if best is None or pay < best[1]:
                best = (s, pay)
        out[day] = best
    return out


@settings(max_examples=100)
@given(st.lists(st.tuples(st.sampled_from([date(2024, 3, 8), date(2024, 3, 15)]),
                          st.integers(90, 110), st.booleans(), st.integers(0, 500)),
                min_size=1, max_size=40))  # fmt: skip
def test_max_pain_equals_brute_force(raw) -> None:
    rows = [("SPXW", d, k * 50.0, c, 0.2, float(oi)) for d, k, c, oi in raw]
    seen, unique = set(), []
    for r in rows:  # one row per contract, as chains have
        if r[:4] not in seen:
            seen.add(r[:4])
            unique.append(r)
    got = max_pain(chain(unique))
    want = brute_max_pain(unique)
    assert got["expiry"].to_list() == sorted(want)
    for row in got.iter_rows(named=True):
        strike, payout = want[row["expiry"]]
        assert row["max_pain"] == strike and row["payout"] == pytest.approx(payout, abs=1e-6)


# --- pinning ---

WED = datetime(2024, 3, 13, 19, 0, tzinfo=UTC)  # Wednesday 15:00 New York


def pin_chain(spot: float, asof: datetime) -> Chain:
    rows = [("SPXW", date(2024, 3, 13), k, c, 0.15, 4000.0 if k == 5100 else 100.0)
            for k in (4900.0, 5000.0, 5050.0, 5100.0) for c in (True, False)]  # fmt: skip
    rows += [("SPX", date(2024, 3, 15), k, c, 0.15, 9000.0 if k == 5000 else 500.0)
             for k in (4900.0, 5000.0, 5100.0) for c in (True, False)]  # fmt: skip
    return chain(rows, spot=spot, asof=asof)


def test_pinning_near_opex_and_a_high_oi_strike() -> None:
    sig = pinning(pin_chain(5095.0, WED))  # an hour before the 0DTE close, 0.1% from 5100
    assert sig.active and sig.expiry == date(2024, 3, 13) and sig.strike == 5100.0
    assert sig.hours_to_expiry == pytest.approx(1.0)
    assert sig.distance_pct == pytest.approx(5 / 5095 * 100)
    assert sig.oi_share == pytest.approx(8000 / (8000 + 6 * 100))
    assert sig.strength == pytest.approx((1 - sig.distance_pct / 0.5) * (1 - 1 / 48))
    assert not pinning(pin_chain(5160.0, WED)).active  # 1.2% away
    monthly = pinning(pin_chain(5010.0, WED), PinConfig(monthly_only=True))
    assert monthly.active and (monthly.expiry, monthly.strike) == (date(2024, 3, 15), 5000.0)
    assert monthly.hours_to_expiry == pytest.approx(42.5)  # Friday's open
    early = pinning(pin_chain(5010.0, WED.replace(day=11)), PinConfig(monthly_only=True))
    assert not early.active and early.strength == 0 and early.hours_to_expiry > 48
    after = pinning(pin_chain(5010.0, datetime(2024, 3, 16, tzinfo=UTC)))
    assert not after.active and after.expiry is None

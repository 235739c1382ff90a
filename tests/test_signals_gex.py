"""Gamma exposure on constructed chains: the formula, the fast profile against the obvious one,
every zero-gamma crossing, walls, the exclusion variants, conventions, and chains from the
simulator and from ThetaData snapshots (through the loopback emulator)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.adapters.sim.market import MarketSim
from kit.adapters.thetadata.config import ThetaDataConfig
from kit.adapters.thetadata.emulator import ThetaDataEmulator
from kit.adapters.thetadata.rest import ThetaDataREST
from kit.cli.main import main
from kit.core.clock import NEW_YORK, SimClock
from kit.core.pricing import greeks
from kit.signals import (
    DESK,
    PUBLIC,
    Chain,
    GammaKernel,
    GexConfig,
    dealers_short_all,
    exposures,
    gex_levels,
    is_monthly,
    make_frame,
    profile_reference,
    read_cboe,
    sim_chain,
    thetadata_chain,
    zero_crossings,
)
from kit.signals.gex import sessions_to_expiry

ASOF = datetime(2024, 3, 4, 15, 0, tzinfo=UTC)  # Monday 10:00 New York
SPOT = 5000.0


def chain(rows: list[tuple], spot: float = SPOT, asof: datetime = ASOF, **extra) -> Chain:
    """Rows of (root, expiry, strike, is_call, iv, open_interest)."""
    cols = list(zip(*rows, strict=True))
    names = ("root", "expiry", "strike", "is_call", "iv", "open_interest")
    frame = make_frame({**dict(zip(names, cols, strict=True)), **extra})
    return Chain("SPX", spot, asof, frame, source="test")


def test_per_contract_gex_is_the_formula() -> None:
    ch = chain([("SPXW", date(2024, 3, 15), 5100.0, True, 0.15, 1000.0),
                ("SPXW", date(2024, 3, 15), 4900.0, False, 0.18, 2000.0)])  # fmt: skip
    ex = exposures(ch)
    T = ex["years"].to_numpy()
    # to Friday's 16:00 close, eleven days and six hours on, less the hour DST skips on the 10th
    assert T[0] * 365 * 24 * 60 == pytest.approx((11 * 24 + 5) * 60)
    g = greeks(SPOT, np.array([5100.0, 4900.0]), T, 0.0, 0.0, np.array([0.15, 0.18]), True).gamma
    expected = np.array([1.0, -1.0]) * g * np.array([1000.0, 2000.0]) * 100 * SPOT**2 * 0.01
    np.testing.assert_allclose(ex["gex"].to_numpy(), expected, rtol=1e-12)
    lv = gex_levels(ch)
    assert lv.total_gex == pytest.approx(expected.sum())
    assert (lv.call_wall, lv.put_wall) == (5100.0, 4900.0)


def test_sign_model_and_vendor_gamma_are_pluggable() -> None:
    rows = [("SPXW", date(2024, 3, 15), k, c, 0.16, 500.0)
            for k in (4900.0, 5000.0, 5100.0) for c in (True, False)]  # fmt: skip
    vendor = np.array([0.0011, 0.0012, 0.0021, 0.0021, 0.0009, 0.0010])
    ch = chain(rows, gamma_vendor=vendor)
    base = exposures(ch)["gex"].to_numpy()
    short = exposures(ch, replace(DESK, sign=dealers_short_all))["gex"].to_numpy()
    np.testing.assert_allclose(short, -np.abs(base))
    ven = exposures(ch, replace(DESK, gamma_source="vendor"))
    np.testing.assert_allclose(ven["gex"], np.where(ven["is_call"], 1, -1) * vendor * 500 * 100
                               * SPOT**2 * 0.01)  # fmt: skip
    # the profile always recomputes gamma from IV
    a, b = gex_levels(ch), gex_levels(ch, replace(DESK, gamma_source="vendor"))
    np.testing.assert_array_equal(a.profile.total, b.profile.total)


def test_zero_dte_and_expired_contracts() -> None:
    rows = [("SPXW", date(2024, 3, 4), 5000.0, True, 0.2, 100.0),  # 0DTE: six hours left
            ("SPXW", date(2024, 3, 1), 5000.0, True, 0.2, 100.0),  # expired last Friday
            ("SPXW", date(2024, 3, 8), 5000.0, True, 0.2, 100.0)]  # fmt: skip
    kept = exposures(chain(rows))["expiry"].to_list()
    assert kept == [date(2024, 3, 4), date(2024, 3, 8)]
    assert exposures(chain(rows), replace(DESK, zero_dte="drop"))["expiry"].to_list() == [
        date(2024, 3, 8)
    ]
    # the public basis counts business days from the date: today's expiry has T = 0
    assert exposures(chain(rows), PUBLIC)["expiry"].to_list() == [date(2024, 3, 8)]


def test_no_usable_iv_carries_nothing() -> None:
    rows = [("SPXW", date(2024, 3, 8), 5000.0, True, iv, 100.0) for iv in (None, 0.0, -0.1)]
    ex = exposures(chain(rows))
    assert ex.height == 3 and (ex["gex"] == 0).all() and (ex["vanna_exposure"] == 0).all()
    lv = gex_levels(chain(rows))
    assert lv.total_gex == 0 and lv.crossings == () and lv.zero_gamma is None
    assert lv.call_wall is None and lv.put_wall is None


# --- the fast profile against the obvious one ---

contracts = st.lists(
    st.tuples(
        st.floats(0.5, 1.6),  # strike / spot
        st.floats(1 / 525_600, 3.0),  # years: one minute to three years
        st.one_of(st.floats(0.02, 2.5), st.sampled_from([0.0, np.nan])),  # IV
        st.floats(-5e4, 5e4),  # weight: sign x OI x multiplier
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150)
@given(contracts, st.floats(-0.05, 0.1), st.floats(0.0, 0.05), st.integers(2, 80),
       st.floats(0.3, 0.99), st.floats(1.01, 2.0))  # fmt: skip
def test_kernel_equals_the_reference(rows, r, q, n, lo, hi) -> None:
    K, T, iv, w = (np.array(c) for c in zip(*rows, strict=True))
    K = K * SPOT
    levels = np.linspace(lo * SPOT, hi * SPOT, n)
    weights = np.stack([w, -2 * w], axis=1)
    fast = GammaKernel(K, T, iv, weights, spot=SPOT, r=r, q=q)(levels)
    ref = profile_reference(levels, K, T, iv, weights, r=r, q=q)
    gross = profile_reference(levels, K, T, iv, np.abs(weights), r=r, q=q)
    assert np.all(np.abs(fast - ref) <= 1e-9 * gross + 1e-300)


def test_kernel_on_a_full_chain_and_far_contracts() -> None:
    """10k contracts (some so far from the grid that they underflow and are skipped)."""
    rng = np.random.default_rng(3)
    n = 10_000
    K = SPOT * np.exp(rng.uniform(-0.6, 0.6, n))
    T = np.exp(rng.uniform(np.log(1 / 8760), np.log(2.0), n))
    iv = rng.uniform(0.08, 0.8, n)
    w = rng.normal(0, 1e4, n)
    levels = np.linspace(0.8 * SPOT, 1.2 * SPOT, 200)
    kernel = GammaKernel(K, T, iv, w, spot=SPOT, r=0.04, q=0.01)
    fast = kernel(levels)
    ref = profile_reference(levels, K, T, iv, w, r=0.04, q=0.01)
    gross = profile_reference(levels, K, T, iv, np.abs(w), r=0.04, q=0.01)
    assert np.all(np.abs(fast - ref) <= 1e-9 * gross)
    np.testing.assert_array_equal(kernel(levels), fast)  # the reused buffer changes nothing
    assert kernel(np.array([])).shape == (0, 1)


# --- crossings ---

THREE = [("SPXW", date(2024, 4, 3), 4500.0, True, 0.2, 1000.0),
         ("SPXW", date(2024, 4, 3), 5000.0, False, 0.2, 1000.0),
         ("SPXW", date(2024, 4, 3), 5500.0, True, 0.2, 1000.0)]  # fmt: skip


def test_every_crossing_is_found_and_refined() -> None:
    """Dealers long calls at 4500 and 5500, short puts at 5000: positive, negative, positive."""
    ch = chain(THREE)
    lv = gex_levels(ch)
    ex = lv.exposures
    K, T, iv, w = (ex[c].to_numpy() for c in ("strike", "years", "iv", "weight"))
    dense = np.linspace(0.8 * SPOT, 1.2 * SPOT, 40_001)
    values = greeks(dense[:, None], K, T, 0.0, 0.0, iv, True).gamma @ w
    assert len(lv.crossings) == np.count_nonzero(np.diff(np.sign(values))) == 2
    for c in lv.crossings:
        at = profile_reference([c], K, T, iv, w)[0, 0]
        gross = profile_reference([c], K, T, iv, np.abs(w))[0, 0]
        assert abs(at) <= 1e-9 * gross
    assert lv.crossings[0] < SPOT < lv.crossings[1]
    assert lv.zero_gamma == min(lv.crossings, key=lambda c: abs(c - SPOT))
    first = gex_levels(ch, replace(DESK, zero_gamma="first"))
    assert first.zero_gamma == lv.crossings[0]
    linear = gex_levels(ch, replace(DESK, refine="linear"))
    np.testing.assert_allclose(linear.crossings, lv.crossings, atol=0.2 * SPOT / 199)


def test_zero_crossings_on_a_grid() -> None:
    x = np.arange(8.0)
    assert zero_crossings(x, np.array([-1.0, 1, 1, -1, -1, 0, 0, 2])).tolist() == [0.5, 2.5, 5.0]
    assert zero_crossings(x, np.array([1.0, 0, 1, 2, 0, 0, 3, 4])).size == 0  # touches only
    assert zero_crossings(x, np.zeros(8)).size == 0
    assert zero_crossings(x[:2], np.array([-1.0, 3.0]), f=lambda v: v - 0.25).tolist() == [0.25]


def test_walls() -> None:
    rows = [("SPXW", date(2024, 3, 15), 5200.0, True, 0.15, 3000.0),
            ("SPXW", date(2024, 3, 15), 5050.0, True, 0.15, 1000.0),
            ("SPXW", date(2024, 3, 15), 4800.0, False, 0.15, 4000.0),
            ("SPXW", date(2024, 3, 15), 4950.0, False, 0.15, 1000.0)]  # fmt: skip
    lv = gex_levels(chain(rows))
    by = lv.by_strike
    call_gex = dict(zip(by["strike"], by["call_gex"], strict=True))
    put_gex = dict(zip(by["strike"], by["put_gex"], strict=True))
    assert lv.call_wall == max(call_gex, key=lambda k: call_gex[k])
    assert lv.put_wall == min(put_gex, key=lambda k: put_gex[k])
    assert by["call_oi"].sum() == 4000 and by["put_oi"].sum() == 5000


def test_exclusion_variants() -> None:
    """Ex next expiry drops today's 0DTE; ex next monthly drops the 15th, AM and PM classes."""
    rows = [(root, day, k, c, 0.12 + 0.02 * i, 100.0 * (1 + i) * (2 if c else 3))
            for i, (root, day) in enumerate([("SPXW", date(2024, 3, 4)),
                                              ("SPXW", date(2024, 3, 8)),
                                              ("SPX", date(2024, 3, 15)),
                                              ("SPXW", date(2024, 3, 15)),
                                              ("SPX", date(2024, 4, 19))])
            for k in np.arange(4600.0, 5401.0, 50.0) for c in (True, False)]  # fmt: skip
    ch = chain(rows)
    lv = gex_levels(ch)
    assert (lv.next_expiry, lv.next_monthly) == (date(2024, 3, 4), date(2024, 3, 15))

    def without(day: date) -> Chain:
        return Chain("SPX", SPOT, ASOF, ch.frame.filter(expiry=day).clear().vstack(
            ch.frame.filter(ch.frame["expiry"] != day)))  # fmt: skip

    ex_next = gex_levels(without(lv.next_expiry))
    np.testing.assert_allclose(lv.profile.ex_next, ex_next.profile.total, rtol=1e-12)
    ex_monthly = gex_levels(without(lv.next_monthly))
    np.testing.assert_allclose(lv.profile.ex_monthly, ex_monthly.profile.total, rtol=1e-12)
    assert lv.zero_gamma_ex_monthly == ex_monthly.zero_gamma
    assert not np.allclose(lv.profile.ex_next, lv.profile.total)


def test_monthly_expiries() -> None:
    assert is_monthly(date(2024, 3, 15)) and is_monthly(date(2022, 2, 18))
    assert is_monthly(date(2022, 4, 14))  # Good Friday 2022-04-15: Thursday's expiry
    assert not is_monthly(date(2024, 3, 8)) and not is_monthly(date(2024, 3, 14))


@pytest.mark.parametrize(
    "bad",
    [{"level_range": (1.1, 1.2)}, {"n_levels": 1}, {"time_basis": "weekly"},
     {"zero_dte": "maybe"}, {"gamma_source": "oracle"}, {"refine": "guess"}],
)  # fmt: skip
def test_config_is_validated(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        GexConfig(**bad)


# --- chains from the simulator and ThetaData ---


def test_sim_chain() -> None:
    market = MarketSim(datetime(2024, 3, 4, 10, 0, tzinfo=NEW_YORK))
    ch = sim_chain(market, "SPX")
    assert set(ch.frame["root"]) == {"SPX", "SPXW"} and ch.spot == market.spot("SPX")
    listed = [c for c in market.chain() if c.underlying == "SPX"]
    assert len(ch) == len(listed)
    np.testing.assert_array_equal(ch.frame["open_interest"], market.open_interest(listed))
    np.testing.assert_array_equal(ch.frame["iv"], market.quote_arrays(listed)[5])
    lv = gex_levels(ch)
    assert lv.contracts == len(ch) and lv.call_wall in set(ch.frame["strike"])
    with pytest.raises(ValueError, match="no options"):
        sim_chain(market, "GME")


async def test_thetadata_chain_from_the_emulator() -> None:
    clock = SimClock(datetime(2024, 1, 19, 10, 0, tzinfo=NEW_YORK))  # stepped: it stands still
    async with ThetaDataEmulator(clock=clock) as emu:
        rest = ThetaDataREST(ThetaDataConfig(rest_port=emu.rest_port, ws_port=emu.ws_port))
        try:
            days = (await rest.expirations("SPXW"))[:2]
            listed = [c for c in emu.market.chain("SPXW") if c.expiry in days]
            oi = dict(zip(listed, emu.market.open_interest(listed).astype(float), strict=True))
            ch = await thetadata_chain(rest, "SPXW", days, open_interest=oi, r=0.045, q=0.013)
        finally:
            await rest.aclose()
    f = ch.frame
    assert ch.underlying == "SPX" and ch.spot == round(emu.market.spot("SPX"), 2)
    assert set(f["expiry"]) == set(days) and f.height == len(listed)
    sim_iv = emu.market.quote_arrays(listed)[5]
    model_iv = {(c.expiry, c.strike, c.is_call): v for c, v in zip(listed, sim_iv, strict=True)}
    # IV implied from the mid of an out-of-the-money quote bid at $1 or more: within half a point
    otm = f["is_call"] == (f["strike"] >= ch.spot)
    priced = f.filter((f["strike"] / ch.spot - 1).abs() < 0.01, f["bid"] >= 1.0, otm)
    assert priced.height > 20
    for row in priced.iter_rows(named=True):
        assert row["iv"] == pytest.approx(model_iv[row["expiry"], row["strike"], row["is_call"]],
                                          abs=0.005)  # fmt: skip
    assert sorted(f["open_interest"]) == sorted(oi.values())
    assert gex_levels(ch).contracts == f.height


# --- 0-day expiries and business-day counts, on the real CBOE files ---

REPO = Path(__file__).resolve().parents[1]


def real_path(name: str) -> Path:
    """A real CBOE download in data/ or ../shared/data (a missing file fails loudly)."""
    return next((p for p in (REPO / "data" / name, REPO.parent / "shared" / "data" / name)
                 if p.exists()), REPO / "data" / name)  # fmt: skip


def real(name: str) -> Chain:
    return read_cboe(real_path(name))


@pytest.fixture(scope="module")
def ndx() -> Chain:
    return real("ndx_quotedata_2022-02-04.csv")  # downloaded Saturday 2022-02-05, 8:26 PM ET


@pytest.fixture(scope="module")
def spy() -> Chain:
    return real("spy_quotedata_2023-09-14.csv")  # downloaded Thursday 4:31 PM ET, after close


def years_by_expiry(ch: Chain, cfg: GexConfig) -> dict[date, float]:
    ex = exposures(ch, cfg)
    return dict(zip(ex["expiry"].to_list(), ex["years"].to_list(), strict=True))


def test_a_weekend_download_gives_mondays_expiry_a_session_under_the_desk_count(ndx) -> None:
    monday, wednesday = date(2022, 2, 7), date(2022, 2, 9)
    public = years_by_expiry(ndx, PUBLIC)
    desk = years_by_expiry(ndx, replace(DESK, time_basis="business_days"))
    assert monday not in public and public[wednesday] == pytest.approx(2 / 262)
    # Saturday to Monday's close is one session, to Wednesday's three (Mon, Tue, Wed)
    assert desk[monday] == pytest.approx(1 / 262) and desk[wednesday] == pytest.approx(3 / 262)
    # the public count drops Monday: the NDX total changes sign
    assert gex_levels(ndx, PUBLIC).total_gex > 0
    assert gex_levels(ndx, replace(DESK, time_basis="business_days")).total_gex < 0
    assert gex_levels(ndx).total_gex < 0  # the desk's calendar basis never lost Monday


def test_public_compat_still_lands_on_the_published_flip(ndx) -> None:
    lv = gex_levels(ndx, PUBLIC)
    assert PUBLIC.zero_dte == "drop" and abs(lv.zero_gamma / 14_686.0 - 1) < 0.001
    assert lv.next_expiry == date(2022, 2, 9)


def test_one_day_counts_zero_day_expiries_as_1_over_262(ndx, spy) -> None:
    monday = date(2022, 2, 7)
    one = years_by_expiry(ndx, replace(PUBLIC, zero_dte="one-day"))
    assert one[monday] == pytest.approx(1 / 262)  # the public scripts' convention
    assert gex_levels(ndx, replace(PUBLIC, zero_dte="one-day")).total_gex < 0
    # SPY after Thursday's close: the day's expiry is done (T = 0) but still has open interest
    today = date(2023, 9, 14)
    assert today not in years_by_expiry(spy, DESK)
    assert today not in years_by_expiry(spy, replace(DESK, zero_dte="drop"))
    assert years_by_expiry(spy, replace(DESK, zero_dte="one-day"))[today] == pytest.approx(1 / 262)
    kept, one_day = (
        gex_levels(spy, replace(DESK, zero_dte=z)).total_gex for z in ("keep", "one-day")
    )
    assert one_day > kept > 0


def test_desk_and_public_counts_agree_on_a_weekday_download(spy) -> None:
    desk = years_by_expiry(spy, replace(DESK, time_basis="business_days"))
    public = years_by_expiry(spy, PUBLIC)
    assert desk.keys() == public.keys() and len(desk) > 20
    for day in (date(2023, 9, 15), date(2023, 9, 18), date(2023, 10, 20)):
        assert desk[day] == pytest.approx(public[day])  # Thu after the close: same count
    assert desk[date(2023, 9, 15)] == pytest.approx(1 / 262)


def test_session_count_skips_holidays_and_the_session_under_way() -> None:
    # Thursday 2022-04-14 after the close; Good Friday is a holiday
    after_close = datetime(2022, 4, 14, 16, 30, tzinfo=NEW_YORK)
    days = [date(2022, 4, 14), date(2022, 4, 18), date(2022, 4, 22)]
    assert sessions_to_expiry(days, after_close).tolist() == [0.0, 1.0, 5.0]
    # during Monday's session: Monday is under way, the count starts on Tuesday
    during = datetime(2022, 4, 18, 11, 0, tzinfo=NEW_YORK)
    assert sessions_to_expiry(days[1:], during).tolist() == [0.0, 4.0]
    before_open = datetime(2022, 4, 18, 8, 0, tzinfo=NEW_YORK)
    assert sessions_to_expiry(days[1:], before_open).tolist() == [1.0, 5.0]
    assert sessions_to_expiry([], during).size == 0


def test_zero_dte_modes_on_a_same_day_expiry_counted_in_business_days() -> None:
    rows = [("SPXW", date(2024, 3, 4), 5000.0, True, 0.2, 100.0),  # today (Monday)
            ("SPXW", date(2024, 3, 8), 5000.0, True, 0.2, 100.0)]  # fmt: skip
    biz = replace(DESK, time_basis="business_days")
    assert exposures(chain(rows), biz)["expiry"].to_list() == [date(2024, 3, 8)]
    one = exposures(chain(rows), replace(biz, zero_dte="one-day"))
    assert one["years"].to_list() == pytest.approx([1 / 262, 4 / 262])
    assert exposures(chain(rows), replace(biz, zero_dte="drop")).height == 1


def test_cli_zero_dte_flag_and_the_json_names_the_conventions(capsys) -> None:
    path = str(real_path("ndx_quotedata_2022-02-04.csv"))

    def run(*flags: str) -> dict:
        assert main(["gex", path, "--json", *flags]) == 0
        return json.loads(capsys.readouterr().out)

    public = run("--compat", "public")
    assert public["compat"] == "public" and public["total_gex"] > 0
    how = public["total_gex_conventions"]
    assert (how["gamma_source"], how["time_basis"], how["zero_dte"]) == (
        "iv", "business_days", "drop")  # fmt: skip
    assert "busday_count" in how["day_count"]
    one = run("--compat", "public", "--zero-dte", "one-day")
    assert one["total_gex"] < 0 and one["total_gex_conventions"]["zero_dte"] == "one-day"
    assert one["next_expiry"] == "2022-02-07"
    desk = run("--time-basis", "business_days", "--gamma-source", "vendor")
    how = desk["total_gex_conventions"]
    assert how["gamma_source"] == "vendor" and "next session" in how["day_count"]
    assert "Gamma column" in how["gamma"]
    assert main(["gex", path, "--zero-dte", "one-day"]) == 0
    assert "0-day expiries 1/262 year" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["gex", path, "--zero-dte", "sometimes"])

"""Signals on real data: CBOE's quotedata.csv loader on the NDX chain of 2022-02-04, the
published gamma flip (14,686) in public-compat mode, ``kit gex`` end to end, and the Signal Lab
notebook executed headlessly on that file."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import nbformat
import numpy as np
import pytest
from helpers import run_notebook

from kit.cli.main import main
from kit.signals import PUBLIC, gex_levels, read_cboe, years_to_expiry

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "signal_lab.ipynb"
NDX_NAME = "ndx_quotedata_2022-02-04.csv"
# shipped in data/ or next to the repository (../shared/data); a missing file fails loudly
NDX = next((p for p in (REPO / "data" / NDX_NAME, REPO.parent / "shared" / "data" / NDX_NAME)
            if p.exists()), REPO / "data" / NDX_NAME)  # fmt: skip
PUBLISHED_FLIP = 14_686.0
HEADER = (
    "\nNASDAQ 100,Last: 14694.3506,Change:  193.2506\n"
    '"Date: February 5 2022, 8:26 PM EST",Bid: 0,Ask: 0,Size: 0*0,Volume: 0\n'
    "Expiration Date,Calls,Last Sale,Net,Bid,Ask,Volume,IV,Delta,Gamma,Open Interest,Strike,"
    "Puts,Last Sale,Net,Bid,Ask,Volume,IV,Delta,Gamma,Open Interest\n"
)
ROW = ("Fri Feb 18 2022,NDX220218C14700000,0,0,300,310,0,0.25,0.5,0.0007,120,14700.00,"
       "NDX220218P14700000,0,0,290,300,0,0.26,-0.5,0.0007,80")  # fmt: skip


@pytest.fixture(scope="module")
def ndx():
    return read_cboe(NDX)


def test_reads_the_ndx_file(ndx) -> None:
    assert ndx.underlying == "NDX" and ndx.spot == pytest.approx(14694.3506)
    assert ndx.asof == datetime(2022, 2, 6, 1, 26, tzinfo=UTC)  # 8:26 PM EST on Feb 5
    f = ndx.frame
    assert f.height == 2 * 9193  # a call and a put per row
    assert f["expiry"].n_unique() == 34
    assert set(f["root"].unique()) == {"NDX", "NDXP"}
    first = f.row(0, named=True)
    assert first["root"] == "NDXP" and first["strike"] == 11000.0 and first["is_call"]
    assert first["iv"] == pytest.approx(2.075) and first["bid"] == 3657.4
    assert f["open_interest"].sum() > 0 and f["gamma_vendor"].null_count() == 0


def test_a_monthly_listed_twice_is_two_contracts_with_their_own_settlement() -> None:
    """SPX (AM-settled at Friday's open) and SPXW (PM, at the close) on one date and strike."""
    spx = ROW.replace("NDX220218", "SPX220218").replace("14700", "4500")
    spxw = ROW.replace("NDX220218", "SPXW220218").replace("14700", "4500")
    chain = read_cboe((HEADER.replace("NASDAQ 100", "S&P 500") + spx + "\n" + spxw).encode())
    assert chain.underlying == "SPX" and chain.frame.height == 4
    calls = chain.frame.filter(is_call=True).sort("root")
    assert calls["root"].to_list() == ["SPX", "SPXW"] and calls["strike"].to_list() == [4500.0] * 2
    T = years_to_expiry(calls, chain.asof)
    assert (T[1] - T[0]) * 365 * 24 == pytest.approx(6.5)


def test_the_public_time_basis_counts_business_days(ndx) -> None:
    monday = ndx.frame.filter(expiry=date(2022, 2, 7)).head(1)
    wednesday = ndx.frame.filter(expiry=date(2022, 2, 9)).head(1)
    # downloaded on Saturday: no business day before Monday's expiry, two before Wednesday's
    assert years_to_expiry(monday, ndx.asof, "business_days")[0] == 0.0
    assert years_to_expiry(wednesday, ndx.asof, "business_days")[0] == pytest.approx(2 / 262)
    # calendar: from Saturday 20:26 ET to Monday's 16:00 ET close
    assert years_to_expiry(monday, ndx.asof)[0] * 365 * 24 == pytest.approx(43 + 34 / 60)
    assert years_to_expiry(monday, ndx.asof, "trading")[0] * 252 == pytest.approx(1.0)


def test_public_compat_lands_on_the_published_gamma_flip(ndx) -> None:
    lv = gex_levels(ndx, PUBLIC)
    assert abs(lv.zero_gamma / PUBLISHED_FLIP - 1) < 0.001
    assert lv.zero_gamma == lv.crossings[0]  # the first crossing, as the scripts report it
    assert list(lv.crossings) == sorted(lv.crossings) and len(lv.crossings) == 3
    assert lv.next_monthly == date(2022, 2, 18)
    assert lv.next_expiry == date(2022, 2, 9)  # Monday's contracts have T = 0: dropped


def test_desk_conventions_pick_the_crossing_nearest_spot(ndx) -> None:
    lv = gex_levels(ndx)
    assert len(lv.crossings) >= 2
    assert lv.zero_gamma == min(lv.crossings, key=lambda c: abs(c - ndx.spot))
    assert lv.call_wall in set(ndx.frame["strike"]) and lv.put_wall in set(ndx.frame["strike"])
    by = lv.by_strike
    assert lv.call_wall == by["strike"][int(by["call_gex"].arg_max())]
    assert lv.put_wall == by["strike"][int(by["put_gex"].arg_min())]
    assert lv.total_gex == pytest.approx(float(by["gex"].sum()))


def test_vendor_gamma_loses_the_far_wings(ndx) -> None:
    """CBOE rounds gamma to 4 decimals: far out-of-the-money gammas read 0."""
    ex_iv = gex_levels(ndx).exposures
    ex_vendor = gex_levels(ndx, PUBLIC.__class__(gamma_source="vendor")).exposures
    far = (ex_iv["strike"] / ndx.spot - 1).abs() > 0.15
    assert (ex_vendor.filter(far)["gamma"] == 0).mean() > (ex_iv.filter(far)["gamma"] == 0).mean()


def test_cli_json_in_a_subprocess() -> None:
    done = subprocess.run([sys.executable, "-m", "kit", "gex", str(NDX), "--compat", "public",
                           "--json"], capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert abs(out["zero_gamma"] / PUBLISHED_FLIP - 1) < 0.001
    assert out["spot"] == pytest.approx(14694.3506)
    assert out["crossings"] == sorted(out["crossings"]) and out["zero_gamma"] == out["crossings"][0]
    assert out["call_wall"] > 0 and out["put_wall"] > 0 and np.isfinite(out["total_gex"])
    assert out["conventions"]["time_basis"] == "business_days"


def test_cli_vendor_gamma_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gex", str(NDX), "--gamma-source", "vendor", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["conventions"]["gamma_source"] == "vendor" and out["zero_gamma"] is not None
    assert main(["gex", str(NDX)]) == 0
    text = capsys.readouterr().out
    assert "zero gamma" in text and "call wall" in text


def test_cli_rates_are_decimals_or_percent_and_a_percent_typed_as_decimal_warns(capsys) -> None:
    def run(*flags: str) -> tuple[dict, str]:
        assert main(["gex", str(NDX), "--json", *flags]) == 0
        got = capsys.readouterr()
        return json.loads(got.out), got.err

    decimal, quiet = run("--rate", "0.05")
    percent, _ = run("--rate-pct", "5")
    assert quiet == "" and decimal["conventions"]["r"] == percent["conventions"]["r"] == 0.05
    assert decimal["total_gex"] == pytest.approx(percent["total_gex"])
    typo, warning = run("--rate", "5")
    assert typo["conventions"]["r"] == 5.0  # used as given, but never silently
    assert "--rate 5 is 500%" in warning and "--rate-pct 5" in warning
    yields, _ = run("--div-yield-pct", "1.5")
    assert yields["conventions"]["q"] == pytest.approx(0.015)
    for bad in (["--rate", "nan"], ["--rate", "inf"], ["--rate", "0.05", "--rate-pct", "5"]):
        with pytest.raises(SystemExit) as exit_:
            main(["gex", str(NDX), *bad])
        assert exit_.value.code == 2
        assert "--rate" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("hello,world\n", "not a CBOE quotedata file"),
        (HEADER.replace("Last: 14694.3506", "Last: n/a") + ROW, "bad underlying price"),
        (HEADER.replace("February 5 2022", "Feb 5th") + ROW, "cannot read the download time"),
        (HEADER + ROW.replace("Fri Feb 18 2022", "someday"), "line 5: bad expiration date"),
        (
            HEADER + ROW + "\n" + ROW.replace("14700.00", "lots"),
            "line 6: strike 'lots' is not a number",
        ),
        (HEADER + ROW.replace("NDX220218C14700000", "???"), "option symbol '???'"),
        (HEADER + ROW + ",extra,cells", "malformed rows"),
        (HEADER, "no option rows"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path: Path, capsys, content: str | None, message: str) -> None:
    path = tmp_path / "quotedata.csv"
    if content is not None:
        path.write_text(content)
    assert main(["gex", str(path), "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kit gex: error: ") and message in err


def test_bytes_and_duplicate_rows() -> None:
    one = read_cboe((HEADER + ROW).encode())
    twice = read_cboe((HEADER + ROW + "\n" + ROW).encode())
    assert one.frame.equals(twice.frame) and one.frame.height == 2
    assert one.frame.filter(is_call=False)["open_interest"][0] == 80.0
    assert one.source == "cboe:upload"


# --- the Signal Lab notebook ---


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


CHECKS = f"""
assert abs(public.zero_gamma / {PUBLISHED_FLIP} - 1) < 0.001
assert len(lab.strike_bars.x) > 20 and lab.strike_bars.y.shape == (2, len(lab.strike_bars.x))
assert lab.profile_lines.y.shape == (3, 200)
assert len(lab.vanna_bars.y) == len(lab.strike_bars.x) == len(lab.charm_bars.y)
assert lab.history_lines.y.shape == (4, day.height) and day.height == 26
assert abs(lab.strike_markers.x[1][0] - levels.zero_gamma) < 1e-9
assert lab.strike_markers.labels[1] == f"zero gamma {{levels.zero_gamma:,.0f}}"
assert "#000" not in str(lab.profile_lines.colors) and "black" not in lab.profile_lines.colors
assert "New York" in lab.status.value
lab._on_upload({{"new": [{{"name": "bad.csv", "content": memoryview(b"garbage")}}]}})
assert "cannot load bad.csv" in lab.status.value
lab.compat.value = "public"  # redraws with the public conventions
assert lab.levels.zero_gamma == public.zero_gamma
lab._on_upload({{"new": [{{"name": "ndx.csv", "content": memoryview(open(path, "rb").read())}}]}})
assert lab.levels.contracts == public.contracts and "NDX" in lab.status.value
print("checks passed")
"""


def test_notebook_runs_on_the_ndx_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIT_SIGNAL_LAB_CSV", str(NDX))
    nb, text = run_notebook(NOTEBOOK, CHECKS)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert "checks passed" in text and "IV rank" in text and "Pinning:" in text
    # what a trader reads: no Python or polars reprs, no "$" that the page would typeset as maths
    shown = text + "".join(str(o.get("data", {})) for o in outputs)
    for raw in ("PinSignal(", "shape: (", "GexLevels(", "RegimeChange(", "<polars"):
        assert raw not in shown, raw
    assert not [c for c in nb.cells if c.cell_type == "markdown" and "$" in c.source]

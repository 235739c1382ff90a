"""``kit sim chain``: a simulated chain written as a CBOE quotedata.csv reads like a real one."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kit.adapters.sim.export import simulated_chain
from kit.cli.main import main
from kit.core.clock import NEW_YORK
from kit.signals.chains import read_cboe
from kit.signals.gex import gex_levels

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "spx_quotedata_2023-09-14.csv"
KEY = ["root", "expiry", "strike", "is_call"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "spx.csv"
    rc = main(["sim", "chain", "--underlying", "SPX", "--date", "2024-03-12", "--time", "15:00",
               "--seed", "7", "--out", str(out)])  # fmt: skip
    assert rc == 0
    return out


def test_the_file_has_cboe_s_layout(exported):
    lines = exported.read_text().splitlines()
    real = REAL.read_text().splitlines()
    assert lines[0] == "" and lines[1].startswith("Standard & Poors 500 Index,Last: ")
    assert lines[2].startswith('"Date: March 12, 2024 at 3:00 PM EDT",')
    assert lines[3] == real[3]  # the 22-column header, byte for byte
    row = lines[4].split(",")
    assert len(row) == 22
    assert row[0] == "Tue Mar 12 2024" and row[1].startswith("SPXW240312C")
    iv, delta, gamma, oi = row[7], row[8], row[9], row[10]
    assert len(iv.split(".")[1]) == 4 and 0 < float(iv) < 5  # a decimal, not percent
    assert len(delta.split(".")[1]) == 4 and len(gamma.split(".")[1]) == 4
    assert oi.isdigit()


def test_read_cboe_reads_back_the_simulated_chain(exported):
    chain = simulated_chain("SPX", date(2024, 3, 12), time(15), seed=7)
    back = read_cboe(exported)
    assert back.underlying == "SPX"
    assert back.asof == chain.asof and back.asof.astimezone(NEW_YORK).hour == 15
    assert back.spot == pytest.approx(chain.spot, abs=1e-4)
    a = chain.frame.sort(KEY)
    b = back.frame.sort(KEY)
    assert a.select(KEY).equals(b.select(KEY))  # every contract, both AM and PM roots
    assert set(b["root"].unique()) == {"SPX", "SPXW"}
    np.testing.assert_allclose(b["iv"], a["iv"], atol=5e-5)  # 4 decimals
    np.testing.assert_array_equal(b["open_interest"], a["open_interest"])
    np.testing.assert_allclose(b["bid"], a["bid"], atol=1e-9)
    np.testing.assert_allclose(b["ask"], a["ask"], atol=1e-9)
    # GEX of the file equals GEX of the simulated chain (IV rounding aside)
    assert gex_levels(back).total_gex == pytest.approx(gex_levels(chain).total_gex, rel=1e-3)


def test_kit_gex_reads_it_as_a_real_file(exported, capsys):
    assert main(["gex", str(exported), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["underlying"] == "SPX" and out["contracts"] > 1000
    expected = gex_levels(read_cboe(exported))
    assert out["total_gex"] == pytest.approx(expected.total_gex)
    assert out["zero_gamma"] == pytest.approx(expected.zero_gamma)


def test_the_market_depends_on_the_date_unless_a_seed_is_given():
    def spx(day: date, seed: int | None) -> tuple[float, float]:
        c = simulated_chain("SPX", day, time(12), seed=seed)
        return c.spot, float(c.frame.filter(pl.col("open_interest") > 0)["iv"].median())

    a, b = date(2024, 3, 12), date(2024, 3, 13)
    assert spx(a, None) == spx(a, None)  # the same day is the same market
    assert spx(a, None) != spx(b, None)  # another day another market
    assert spx(a, 5)[0] == spx(b, 5)[0]  # a given seed: the same path on either day


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--date", "2024-03-16", "--time", "12:00"], "not a US trading session"),
        (["--date", "2024-03-12", "--time", "17:30"], "outside the 2024-03-12 session"),
        (["--date", "2024-11-29", "--time", "14:00"], "09:30-13:00"),  # early close
        (["--date", "1990-01-02", "--time", "12:00"], "outside the calendar"),
    ],
)
def test_bad_arguments_are_a_one_line_error_with_status_2(args, message, tmp_path, capsys):
    out = tmp_path / "x.csv"
    rc = main(["sim", "chain", "--underlying", "SPX", *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--underlying", "DOGE", "--date", "2024-03-12", "--time", "12:00"], "invalid choice"),
        (["--underlying", "SPX", "--date", "2024-13-12", "--time", "12:00"], "not a date"),
        (["--underlying", "SPX", "--date", "2024-03-12", "--time", "noon"], "not a time"),
    ],
)
def test_bad_values_are_refused_by_the_parser(args, message, tmp_path):
    run = subprocess.run([sys.executable, "-m", "kit", "sim", "chain", *args, "--out",
                          str(tmp_path / "x.csv")], capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr


def test_an_unwritable_destination_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sim", "chain", "--underlying", "SPX", "--date", "2024-03-12", "--time", "12:00",
              "--out", str(tmp_path / "missing" / "x.csv")])  # fmt: skip
    assert exc.value.code == 2 and "does not exist" in capsys.readouterr().err

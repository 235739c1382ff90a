"""The options history: schema and Hive layout (read back by DuckDB and polars), the simulator
builder (resumable, deterministic across a kill), its Greeks against a textbook reference, the
CLI's errors and ``kit history info``'s gaps."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest
from reference_pricing import bsm

from kit.adapters.sim.market import DEFAULT_UNDERLYINGS
from kit.cli.main import main
from kit.core.clock import expiry_time, us_session
from kit.core.model import Contract
from kit.research.history.api import build_history
from kit.research.history.band import Band, BandError, far_grid, parse_interval, sessions
from kit.research.history.build import run_build
from kit.research.history.info import history_info
from kit.research.history.progress import Progress, in_notebook, pick
from kit.research.history.schema import (
    COLUMNS,
    PART,
    SCHEMA,
    HistoryError,
    complete_days,
    day_path,
    iter_days,
    read_history,
    read_meta,
    write_day,
)
from kit.research.history.sim import SimHistory

MON, FRI = date(2024, 3, 11), date(2024, 3, 15)
SMALL = Band(max_dte=2, strike_pct=0.03)  # a few hundred contracts: fast, still several expiries


def build(out: Path, d1: date, d2: date, h: SimHistory | None = None):
    h = h or SimHistory(band=SMALL, interval_s=300)
    return run_build(out, "SPX", sessions(d1, d2), h.make_day, h.signature, progress="off")


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hist")
    report = build(out, MON, FRI)
    assert [d.isoformat() for d in report.built] == [f"2024-03-{d}" for d in range(11, 16)]
    return out


def test_each_day_is_one_file_with_the_schema_sorted_and_whole(week: Path) -> None:
    for day, frame in iter_days(week, "SPX"):
        path = day_path(week, "SPX", day)
        assert path.name == PART and path.parent.name == f"date={day}"
        assert pq.read_schema(path).remove_metadata().equals(SCHEMA)
        assert frame.columns == list(COLUMNS)
        assert frame.equals(frame.sort("ts", "expiry", "strike", "right"))
        s = us_session(day)
        ts = frame["ts"].unique().sort()
        assert ts.len() == 79  # 09:30 .. 16:00 every 5 minutes, both ends included
        assert ts[0] == s.open and ts[-1] == s.close
        assert set(frame["right"].unique()) == {"C", "P"}
        assert set(frame["root"].unique()) <= {"SPXW", "SPX"}
        dte = [(e - day).days for e in frame["expiry"].unique()]
        assert min(dte) == 0 and max(dte) <= 2
        assert (frame["bid"] <= frame["ask"]).all() and (frame["bid"] >= 0).all()
        open_spot = frame.filter(pl.col("ts") == s.open)["spot"][0]
        assert ((frame["strike"] / open_spot - 1).abs() <= 0.03 + 1e-9).all()
        # the same contracts at every snapshot until they expire: a PM-settled 0DTE lasts to
        # the close, an AM-settled monthly on its expiry day has just its settlement snapshot
        keys = ("root", "expiry", "strike", "right")
        per = frame.group_by(keys).agg(pl.len(), pl.col("ts").max())
        am = (pl.col("root") == "SPX") & (pl.col("expiry") == day)
        assert (per.filter(~am)["len"] == 79).all()
        assert (per.filter(am)["len"] == 1).all() and (per.filter(am)["ts"] == s.open).all()
        assert (per.filter(am).height > 0) == (day == FRI)  # the March monthly, at the open
        # one row per contract and snapshot: no duplicates
        assert frame.select("ts", "expiry", "strike", "right", "root").is_duplicated().sum() == 0
        # IV is null exactly at the expiring contracts' settlement snapshot
        expiring = frame.filter(pl.col("iv").is_null())
        assert expiring.height and (expiring["expiry"] == day).all()
        assert (expiring.filter(pl.col("root") == "SPXW")["ts"] == s.close).all()
        # volume: none before the first snapshot, never falling through the day
        vol = frame.sort("ts").group_by(keys, maintain_order=True).agg(pl.col("volume"))
        assert all(v[0] == 0 and v == sorted(v) for v in vol["volume"].to_list())
        assert frame["volume"].max() > 0
        meta = read_meta(path)
        assert meta["source"] == "sim" and meta["interval_s"] == 300 and "SPX" in meta["state"]


def test_duckdb_and_polars_read_the_hive_layout(week: Path) -> None:
    con = duckdb.connect()
    got = con.sql(
        f"SELECT date, underlying, count(*) AS n, count(DISTINCT ts) AS snaps "
        f"FROM read_parquet('{week}/**/*.parquet', hive_partitioning = true) "
        "GROUP BY ALL ORDER BY date"
    ).fetchall()
    mine = read_history(week, "SPX")
    counts = mine.group_by("date").len().sort("date")
    assert [(r[0], r[1], r[2]) for r in got] == [(d, "SPX", n) for d, n in counts.iter_rows()]
    assert all(r[3] == 79 for r in got)
    lazy = pl.scan_parquet(f"{week}/**/*.parquet", hive_partitioning=True)
    frame = lazy.filter(pl.col("date") == date(2024, 3, 13)).collect()
    assert frame.height == counts.filter(pl.col("date") == date(2024, 3, 13))["len"][0]
    assert read_history(week, "SPX", date(2024, 3, 12), date(2024, 3, 13))["date"].n_unique() == 2
    cols = read_history(week, "SPX", columns=["ts", "bid"]).columns
    assert cols == ["ts", "bid", "date"]
    with pytest.raises(HistoryError, match="unknown history columns"):
        next(iter_days(week, "SPX", columns=["nope"]))


def test_greeks_match_a_textbook_reference(week: Path) -> None:
    spec = next(u for u in DEFAULT_UNDERLYINGS if u.symbol == "SPX")
    frame = read_history(week, "SPX", MON, MON).filter(pl.col("iv").is_not_null())
    sample = frame.gather(list(range(0, frame.height, max(1, frame.height // 40))))
    for r in sample.iter_rows(named=True):
        c = Contract(r["root"], r["expiry"], r["strike"], r["right"])
        T = (expiry_time(c) - r["ts"]).total_seconds() / (365 * 86400)
        ref = bsm(r["spot"], r["strike"], T, spec.rate, spec.div_yield, r["iv"], c.is_call)
        assert r["delta"] == pytest.approx(ref["delta"], abs=2e-6)
        assert r["gamma"] == pytest.approx(ref["gamma"], rel=1e-4, abs=1e-7)
        assert r["theta"] == pytest.approx(ref["theta"] / 365, rel=1e-4, abs=1e-5)
        assert r["vega"] == pytest.approx(ref["vega"] / 100, rel=1e-4, abs=1e-6)
        mid = (r["bid"] + r["ask"]) / 2
        assert abs(mid - ref["price"]) <= r["ask"] - r["bid"] + 0.05  # quoted around the model
        assert 5 < r["vix"] < 80 and math.isfinite(r["spot"])


def test_each_session_starts_from_the_previous_close(week: Path, tmp_path: Path) -> None:
    days = list(iter_days(week, "SPX", columns=["ts", "spot"]))
    for (d0, before), (_, after) in itertools.pairwise(days):
        close, opening = before.sort("ts")["spot"][-1], after.sort("ts")["spot"][0]
        assert read_meta(day_path(week, "SPX", d0))["state"]["SPX"][0] == close
        assert opening != close and abs(math.log(opening / close)) < 0.05  # an overnight gap
    # the same Wednesday built with no Tuesday behind it starts elsewhere: the state is used
    alone = build(tmp_path, date(2024, 3, 13), date(2024, 3, 13))
    assert alone.built == [date(2024, 3, 13)]
    fresh = read_history(tmp_path, "SPX", columns=["ts", "spot"]).sort("ts")["spot"][0]
    carried = read_history(
        week, "SPX", date(2024, 3, 13), date(2024, 3, 13), columns=["ts", "spot"]
    )
    assert fresh != carried.sort("ts")["spot"][0]


def test_resumed_and_extended_builds_write_what_one_build_writes(week: Path, tmp_path: Path):
    first = build(tmp_path, MON, date(2024, 3, 12))
    assert len(first.built) == 2
    again = build(tmp_path, MON, FRI)
    assert again.skipped == [MON, date(2024, 3, 12)] and len(again.built) == 3
    for (d, mine), (_, ref) in zip(iter_days(tmp_path, "SPX"), iter_days(week, "SPX"), strict=True):
        assert mine.equals(ref), d
    assert build(tmp_path, MON, FRI).built == []


def test_a_killed_build_resumes_without_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "h"
    cmd = [sys.executable, "-m", "kit", "history", "build", "--source", "sim", "--from",
           "2024-03-04", "--to", "2024-03-11", "--out", str(out), "--max-dte", "1",
           "--strike-pct", "2", "--interval", "5m", "--progress", "off"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not complete_days(out, "SPX") and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = complete_days(out, "SPX")
    assert 1 <= len(done) < 6, "the build was killed part way"
    # a stale temporary file, as a SIGKILL during a write leaves one, is not a day
    stale = day_path(out, "SPX", date(2024, 3, 11)).parent
    stale.mkdir(parents=True, exist_ok=True)
    (stale / f".{PART}.999.tmp").write_bytes(b"partial")
    assert date(2024, 3, 11) not in complete_days(out, "SPX")
    rerun = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True)
    report = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert report["skipped"] == len(done) and report["built"] == 6 - len(done)
    ref = tmp_path / "ref"
    h = SimHistory(band=Band(max_dte=1, strike_pct=0.02), interval_s=300)
    build(ref, date(2024, 3, 4), date(2024, 3, 11), h)
    for (d, got), (_, want) in zip(iter_days(out, "SPX"), iter_days(ref, "SPX"), strict=True):
        assert got.equals(want), d
    assert duckdb.sql(
        f"SELECT count(*) FROM (SELECT DISTINCT * FROM read_parquet('{out}/**/*.parquet'))"
    ).fetchall() == [(read_history(out, "SPX").height,)]


def test_a_different_build_is_refused_in_the_same_directory(week: Path) -> None:
    other = SimHistory(seed=7, band=SMALL, interval_s=300)
    with pytest.raises(HistoryError, match=re.escape("seed=0 (asked 7)")):
        run_build(week, "SPX", sessions(MON, MON), other.make_day, other.signature,
                  progress="off")  # fmt: skip


def test_write_day_refuses_a_frame_that_breaks_the_schema(tmp_path: Path, week: Path) -> None:
    frame = read_history(week, "SPX", MON, MON).drop("date")
    with pytest.raises(HistoryError, match=re.escape("lacks columns ['vix']")):
        write_day(tmp_path, "SPX", MON, frame.drop("vix"), {})
    with pytest.raises(HistoryError, match="right 'X'"):
        write_day(tmp_path, "SPX", MON, frame.with_columns(right=pl.lit("X")), {})
    assert complete_days(tmp_path, "SPX") == []


def test_info_reports_days_rows_size_and_gaps(week: Path, tmp_path: Path, capsys) -> None:
    build(tmp_path, MON, FRI)
    os.remove(day_path(tmp_path, "SPX", date(2024, 3, 13)))
    info = history_info(tmp_path)["underlyings"]["SPX"]
    assert info["days"] == 4 and info["missing_sessions"] == ["2024-03-13"]
    assert info["rows"] == read_history(tmp_path, "SPX").height
    assert info["short_days"] == [] and info["interval_s"] == 300 and info["source"] == "sim"
    assert main(["history", "info", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["underlyings"]["SPX"]["days"] == 4
    assert main(["history", "info", str(tmp_path)]) == 0
    assert "missing sessions: 2024-03-13" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--interval", "7m"], "must divide an hour"),
        (["--interval", "fast"], "bad interval"),
        (["--underlying", "XYZ"], "unknown underlying 'XYZ'"),
        (["--from", "2024-03-15", "--to", "2024-03-11"], "is before --from"),
        (["--from", "2024-03-16", "--to", "2024-03-17"], "no sessions"),
        (["--strike-pct", "150"], "strike band"),
        (["--max-dte", "-1"], "max DTE"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, capsys, argv, message) -> None:
    base = ["history", "build", "--source", "sim", "--from", "2024-03-11", "--to", "2024-03-11",
            "--out", str(tmp_path / "h"), "--progress", "off"]  # fmt: skip
    assert main([*base, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "h").exists()


def test_info_on_a_non_history_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["history", "info", str(tmp_path / "none")]) == 2
    assert main(["history", "info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "no such directory" in err[0] and "not a history" in err[1]


def test_interval_and_band_parsing() -> None:
    assert [parse_interval(t) for t in ("1m", "5m", "30s", "1h")] == [60, 300, 30, 3600]
    with pytest.raises(BandError):
        Band(strike_pct=0)
    b = Band(max_dte=45, daily_dte=7, far_strike_pct=0.005)
    day = date(2024, 3, 11)
    assert b.keep_expiry("SPXW", date(2024, 3, 14), day)  # a Thursday within a week
    assert not b.keep_expiry("SPXW", date(2024, 3, 27), day)  # a Wednesday 16 days out
    assert b.keep_expiry("SPXW", date(2024, 3, 29), day)  # a Friday
    assert not b.keep_expiry("SPXW", date(2024, 4, 26), day)  # 46 days
    keep = b.mask(["SPXW"] * 3, [date(2024, 3, 29)] * 3, [5000.0, 5010.0, 5025.0], day, 5000)
    assert keep.tolist() == [True, False, True]  # the far grid is every 25 points at 5000
    keep = b.mask(["SPY"] * 3, [date(2024, 3, 29)] * 3, [500.0, 501.0, 502.5], day, 500)
    assert keep.tolist() == [True, False, True]  # and $2.50 on SPY at 500
    assert [far_grid(p) for p in (0.2, 2.6, 25.0, 90.0)] == [0.5, 2.5, 25.0, 50.0]


def test_progress_draws_where_it_runs(capsys) -> None:
    assert pick("auto") == "off"  # stderr is not a terminal under pytest, and no kernel
    assert not in_notebook()
    for mode, total in (("notebook", 3), ("terminal", 2), ("off", 4)):
        with Progress(total, f"SPX {mode}", mode) as bar:
            for i in range(total):
                bar.advance(f"2024-03-1{i} 391 rows")
        out = capsys.readouterr()
        text = out.out + out.err
        if mode == "off":
            assert text == ""
        else:
            assert f"SPX {mode}" in text and f"{total}/{total}" in text, text


def test_build_history_is_the_one_call_behind_the_cli(tmp_path: Path) -> None:
    report = build_history("sim", tmp_path, "SPX", MON, MON, interval="5m", band=SMALL,
                           progress="off")  # fmt: skip
    assert report.built == [MON] and report.rows == read_history(tmp_path, "SPX").height
    with pytest.raises(BandError, match="unknown source 'csv'"):
        build_history("csv", tmp_path, "SPX", MON, MON)

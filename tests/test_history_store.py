"""The store builder: a real DuckDB file of recorded ticks resampled to snapshots, checked
against a slow, obvious "last tick at or before" written here; a day the recording does not
finish is left for later; ``kit history build --source store`` end to end."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from reference_pricing import bsm

from kit.cli.main import main
from kit.core.clock import expiry_time, us_session
from kit.core.model import Contract
from kit.core.symbology import to_occ
from kit.research.history.band import Band, sessions
from kit.research.history.build import run_build
from kit.research.history.schema import complete_days, read_history
from kit.research.history.store import StoreHistory
from kit.store import open_store
from kit.store.schema import TABLES, frame_schema

DAY, SHORT = date(2024, 3, 11), date(2024, 3, 12)
EXP1 = date(2024, 3, 12)
IN_BAND = [
    Contract("SPXW", DAY, 5000.0, "P"),
    Contract("SPXW", DAY, 5050.0, "C"),
    Contract("SPXW", EXP1, 4980.0, "P"),
    Contract("SPXW", EXP1, 5020.0, "C"),
]
LATE = Contract("SPXW", DAY, 5010.0, "C")  # first quoted at 11:00
OUT = [Contract("SPXW", DAY, 4500.0, "P"), Contract("NDXP", DAY, 18000.0, "C")]
BAND = Band(max_dte=3, strike_pct=0.03)


def _row(ts: datetime, contract: str, underlying: str, bid=None, ask=None, price=None):
    return {"ts": ts, "contract": contract, "underlying": underlying, "bid": bid, "ask": ask,
            "bid_size": None if bid is None else 10.0, "ask_size": None if ask is None else 10.0,
            "price": price, "iv": None, "delta": None, "gamma": None, "theta": None,
            "vega": None}  # fmt: skip


def recording(day: date, end: datetime | None = None) -> list[dict]:
    """Irregular ticks like a desk's: SPX and VIX prints, option quotes, option prints."""
    rng = random.Random(day.toordinal())
    s = us_session(day)
    end = end or s.close
    rows, t, spot = [], s.open - timedelta(seconds=40), 5000.0
    while t <= end:
        spot += rng.gauss(0, 0.6)
        rows.append(_row(t, "SPX", "SPX", price=round(spot, 2)))
        if rng.random() < 0.3:
            rows.append(_row(t, "VIX", "VIX", price=round(15 + rng.random(), 2)))
        for c in [*IN_BAND, *OUT, LATE]:
            if rng.random() < 0.25 and (c is not LATE or t.hour >= 15):  # 11:00 New York
                T = (expiry_time(c) - t).total_seconds() / (365 * 86400)
                if T <= 0:
                    continue
                p = bsm(spot, c.strike, T, 0.045, 0.013, 0.18, c.is_call)["price"]
                mid = max(round(p, 1), 0.1)
                rows.append(_row(t, to_occ(c, padded=False), c.underlying, round(mid - 0.05, 2),
                                 round(mid + 0.05, 2)))  # fmt: skip
            if rng.random() < 0.02:  # a print: no bid or ask, never a quote
                rows.append(_row(t, to_occ(c, padded=False), c.underlying, price=1.0))
        t += timedelta(seconds=rng.randint(5, 50))
    return rows


@pytest.fixture
def db(tmp_path: Path) -> tuple[Path, pl.DataFrame]:
    path = tmp_path / "desk.duckdb"
    close = us_session(SHORT).close
    rows = recording(DAY) + recording(SHORT, end=close - timedelta(minutes=20))
    frame = pl.DataFrame(rows, schema=frame_schema(TABLES["quotes"]))
    with open_store(path) as store:
        assert store.write([("quotes", frame)]) == frame.height
    return path, frame


def by_symbol(ticks: pl.DataFrame) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in ticks.iter_rows(named=True):
        out.setdefault(r["contract"], []).append(r)
    return out


def last_at_or_before(by: dict[str, list[dict]], symbol: str, ts: datetime, column: str):
    """The plainest scan: every tick of the symbol, keep the latest one not after ``ts``."""
    best = None
    for r in by.get(symbol, []):
        if r["ts"] <= ts and r[column] is not None and (best is None or r["ts"] >= best["ts"]):
            best = r
    return best


def test_snapshots_are_the_last_tick_at_or_before_them(db, tmp_path: Path) -> None:
    path, ticks = db
    with StoreHistory("SPX", 300, BAND, target=str(path)) as h:
        report = run_build(tmp_path / "h", "SPX", sessions(DAY, SHORT), h.make_day, h.signature,
                           progress="off")  # fmt: skip
    assert report.built == [DAY] and report.empty == [SHORT]  # 03-12 stops 20 min early
    got = read_history(tmp_path / "h", "SPX")
    assert set(zip(got["root"], got["strike"], strict=True)) == {
        (c.root, c.strike) for c in [*IN_BAND, LATE]
    }, "the far put and the other underlying's contract are outside the band"
    assert got["oi"].is_null().all() and got["volume"].is_null().all()
    ticks = by_symbol(ticks.with_columns(pl.col("ts").dt.replace_time_zone("UTC")))
    s = us_session(DAY)
    for c in [*IN_BAND, LATE]:
        mine = got.filter(
            (pl.col("expiry") == c.expiry) & (pl.col("strike") == c.strike)
            & (pl.col("right") == c.right.value)
        ).sort("ts")  # fmt: skip
        sym = to_occ(c, padded=False)
        expected_ts = []
        t = s.open
        while t <= min(s.close, expiry_time(c)):
            q = last_at_or_before(ticks, sym, t, "bid")
            if q is not None:
                expected_ts.append((t, q["bid"], q["ask"]))
            t += timedelta(minutes=5)
        assert list(zip(mine["ts"], mine["bid"], mine["ask"], strict=True)) == expected_ts, c
        if c is LATE:
            assert mine["ts"].min() >= datetime(2024, 3, 11, 15, 0, tzinfo=UTC)
    for r in got.sample(20, seed=1).iter_rows(named=True):
        spot = last_at_or_before(ticks, "SPX", r["ts"], "price")["price"]
        assert r["spot"] == spot
        vix = last_at_or_before(ticks, "VIX", r["ts"], "price")
        assert r["vix"] == (vix and vix["price"])
        c = Contract(r["root"], r["expiry"], r["strike"], r["right"])
        T = (expiry_time(c) - r["ts"]).total_seconds() / (365 * 86400)
        if r["iv"] is not None:
            ref = bsm(r["spot"], r["strike"], T, 0.045, 0.013, r["iv"], c.is_call)
            assert ref["price"] == pytest.approx((r["bid"] + r["ask"]) / 2, abs=1e-4)
            assert r["delta"] == pytest.approx(ref["delta"], abs=1e-5)


def test_the_cli_builds_from_a_store_and_skips_what_is_on_disk(db, tmp_path: Path, capsys):
    path, _ = db
    argv = ["history", "build", "--source", "store", "--db", str(path), "--from", "2024-03-11",
            "--to", "2024-03-12", "--out", str(tmp_path / "h"), "--max-dte", "3",
            "--strike-pct", "3", "--json", "--progress", "off"]  # fmt: skip
    assert main(argv) == 0
    assert '"built": 1' in capsys.readouterr().out
    assert complete_days(tmp_path / "h", "SPX") == [DAY]
    assert read_history(tmp_path / "h", "SPX")["ts"].n_unique() == 391
    assert main(argv) == 0
    assert '"built": 0, "skipped": 1' in capsys.readouterr().out


def test_a_missing_store_is_one_line(tmp_path: Path, capsys) -> None:
    argv = ["history", "build", "--source", "store", "--db", str(tmp_path / "none.duckdb"),
            "--from", "2024-03-11", "--to", "2024-03-11", "--out", str(tmp_path / "h")]  # fmt: skip
    assert main(argv) == 2
    assert "no such database file" in capsys.readouterr().err

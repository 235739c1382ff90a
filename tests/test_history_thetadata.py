"""The ThetaData history builder against the emulator's v3 history endpoints: every value checked
against the simulator behind the emulator, 429/5xx retried to the same result, the concurrency
limit held, days on disk skipped without a request, a dead Terminal a clear error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from reference_pricing import bsm

from kit.adapters.sim.market import SimConfig
from kit.adapters.thetadata.config import ThetaDataConfig, ThetaDataError
from kit.adapters.thetadata.emulator import ThetaDataEmulator
from kit.cli.main import main
from kit.core.clock import NEW_YORK, SimClock, expiry_time, to_ns, us_session
from kit.core.model import Contract
from kit.research.history.band import Band, BandError, sessions
from kit.research.history.build import run_build
from kit.research.history.enrich import quoted
from kit.research.history.schema import complete_days, iter_days, read_history
from kit.research.history.thetadata import ThetaHistory, contract_rows

BAND = Band(max_dte=2, strike_pct=0.02)
D1, D2 = date(2024, 3, 11), date(2024, 3, 12)


@pytest.fixture
async def emu() -> AsyncIterator[ThetaDataEmulator]:
    clock = SimClock(datetime(2024, 3, 11, 9, 30, tzinfo=NEW_YORK))
    async with ThetaDataEmulator(clock=clock, config=SimConfig(seed=5, step_s=60)) as e:
        e.market.advance_to(to_ns(us_session(D2).close))
        yield e


class Counter:
    """httpx event hooks: requests sent, and the most ever awaiting an answer at once."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.in_flight = self.most = 0
        self._lock = threading.Lock()

    async def request(self, request) -> None:
        with self._lock:
            self.paths.append(request.url.path)
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)

    async def response(self, response) -> None:
        with self._lock:
            self.in_flight -= 1

    @property
    def hooks(self) -> dict:
        return {"request": [self.request], "response": [self.response]}


def theta(
    emu: ThetaDataEmulator, counter: Counter | None = None, band: Band = BAND, **kw
) -> ThetaHistory:
    cfg = ThetaDataConfig(rest_port=emu.rest_port, retry_initial_s=0.01)
    return ThetaHistory("SPX", 300, band, config=cfg, event_hooks=counter and counter.hooks,
                        **kw)  # fmt: skip


async def build(out: Path, th: ThetaHistory, d1: date = date(2024, 3, 8), d2: date = D2):
    def work():
        with th:
            return run_build(out, "SPX", sessions(d1, d2), th.make_day, th.signature,
                             progress="off")  # fmt: skip

    return await asyncio.to_thread(work)


async def test_history_matches_the_simulator_behind_the_terminal(emu, tmp_path: Path) -> None:
    counter = Counter()
    report = await build(tmp_path, theta(emu, counter, concurrency=3))
    # the Terminal has nothing before the emulator's first day: that session is reported empty
    assert report.built == [D1, D2] and report.empty == [date(2024, 3, 8)]
    assert 1 < counter.most <= 3, "requests overlap, never beyond the concurrency limit"
    m = emu.market
    for day, frame in iter_days(tmp_path, "SPX"):
        s = us_session(day)
        assert frame["ts"].n_unique() == 79 and frame["ts"].min() == s.open
        roots = set(frame["root"])
        assert roots <= {"SPXW", "SPX"} and "SPXW" in roots
        rows = frame.gather(np.linspace(0, frame.height - 1, 60).astype(int).tolist())
        for r in rows.iter_rows(named=True):
            c = Contract(r["root"], r["expiry"], r["strike"], r["right"])
            step = m.step_index(to_ns(r["ts"]))
            bid, ask, *_ = m.quote_arrays([c], step)
            assert (r["bid"], r["ask"]) == (float(bid[0]), float(ask[0]))
            assert r["oi"] == int(m.open_interest([c])[0])
            # prints strictly before the snapshot: the bars that ended by it
            assert r["volume"] == (int(m.volume([c], step - 1)[0]) if step > 0 else 0)
            if r["ts"] == s.open:  # the Terminal has no index print at 09:30:00
                assert r["spot"] is None and r["iv"] is None
                continue
            assert r["spot"] == round(m.spot("SPX", step), 2)
            assert r["vix"] == round(m.spot("VIX", step), 2)
            T = (expiry_time(c) - r["ts"]).total_seconds() / (365 * 86400)
            mid = (r["bid"] + r["ask"]) / 2
            if r["iv"] is None:  # expired, one-sided, or a mid at (or under) intrinsic value
                fwd = r["spot"] * np.exp(-0.013 * T) - r["strike"] * np.exp(-0.045 * T)
                intrinsic = max(fwd if c.is_call else -fwd, 0.0)
                assert T <= 0 or r["bid"] <= 0 or mid - intrinsic < 0.01, r
                continue
            ref = bsm(r["spot"], r["strike"], T, 0.045, 0.013, r["iv"], c.is_call)
            assert ref["price"] == pytest.approx(mid, abs=1e-4)
            assert r["delta"] == pytest.approx(ref["delta"], abs=1e-5)
            assert r["vega"] == pytest.approx(ref["vega"] / 100, rel=1e-4, abs=1e-6)
        # the band: expiries within 2 days, strikes within 2% of the first print
        first = frame.filter(pl.col("spot").is_not_null())["spot"][0]
        assert ((frame["strike"] / first - 1).abs() <= 0.02 + 1e-9).all()
        assert max((e - day).days for e in frame["expiry"].unique()) <= 2
    # a rerun asks nothing about the sessions on disk (only the empty one again)
    counter2 = Counter()
    again = await build(tmp_path, theta(emu, counter2))
    assert again.skipped == [D1, D2] and again.built == []
    assert sorted(counter2.paths) == sorted(  # 03-08 probed again: its index, no options
        ["/v3/index/history/price"] * 2 + ["/v3/option/list/expirations"] * 2
    )


async def test_429_and_5xx_are_retried_to_the_same_history(emu, tmp_path: Path) -> None:
    small = Band(max_dte=0, strike_pct=0.01)
    clean = await build(tmp_path / "clean", theta(emu, band=small), D1, D1)
    emu.fail_rest(429, times=3)
    emu.fail_rest(500, times=2)
    emu.fail_rest(503, times=1)
    faulty = await build(tmp_path / "faulty", theta(emu, band=small), D1, D1)
    assert emu.faults.rest_failures == [] and faulty.built == clean.built == [D1]
    assert read_history(tmp_path / "faulty", "SPX").equals(read_history(tmp_path / "clean", "SPX"))


async def test_a_refusal_stops_the_build_without_writing_the_day(emu, tmp_path: Path) -> None:
    emu.fail_rest(471, times=1)  # PERMISSION: not retryable
    with pytest.raises(ThetaDataError, match="471 PERMISSION"):
        await build(tmp_path, theta(emu), D1, D1)
    assert complete_days(tmp_path, "SPX") == []


async def test_an_unreachable_terminal_is_one_clear_error(tmp_path: Path) -> None:
    cfg = ThetaDataConfig(rest_port=9, retries=1, retry_initial_s=0.01)  # discard port: closed
    th = ThetaHistory("SPX", 60, BAND, config=cfg)
    with pytest.raises(ThetaDataError, match="474 DISCONNECTED: Terminal unreachable"):
        await build(tmp_path, th, D1, D1)


async def test_the_cli_builds_from_the_terminal_in_the_environment(
    emu, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("THETADATA_REST_PORT", str(emu.rest_port))
    argv = ["history", "build", "--source", "thetadata", "--from", "2024-03-11", "--to",
            "2024-03-11", "--interval", "5m", "--max-dte", "0", "--strike-pct", "1",
            "--out", str(tmp_path), "--json", "--progress", "off"]  # fmt: skip
    assert await asyncio.to_thread(main, argv) == 0
    assert '"built": 1' in capsys.readouterr().out
    assert read_history(tmp_path, "SPX")["expiry"].unique().to_list() == [D1]


def test_bad_thetadata_options_are_one_line_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(BandError, match="no 120 s interval"):
        ThetaHistory(interval_s=120)
    with pytest.raises(BandError, match="index options"):
        ThetaHistory(underlying="SPY")
    argv = ["history", "build", "--source", "thetadata", "--from", "2024-03-11", "--to",
            "2024-03-11", "--interval", "2m", "--out", str(tmp_path / "h")]  # fmt: skip
    assert main(argv) == 2
    assert "no 120 s interval" in capsys.readouterr().err


def test_a_quote_without_an_offer_is_no_quote() -> None:
    """The Terminal answers 0 x 0 for an interval before a contract's first quote of the day:
    stored as no quote, so a backtest can never buy a wing for nothing."""
    rows = [
        {"symbol": "SPXW", "expiration": "2024-03-11", "strike": "5000.000", "right": "CALL",
         "timestamp": "2024-03-11T09:30:00", "bid": b, "ask": a}
        for b, a in (("0.00", "0.00"), ("0.00", "0.05"), ("1.00", "1.10"))
    ]  # fmt: skip
    got = quoted(contract_rows(rows, ["bid", "ask"]))
    assert got.select("bid", "ask").rows() == [(None, None), (0.0, 0.05), (1.0, 1.1)]
    assert got["right"].to_list() == ["C"] * 3 and got["strike"].to_list() == [5000.0] * 3
    assert got["ts"][0] == datetime(2024, 3, 11, 13, 30, tzinfo=UTC)  # New York -> UTC

"""Manual, alert-only positions: the journal, its validation, the desk records and the CLI."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from kit.cli.main import main
from kit.core.clock import NEW_YORK, SimClock
from kit.core.model import Contract, Quote, Side, StrategyType, UnderlyingTick
from kit.engine.desk import Desk
from kit.portfolio.book import Book
from kit.portfolio.market import MarketState
from kit.positions.legs import Strikes, leg_prices
from kit.positions.manual import DEFAULT_PATH, ENV_PATH, ManualBook, manual_path

EXPIRY = date(2024, 3, 15)
AT = datetime(2024, 3, 12, 10, 0, tzinfo=NEW_YORK)
LATER = datetime(2024, 3, 13, 11, 0, tzinfo=NEW_YORK)
STRANGLE = {"underlying": "SPX", "expiry": EXPIRY, "strikes": Strikes(put=5000, call=5200),
            "contracts": 2, "credit": 4.20, "at": AT}  # fmt: skip
CONDOR = STRANGLE | {"strikes": Strikes(put=5000, call=5200, wings=25), "contracts": 1,
                     "credit": 3.10}  # fmt: skip
PUT_SPREAD = STRANGLE | {"underlying": "SPY", "strikes": Strikes(short=500, long=495),
                         "contracts": 5, "credit": 1.10}  # fmt: skip


@pytest.fixture
def book(tmp_path: Path) -> ManualBook:
    return ManualBook(tmp_path / "manual_positions.json")


def _replay(records) -> Book:
    b = Book(MarketState())
    for position, fills in records:
        b.open(position)
        assert all(b.apply_fill(f, position.id) for f in fills)
    return b


# --- the journal ---


def test_the_journal_round_trips_and_reads_like_a_trader_wrote_it(book):
    book.add("strangle", **STRANGLE, note="earnings")
    book.add("iron_condor", **CONDOR)
    book.add("put_spread", **PUT_SPREAD)
    book.add("short_put", **STRANGLE | {"strikes": Strikes(put=4900)}, root="SPX", position_id="x")
    again = ManualBook(book.path).positions()
    assert again == book.positions()
    assert [p.id for p in again] == ["m1", "m2", "m3", "x"]
    m1, m2, m3, x = again
    assert (m1.root, m1.underlying, m1.note, m1.held, m1.status) == ("SPXW", "SPX", "earnings", 2,
                                                                     "open")  # fmt: skip
    assert m2.legs_text == "+4975P -5000P -5200C +5225C" and m3.root == "SPY"
    assert x.root == "SPX" and x.kind is StrategyType.CUSTOM and x.legs_text == "-4900P"
    doc = json.loads(book.path.read_text())
    assert doc["version"] == 1 and doc["positions"][0]["trades"] == [
        {"kind": "open", "ts_ns": m1.opened_ts_ns, "contracts": 2, "price": 4.2}
    ]
    assert book.add("strangle", **STRANGLE).id == "m4"  # after the highest m<n>, not the count


def test_the_journal_path_is_the_argument_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.delenv(ENV_PATH, raising=False)
    assert manual_path(None) == DEFAULT_PATH == Path("data/manual_positions.json")
    monkeypatch.setenv(ENV_PATH, "/tmp/elsewhere.json")
    assert manual_path(None) == Path("/tmp/elsewhere.json")
    assert manual_path("mine.json") == Path("mine.json")


def _add_many(path: str, worker: int, count: int) -> None:
    journal = ManualBook(path)
    for i in range(count):
        journal.add("strangle", **STRANGLE, note=f"w{worker}-{i}")


def test_concurrent_processes_lose_no_position(book):
    # one add in this process first: the forked workers inherit the loaded market calendar
    ManualBook(book.path.with_name("warm.json")).add("strangle", **STRANGLE)
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_add_many, args=(str(book.path), w, 8)) for w in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    positions = book.positions()
    assert sorted(p.note for p in positions) == sorted(f"w{w}-{i}" for w in range(4)
                                                       for i in range(8))  # fmt: skip
    assert sorted(p.id for p in positions) == sorted(f"m{n}" for n in range(1, 33))


def test_a_failed_write_leaves_the_journal_as_it_was(book, monkeypatch):
    book.add("strangle", **STRANGLE)
    before = book.path.read_bytes()

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        book.add("iron_condor", **CONDOR)
    assert book.path.read_bytes() == before
    assert sorted(p.name for p in book.path.parent.iterdir()) == [
        "manual_positions.json", "manual_positions.json.lock"]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "malformed"),
        (b'{"version": 1, "positions": [], "extra": 1}', "unknown field"),
        (b'{"version": 7, "positions": []}', "this kit reads 1"),
    ],
)
def test_a_corrupt_journal_is_an_error_naming_the_file_and_is_never_overwritten(book, content, why):
    book.path.write_bytes(content)
    for attempt in (book.positions, lambda: book.add("strangle", **STRANGLE)):
        with pytest.raises(ValueError, match=why) as err:
            attempt()
        assert str(book.path) in str(err.value) and "left untouched" in str(err.value)
    assert book.path.read_bytes() == content


def test_a_hand_edited_history_is_checked_on_load(book):
    book.add("strangle", **STRANGLE)
    doc = json.loads(book.path.read_text())
    doc["positions"][0]["trades"].append(
        {"kind": "close", "ts_ns": doc["positions"][0]["trades"][0]["ts_ns"], "contracts": 3,
         "price": 1.0})  # fmt: skip
    book.path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"cannot close 3 contracts of m1: 2 held"):
        book.positions()


def test_an_unreadable_journal_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ValueError, match=r"dir\.json: cannot read"):
        ManualBook(tmp_path / "dir.json").positions()


# --- validation ---


@pytest.mark.parametrize(
    ("strategy", "changes", "message"),
    [
        ("butterfly", {}, "strategy: unknown 'butterfly'"),
        ("strangle", {"strikes": Strikes(put=5200, call=5200)}, r"--put \(5200\) must be below"),
        ("strangle", {"strikes": Strikes(put=5300, call=5200)}, r"--put \(5300\) must be below"),
        ("strangle", {"strikes": Strikes(put=5000)}, "strangle needs --call"),
        ("strangle", {"strikes": Strikes(put=5000, call=5200, wings=5)}, "does not take --wings"),
        ("strangle", {"strikes": Strikes(put=math.nan, call=5200)}, "--put: must be a finite"),
        ("strangle", {"credit": math.nan}, "credit: must be a finite number, got nan"),
        ("strangle", {"credit": -1.0}, "credit: must be positive"),
        ("strangle", {"credit": 0.0}, "credit: must be positive"),
        ("strangle", {"contracts": 0}, "contracts: expected a positive integer, got 0"),
        ("strangle", {"expiry": date(2024, 3, 11)}, "expiry 2024-03-11 .* is not after the trade"),
        ("strangle", {"at": datetime(2024, 3, 15, 16, 30, tzinfo=NEW_YORK)}, "is not after"),
        ("strangle", {"at": datetime(2024, 3, 12, 10, 0)}, "naive datetime"),
        ("strangle", {"underlying": "NDX", "root": "SPXW"}, "SPXW is not an option root of NDX"),
        ("iron_condor", {"strikes": Strikes(put=5000, call=5200)}, "needs --long-put, --long-c"),
        ("iron_condor", {"strikes": Strikes(put=5000, call=5200, wings=25, long_put=4900)},
         "not both"),
        ("iron_condor", {"strikes": Strikes(put=5000, call=5200, long_put=5010, long_call=5300)},
         r"--long-put \(5010\) must be below --put \(5000\)"),
        ("iron_condor", {"credit": 25.0}, r"below the width of this iron_condor \(25 points\)"),
        ("iron_condor", {"risk_usd": 500.0}, "defined by its strikes"),
        ("put_spread", {"strikes": Strikes(short=495, long=500)}, "sells the higher strike"),
        ("call_spread", {"strikes": Strikes(short=505, long=500)}, "sells the lower strike"),
        ("put_spread", {"credit": 5.0}, "below the width"),
        ("strangle", {"risk_usd": -5.0}, "risk: must be positive"),
        ("strangle", {"underlying": "FOO", "root": "FOO"}, "underlying: unknown 'FOO'"),
        ("strangle", {"expiry": date(2024, 3, 16)}, r"2024-03-16 \(Saturday\) is not a US opt"),
        ("strangle", {"expiry": date(2024, 3, 29)}, "Good|is not a US options session day"),
        ("strangle", {"strikes": Strikes(put=5001, call=5200)}, "strike 5001 is not listed: "
         "SPX strikes are multiples of 5"),
        ("put_spread", {"strikes": Strikes(short=500.25, long=495)}, "multiples of 0.5"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_with_a_reason_and_nothing_written(
    book, strategy, changes, message
):
    base = {"iron_condor": CONDOR, "put_spread": PUT_SPREAD, "call_spread": PUT_SPREAD}
    with pytest.raises(ValueError, match=message):
        book.add(strategy, **base.get(strategy, STRANGLE) | changes)
    assert not book.path.exists()


def test_updates_and_closes_are_checked_against_the_history(book):
    book.add("strangle", **STRANGLE)
    book.add("strangle", **STRANGLE)
    cases = [
        (lambda: book.close("m9", price=1.0, at=LATER), "no manual position 'm9'.*have: m1, m2"),
        (lambda: book.close("m1", price=1.0, at=LATER, contracts=3), "close 3 contracts of m1"),
        (lambda: book.close("m1", price=-0.5, at=LATER), "price: must be non-negative"),
        (lambda: book.close("m1", price=1.0, at=datetime(2024, 3, 11, tzinfo=UTC)),
         "before the previous one"),
        (lambda: book.update("m1", at=LATER, contracts=2, credit=4.0), "not above the 2 held"),
        (lambda: book.update("m1", at=LATER, credit=4.0), "go together"),
        (lambda: book.update("m1", at=LATER), "nothing to update"),
        (lambda: book.add("strangle", **STRANGLE, position_id="m2"), "'m2' is already taken"),
        (lambda: book.add("strangle", **STRANGLE, position_id="no spaces"), "id: 1-32 letters"),
    ]  # fmt: skip
    before = book.path.read_bytes()
    for attempt, message in cases:
        with pytest.raises(ValueError, match=message):
            attempt()
    assert book.path.read_bytes() == before
    book.close("m2", price=0.0, at=LATER)  # expired worthless
    with pytest.raises(ValueError, match="m2 is already closed"):
        book.close("m2", price=1.0, at=LATER)
    with pytest.raises(ValueError, match="m2 is closed: only its note"):
        book.update("m2", at=LATER, risk_usd=100.0)
    assert book.update("m2", at=LATER, note="expired").note == "expired"


# --- what the desk gets ---


def test_leg_prices_net_to_the_reported_price_and_are_never_negative(book):
    condor = book.add("iron_condor", **CONDOR)
    prices = leg_prices(condor.legs, 3.10)
    assert prices == [0.0, 1.55, 1.55, 0.0]
    net = -sum(leg.ratio * p for leg, p in zip(condor.legs, prices, strict=True))
    assert net == pytest.approx(3.10)


def test_desk_records_in_a_book_give_the_logged_credit_and_realised_pnl(book):
    book.add("strangle", **STRANGLE)  # 2 @ 4.20
    book.update("m1", at=LATER, contracts=3, credit=4.00)  # +1 @ 4.00: average 4.1333
    book.close("m1", price=1.05, at=LATER, contracts=1)
    records = book.desk_records()
    b = _replay(records)
    (position, fills), row = records[0], b.rows["manual:m1"]
    assert position.id == "manual:m1" and position.quantity == 2
    assert position.strategy is StrategyType.STRANGLE
    assert [f.fill_id for f in fills][:2] == ["manual:m1:0:leg0", "manual:m1:0:leg1"]
    assert len({f.fill_id for f in fills}) == len(fills) == 6
    assert [f.side for f in fills[-2:]] == [Side.BUY, Side.BUY]
    average = (2 * 4.20 + 4.00) / 3
    assert b.pos_original[row] == pytest.approx((2 * 4.20 + 4.00) * 100)  # the entry premium
    assert b.leg_realized[b.legs_of("manual:m1")].sum() == pytest.approx((average - 1.05) * 100)
    assert b.held("manual:m1").quantity == 2 and b.pos_open[row]
    assert not any(b.apply_fill(f, position.id) for f in fills)  # the service re-applies: no-op

    book.close("m1", price=0.50, at=LATER)  # the other 2
    b = _replay(book.desk_records())
    realized = (average - 1.05) * 100 + 2 * (average - 0.50) * 100
    assert realized == pytest.approx((2 * 4.20 + 4.00 - 1.05 - 2 * 0.50) * 100)
    assert b.leg_realized[b.legs_of("manual:m1")].sum() == pytest.approx(realized)
    assert not b.pos_open[0] and b.held("manual:m1") is None
    (row,) = book.rows(include_closed=True)
    assert (row.status, row.contracts, row.realized_usd, row.max_risk_usd) == (
        "closed", 0, pytest.approx(realized), 0.0)  # fmt: skip
    assert book.rows() == []


def test_a_condor_marks_to_the_right_total_pnl_and_risk_whatever_the_leg_split(book):
    condor = book.add("iron_condor", **CONDOR)
    market = MarketState()
    b = Book(market)
    (position, fills), = book.desk_records()  # fmt: skip
    b.open(position)
    for f in fills:
        b.apply_fill(f, position.id)
    ts = condor.opened_ts_ns
    market.on_underlying(UnderlyingTick("SPX", 5100.0, ts))
    market.on_underlying(UnderlyingTick("SPY", 510.0, ts))
    for leg, mid in zip(condor.legs, (0.20, 0.75, 0.65, 0.10), strict=True):  # net 1.10
        market.on_quote(Quote(leg.contract, mid - 0.05, mid + 0.05, 10, 10, ts))
    view = b.view(ts)
    assert view.credit[0] == pytest.approx(310.0)
    assert view.total_pnl[0] == pytest.approx((3.10 - 1.10) * 100)  # 200: a 64.5% profit
    (row,) = book.rows()
    assert row.max_risk_usd == pytest.approx((25 - 3.10) * 100) == pytest.approx(view.risk[0])


def test_max_risk_is_from_the_strikes_or_stated_or_undefined(book):
    book.add("iron_condor", **CONDOR)
    book.add("put_spread", **PUT_SPREAD)
    book.add("strangle", **STRANGLE)
    book.add("strangle", **STRANGLE, risk_usd=3000.0)
    book.add("short_call", **STRANGLE | {"strikes": Strikes(call=5300)})
    book.add("call_spread", **STRANGLE | {"strikes": Strikes(short=5200, long=5210)})
    risks = [r.max_risk_usd for r in book.rows()]
    assert risks == pytest.approx([2190.0, (5 - 1.10) * 5 * 100, None, 3000.0, None,
                                   (10 - 4.20) * 2 * 100])  # fmt: skip
    book.close("m4", price=1.0, at=LATER, contracts=1)  # stated risk is per contract: halves
    book.update("m3", at=LATER, risk_usd=5000.0)
    assert [r.max_risk_usd for r in book.rows()][2:4] == pytest.approx([5000.0, 1500.0])


def test_summary_totals_open_positions_by_underlying_and_realised_pnl(book):
    book.add("strangle", **STRANGLE)  # credit $840, risk undefined
    book.add("iron_condor", **CONDOR)  # $310, risk $2,190
    book.add("put_spread", **PUT_SPREAD)  # SPY $550, closed below for +$350
    book.close("m3", price=0.40, at=LATER)
    book.close("m1", price=2.20, at=LATER, contracts=1)  # +$200 realised, $420 credit left
    s = book.summary()
    assert (s.open_positions, s.closed_positions, s.undefined_risk) == (2, 1, 1)
    assert s.credit_usd == pytest.approx(420 + 310)
    assert s.max_risk_usd == pytest.approx(2190)
    assert s.realized_closed_usd == pytest.approx(350)
    assert s.realized_open_usd == pytest.approx(200)
    assert list(s.by_underlying) == ["SPX"] and s.by_underlying["SPX"].open_positions == 2


# --- the same exit alerts as automatic positions ---


def _market(clock: SimClock, spot: float, put_mid: float, call_mid: float) -> list:
    ts = clock.now_ns()
    put, call = (Contract("SPXW", EXPIRY, k, r) for k, r in ((4950.0, "P"), (5050.0, "C")))
    return [UnderlyingTick("SPX", spot, ts), UnderlyingTick("SPY", spot / 10, ts),
            Quote(put, put_mid - 0.05, put_mid + 0.05, 10, 10, ts),
            Quote(call, call_mid - 0.05, call_mid + 0.05, 10, 10, ts)]  # fmt: skip


async def test_a_desk_raises_exit_alerts_for_a_manual_strangle(book):
    clock = SimClock(datetime(2024, 3, 12, 11, 0, tzinfo=NEW_YORK))
    book.add("strangle", **STRANGLE | {"strikes": Strikes(put=4950, call=5050), "credit": 4.0,
                                       "at": clock.now()})  # fmt: skip
    desk = Desk(clock)
    desk.process(_market(clock, 5000.0, 2.0, 2.0))
    for position, fills in book.desk_records():
        desk.open_position(position, fills)
    clock.advance(60)
    alerts = [r.alert for r in desk.process(_market(clock, 5000.0, 0.9, 0.9))]  # 55% profit
    assert ("profit_target", "manual:m1") in {(a.rule, a.position_id) for a in alerts}
    clock.advance(60)
    alerts = [r.alert for r in desk.process(_market(clock, 4955.0, 6.0, 0.5))]
    assert ("strike_breach", "manual:m1") in {(a.rule, a.position_id) for a in alerts}
    await desk.close()


# --- the command line ---


def test_the_cli_logs_adjusts_closes_and_reports(tmp_path, capsys):
    f = ["--file", str(tmp_path / "j.json")]
    at = ["--at", "2024-03-12T10:00-04:00"]
    assert main(["positions", "add", "strangle", "--underlying", "SPX", "--expiry", "2024-03-15",
                 "--put", "5000", "--call", "5200", "--contracts", "2", "--credit", "4.20",
                 "--note", "earnings", *f, *at]) == 0  # fmt: skip
    assert "m1" in capsys.readouterr().out
    assert main(["positions", "add", "iron_condor", "--underlying", "spx", "--expiry",
                 "2024-03-15", "--put", "5000", "--call", "5200", "--long-put", "4975",
                 "--long-call", "5225", "--contracts", "1", "--credit", "3.10", *f,
                 *at]) == 0  # fmt: skip
    assert main(["positions", "add", "put_spread", "--underlying", "SPY", "--expiry",
                 "2024-03-15", "--short", "500", "--long", "495", "--contracts", "5",
                 "--credit", "1.10", *f, *at]) == 0  # fmt: skip
    assert main(["positions", "update", "m1", "--contracts", "3", "--credit", "4.00", *f,
                 "--at", "2024-03-12T11:00-04:00"]) == 0  # fmt: skip
    assert main(["positions", "update", "m1", "--note", "earnings, added", *f]) == 0
    assert main(["positions", "close", "m3", "--price", "0.40", *f,
                 "--at", "2024-03-13T10:00-04:00"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "closed  m3" in out and "realised $350" in out
    assert main(["positions", "list", "--json", *f]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["contracts"], r["note"]) for r in rows] == [
        ("m1", 3, "earnings, added"), ("m2", 1, "")]  # fmt: skip
    assert rows[0]["credit"] == pytest.approx(4.1333, abs=1e-4) and rows[0]["max_risk_usd"] is None
    assert rows[1]["max_risk_usd"] == pytest.approx(2190) and rows[1]["expiry"] == "2024-03-15"
    assert main(["positions", "list", "--all", *f]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[2].startswith("m3     closed")
    assert main(["positions", "summary", "--json", *f]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["open_positions"], s["undefined_risk"]) == (2, 1)
    assert s["realized_closed_usd"] == pytest.approx(350)
    assert main(["positions", "summary", *f]) == 0
    assert "2 positions, credit $1,550, max risk $2,190 + 1 undefined" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["close", "m1", "--price", "1"], "no manual position 'm1'"),
        (["add", "strangle", "--underlying", "SPX", "--expiry", "2024-03-15", "--put", "5200",
          "--call", "5000", "--contracts", "1", "--credit", "1"], "must be below --call"),
        (["add", "strangle", "--underlying", "SPX", "--expiry", "2024-03-15", "--put", "5000",
          "--call", "5200", "--contracts", "1", "--credit", "nan", "--at", "2024-03-12T10:00Z"],
         "credit: must be a finite number"),
    ],
)  # fmt: skip
def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert main(["positions", *args, "--file", str(tmp_path / "j.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kit positions: error: ") and message in err
    assert err.count("\n") == 1


def test_python_m_kit_positions_in_a_subprocess(tmp_path):
    env = os.environ | {ENV_PATH: str(tmp_path / "j.json")}

    def kit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "kit", "positions", *args],
                              capture_output=True, text=True, env=env, timeout=60)  # fmt: skip

    out = kit("add", "strangle", "--underlying", "SPX", "--expiry", "2024-03-15", "--put",
              "5000", "--call", "5200", "--contracts", "2", "--credit", "4.20", "--at",
              "2024-03-12T10:00-04:00")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("added   m1") and "credit 4.20 ($840)" in out.stdout
    assert json.loads((tmp_path / "j.json").read_text())["positions"][0]["id"] == "m1"
    out = kit("add", "butterfly", "--underlying", "SPX", "--expiry", "2024-03-15",
              "--contracts", "1", "--credit", "1")  # fmt: skip
    assert out.returncode == 2 and "invalid choice: 'butterfly'" in out.stderr
    out = kit("close", "m1", "--price", "1", "--contracts", "3", "--at", "2024-03-13T10:00Z")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr == "kit positions: error: cannot close 3 contracts of m1: 2 held\n"


def test_update_pnl_states_a_mark_for_contracts_the_feed_lacks(tmp_path, capsys):
    """``update --pnl`` records the trader's own open P&L (dollars, whole position) with its
    time in the journal; list shows it; a closed position or a non-number is one line, and the
    journal keeps the previous statement."""
    f = ["--file", str(tmp_path / "j.json")]
    assert main(["positions", "add", "strangle", "--underlying", "SPY", "--expiry", "2024-03-15",
                 "--put", "480", "--call", "520", "--contracts", "2", "--credit", "1.5", *f,
                 "--at", "2024-03-12T09:40-04:00"]) == 0  # fmt: skip
    assert main(["positions", "update", "m1", "--pnl", "-85.5", *f,
                 "--at", "2024-03-12T11:00-04:00"]) == 0  # fmt: skip
    assert "P&L -85.50 (stated 2024-03-12 15:00 UTC)" in capsys.readouterr().out
    for bad in ("nan", "inf"):
        assert main(["positions", "update", "m1", "--pnl", bad, *f]) == 2
        err = capsys.readouterr().err
        assert "--pnl: a number of dollars" in err and len(err.strip().splitlines()) == 1
    assert main(["positions", "list", "--json", *f]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["pnl_usd"] == -85.5 and row["pnl_at"] == "2024-03-12T15:00:00Z"
    assert main(["positions", "close", "m1", "--price", "0.2", *f,
                 "--at", "2024-03-12T12:00-04:00"]) == 0  # fmt: skip
    assert main(["positions", "update", "m1", "--pnl", "10", *f]) == 2
    assert "m1 is closed" in capsys.readouterr().err
    assert main(["positions", "list", "--all", "--json", *f]) == 0
    assert json.loads(capsys.readouterr().out)[0]["pnl_usd"] is None  # closed: realised only

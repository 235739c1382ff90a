"""``kit book``: the reference roll to the cent, with and without marks; bad rows name their
line and exit 2; any fill sequence keeps net credit = sold - bought - fees and P&L = cash + value.
"""

import contextlib
import io
import json
import math
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_pricing import bsm

from kit.cli.main import main
from kit.core.clock import NEW_YORK, expiry_time
from kit.core.symbology import from_occ

ROOT = Path(__file__).resolve().parents[1]
AT = "2024-03-13T12:00"
HEADER = "ts,position,contract,side,qty,price,commission\n"
ROLL = (
    HEADER
    + """\
2024-03-12T10:00:00-04:00,roll,SPXW240315P04950000,sell,2,2.10,0
2024-03-12T10:00:05-04:00,roll,SPXW240315C05050000,sell,1,1.90,0
2024-03-12T10:00:09-04:00,roll,SPXW240315C05050000,sell,1,1.80,0
2024-03-13T11:30:00-04:00,roll,SPXW240315P04950000,buy,2,0.55,0
2024-03-13T11:30:02-04:00,roll,SPXW240315P05000000,sell,2,2.60,0
"""
)
MARKS = """contract,bid,ask
SPX,5010,5010
SPXW240315P05000000,8.00,8.40
SPXW240315C05050000,3.00,3.20
"""


def run(capsys, tmp_path: Path, fills: str, marks: str | None = None, *flags: str):
    (tmp_path / "fills.csv").write_text(fills)
    argv = ["book", str(tmp_path / "fills.csv"), "--at", AT, *flags]
    if marks is not None:
        (tmp_path / "marks.csv").write_text(marks)
        argv += ["--marks", str(tmp_path / "marks.csv")]
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def positions(capsys, tmp_path, fills, marks=None) -> dict[str, dict]:
    code, out, err = run(capsys, tmp_path, fills, marks, "--json")
    assert code == 0, err
    return {p["position"]: p for p in map(json.loads, out.splitlines())}


def test_the_reference_roll_reproduces_to_the_cent(capsys, tmp_path):
    p = positions(capsys, tmp_path, ROLL)["roll"]
    assert p["original_credit"] == 790.00  # 2 x 2.10 + 1.90 + 1.80, x 100
    assert p["net_credit"] == 1200.00  # + 2 x 2.60 - 2 x 0.55 (the old kit said 1,310)
    assert p["credit_held"] == 1200.00
    assert p["realized_pnl"] == 310.00  # the puts: 2 x (2.10 - 0.55) x 100
    assert p["units"] == 2.0 and p["status"] == "open"
    assert p["breakevens"] == [4994.00, 5056.00]  # 6.00 points a unit around 5000 / 5050
    # without marks, nothing that needs a price is made up
    assert p["open_pnl"] is None and p["pnl_pct_credit"] is None
    assert p["worst_loss_10pct"] is None and p["delta_per_unit"] is None


def test_the_roll_with_marks(capsys, tmp_path):
    p = positions(capsys, tmp_path, ROLL, MARKS)["roll"]
    # held: 2 puts sold at 2.60 now 8.20 mid, 2 calls at 1.85 average now 3.10 mid
    assert p["open_pnl"] == -(2 * 5.60 + 2 * 1.25) * 100  # -1,370
    assert p["total_pnl"] == 1200.00 - 2 * (8.20 + 3.10) * 100  # cash + value: -1,060
    assert p["pnl_pct_credit"] == pytest.approx(-1060 / 1200 * 100, abs=1e-6)
    # at 4509 (-10%): the 5000 puts are worth 491 each: 2 x 491 x 100 - 1,200 banked
    assert p["worst_loss_10pct"] == 2 * 491 * 100 - 1200.00
    assert p["spot"] == 5010.0
    # per unit (one put and one call): against a textbook Black-Scholes at each mid's IV
    at = datetime.fromisoformat(AT).replace(tzinfo=NEW_YORK)
    put, call = from_occ("SPXW240315P05000000"), from_occ("SPXW240315C05050000")
    t = (expiry_time(put) - at).total_seconds() / (365 * 86400)

    def ref(contract, mid):
        lo, hi = 1e-4, 5.0  # bisection on the price: the IV of the mid
        for _ in range(200):
            iv = 0.5 * (lo + hi)
            price = bsm(5010.0, contract.strike, t, 0.045, 0.013, iv, contract.is_call)["price"]
            lo, hi = (iv, hi) if price < mid else (lo, iv)
        return bsm(5010.0, contract.strike, t, 0.045, 0.013, iv, contract.is_call)

    rp, rc = ref(put, 8.20), ref(call, 3.10)
    assert p["delta_per_unit"] == pytest.approx(-(rp["delta"] + rc["delta"]), abs=2e-6)
    gamma = -(rp["gamma"] + rc["gamma"]) * 5010.0 * 0.01  # delta change per unit for 1%
    assert p["gamma_per_unit"] == pytest.approx(gamma, abs=2e-6)


def test_greeks_after_expiry_are_not_made_up(capsys, tmp_path):
    (tmp_path / "fills.csv").write_text(ROLL)
    (tmp_path / "marks.csv").write_text(MARKS)
    code = main(["book", str(tmp_path / "fills.csv"), "--marks", str(tmp_path / "marks.csv"),
                 "--at", "2024-03-18T12:00", "--json"])  # fmt: skip
    p = json.loads(capsys.readouterr().out)
    assert code == 0 and p["delta_per_unit"] is None and p["gamma_per_unit"] is None
    assert p["net_credit"] == 1200.00 and p["open_pnl"] == -1370.00


def test_the_shipped_example_runs_as_text(capsys):
    code = main(["book", str(ROOT / "data/book_fills_example.csv"),
                 "--marks", str(ROOT / "data/book_marks_example.csv"), "--at", AT])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "net_credit        1,200.00" in out and "original_credit   790.00" in out
    # the condor paid 4 x 1.20 fees: 1.20 points of credit, 115.20 net, 25-wide: risk 2,384.80
    assert "net_credit        115.20" in out and "worst_loss_10pct  2,384.80" in out
    assert "breakevens        4,923.85, 5,101.15" in out


def test_a_closed_position_reports_its_result(capsys, tmp_path):
    fills = (
        HEADER
        + """\
2024-03-12T10:00:00-04:00,put,SPXW240315P05000000,sell,1,3.00,0.65
2024-03-13T10:00:00-04:00,put,SPXW240315P05000000,buy,1,1.00,0.65
"""
    )
    p = positions(capsys, tmp_path, fills)["put"]
    assert p["status"] == "closed" and p["breakevens"] == []
    assert p["realized_pnl"] == 198.70 and p["net_credit"] == 198.70  # flat: cash = P&L
    assert p["original_credit"] == 300.00
    assert p["pnl_pct_credit"] == pytest.approx(198.70 / 300 * 100)


BAD_FILLS = [
    ("2024-03-12T10:00:00,p,SPXW240315P05000000,short,1,2.0,0", "fills.csv:2: side 'short'"),
    ("2024-03-12T10:00:00,p,SPXW240315P05000000,sell,1.5,2.0,0", "fills.csv:2: qty '1.5'"),
    ("2024-03-12T10:00:00,p,SPXW240315P05000000,sell,0,2.0,0", "fills.csv:2: qty '0'"),
    ("2024-03-12T10:00:00,p,SPX 5000 P,sell,1,2.0,0", "fills.csv:2: not an OCC option symbol"),
    ("yesterday,p,SPXW240315P05000000,sell,1,2.0,0", "fills.csv:2: ts 'yesterday'"),
    ("2024-03-12T10:00:00,p,SPXW240315P05000000,sell,1,-2.0,0", "fills.csv:2: price '-2.0'"),
    ("2024-03-12T10:00:00,p,SPXW240315P05000000,sell,1,nan,0", "fills.csv:2: price 'nan'"),
    ("2024-03-12T10:00:00,p,SPXW240315P05000000,sell,1,2.0", "fills.csv:2: 6 cells"),
    ("2024-03-12T10:00:00,,SPXW240315P05000000,sell,1,2.0,0", "fills.csv:2: position is empty"),
]


@pytest.mark.parametrize(("row", "message"), BAD_FILLS)
def test_a_bad_fill_row_names_its_line_and_exits_2(capsys, tmp_path, row, message):
    code, out, err = run(capsys, tmp_path, HEADER + row + "\n")
    assert code == 2 and out == ""
    assert err.startswith("kit book: error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(("marks", "message"), [
    ("contract,bid,ask\nSPX,5010,5010\nSPXW240315P05000000,8.4,8.0\n", "marks.csv:3: ask 8"),
    ("contract,bid,ask\nSPX,abc,5010\n", "marks.csv:2: bid 'abc'"),
    ("contract,bid\nSPX,5010\n", "marks.csv:1: header lacks ask"),
    ("contract,bid,ask\nSPX,5010,5010\nSPXW240315P05000000,8,8.4\n", "no quote for SPXW240315C"),
    ("contract,bid,ask\nSPXW240315P05000000,8,8.4\nSPXW240315C05050000,3,3.2\n", "no spot row"),
])  # fmt: skip
def test_bad_marks_name_the_problem_and_exit_2(capsys, tmp_path, marks, message):
    code, _, err = run(capsys, tmp_path, ROLL, marks)
    assert code == 2 and message in err and "Traceback" not in err


def test_a_missing_file_and_a_bad_header_exit_2(capsys, tmp_path):
    assert main(["book", str(tmp_path / "nope.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    code, _, err = run(capsys, tmp_path, "when,position,contract\n")
    assert code == 2 and "fills.csv:1: header lacks ts, side, qty, price" in err


# --- any fill sequence ---

CONTRACTS = ["SPXW240315P04950000", "SPXW240315P05000000", "SPXW240315C05050000"]
MIDS = {"SPXW240315P04950000": 4.0, "SPXW240315P05000000": 8.2, "SPXW240315C05050000": 3.1}
fills_st = st.lists(st.tuples(
    st.sampled_from(CONTRACTS), st.sampled_from(["buy", "sell"]), st.integers(1, 4),
    st.integers(5, 900).map(lambda c: c / 100), st.sampled_from([0.0, 0.65, 1.30]),
), min_size=1, max_size=12)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(fills=fills_st)
def test_any_fills_keep_net_credit_as_cash_and_pnl_as_cash_plus_value(tmp_path_factory, fills):
    tmp = tmp_path_factory.mktemp("book")
    rows = [f"2024-03-12T10:{i // 60:02d}:{i % 60:02d}-04:00,p,{c},{side},{q},{px},{fee}"
            for i, (c, side, q, px, fee) in enumerate(fills)]  # fmt: skip
    (tmp / "f.csv").write_text(HEADER + "\n".join(rows) + "\n")
    marks = "contract,bid,ask\nSPX,5010,5010\n" + "".join(
        f"{c},{m - 0.05:.2f},{m + 0.05:.2f}\n" for c, m in MIDS.items()
    )
    (tmp / "m.csv").write_text(marks)
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        code = main(["book", str(tmp / "f.csv"), "--marks", str(tmp / "m.csv"), "--at", AT,
                     "--json"])  # fmt: skip
    assert code == 0
    out = json.loads(buf.getvalue())
    cash = sum((px if side == "sell" else -px) * q * 100 - fee for _, side, q, px, fee in fills)
    held = dict.fromkeys(CONTRACTS, 0)
    for c, side, q, _, _ in fills:
        held[c] += q if side == "buy" else -q
    value = sum(held[c] * MIDS[c] * 100 for c in CONTRACTS)
    assert out["net_credit"] == pytest.approx(cash, abs=0.006)
    if out["status"] == "open":
        assert out["total_pnl"] == pytest.approx(cash + value, abs=0.011)
        assert out["total_pnl"] == pytest.approx(out["realized_pnl"] + out["open_pnl"], abs=0.011)
        assert math.isfinite(out["worst_loss_10pct"]) and out["worst_loss_10pct"] >= 0
    else:
        assert out["realized_pnl"] == pytest.approx(cash, abs=0.006)

"""The backtest grid is honest: it matches a slow, obvious per-trade reference, and no decision
can see the future (rewriting every snapshot after a moment changes nothing decided before it).

The history is the simulator's, built by ``kit.research.history`` exactly as ``kit history
build --source sim`` does; the reference below reads its Parquet files row by row and shares no
code with the grid engine except the cost schedule (``kit.execution.costs``), which is an input.
"""

from __future__ import annotations

import functools
import math
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest

from kit.execution.costs import DEFAULT_COSTS, fees_per_contract, slippage_fraction
from kit.research.grid import parse_grid, run_grid
from kit.research.grid.context import contexts
from kit.research.grid.data import read_day, summarise
from kit.research.history.band import Band, sessions
from kit.research.history.build import run_build
from kit.research.history.schema import complete_days, day_path
from kit.research.history.sim import SimHistory

NY = ZoneInfo("America/New_York")
FIRST, LAST = date(2025, 3, 3), date(2025, 3, 14)

GRID = {
    "settings": {"capital": 50_000, "band_lookback": 10, "band_min_samples": 3, "trend_days": 3},
    "grid": {
        "strategy": ["iron_condor", "short_strangle", "put_credit_spread", "call_credit_spread"],
        "entry_time": ["10:00", "13:30"],
        "dte": [0, 1],
        "strikes": ["delta:0.15", "otm_pct:0.6", "premium:1.50", "P90"],
        "wings": [15],
        "profit_target_pct": [40, "none"],
        "stop_mult": [0.8, "none"],
        "trailing": ["none", "30:10"],
        "exit_time": ["none", "15:00"],
        "exit_delta": ["none", 0.35],
        "costs": ["default"],
        "sizing": ["contracts:2"],
    },
}


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("history")
    src = SimHistory("SPX", 7, 60, Band(max_dte=1, strike_pct=0.02))
    run_build(out, "SPX", sessions(FIRST, LAST), src.make_day, src.signature, progress="off")
    return out


@pytest.fixture(scope="module")
def result(history):
    return run_grid(history, parse_grid(GRID), workers=1)


# --- the slow reference ---


def _minute(ts: datetime) -> int:
    t = ts.astimezone(NY)
    return t.hour * 60 + t.minute


@functools.cache
def _session_rows(history: Path, day: date, root: str, expiry: date) -> dict:
    """{ts: {(strike, right): row}} and {ts: spot} of one expiry on one session."""
    f = pl.read_parquet(day_path(history, "SPX", day))
    snaps: dict = {}
    spots: dict = {}
    for r in f.iter_rows(named=True):
        spots.setdefault(r["ts"], r["spot"])
        if r["root"] == root and r["expiry"] == expiry:
            snaps.setdefault(r["ts"], {})[(r["strike"], r["right"])] = r
    return {"snaps": snaps, "spots": spots}


def reference_trade(history: Path, cfg: dict, day: date, days: list[date],
                    roots: tuple[str, ...] = ("SPXW", "SPX")) -> dict | None:  # fmt: skip
    """One config on one session, snapshot by snapshot, in plain Python."""
    first = pl.read_parquet(day_path(history, "SPX", day), columns=["expiry", "root"])
    listed = sorted((p for p in set(first.unique().iter_rows()) if p[1] in roots),
                    key=lambda p: (p[0], p[1] == "SPX"))  # fmt: skip
    pick = [p for p in listed if (p[0] - day).days >= cfg["dte"]
            and not (p[0] == day and p[1] == "SPX")]  # fmt: skip
    if not pick:
        return None
    expiry, root = pick[0]
    hold = [d for d in days if day <= d <= expiry]
    sess = [_session_rows(history, d, root, expiry) for d in hold]
    entry_min = int(cfg["entry_time"][:2]) * 60 + int(cfg["entry_time"][3:])
    times = sorted(sess[0]["snaps"])
    entry_ts = next((t for t in times if _minute(t) >= entry_min), None)
    if entry_ts is None:
        return None
    chain = sess[0]["snaps"][entry_ts]
    spot = sess[0]["spots"][entry_ts]
    kind, _, val = cfg["strikes"].partition(":")

    def short(right: str) -> float | None:
        best, best_score = None, math.inf
        for (k, r), row in sorted(chain.items()):
            otm = k > spot if right == "C" else k < spot
            if r != right or not otm or not (row["bid"] > 0 and row["ask"] > 0):
                continue
            if kind == "delta":
                score = abs(abs(row["delta"]) - float(val))
            elif kind == "otm_pct":
                score = abs(k - spot * (1 + (1 if right == "C" else -1) * float(val) / 100))
            elif kind == "premium":
                score = abs((row["bid"] + row["ask"]) / 2 - float(val))
            else:
                return None  # bands are checked separately (test_band_strikes_use_past_moves)
            if score < best_score:
                best, best_score = k, score
        return best

    def wing(k: float, right: str) -> float | None:
        target = k + cfg["wings"] if right == "C" else k - cfg["wings"]
        best, best_score = None, math.inf
        for (s, r), row in sorted(chain.items()):
            beyond = s > k if right == "C" else s < k
            quoted = row["ask"] > 0 and row["bid"] >= 0
            if r == right and beyond and quoted and abs(s - target) < best_score:
                best, best_score = s, abs(s - target)
        return best if best_score <= cfg["wings"] / 2 else None

    sp = short("P") if cfg["strategy"] != "call_credit_spread" else None
    sc = short("C") if cfg["strategy"] != "put_credit_spread" else None
    legs = []  # (strike, right, ratio)
    if sp is not None:
        legs.append((sp, "P", -1))
    if sc is not None:
        legs.append((sc, "C", -1))
    if cfg["strategy"] in ("iron_condor", "put_credit_spread"):
        legs.append((wing(sp, "P"), "P", 1) if sp is not None else (None, "P", 1))
    if cfg["strategy"] in ("iron_condor", "call_credit_spread"):
        legs.append((wing(sc, "C"), "C", 1) if sc is not None else (None, "C", 1))
    need = {"iron_condor": 4, "short_strangle": 2}.get(cfg["strategy"], 2)
    if len(legs) != need or any(k is None for k, _, _ in legs):
        return None
    frac = slippage_fraction(len(legs), DEFAULT_COSTS)

    def fill(rows: dict, sign: int) -> tuple[float, list[float]] | None:
        """Net price to open (sign +1: the credit) or close (sign -1: the debit), leg mids."""
        total, mids = 0.0, []
        for k, r, ratio in legs:
            row = rows.get((k, r))
            if row is None or row["bid"] is None or row["ask"] is None:
                return None
            mid, spread = (row["bid"] + row["ask"]) / 2, row["ask"] - row["bid"]
            mids.append(mid)
            if sign > 0:  # open: sell the shorts below mid, buy the wings above
                total += (mid - frac * spread) if ratio < 0 else -(mid + frac * spread)
            else:  # close: buy the shorts back above mid, sell the wings below
                total += (mid + frac * spread) if ratio < 0 else -(mid - frac * spread)
        return total, mids

    credit, entry_mids = fill(chain, +1)
    entry_px = [m - frac * (chain[(k, r)]["ask"] - chain[(k, r)]["bid"]) * (1 if q < 0 else -1)
                for (k, r, q), m in zip(legs, entry_mids, strict=True)]  # fmt: skip
    n = cfg["contracts"]
    if credit <= 0 or credit < cfg["min_credit"]:
        return None
    fees = sum(fees_per_contract(root, DEFAULT_COSTS, p) for p in entry_px) * n
    am = root == "SPX"
    trading = [i for i, d in enumerate(hold) if not (am and d == expiry)]
    # exit_time applies on the expiry's last trading session, if the history reaches it
    last_session = trading[-1] if hold[-1] == expiry else None
    peak = -math.inf
    for i in trading:
        for t in sorted(sess[i]["snaps"]):
            if i == 0 and t <= entry_ts:
                continue
            got = fill(sess[i]["snaps"][t], -1)
            if got is None:
                continue
            debit, mids = got
            profit = credit - debit
            peak = max(peak, profit)
            floor = -math.inf
            for trig, lock in cfg["tiers"]:
                if peak >= trig / 100 * credit:
                    floor = max(floor, lock / 100 * credit)
            deltas = [abs(sess[i]["snaps"][t][(k, r)]["delta"]) for k, r, q in legs if q < 0]
            reasons = [
                ("stop", cfg["stop_mult"] is not None
                 and debit >= credit * (1 + cfg["stop_mult"])),
                ("trailing", profit <= floor),
                ("profit_target", cfg["pt"] is not None
                 and debit <= credit * (1 - cfg["pt"] / 100)),
                ("exit_delta", cfg["exit_delta"] is not None and max(deltas) >= cfg["exit_delta"]),
                ("exit_time", cfg["exit_min"] is not None and i == last_session
                 and _minute(t) >= cfg["exit_min"]),
                ("exit_dte", cfg["exit_dte"] is not None and i > 0
                 and (expiry - hold[i]).days <= cfg["exit_dte"]),
            ]  # fmt: skip
            hit = next((name for name, yes in reasons if yes), None)
            if hit:
                fees += sum(fees_per_contract(root, DEFAULT_COSTS, m) for m in mids) * n
                return {"entry_ts": entry_ts, "exit_ts": t, "exit_reason": hit, "credit": credit,
                        "pnl": (credit - debit) * 100 * n - fees,
                        "strikes": sorted(k for k, _, _ in legs)}  # fmt: skip
    if hold[-1] != expiry:
        return {"exit_reason": "end_of_data"}
    spots = sess[-1]["spots"]
    settle_ts = min(spots) if am else max(spots)
    s = spots[settle_ts]
    owed = sum(-q * (max(s - k, 0) if r == "C" else max(k - s, 0)) for k, r, q in legs)
    return {
        "entry_ts": entry_ts,
        "exit_ts": settle_ts,
        "exit_reason": "expiry",
        "credit": credit,
        "pnl": (credit - owed) * 100 * n - fees,
        "strikes": sorted(k for k, _, _ in legs),
    }


def _cfg(row: dict) -> dict:
    num = lambda v: None if v == "none" else float(v)  # noqa: E731
    parts = [] if row["trailing"] == "none" else row["trailing"].split(",")
    tiers = [tuple(float(x) for x in part.split(":")) for part in parts]
    exit_min = None if row["exit_time"] == "none" else (
        int(row["exit_time"][:2]) * 60 + int(row["exit_time"][3:]))  # fmt: skip
    return {"strategy": row["strategy"], "entry_time": row["entry_time"], "dte": int(row["dte"]),
            "strikes": row["strikes"], "wings": float(row["wings"]),
            "min_credit": float(row["min_credit"]), "pt": num(row["profit_target_pct"]),
            "stop_mult": num(row["stop_mult"]), "exit_delta": num(row["exit_delta"]),
            "tiers": tiers, "exit_min": exit_min, "contracts": 2,
            "exit_dte": None if row["exit_dte"] == "none" else int(row["exit_dte"])}  # fmt: skip


def test_grid_rows_match_a_slow_per_trade_reference(history, result):
    days = complete_days(history, "SPX")
    results = result.results
    # a spread of configs: every strategy, both DTEs, each non-band rule, every exit kind
    picks = []
    rng = np.random.default_rng(3)
    for strategy in GRID["grid"]["strategy"]:
        for dte in ("0", "1"):
            for rule in ("delta:0.15", "otm_pct:0.6", "premium:1.50"):
                rows = results.filter((pl.col("strategy") == strategy) & (pl.col("dte") == dte)
                                      & (pl.col("strikes") == rule))  # fmt: skip
                picks.append(int(rows["config_id"][int(rng.integers(rows.height))]))
    checked = reasons = 0
    seen_reasons = set()
    for cid in picks:
        row = results.filter(pl.col("config_id") == cid).row(0, named=True)
        cfg = _cfg(row)
        trades = result.trades.filter(pl.col("config_id") == cid)
        expected = {}
        for d in days:
            ref = reference_trade(history, cfg, d, days)
            if ref is not None and ref["exit_reason"] != "end_of_data":
                expected[d] = ref
        got = {t["date"]: t for t in trades.iter_rows(named=True)
               if t["exit_reason"] != "end_of_data"}  # fmt: skip
        assert sorted(got) == sorted(expected), f"config {cid}: trade days differ"
        for d, ref in expected.items():
            t = got[d]
            where = f"config {cid} on {d}"
            assert t["entry_ts"] == ref["entry_ts"], where
            assert t["exit_ts"] == ref["exit_ts"], where
            assert t["exit_reason"] == ref["exit_reason"], where
            assert sorted(float(x) for x in t["strikes"].split("/")) == ref["strikes"], where
            assert t["credit"] == pytest.approx(ref["credit"], abs=1e-9), where
            assert t["pnl"] == pytest.approx(ref["pnl"], abs=1e-6), where
            seen_reasons.add(ref["exit_reason"])
            checked += 1
        # the row's statistics from its own trade list, the obvious way
        pnl = trades["pnl"].to_numpy()
        assert row["trades"] == len(pnl)
        if len(pnl):
            reasons += 1
            assert row["total_pnl"] == pytest.approx(pnl.sum())
            assert row["win_rate"] == pytest.approx((pnl > 0).mean() * 100)
            assert row["var_95"] == pytest.approx(-np.quantile(pnl, 0.05))
            gross_loss = -pnl[pnl <= 0].sum()
            if gross_loss > 0:
                assert row["profit_factor"] == pytest.approx(pnl[pnl > 0].sum() / gross_loss)
    assert checked >= 100, checked
    assert {"profit_target", "expiry", "stop"} <= seen_reasons, seen_reasons


def test_am_settled_monthlies_settle_at_the_expiry_open(tmp_path):
    """SPX (AM-settled) monthlies: exits only up to the last trading session before expiry
    (2025-06-18: the 19th is Juneteenth), settlement at the expiry session's first spot."""
    src = SimHistory("SPX", 5, 60, Band(max_dte=5, strike_pct=0.02, daily_dte=0))
    run_build(tmp_path, "SPX", sessions(date(2025, 6, 16), date(2025, 6, 23)), src.make_day,
              src.signature, progress="off")  # fmt: skip
    doc = {"settings": {"roots": ["SPX"]}, "grid": {
        "strategy": ["iron_condor", "short_strangle"], "entry_time": ["10:00", "15:00"],
        "dte": [1], "strikes": ["delta:0.15", "otm_pct:0.5"], "wings": [25],
        "profit_target_pct": [60, "none"], "stop_mult": [1.5, "none"],
        "exit_time": ["none", "15:30"], "exit_dte": ["none", 2],
        "sizing": ["contracts:2"]}}  # fmt: skip
    res = run_grid(tmp_path, parse_grid(doc), workers=1)
    days = complete_days(tmp_path, "SPX")
    first_open = pl.read_parquet(day_path(tmp_path, "SPX", date(2025, 6, 20))).sort("ts")
    settled = res.trades.filter(pl.col("exit_reason") == "expiry")
    assert settled.height > 0 and res.trades.height >= 20
    assert (settled["exit_spot"] == first_open["spot"][0]).all()
    assert (settled["exit_ts"] == first_open["ts"][0]).all()
    last_trading = datetime(2025, 6, 18, 16, 0, tzinfo=NY).astimezone(UTC)
    assert "exit_dte" in set(res.trades["exit_reason"])
    assert (res.trades.filter(pl.col("exit_reason") != "expiry")["exit_ts"] <= last_trading).all()
    for row in res.results.iter_rows(named=True):
        cfg = _cfg(row)
        got = {t["date"]: t for t in res.trades.filter(
            pl.col("config_id") == row["config_id"]).iter_rows(named=True)}  # fmt: skip
        for d in days:
            ref = reference_trade(tmp_path, cfg, d, days, roots=("SPX",))
            if ref is None:
                assert d not in got
                continue
            t = got[d]
            assert (t["exit_ts"], t["exit_reason"]) == (ref["exit_ts"], ref["exit_reason"])
            assert t["pnl"] == pytest.approx(ref["pnl"], abs=1e-6)


def test_statistics_match_direct_formulas(result):
    """Equity, drawdown, Sharpe, Sortino, CAGR and the losing streak of the best config,
    recomputed with loops from its trade list."""
    res, capital = result.results, 50_000.0
    best = res.sort("trades", "total_pnl", descending=True).row(0, named=True)
    trades = result.trades.filter(pl.col("config_id") == best["config_id"]).sort("entry_ts")
    days = result.days
    daily = dict.fromkeys(days, 0.0)
    streak = longest = 0
    for t in trades.iter_rows(named=True):
        daily[t["exit_ts"].astimezone(NY).date()] += t["pnl"]
        streak = streak + 1 if t["pnl"] <= 0 else 0
        longest = max(longest, streak)
    equity, peak, dd, dd_pct = capital, capital, 0.0, 0.0
    for d in days:
        equity += daily[d]
        peak = max(peak, equity)
        dd, dd_pct = max(dd, peak - equity), max(dd_pct, (peak - equity) / peak * 100)
    r = np.array([daily[d] for d in days]) / capital
    assert best["max_dd"] == pytest.approx(dd)
    assert best["max_dd_pct"] == pytest.approx(dd_pct)
    assert best["max_losing_streak"] == longest
    assert best["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252))
    downside = math.sqrt(np.mean(np.minimum(r, 0) ** 2))
    if downside > 0:
        assert best["sortino"] == pytest.approx(r.mean() / downside * math.sqrt(252))
    assert best["cagr"] == pytest.approx(((equity / capital) ** (252 / len(days)) - 1) * 100)


def test_defined_risk_max_loss_is_width_minus_credit(result):
    t = result.trades.filter(pl.col("strategy") == "iron_condor")
    width = np.maximum(t["short_put"] - t["long_put"], t["long_call"] - t["short_call"])
    expected = (width - t["credit"]) * 100 * t["contracts"]
    assert np.allclose(t["max_loss"].to_numpy(), expected.to_numpy())


def test_band_strikes_use_past_moves_only(history, result):
    """P90: the put sits at or below spot x (1 + the 10th percentile of the past sessions'
    moves from the entry time to the close), the call at or above the 90th."""
    days = complete_days(history, "SPX")
    rows = result.results.filter((pl.col("strikes") == "P90") & (pl.col("dte") == "0")
                                 & (pl.col("strategy") == "short_strangle")
                                 & (pl.col("entry_time") == "10:00"))  # fmt: skip
    trades = result.trades.filter(pl.col("config_id") == rows["config_id"][0])
    assert trades.height >= 3
    for t in trades.iter_rows(named=True):
        i = days.index(t["date"])
        moves = []
        for d in days[max(0, i - 10) : i]:
            f = pl.read_parquet(day_path(history, "SPX", d), columns=["ts", "spot"]).sort("ts")
            at = f.filter(pl.col("ts").dt.convert_time_zone("America/New_York").dt.hour() >= 10)
            moves.append(f["spot"][-1] / at["spot"][0] - 1)
        assert len(moves) >= 3  # the grid's band_min_samples: no earlier trade possible
        lo, hi = np.quantile(moves, 0.10), np.quantile(moves, 0.90)
        assert t["short_put"] <= t["entry_spot"] * (1 + lo)
        assert t["short_call"] >= t["entry_spot"] * (1 + hi)


def test_context_reads_only_the_past(history):
    """Each session's regime, IV rank, trend and bands are the same whether or not the later
    sessions exist."""
    days = complete_days(history, "SPX")
    summaries = [summarise(read_day(str(history), "SPX", d), d) for d in days]
    keys = {(600, 0, 90.0), (810, 1, 95.0)}
    full = contexts(summaries, keys, lookback=10, min_samples=2, trend_days=3)
    for i in range(len(days)):
        part = contexts(summaries[: i + 1], keys, lookback=10, min_samples=2, trend_days=3)[-1]
        c = full[i]
        assert (part.vix_regime, part.trend, part.bands) == (c.vix_regime, c.trend, c.bands)
        assert part.iv_rank == c.iv_rank or (math.isnan(part.iv_rank) and math.isnan(c.iv_rank))
    assert any(c.bands for c in full) and any(c.trend for c in full)


def _rewrite_after(src: Path, dst: Path, cut: datetime) -> None:
    """Copy a history, scrambling every quote, Greek, spot and VIX stamped after ``cut``."""
    shutil.copytree(src, dst)
    rng = np.random.default_rng(11)
    for d in complete_days(dst, "SPX"):
        path = day_path(dst, "SPX", d)
        f = pl.read_parquet(path)
        after = (f["ts"] > cut).to_numpy()
        if not after.any():
            continue
        f = f.with_columns(
            pl.when(pl.Series(after)).then(pl.col(c) * pl.Series(rng.uniform(0.2, 3.0, len(f))))
            .otherwise(pl.col(c)).alias(c)
            for c in ("bid", "spot", "vix")
        ).with_columns(
            pl.when(pl.Series(after)).then(pl.col("bid") * 1.5 + 0.05).otherwise(pl.col("ask"))
            .alias("ask"),
            pl.when(pl.Series(after)).then(pl.col("delta") * 0.1).otherwise(pl.col("delta"))
            .alias("delta"),
        )  # fmt: skip
        meta = pl.read_parquet_schema(path)  # schema only: write_day keeps the column types
        assert list(meta) == f.columns
        f.write_parquet(path)


def test_no_look_ahead_rewriting_the_future_changes_no_earlier_decision(history, result, tmp_path):
    days = complete_days(history, "SPX")
    cut = datetime.combine(days[6], datetime.min.time(), NY).replace(hour=12, minute=7)
    cut = cut.astimezone(UTC)
    changed = tmp_path / "changed"
    _rewrite_after(history, changed, cut)
    after = run_grid(changed, parse_grid(GRID), workers=1)
    key = ["config_id", "date"]
    entry_cols = ["entry_ts", "strikes", "credit", "contracts"]
    exit_cols = ["exit_ts", "exit_reason", "pnl"]
    before_t = result.trades.filter(pl.col("entry_ts") <= cut)
    after_t = after.trades.filter(pl.col("entry_ts") <= cut)
    assert before_t.height > 500
    assert before_t.select(key + entry_cols).sort(key).equals(after_t.select(key + entry_cols)
                                                             .sort(key))  # fmt: skip
    done_before = before_t.filter(pl.col("exit_ts") <= cut).select(key + exit_cols).sort(key)
    done_after = after_t.filter(pl.col("exit_ts") <= cut).select(key + exit_cols).sort(key)
    assert done_before.height > 300
    assert done_before.equals(done_after)
    # and the rewrite did change what came after the cut
    later = lambda t: t.filter(pl.col("entry_ts") > cut).select(key + entry_cols).sort(key)  # noqa: E731
    assert not later(result.trades).equals(later(after.trades))
    assert timedelta(0) < cut - before_t["entry_ts"].min()


def test_context_rules_on_a_known_series():
    """IV rank, VIX regime and trend from 30 synthetic sessions, against the desk's functions
    fed only the previous closes and the opening VIX; the filters then gate configs."""
    from kit.research.grid.data import DaySummary
    from kit.research.grid.engine import allowed
    from kit.research.grid.plan import compile_grid
    from kit.signals.regimes import iv_rank, vix_regimes

    days = sessions(date(2025, 1, 2), date(2025, 3, 31))[:30]
    rng = np.random.default_rng(5)
    closes = 5000 * np.cumprod(1 + rng.normal(0.002, 0.01, 30))
    vix_open, vix_close = rng.uniform(11, 35, 30), rng.uniform(11, 35, 30)
    minute = np.arange(570, 961)
    summaries = [
        DaySummary(s.day, minute, np.linspace(closes[i] * 0.999, closes[i], minute.size),
                   np.linspace(vix_open[i], vix_close[i], minute.size))
        for i, s in enumerate(days)
    ]  # fmt: skip
    ctx = contexts(summaries, set(), trend_days=5, trend_band_pct=0.5)
    for i, c in enumerate(ctx):
        assert c.vix_regime == vix_regimes(np.append(vix_close[:i], vix_open[i]))[-1]
        if i >= 20:
            assert c.iv_rank == pytest.approx(iv_rank(vix_close[:i], vix_open[i]))
        else:
            assert math.isnan(c.iv_rank)
        if i < 5:
            assert c.trend is None
        else:
            move = (closes[i - 1] / closes[i - 5 : i].mean() - 1) * 100
            assert c.trend == ("up" if move > 0.5 else "down" if move < -0.5 else "sideways")
    assert {c.trend for c in ctx[5:]} >= {"up"}
    grid = parse_grid({"grid": {"iv_rank": ["any", "0-40", "40-100"],
                                "vix_regime": ["any", "high,extreme"]}})  # fmt: skip
    plan = compile_grid(grid)
    gated = 0
    for c in ctx:
        ok = allowed(plan, c)
        for k, row in enumerate(grid.rows):
            rank_ok = row["iv_rank"] == "any" or (not math.isnan(c.iv_rank) and (
                c.iv_rank <= 40 if row["iv_rank"] == "0-40" else c.iv_rank >= 40))  # fmt: skip
            vix_ok = row["vix_regime"] == "any" or c.vix_regime in ("high", "extreme")
            assert ok[k] == (rank_ok and vix_ok)
            gated += not ok[k]
    assert gated > 0


def test_a_hold_past_the_history_end_is_marked_at_its_last_quote(history, result):
    days = complete_days(history, "SPX")
    doc = {**GRID, "grid": {**GRID["grid"], "dte": [1], "profit_target_pct": ["none"],
                            "stop_mult": ["none"], "trailing": ["none"], "exit_time": ["none"],
                            "exit_delta": ["none"]}}  # fmt: skip
    cut = run_grid(history, parse_grid(doc), workers=1, date_to=days[-3])
    open_ = cut.trades.filter(pl.col("exit_reason") == "end_of_data")
    assert open_.height > 0 and set(open_["date"]) == {days[-3]}
    last = pl.read_parquet(day_path(history, "SPX", days[-3]), columns=["ts"])["ts"].max()
    assert (open_["exit_ts"] <= last).all() and open_["pnl"].is_finite().all()
    # the same entries as in the full history, where they are held to expiry instead
    full = run_grid(history, parse_grid(doc), workers=1)
    key, entry = ["config_id", "date"], ["entry_ts", "strikes", "credit", "contracts"]
    same = full.trades.join(open_.select(key), on=key).sort(key)
    assert same.select(key + entry).equals(open_.select(key + entry).sort(key))
    assert set(same["exit_reason"]) == {"expiry"}

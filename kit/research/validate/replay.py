"""A recorded day, as the store holds it, and the same day replayed through the same desk.

The live side is read straight from the store: the audit trail (decisions, rule actions, order
states, fills with the quote each met), alerts, positions, risk snapshots and SPX ticks. The
replay side exports the day's recorded ticks to a replay recording (plus the chain inputs the
builder kept: IV history and open interest, :mod:`kit.adapters.replay.source`), runs the
autopilot on it with the same rules and strategy on a stepped clock, recorded to a scratch store,
and reads that store back the same way: both timelines come out of one reader, so they compare
field for field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from kit.adapters.replay.feed import SCHEMA
from kit.adapters.replay.source import CHAIN_INPUTS, sidecar_path
from kit.core.clock import from_ns, us_session
from kit.core.symbology import from_occ
from kit.store import Store, open_store

DESK = "desk"  # the recorder's desk name (RecorderConfig.desk): its state documents' prefix


@dataclass
class Timeline:
    """One day as the store holds it: what was decided and done, and how P&L went."""

    day: date
    records: list[dict[str, Any]]  # audit records (decision, order, fill) as JSON, by time
    alerts: list[dict[str, Any]]  # alert records, by sequence
    position_pnl: dict[str, float]  # realised P&L per position (dollars, after fees)
    pnl_curve: pl.DataFrame = field(default_factory=pl.DataFrame)  # ts, pnl (realised + open)

    @property
    def fills(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == "fill"]

    @property
    def pnl(self) -> float:
        """The day's P&L over its positions: the cash of their fills (fees included) once
        flat, the last recorded P&L of one still held."""
        return round(sum(self.position_pnl.values()), 2)

    def until(self, ts_ns: int) -> Timeline:
        """This timeline cut at ``ts_ns`` (a replay runs to the close; a recording stopped
        earlier is compared only as far as it goes)."""
        return Timeline(self.day, [r for r in self.records if r["ts_ns"] <= ts_ns],
                        [a for a in self.alerts if a["ts_ns"] <= ts_ns], self.position_pnl,
                        self.pnl_curve.filter(pl.col("ts") <= from_ns(ts_ns)))  # fmt: skip


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC span that holds ``day``'s session (from 4 hours before the open to 4 hours
    after the close: pre-open warm-up and the close's settlement included)."""
    session = us_session(day)
    if session is None:
        raise ValueError(f"{day} is not a US trading session")
    return (session.open - timedelta(hours=4)).astimezone(UTC), (
        session.close + timedelta(hours=4)
    ).astimezone(UTC)


def recorded_days(store: Store) -> list[date]:
    """Sessions with recorded decisions or fills, oldest first."""
    rows = store.query("SELECT DISTINCT ts FROM audit WHERE kind IN ('decision', 'fill')")
    days = {us_day(ts) for ts in rows["ts"].to_list()}
    return sorted(d for d in days if d is not None)


def us_day(ts: datetime) -> date | None:
    """The New York session day a UTC instant belongs to."""
    from kit.core.clock import NEW_YORK

    return ts.astimezone(NEW_YORK).date()


def load_timeline(store: Store, day: date, desk: str = DESK) -> Timeline:
    """``day`` as recorded in ``store``."""
    start, end = day_bounds(day)
    span = {"a": start, "b": end}
    audit = store.query("SELECT record FROM audit WHERE ts >= :a AND ts < :b AND kind <> 'feed'",
                        span)  # fmt: skip
    records = [json.loads(r) if isinstance(r, str) else r for r in audit["record"].to_list()]
    records.sort(key=lambda r: r["ts_ns"])  # stable: rows of one instant keep their order
    alerts = store.query(
        "SELECT seq, triggered_at, severity, rule, position_id, message FROM alerts "
        "WHERE desk = :d AND triggered_at >= :a AND triggered_at < :b ORDER BY seq",
        {"d": desk, **span},
    )
    alert_rows = [
        {"kind": "alert", "ts_ns": _ns(r["triggered_at"]), "seq": r["seq"], "rule": r["rule"],
         "severity": r["severity"], "position_id": r["position_id"], "message": r["message"]}
        for r in alerts.iter_rows(named=True)
    ]  # fmt: skip
    fills = store.query(
        "SELECT position_id, sum(cash_flow) AS pnl FROM fills WHERE ts >= :a AND ts < :b "
        "AND position_id IS NOT NULL GROUP BY position_id",
        span,
    )
    pnl = {r["position_id"]: round(float(r["pnl"]), 2) for r in fills.iter_rows(named=True)}
    still_open = store.query(  # a day stopped with a position held: its last P&L, not its cash
        "SELECT s.position_id, s.pnl FROM risk_snapshots s JOIN positions p "
        "ON p.id = s.position_id WHERE p.status = 'open' AND s.ts = (SELECT max(t.ts) "
        "FROM risk_snapshots t WHERE t.position_id = s.position_id AND t.ts >= :a "
        "AND t.ts < :b)",
        span,
    )
    for r in still_open.iter_rows(named=True):
        if r["pnl"] is not None:
            pnl[r["position_id"]] = round(float(r["pnl"]), 2)
    for r in records:
        if r["kind"] == "fill" and r["client_id"] != "settlement":
            quote = recorded_quote(store, r["contract"], r["ts_ns"])
            r["recorded_bid"], r["recorded_ask"], r["recorded_delta"] = quote
    return Timeline(day, records, alert_rows, pnl, pnl_curve(store, day))


def recorded_quote(store: Store, contract: str, ts_ns: int) -> tuple[Any, Any, Any]:
    """The last bid, ask (and the desk's delta) the store holds for ``contract`` at or before
    ``ts_ns``: what a replay of the recording sees at that instant."""
    row = store.query(
        "SELECT bid, ask, delta FROM quotes WHERE contract = :c AND ts <= :t AND ts >= :a "
        "AND (bid IS NOT NULL OR ask IS NOT NULL) ORDER BY ts DESC LIMIT 1",
        {"c": contract, "t": from_ns(ts_ns), "a": from_ns(ts_ns - 86_400 * 10**9)},
    )
    return (row["bid"][0], row["ask"][0], row["delta"][0]) if row.height else (None, None, None)


def pnl_curve(store: Store, day: date) -> pl.DataFrame:
    """P&L through the day, once a second: the open positions' P&L (the portfolio snapshot)
    plus the realised P&L of positions already closed."""
    start, end = day_bounds(day)
    span = {"a": start, "b": end}
    open_pnl = store.query(
        "SELECT ts, pnl FROM risk_snapshots WHERE position_id IS NULL AND ts >= :a AND ts < :b "
        "ORDER BY ts",
        span,
    )
    closed = store.query(
        "SELECT closed_at AS ts, realized_pnl FROM trade_logs WHERE closed_at >= :a "
        "AND closed_at < :b ORDER BY closed_at",
        span,
    )
    if open_pnl.is_empty():
        return pl.DataFrame(schema={"ts": pl.Datetime("us", "UTC"), "pnl": pl.Float64})
    done = closed.with_columns(pl.col("realized_pnl").fill_null(0.0).cum_sum().alias("realised"))
    curve = open_pnl.sort("ts").join_asof(done.select("ts", "realised").sort("ts"), on="ts")
    return curve.select("ts", (pl.col("pnl").fill_null(0.0) + pl.col("realised").fill_null(0.0))
                        .round(2).alias("pnl"))  # fmt: skip


def spot_curve(store: Store, day: date, symbol: str = "SPX") -> pl.DataFrame:
    """The underlying's recorded ticks through the day (ts, price)."""
    start, end = day_bounds(day)
    return store.query(
        "SELECT ts, price FROM quotes WHERE contract = :s AND ts >= :a AND ts < :b ORDER BY ts",
        {"s": symbol, "a": start, "b": end},
    )


def export_day(store: Store, day: date, path: str | Path, desk: str = DESK) -> int:
    """Write ``day``'s recorded ticks as a replay recording at ``path`` (and the chain inputs
    the builder kept beside it); returns the number of events. Raises ValueError when the store
    holds no ticks for that day."""
    start, end = day_bounds(day)
    # option prints are left out: the store keeps no print size, and the desk only notes them
    rows = store.query(
        "SELECT ts, contract, underlying, bid, ask, bid_size, ask_size, price FROM quotes "
        "WHERE ts >= :a AND ts < :b AND (contract = underlying OR bid IS NOT NULL "
        "OR ask IS NOT NULL) ORDER BY ts",
        {"a": start, "b": end},
    )
    if rows.is_empty():
        raise ValueError(f"the store holds no ticks for {day}: record the day with --db "
                         "(kit run --auto --db, kit serve --db), with ticks kept")  # fmt: skip
    occ = rows.filter(pl.col("contract") != pl.col("underlying"))["contract"].unique().to_list()
    parts = [from_occ(s) for s in occ]
    contracts = pl.DataFrame(
        {"contract": occ, "root": [c.root for c in parts], "expiry": [c.expiry for c in parts],
         "strike": [c.strike for c in parts], "right": [c.right.value for c in parts]},
        schema={"contract": pl.Utf8, "root": pl.Utf8, "expiry": pl.Date, "strike": pl.Float64,
                "right": pl.Utf8},
    )  # fmt: skip
    is_tick = pl.col("contract") == pl.col("underlying")
    frame = (
        rows.join(contracts, on="contract", how="left", maintain_order="left")
        .with_columns(
            pl.when(is_tick).then(pl.lit("tick")).otherwise(pl.lit("quote")).alias("kind"),
            pl.col("ts").dt.epoch("ns").alias("ts_ns"),
            pl.when(is_tick).then(pl.col("contract")).alias("symbol"),
            pl.lit(None, pl.Float64).alias("size"),
        )
        .select([pl.col(name).cast(dtype) for name, dtype in SCHEMA.items()])
    )  # fmt: skip
    frame.write_parquet(path)
    inputs = store.load_state(f"{desk}.{CHAIN_INPUTS}.{day.isoformat()}")
    if inputs is not None:
        sidecar_path(path).write_text(json.dumps(inputs))
    return frame.height


def recorded_setup(store: Store, day: date, desk: str = DESK) -> tuple[Any, Any]:
    """The autopilot strategy (an :class:`~kit.app.autopilot.AutoConfig`) and the rules a
    recorded day ran under, as the autopilot kept them; (None, None) for a day it did not run
    (``kit serve``: entries by hand)."""
    from kit.app.autopilot import CONFIG_DOC, config_from_doc
    from kit.risk.rules import load_rules

    doc = store.load_state(f"{desk}.{CONFIG_DOC}.{day.isoformat()}")
    if doc is None:
        return None, None
    return config_from_doc(doc["strategy"]), load_rules(overrides=doc["rules"])


def recorded_start(store: Store, day: date, desk: str = DESK) -> time | None:
    """The New York time the recorded autopilot run began: the replay's clock starts there,
    not at the first tick, so its warm-up, ladder steps and heartbeats fall on the same
    instants as the live run's."""
    from kit.app.autopilot import CONFIG_DOC

    doc = store.load_state(f"{desk}.{CONFIG_DOC}.{day.isoformat()}") or {}
    return time.fromisoformat(doc["start"]) if doc.get("start") else None


async def replay_day(
    store: Store,
    day: date,
    workdir: str | Path,
    *,
    rules: Any = None,
    config: Any = None,
) -> Timeline:
    """Replay ``day`` from ``store`` through the autopilot's desk, stepped as fast as the desk
    goes, recorded to a scratch store in ``workdir``; returns the replay's timeline.

    ``rules`` and ``config`` (an :class:`~kit.app.autopilot.AutoConfig`) default to those the
    day recorded (:func:`recorded_setup`); a day without them (traded by hand under ``kit
    serve``) is replayed with the default rules and no autopilot entry: only the rules act."""
    from kit.app.autopilot import AutoConfig, run_auto
    from kit.app.build import FeedSpec

    kept_config, kept_rules = recorded_setup(store, day)
    if config is None:
        config = kept_config or AutoConfig(first_entry=time(23, 59), last_entry=time(0, 0))
    rules = rules if rules is not None else kept_rules
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    recording = work / f"{day.isoformat()}.parquet"
    export_day(store, day, recording)
    db = work / f"replay-{day.isoformat()}.duckdb"
    db.unlink(missing_ok=True)
    start = recorded_start(store, day)
    await run_auto(day=day, speed=None, rules=rules, config=config, db=str(db),
                   feed=FeedSpec("replay", recording), start=start)  # fmt: skip
    with open_store(str(db)) as replayed:
        timeline = load_timeline(replayed, day)
    end = store.query(
        "SELECT max(ts) AS t FROM quotes WHERE ts >= :a AND ts < :b",
        dict(zip("ab", day_bounds(day), strict=True)),
    )["t"][0]
    live_end = store.query("SELECT max(ts) AS t FROM audit WHERE ts >= :a AND ts < :b",
                           dict(zip("ab", day_bounds(day), strict=True)))["t"][0]  # fmt: skip
    cut = max(t for t in (end, live_end) if t is not None)
    return timeline.until(_ns(cut) + 1_000_000_000)


def _ns(ts: datetime) -> int:
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000

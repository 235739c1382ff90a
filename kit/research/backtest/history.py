"""An options-history session as a replay recording: what the desk's replay feed plays.

Why convert rather than add a feed: the replay feed, its chain source and the builder's
``replay:PATH`` already run a recorded day through the desk on a stepped clock; a history
session is the same kind of data (quotes at snapshot times), so it becomes a recording
(:data:`kit.adapters.replay.feed.SCHEMA`) plus its chain-inputs sidecar (open interest, and an
IV history of the VIX closes before the day: IV rank as the desk computes it live).

Only the expiry the strategy trades is kept (the one the grid picks: the first at least
``dte`` calendar days out, so the desk's autopilot finds it as its only, 0th, expiry), and of
each contract only the snapshots whose bid or ask changed, as a live
feed sends them: a 0DTE session is ~30k rows instead of the history's ~760k. Sizes are not in
the history: each side is quoted ``SIZE`` contracts (the paper broker fills against sizes).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl

from kit.adapters.replay.feed import SCHEMA
from kit.adapters.replay.source import merge_chain_inputs, sidecar_path
from kit.core.model import Contract
from kit.research.grid.data import listed_expiries, pick_expiry
from kit.research.history.schema import HistoryError, complete_days, day_path

SIZE = 50.0  # contracts quoted on each side (the history has no sizes)
IV_DAYS = 252  # VIX closes before the day kept as its IV history


def recording(history: str | Path, underlying: str, day: date, out: Path, *, dte: int = 0,
              roots: tuple[str, ...] = ()) -> tuple[Path, str]:  # fmt: skip
    """Write ``day``'s recording (and sidecar) under ``out``: the expiry the grid would trade
    (:func:`kit.research.grid.data.pick_expiry`, ``dte`` calendar days out, of ``roots`` or
    any). Returns the Parquet path and the expiry's root."""
    path = day_path(history, underlying, day)
    if not path.is_file():
        raise HistoryError(f"{history}: no {underlying} session {day} (kit history build)")
    frame = pl.read_parquet(path, columns=["ts", "root", "expiry", "strike", "right", "bid",
                                           "ask", "oi", "spot", "vix"])  # fmt: skip
    listed = listed_expiries(frame if not roots else frame.filter(pl.col("root").is_in(roots)))
    picked = pick_expiry(listed, day, dte)
    if picked is None:
        raise HistoryError(f"{path}: no expiry {dte} calendar days out")
    expiry, root = picked
    ts_ns = (pl.col("ts").dt.epoch("us") * 1000).alias("ts_ns")
    chain = frame.filter((pl.col("root") == root) & (pl.col("expiry") == expiry))
    chain = chain.filter(pl.col("bid").is_not_null() & pl.col("ask").is_not_null()
                         & (pl.col("ask") > 0) & (pl.col("bid") <= pl.col("ask")))  # fmt: skip
    key = ["strike", "right"]
    changed = (pl.col("bid") != pl.col("bid").shift(1).over(key)) | (
        pl.col("ask") != pl.col("ask").shift(1).over(key)) | pl.col("bid").shift(1).over(
        key).is_null()  # fmt: skip
    quotes = chain.sort("ts").filter(changed).select(
        pl.lit("quote").alias("kind"), ts_ns, "root", "expiry", "strike", "right", "bid", "ask",
        pl.lit(SIZE).alias("bid_size"), pl.lit(SIZE).alias("ask_size"),
    )  # fmt: skip
    marks = frame.group_by("ts").agg(pl.col("spot").first(), pl.col("vix").first()).sort("ts")
    ticks = [marks.filter(pl.col(col).is_not_null()).select(
        pl.lit("tick").alias("kind"), ts_ns, pl.lit(sym).alias("symbol"),
        pl.col(col).alias("price"))
        for sym, col in ((underlying, "spot"), ("VIX", "vix"))]  # fmt: skip
    rows = _conform(pl.concat([quotes, *ticks], how="diagonal"))
    target = out / f"{underlying}-{day:%Y-%m-%d}.parquet"
    rows.sort("ts_ns", maintain_order=True).write_parquet(target)
    oi = chain.filter(pl.col("ts") == chain["ts"].min())
    open_interest = {Contract(r, e, k, right): float(v) for r, e, k, right, v in
                     oi.select("root", "expiry", "strike", "right", "oi").iter_rows()
                     if v is not None}  # fmt: skip
    doc = merge_chain_inputs(None, {underlying: vix_closes(history, underlying, day)},
                             open_interest)  # fmt: skip
    sidecar_path(target).write_text(json.dumps(doc))
    return target, root


def _conform(frame: pl.DataFrame) -> pl.DataFrame:
    """The recording schema's columns, types and order (absent ones null)."""
    return frame.select(
        (pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c)
        for c, t in SCHEMA.items()
    )


def vix_closes(history: str | Path, underlying: str, day: date) -> list[float]:
    """The VIX at each earlier session's last snapshot (up to :data:`IV_DAYS`), then the day's
    first: the IV history behind IV rank, with no look-ahead. Never empty."""
    out: list[float] = []
    for d in complete_days(history, underlying, date_to=day)[-IV_DAYS - 1 :]:
        frame = pl.scan_parquet(day_path(history, underlying, d)).select("ts", "vix")
        pick = pl.col("ts").max() if d < day else pl.col("ts").min()
        v = frame.filter(pl.col("ts") == frame.select(pick).collect().item()).select(
            pl.col("vix").first()).collect().item()  # fmt: skip
        if v is not None:
            out.append(float(v))
    return out or [float("nan")]

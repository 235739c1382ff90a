"""A simulated chain at any instant, and written as CBOE's ``quotedata.csv``.

:func:`market_at` runs the seeded market from the session's open to an instant in vectorised
blocks (a whole session in a fraction of a second); :func:`simulated_chain` is the chain there as
the polars table every signal reads; :func:`write_cboe` writes it in CBOE's delayed-quotes format
(3 header lines, the 22 columns, ``Tue Mar 12 2024`` expirations, IV as a decimal, Delta and Gamma
to 4 decimals, integer open interest), so every tool that reads a real download
(:func:`kit.signals.chains.read_cboe`, ``kit gex``) reads a simulated one the same way.

Unless a seed is given, it is derived from the date (``YYYYMMDD``): each day is its own market,
and the same day is the same market every time.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import replace
from datetime import date, datetime, time

import numpy as np
import polars as pl

from kit.adapters.sim.market import MarketSim, SimConfig
from kit.core.clock import NEW_YORK, to_ns, us_session
from kit.core.pricing import greeks
from kit.signals.chains import Chain, sim_chain, years_to_expiry

NAMES = {"SPX": "Standard & Poors 500 Index", "SPY": "SPDR S&P 500 ETF Trust",
         "NDX": "Nasdaq 100 Index"}  # fmt: skip
HEADER = ("Expiration Date,Calls,Last Sale,Net,Bid,Ask,Volume,IV,Delta,Gamma,Open Interest,"
          "Strike,Puts,Last Sale,Net,Bid,Ask,Volume,IV,Delta,Gamma,Open Interest")  # fmt: skip


def day_seed(day: date) -> int:
    """The seed of a day's market when none is given: 20240312 for 2024-03-12."""
    return day.year * 10000 + day.month * 100 + day.day


def market_at(
    underlying: str,
    day: date,
    at: time,
    *,
    seed: int | None = None,
    config: SimConfig | None = None,
) -> MarketSim:
    """The simulated market at ``at`` (New York time) on session ``day``, run from the open.
    Only ``underlying``'s option roots are listed (the path is the same as with every root).
    Raises ValueError for an unknown underlying, a day without a session or a time outside it."""
    if underlying not in NAMES:
        raise ValueError(f"no simulated options on {underlying!r}; have {', '.join(NAMES)}")
    session = us_session(day)
    if session is None:
        raise ValueError(f"{day} is not a US trading session (weekend or exchange holiday)")
    when = datetime.combine(day, at, tzinfo=NEW_YORK)
    if not session.open <= when <= session.close:
        o, c = (t.astimezone(NEW_YORK).strftime("%H:%M") for t in (session.open, session.close))
        raise ValueError(f"{at:%H:%M} is outside the {day} session ({o}-{c} New York time)")
    cfg = config or SimConfig()
    chains = tuple(c for c in cfg.chains if c.root in _roots(underlying))
    cfg = replace(cfg, seed=day_seed(day) if seed is None else seed, chains=chains)
    market = MarketSim(session.open, cfg)
    market.advance_to(to_ns(when))
    return market


def _roots(underlying: str) -> tuple[str, ...]:
    return {"SPX": ("SPX", "SPXW"), "SPY": ("SPY",), "NDX": ("NDX", "NDXP")}[underlying]


def simulated_chain(
    underlying: str,
    day: date,
    at: time,
    *,
    seed: int | None = None,
    config: SimConfig | None = None,
) -> Chain:
    """The simulated chain of ``underlying`` at ``at`` on ``day``: every listed contract, far
    wings included, with calendar-basis IV, bid/ask and open interest (vectorised)."""
    return sim_chain(market_at(underlying, day, at, seed=seed, config=config), underlying)


def cboe_text(chain: Chain) -> str:
    """``chain`` as CBOE ``quotedata.csv`` text. Delta and Gamma come from each row's IV on
    calendar time to the real settlement with r = q = 0 (CBOE's columns are their own model's;
    ``kit gex`` recomputes gamma from IV by default anyway)."""
    f = chain.frame.sort("expiry", "root", "strike", "is_call")
    T = years_to_expiry(f, chain.asof)
    g = greeks(chain.spot, f["strike"].to_numpy(), np.maximum(T, 1e-12), 0.0, 0.0,
               f["iv"].fill_null(0.0).to_numpy(), f["is_call"].to_numpy())  # fmt: skip
    f = f.with_columns(pl.Series("delta", np.asarray(g.delta)),
                       pl.Series("gamma", np.asarray(g.gamma)))  # fmt: skip
    calls = f.filter(pl.col("is_call"))
    puts = f.filter(~pl.col("is_call")).select(
        "root", "expiry", "strike", *(pl.col(c).alias(f"p_{c}") for c in
                                      ("bid", "ask", "iv", "delta", "gamma", "open_interest"))
    )  # fmt: skip
    rows = calls.join(puts, on=["root", "expiry", "strike"], how="inner", maintain_order="left")
    asof = chain.asof.astimezone(NEW_YORK)
    out = io.StringIO()
    out.write("\n")
    out.write(f"{NAMES.get(chain.underlying, chain.underlying)},Last: {chain.spot:.4f},"
              f"Change: 0\n")  # fmt: skip
    stamp = f"{asof:%B} {asof.day}, {asof.year} at {asof.hour % 12 or 12}:{asof:%M %p} "
    out.write(f'"Date: {stamp}{asof.tzname()}",Bid: {chain.spot:.2f},Ask: {chain.spot:.2f},'
              f"Size: 1*1,Volume: 0\n")  # fmt: skip
    out.write(HEADER + "\n")
    w = csv.writer(out, lineterminator="\n")
    for r in rows.iter_rows(named=True):
        sym = f"{r['root']}{r['expiry']:%y%m%d}{{}}{round(r['strike'] * 1000):08d}"
        mid_c, mid_p = ((r[p + "bid"] + r[p + "ask"]) / 2 for p in ("", "p_"))
        w.writerow([f"{r['expiry']:%a %b %d %Y}", sym.format("C"), _num(mid_c), 0,
                    *_side(r, ""), f"{r['strike']:.2f}", sym.format("P"), _num(mid_p), 0,
                    *_side(r, "p_")])  # fmt: skip
    return out.getvalue()


def _side(r: dict, p: str) -> list:
    """Bid, Ask, Volume, IV, Delta, Gamma, Open Interest of one side (``p``: its prefix)."""
    return [_num(r[p + "bid"]), _num(r[p + "ask"]), 0, f"{r[p + 'iv']:.4f}", _d4(r[p + "delta"]),
            _d4(r[p + "gamma"]), int(r[p + "open_interest"])]  # fmt: skip


def _d4(x: float) -> str:
    return f"{round(x, 4) + 0.0:.4f}"  # + 0.0: no "-0.0000"


def _num(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if x else "0"


def write_cboe(chain: Chain, path: str | os.PathLike[str]) -> None:
    """Write ``chain`` to ``path`` as a CBOE ``quotedata.csv``."""
    text = cboe_text(chain)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)

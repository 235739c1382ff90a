"""One call to build a history from any source: what ``kit history build`` and notebooks use.

from kit.research.history.api import build_history
report = build_history("sim", "data/history", "SPX", date(2024, 1, 2), date(2024, 6, 28))
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from kit.adapters.thetadata.config import ThetaDataConfig
from kit.research.history.band import Band, BandError, parse_interval, sessions
from kit.research.history.build import BuildReport, run_build
from kit.research.history.progress import Mode

SOURCES = ("sim", "thetadata", "store")


def build_history(
    source: str,
    out: str | Path,
    underlying: str,
    date_from: date,
    date_to: date,
    *,
    interval: str = "1m",
    band: Band | None = None,
    seed: int = 0,
    db: str | None = None,
    concurrency: int = 2,
    thetadata: ThetaDataConfig | None = None,
    progress: Mode = "auto",
) -> BuildReport:
    """Build the sessions ``date_from``..``date_to`` not on disk yet (see the README's "Options
    history"). ``db`` is the store for ``source="store"`` (default: the desk's); ``thetadata``
    the Terminal's address (default: ``THETADATA_*`` from the environment or ``.env``).

    Raises :class:`BandError` / :class:`~kit.research.history.schema.HistoryError` (both
    ValueError) for bad arguments, ``ThetaDataError`` when the Terminal refuses."""
    if source not in SOURCES:
        raise BandError(f"unknown source {source!r}: one of {', '.join(SOURCES)}")
    band = band or Band()
    seconds = parse_interval(interval)
    days = sessions(date_from, date_to)
    if not days:
        raise BandError(f"no sessions from {date_from} to {date_to}")
    if source == "sim":
        from kit.research.history.sim import SimHistory

        sim = SimHistory(underlying, seed, seconds, band)
        return run_build(out, underlying, days, sim.make_day, sim.signature, progress=progress)
    if source == "thetadata":
        from kit.research.history.thetadata import ThetaHistory

        with ThetaHistory(underlying, seconds, band, config=thetadata,
                          concurrency=concurrency) as theta:  # fmt: skip
            return run_build(out, underlying, days, theta.make_day, theta.signature,
                             progress=progress)  # fmt: skip
    from kit.research.history.store import StoreHistory

    with StoreHistory(underlying, seconds, band, target=db) as recorded:
        return run_build(out, underlying, days, recorded.make_day, recorded.signature,
                         progress=progress)  # fmt: skip

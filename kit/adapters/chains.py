"""The chain-source seam: what a venue lists (expirations, strikes, contracts of an underlying),
a snapshot of an expiry's quotes and open interest, and the IV history behind IV rank.

Strategies, commands and the autopilot choose strikes from a :class:`ChainSource`, never from a
simulator's internals, so the same selection runs on the simulator, a recording or a vendor
(each adapter folder has its implementation: ``sim/source.py``, ``replay/source.py``,
``thetadata/chains.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol, runtime_checkable

import numpy as np

from kit.core.model import Contract, Event


@dataclass(frozen=True)
class ChainSnapshot:
    """An expiry's current quotes (and index ticks) as events, with open interest per contract
    where the venue publishes it."""

    events: list[Event] = field(default_factory=list)
    open_interest: dict[Contract, float] = field(default_factory=dict)


@runtime_checkable
class ChainSource(Protocol):
    """Listings and snapshots of one venue."""

    async def expirations(self, root: str) -> list[date]:
        """Listed expiries of ``root`` (an option root, e.g. ``SPXW``), ascending, today on."""
        ...

    async def contracts(self, root: str, expiry: date) -> list[Contract]:
        """Every listed put and call of one expiry."""
        ...

    async def snapshot(self, contracts: Sequence[Contract]) -> ChainSnapshot:
        """The current quotes and open interest of ``contracts`` (one expiry)."""
        ...

    async def iv_history(self, underlying: str) -> np.ndarray | None:
        """Daily implied vol (vol points) over about a year, ending today; None if unknown."""
        ...

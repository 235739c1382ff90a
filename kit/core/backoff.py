"""Reconnect delays shared by every client that retries a connection (feeds, the desk client).

In :mod:`kit.core` so the dashboard's client can use it without loading the feed machinery.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential reconnect delays with +/- ``jitter`` so many clients don't retry in lockstep."""

    initial_s: float = 0.25
    factor: float = 2.0
    max_s: float = 30.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_s, self.initial_s * self.factor ** max(0, attempt))
        return base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))

"""Retry backoff: a pure function of the attempt number and a random draw.

Exponential (base * 2^(attempt-1)), capped, with "equal jitter" downwards: the delay lies in
[(1 - jitter) * d, d], so retries of jobs that failed together spread out instead of
stampeding the provider again in lockstep, yet never wait longer than the cap.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 2.0
    max_seconds: float = 600.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base_seconds <= 0 or self.max_seconds < self.base_seconds:
            raise ValueError("need 0 < base_seconds <= max_seconds")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be within [0, 1]")

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay after failed attempt number `attempt` (1-based)."""
        exponent = min(max(attempt, 1) - 1, 60)
        return min(self.max_seconds, self.base_seconds * (2.0**exponent))

    def delay(self, attempt: int, draw: float) -> float:
        """Delay for `attempt` given a uniform draw in [0, 1)."""
        return self.ceiling(attempt) * (1.0 - self.jitter * draw)

    def next_delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        return self.delay(attempt, rng())

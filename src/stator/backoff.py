"""Capped exponential backoff with jitter: how every retry loop in stator waits (workers, registrars, pollers).

"Full jitter" within [delay*(1-jitter), delay]: retries from many instances spread out instead of arriving at a
recovering registry in lockstep, and a delay never exceeds the cap.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 60.0,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum < initial or factor < 1 or not 0 <= jitter <= 1:
            raise ValueError("backoff needs 0 < initial <= maximum, factor >= 1, 0 <= jitter <= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.attempts = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The delay before the next attempt; each call grows the base delay up to the cap."""
        base = min(self.maximum, self.initial * self.factor**self.attempts)
        self.attempts += 1
        return base * (1 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """After a success: the next failure starts from the initial delay again."""
        self.attempts = 0

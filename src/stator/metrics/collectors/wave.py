"""``wave_sine{name}``: demo series that make a dashboard move without any traffic.

Each series is a sum of sines ``a·sin(f·ωt + φ)`` with ``ω = 2π / period``:

- ``simple``: one sine, ``f = 1``;
- ``three_random``: three sines with random frequency, amplitude and phase (the seed's recipe), drawn from a
  generator seeded with the service name, so every replica of a service draws the same curve;
- ``square``: the first four terms of a square wave's Fourier series, ``4/π · Σ sin(n·ωt)/n`` for n = 1, 3, 5, 7.

Driven by wall-clock time, not by a per-scrape counter as in the seed: two Prometheus servers scraping at their
own pace sample the same curve, and a restart continues it instead of starting over.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

Sine = tuple[float, float, float]  # frequency, amplitude, phase


def _three_random(seed: str) -> list[Sine]:
    rng = random.Random(seed)
    waves: list[Sine] = []
    for i in range(3):
        n = i + 1.0
        waves.append((1 + rng.random() * n, rng.random() / n, rng.random() * 2 * math.pi))
    return waves


class WaveCollector:
    def __init__(self, period: float = 600.0, seed: str = "stator", clock: Callable[[], float] = time.time) -> None:
        if period <= 0:
            raise ValueError("wave period must be positive")
        self.period = period
        self.clock = clock
        self.series: dict[str, list[Sine]] = {
            "simple": [(1.0, 1.0, 0.0)],
            "three_random": _three_random(f"wave:{seed}"),
            "square": [(float(n), 4 / (math.pi * n), 0.0) for n in (1, 3, 5, 7)],
        }

    def values(self, at: float) -> dict[str, float]:
        cycles = at / self.period
        # Keep only the fraction of a cycle before multiplying by 2π: sin() of an angle around 1e7 rad would lose
        # digits, and reducing ``at`` modulo the period first would break the non-integer frequencies.
        return {
            name: math.fsum(a * math.sin(2 * math.pi * ((f * cycles) % 1.0) + phase) for f, a, phase in waves)
            for name, waves in self.series.items()
        }

    def collect(self) -> list[Metric]:
        family = GaugeMetricFamily("wave_sine", "Sum of sine waves driven by wall-clock time.", labels=["name"])
        for name, value in self.values(self.clock()).items():
            family.add_metric([name], value)
        return [family]

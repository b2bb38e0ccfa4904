"""Quantiles and a small inline SVG chart from the in-process RED histogram (:mod:`stator.http.red`).

The histogram keeps per-bucket counts (not cumulative) over bucket upper bounds ending in ``+Inf``. Quantiles are
estimated the way Prometheus' ``histogram_quantile`` does: find the bucket holding the rank, interpolate linearly
inside it (from 0 for the first bucket); a rank in the ``+Inf`` bucket answers the highest finite bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from stator.ui.html import esc, seconds

WIDTH = 180
HEIGHT = 36


def quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """The ``q`` quantile (0..1) of a histogram, or None when it is empty."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    cumulative = 0
    for i, count in enumerate(counts):
        if cumulative + count >= rank and count > 0:
            upper = bounds[i]
            if math.isinf(upper):
                finite = [b for b in bounds if not math.isinf(b)]
                return finite[-1] if finite else None
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (upper - lower) * (rank - cumulative) / count
        cumulative += count
    return None  # unreachable: the counts sum to total


def histogram_svg(bounds: Sequence[float], counts: Sequence[int], marks: Sequence[tuple[str, float | None]]) -> str:
    """One bar per bucket (height ∝ count, square-root scale so rare slow buckets stay visible), each with a
    tooltip, and a red tick under the bucket holding each of ``marks`` (e.g. p50/p90/p99)."""
    n = len(counts)
    if n == 0:
        return ""
    peak = max(counts) or 1
    slot = WIDTH / n
    bars: list[str] = []
    lower = 0.0
    for i, (bound, count) in enumerate(zip(bounds, counts, strict=True)):
        label = (
            f"{seconds(lower)} – {seconds(bound)}: {count}" if not math.isinf(bound) else f"> {seconds(lower)}: {count}"
        )
        h = 0.0 if count == 0 else max(1.5, (HEIGHT - 6) * math.sqrt(count / peak))
        bars.append(
            f'<rect x="{i * slot + 0.5:.1f}" y="{HEIGHT - 4 - h:.1f}" width="{max(slot - 1, 1):.1f}" height="{h:.1f}">'
            f"<title>{esc(label)}</title></rect>"
        )
        lower = bound
    ticks: list[str] = []
    for name, value in marks:
        if value is None:
            continue
        i = next((j for j, b in enumerate(bounds) if value <= b), n - 1)
        x = i * slot + slot / 2
        ticks.append(
            f'<line class="q" x1="{x:.1f}" x2="{x:.1f}" y1="{HEIGHT - 3}" y2="{HEIGHT}"><title>{esc(name)} ≈ '
            f"{esc(seconds(value))}</title></line>"
        )
    return (
        f'<svg class="hist" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="latency histogram"><line class="base" x1="0" x2="{WIDTH}" y1="{HEIGHT - 3.5}" '
        f'y2="{HEIGHT - 3.5}"/>{"".join(bars)}{"".join(ticks)}</svg>'
    )

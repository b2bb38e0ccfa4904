"""The traffic of ``stator demo``: a steady trickle of ``POST /sum`` to the front instance, and every few seconds
one line saying which instance served how many of them (the ``X-Served-By`` header the front passes through
from the instance that did the work), so the terminal shows the balancing as it happens.

One request at a time, each bounded by a timeout, so the loop can never pile up load on a struggling system; it
stops between two requests (or after the current one's timeout at worst) when :meth:`Traffic.stop` is called.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import httpx

SERVED_BY = "X-Served-By"


def tally_line(source: str, served: Counter[str], failed: Counter[str]) -> str:
    """``front → stator-…-instance-1: 9, stator-…-instance-2: 8, …`` (instances in name order, then failures)."""
    parts = [f"{name}: {count}" for name, count in sorted(served.items())]
    parts += [f"{what}: {count}" for what, count in sorted(failed.items())]
    return f"{source} → " + (", ".join(parts) if parts else "no requests")


class Traffic(threading.Thread):
    """POSTs ``{"a": 1..99, "b": 1..99}`` to ``url`` every ``period`` seconds and every ``report_every`` seconds
    hands ``say`` one :func:`tally_line` of the answers since the previous line.

    An answer counts for the instance in its ``X-Served-By`` when it is a 2xx whose body is the right sum;
    anything else is tallied as what went wrong (``HTTP 503``, ``wrong answer``, ``ReadTimeout`` ...), so a
    failing front shows in the same line rather than silently.
    """

    def __init__(
        self,
        url: str,
        say: Callable[[str], None],
        *,
        source: str = "front",
        period: float = 0.2,
        report_every: float = 5.0,
        timeout: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(name="demo-traffic", daemon=True)
        self.url = url
        self.say = say
        self.source = source
        self.period = period
        self.report_every = report_every
        self.timeout = timeout
        self.rng = rng or random.Random()
        self.stopping = threading.Event()
        self.served: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()

    def run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            now = time.monotonic()
            next_send, next_report = now, now + self.report_every
            while not self.stopping.wait(max(0.0, next_send - time.monotonic())):
                self._send(client)
                now = time.monotonic()
                next_send = max(next_send + self.period, now)  # fall behind rather than catch up in a burst
                if now >= next_report:
                    self.say(tally_line(self.source, self.served, self.failed))
                    self.served.clear()
                    self.failed.clear()
                    next_report = max(next_report + self.report_every, now)

    def _send(self, client: httpx.Client) -> None:
        a, b = self.rng.randint(1, 99), self.rng.randint(1, 99)
        try:
            response = client.post(self.url, json={"a": a, "b": b})
        except httpx.HTTPError as exc:
            self.failed[type(exc).__name__] += 1
            return
        if not response.is_success:
            self.failed[f"HTTP {response.status_code}"] += 1
            return
        try:
            right = response.json() == {"v": a + b}
        except ValueError:
            right = False
        served_by = response.headers.get(SERVED_BY)
        if not right:
            self.failed["wrong answer"] += 1
        elif not served_by:
            self.failed[f"no {SERVED_BY}"] += 1
        else:
            self.served[served_by] += 1

    def stop(self) -> None:
        """Stop after the request in flight (bounded by its timeout); idempotent."""
        self.stopping.set()
        if self.is_alive():
            self.join(self.timeout + 1)

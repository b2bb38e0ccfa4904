"""A service with a worker that fails on every run: the supervisor must restart it with growing backoff."""

from __future__ import annotations

import os
import sys

from stator.config import load_settings
from stator.service import Service


class Crashy:
    name = "crashy"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        raise RuntimeError(f"crash number {self.runs}")


if __name__ == "__main__":
    service = Service(load_settings(os.environ), restart_backoff=(0.05, 0.4))
    service.add_worker(Crashy())
    sys.exit(service.run())

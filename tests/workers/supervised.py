"""Supervisor edge cases as a real process: ``python -m tests.workers.supervised MODE``.

- ``crash``: every worker exits 3 at once -> the supervisor gives up after max_boot_failures (exit 1);
- ``stubborn``: workers ignore SIGTERM -> killed after shutdown_timeout + margin (exit 1);
- ``clean``: workers exit 0 on SIGTERM -> exit 0.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from stator.logs import Logger
from stator.workers import Listeners, Supervisor, bind


def main(mode: str) -> int:
    logger = Logger(app_id="sup", run_id="sup")

    def run_child(listeners: Listeners, slot: int) -> int:
        if mode == "crash":
            return 3
        logger.info("child up", worker=slot, pid=os.getpid(), inherited=listeners.http.getsockname()[1])
        if mode == "stubborn":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        else:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            time.sleep(0.05)

    sock = bind("127.0.0.1", 0)
    logger.info("listening", address=f"127.0.0.1:{sock.getsockname()[1]}")
    supervisor = Supervisor(
        run_child, Listeners(sock), workers=2, logger=logger, shutdown_timeout=0.5, margin=0.2,
        backoff=(0.01, 0.05), min_uptime=0.5, max_boot_failures=3,
    )  # fmt: skip
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

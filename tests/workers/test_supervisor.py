"""stator's supervisor as a real process: restart, give-up on boot failures, ordered stop, stragglers killed."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

from tests.conftest import ServiceProcess


def supervised(spawn: Callable[..., ServiceProcess], mode: str) -> ServiceProcess:
    return spawn([sys.executable, "-m", "tests.workers.supervised", mode])


def children(proc: ServiceProcess, n: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 15
    while True:
        ups = [line for line in list(proc.lines) if line.get("msg") == "child up"]
        if len(ups) >= n or time.monotonic() > deadline:
            return ups
        time.sleep(0.05)


def test_a_worker_that_keeps_failing_at_start_stops_the_group(spawn: Callable[..., ServiceProcess]) -> None:
    proc = supervised(spawn, "crash")
    assert proc.wait(20) == 1
    msgs = proc.messages()
    assert "worker keeps failing at start; stopping the group" in msgs
    assert msgs.count("worker process exited") >= 2  # restarted (with backoff) before giving up


def test_a_dead_worker_is_restarted_and_sigterm_stops_everyone_cleanly(spawn: Callable[..., ServiceProcess]) -> None:
    proc = supervised(spawn, "clean")
    ups = children(proc, 2)
    port = proc.wait_for("listening")["address"]
    assert {u["inherited"] for u in ups} == {int(str(port).rsplit(":", 1)[1])}  # one socket, bound by the master
    victim = next(u for u in ups if u["worker"] == 1)
    os.kill(int(str(victim["pid"])), signal.SIGKILL)
    exited = proc.wait_for("worker process exited", worker=1)
    assert exited["signal"] == "SIGKILL" and "restart_in" in exited
    assert len(children(proc, 3)) == 3
    proc.signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert proc.wait_for("supervisor stopped")["clean"] is True


def test_stragglers_are_killed_after_the_deadline(spawn: Callable[..., ServiceProcess]) -> None:
    proc = supervised(spawn, "stubborn")
    children(proc, 2)
    time.sleep(0.3)  # let both ignore SIGTERM
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.wait(10) == 1
    assert time.monotonic() - started < 5  # shutdown_timeout 0.5 s + margin 0.2 s
    assert "worker did not stop in time; killing it" in proc.messages()

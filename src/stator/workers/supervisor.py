"""``stator run --workers N``: one master process, N forked workers serving sockets bound once by the master.

Why pre-fork rather than ``SO_REUSEPORT``: the master binds the listening sockets (the HTTP port and the ops
port) before forking, so every worker accepts from the **same** kernel queue — a busy worker simply accepts less,
and connections never queue behind a worker that is stuck or restarting (with ``SO_REUSEPORT`` the kernel hashes
each connection to one worker's own queue, and whatever sits in a dying worker's queue is reset). A port that
cannot be bound fails once, in the master, before any worker exists; port 0 resolves to one port for all.

Why fork: the master has no event loop and no thread at any time (it waits in ``select`` on a signal wakeup
pipe), so forking is safe, costs nothing, and inherits the bound sockets without passing descriptors around.
Each worker calls ``run_child(listeners, slot)`` and exits with its return value.

Supervision: a worker that exits (any code, any signal) while the group runs is restarted after a capped
exponential backoff with jitter, and logged (``worker exited`` with code or signal, ``restart_in``); the backoff
resets once a worker has run longer than its cap. A worker that keeps failing within ``min_uptime`` of its start
``max_boot_failures`` times in a row stops the whole group (exit 1): a broken configuration is not a restart loop.

Stopping: the first SIGTERM/SIGINT is forwarded once to every worker (each runs its own ordered shutdown);
workers get ``shutdown_timeout`` plus a margin, then stragglers are SIGKILLed. Exit code 0 when every worker
stopped cleanly, 1 otherwise; a second signal SIGKILLs every worker at once (exit 128+signal). Workers run in
their own process group, so a terminal's Ctrl-C reaches only the master (which forwards it once, rather than
every worker seeing two signals), and they ask the kernel for SIGTERM should the master die (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Final

from stator.backoff import Backoff
from stator.logs import Logger
from stator.workers.identity import MASTER_ENV

PR_SET_PDEATHSIG: Final = 1
STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class Listeners:
    """The sockets a worker serves, bound once by the master."""

    http: socket.socket
    ops: socket.socket | None = None


ChildMain = Callable[[Listeners, int], int]


def bind(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket (IPv6 when ``host`` is an IPv6 address), as uvicorn would bind it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


@dataclass
class _Child:
    slot: int
    pid: int = 0
    started: float = 0.0
    restart_at: float | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(0.5, 30.0))
    boot_failures: int = 0
    code: int | None = None


class Supervisor:
    def __init__(
        self,
        run_child: ChildMain,
        listeners: Listeners,
        *,
        workers: int,
        logger: Logger,
        shutdown_timeout: float = 15.0,
        margin: float = 2.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        min_uptime: float = 1.0,
        max_boot_failures: int = 5,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.run_child = run_child
        self.listeners = listeners
        self.logger = logger
        self.shutdown_timeout = shutdown_timeout
        self.margin = margin
        self.min_uptime = min_uptime
        self.max_boot_failures = max_boot_failures
        self.children = [_Child(slot, backoff=Backoff(*backoff)) for slot in range(workers)]
        self._signals: list[int] = []
        self._wake_r = -1
        self._wake_w = -1
        self._failed = False

    # -- the master loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Start the workers and supervise them until a stop signal; returns the master's exit code."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        previous_fd = signal.set_wakeup_fd(self._wake_w)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (*STOP_SIGNALS, signal.SIGCHLD)}
        try:
            self.logger.info("supervisor starting", workers=len(self.children), pid=os.getpid())
            for child in self.children:
                self._start(child)
            while not self._signals and not self._failed:
                self._wait(self._next_restart())
                self._reap()
                self._restart_due()
            return self._stop()
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGCHLD:
            self._signals.append(sig)

    def _wait(self, timeout: float | None) -> None:
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass

    def _next_restart(self) -> float | None:
        due = [c.restart_at for c in self.children if c.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _restart_due(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None and child.restart_at <= now and not self._signals:
                child.restart_at = None
                self._start(child)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = next((c for c in self.children if c.pid == pid), None)
            if child is None:
                continue
            child.pid = 0
            child.code = os.waitstatus_to_exitcode(status)
            uptime = time.monotonic() - child.started
            how = {"signal": signal.Signals(-child.code).name} if child.code < 0 else {"code": child.code}
            if self._signals:
                self.logger.info("worker process stopped", worker=child.slot, pid=pid, **how)
                continue
            if uptime < self.min_uptime:
                child.boot_failures += 1
            else:
                child.boot_failures = 0
            if uptime > child.backoff.maximum:
                child.backoff.reset()
            if child.boot_failures >= self.max_boot_failures:
                self.logger.error(
                    "worker keeps failing at start; stopping the group",
                    worker=child.slot,
                    failures=child.boot_failures,
                    **how,
                )
                self._failed = True
                continue
            delay = child.backoff.next()
            child.restart_at = time.monotonic() + delay
            self.logger.error(
                "worker process exited",
                worker=child.slot,
                pid=pid,
                uptime=round(uptime, 3),
                restart_in=round(delay, 3),
                **how,
            )

    def _stop(self) -> int:
        sig = self._signals[0] if self._signals else signal.SIGTERM
        live = [c for c in self.children if c.pid]
        self.logger.info("supervisor stopping", signal=signal.Signals(sig).name, workers=len(live), failed=self._failed)
        for child in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, sig)
        deadline = time.monotonic() + self.shutdown_timeout + self.margin
        killed = False
        while any(c.pid for c in self.children):
            remaining = deadline - time.monotonic()
            if len(self._signals) > 1 or remaining <= 0:
                for child in self.children:
                    if child.pid:
                        self.logger.error("worker did not stop in time; killing it", worker=child.slot, pid=child.pid)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(child.pid, signal.SIGKILL)
                killed = True
                for child in self.children:
                    if child.pid:
                        with contextlib.suppress(ChildProcessError):
                            os.waitpid(child.pid, 0)
                        child.pid, child.code = 0, -signal.SIGKILL
                break
            self._wait(min(remaining, 0.5))
            self._reap()
        if len(self._signals) > 1:
            self.logger.error("second signal: workers killed", signal=signal.Signals(self._signals[1]).name)
            return 128 + self._signals[1]
        clean = not killed and not self._failed and all(c.code == 0 for c in live)
        self.logger.info("supervisor stopped", clean=clean)
        return 0 if clean else 1

    # -- a worker ----------------------------------------------------------------------------------------

    def _start(self, child: _Child) -> None:
        master = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child (covered by the subprocess tests)
            os._exit(self._child_main(child.slot, master))
        child.pid = pid
        child.started = time.monotonic()
        child.code = None
        self.logger.info("worker process started", worker=child.slot, pid=pid)

    def _child_main(self, slot: int, master: int) -> int:  # pragma: no cover - runs in the child
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in (*STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            os.close(self._wake_r)
            os.close(self._wake_w)
            os.setpgid(0, 0)
            _die_with_parent()
            if os.getppid() != master:  # the master died before the line above took effect
                return 1
            os.environ[MASTER_ENV] = str(master)
            code = self.run_child(self.listeners, slot)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
        return code


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGTERM this process when its parent dies (a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

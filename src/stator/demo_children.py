"""The processes of ``stator demo``: starting a child that dies with the demo, stopping them in order, and the
work directories of demos killed before they could clean up. Why the parent-death signal, and the rules that
keep it sound (children forked from the main thread, before any thread starts): see :mod:`stator.demo`."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

STOP_TIMEOUT = 20.0  # above STATOR_SHUTDOWN_TIMEOUT's default (15s): a clean stop is always waited for
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` giving the child ``sig`` when this process dies; None where Linux's prctl is missing.

    ``prctl`` is looked up here, in the parent: the child between fork and exec must not dlopen (a lock another
    thread held at fork time would never be released), it only calls the resolved function.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the demo died before prctl took effect: nobody will tell us, so act now
            os.kill(os.getpid(), sig)

    return preexec


class Child:
    """One process of the demo, its name and how to stop it. Create children from the main thread only (the
    parent-death signal is tied to the thread that forks). With ``log``, its output goes to that file, whose
    tail is shown if it dies (the file itself goes with the demo's work directory)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path | None = None) -> None:
        self.name = name
        self.log = log
        out = log.open("wb") if log is not None else None
        try:
            self.proc = subprocess.Popen(
                args,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                start_new_session=True,  # our signals only: see stator.demo
                preexec_fn=_die_with_parent(),  # forked before any thread starts: see stator.demo
            )
        finally:
            if out is not None:
                out.close()  # the child has its own copy

    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None

    def log_tail(self, lines: int = 8) -> str:
        """The child's error lines (logfmt ``level=error``, as Prometheus and Alertmanager write), else its last
        lines: what a user needs when it died, since its log goes with the work directory."""
        if self.log is None:
            return ""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [line for line in text if "level=error" in line.lower()]
        return "\n".join("    " + line for line in (errors or text)[-lines:])


WORKDIR_PREFIX = "stator-demo-"
PID_FILE = "demo.pid"


def remove_stale_workdirs(tmp: Path | None = None) -> list[Path]:
    """Remove the work directories (Prometheus data, config) of demos that were killed before cleaning up.

    Each demo writes its pid into ``demo.pid``; a directory whose demo is no longer running is removed.
    """
    removed = []
    for path in Path(tmp or tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        try:
            pid = int((path / PID_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # not ours, or still being created
        if pid == os.getpid() or _pid_alive(pid):
            continue
        remove_workdir(path)
        removed.append(path)
    return removed


def remove_workdir(path: Path) -> None:
    """Remove a demo's work directory, its ``demo.pid`` last: a removal cut short (the demo killed meanwhile)
    leaves a directory the next demo still recognises as its own to clean up."""
    with contextlib.suppress(OSError):
        for entry in path.iterdir():
            if entry.name == PID_FILE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    shutil.rmtree(path, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: leave its directory alone
    return True


def stop_in_order(instances: list[Child], others: list[Child]) -> None:
    # Instances first, all at once: each deregisters from the registry, which must still be running.
    for child in instances:
        child.terminate()
    for child in instances:
        child.wait(STOP_TIMEOUT)
    for child in others:
        child.terminate()
        child.wait(STOP_TIMEOUT)

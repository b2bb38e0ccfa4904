"""Which worker group this process belongs to, and where that group keeps its files.

A *group* is the worker processes of one service instance: the children of one master (``stator run --workers``'s
supervisor, a gunicorn arbiter, a ``uvicorn --workers`` supervisor, a hypercorn or granian master). Its identity
is the master's pid **and** start time (field 22 of ``/proc/<pid>/stat``, in clock ticks since boot), so a
recycled pid can never pass for an old master. The group directory is named from that identity under a base
directory owned by this uid and private to it (0700); directories of groups whose master is gone (or whose pid now
belongs to a process started at another time) are removed by the next process that joins any group — nothing to
wipe between runs.

Detection (``STATOR_WORKERS_GROUP``):

- ``off``: never join; every process is its own instance.
- ``parent``: always join the parent's group (for a master we do not recognise).
- ``auto`` (default): join when the parent is one of ours — the environment variable :data:`MASTER_ENV` names
  the parent's pid (set by :mod:`stator.workers.supervisor` in each child, and ignored by grandchildren because
  their parent pid differs) — or when the parent's ``/proc/<ppid>/cmdline`` shows a gunicorn arbiter
  (``gunicorn`` or a ``gunicorn: master`` process title), ``uvicorn`` (its parent is a ``--workers``/``--reload``
  supervisor: a single-process uvicorn has no stator parent), ``hypercorn`` or ``granian``, run as a script or
  with ``python -m``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

GroupMode = Literal["auto", "parent", "off"]

MASTER_ENV: Final = "_STATOR_WORKERS_MASTER"
"""Set by stator's supervisor in each child: ``<pid>``. Not ``STATOR_``-prefixed: it is not a setting."""

MASTERS: Final = frozenset({"gunicorn", "uvicorn", "hypercorn", "granian"})
_PYTHON_PREFIXES: Final = ("python", "pypy")
_PREFIX: Final = "g-"
_ALNUM: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class GroupDirError(Exception):
    """The base directory is not safe to use (owned by someone else, group/world accessible, a symlink)."""


def start_time(pid: int, proc: str = "/proc") -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks after boot), or None when there is no such
    process. The command name (field 2) may contain spaces and parentheses: fields are counted after its last
    ``)``."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data.rsplit(b")", 1)[-1].split()
    try:
        return int(fields[19])  # fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def cmdline(pid: int, proc: str = "/proc") -> list[str]:
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def master_name(argv: Sequence[str]) -> str | None:
    """The recognised master program in a command line, or None.

    ``gunicorn ...``, ``/venv/bin/uvicorn ...``, ``python -m hypercorn ...``, ``python3 /venv/bin/granian ...``,
    and setproctitle'd titles such as ``gunicorn: master [app:app]`` (one argument holding spaces)."""
    if not argv:
        return None
    first = argv[0].split()[0] if argv[0].split() else ""
    candidates = [os.path.basename(first).removesuffix(":")]
    if candidates[0].startswith(_PYTHON_PREFIXES):
        rest = list(argv[1:])
        while rest and rest[0].startswith("-") and rest[0] != "-m":
            rest.pop(0)  # interpreter options (-u, -X dev, ...): good enough for how servers are started
        if len(rest) >= 2 and rest[0] == "-m":
            candidates.append(rest[1].split(".")[0])
        elif rest:
            candidates.append(os.path.basename(rest[0]))
    for name in candidates:
        if name in MASTERS:
            return name
    return None


@dataclass(frozen=True)
class GroupIdentity:
    """One group: its master's pid and start time (and the boot, so ids never repeat across reboots)."""

    master_pid: int
    master_start: int
    boot_id: str = ""
    master: str = ""  # what the master is: "stator", "gunicorn", ... or "parent"

    @property
    def dirname(self) -> str:
        return f"{_PREFIX}{self.master_pid}-{self.master_start}"

    @property
    def group_id(self) -> str:
        """7 alphanumerics derived from the identity: the same in every worker of the group, for the group's life.

        The service's instance id (registration) and run id for metrics identity are built from it, so a worker
        that takes over as leader registers the same instance."""
        digest = hashlib.blake2b(f"{self.boot_id}:{self.master_pid}:{self.master_start}".encode(), digest_size=8)
        n = int.from_bytes(digest.digest(), "big")
        out = []
        for _ in range(7):
            n, r = divmod(n, len(_ALNUM))
            out.append(_ALNUM[r])
        return "".join(out)

    def alive(self, proc: str = "/proc") -> bool:
        return start_time(self.master_pid, proc) == self.master_start


def boot_id(proc: str = "/proc") -> str:
    try:
        with open(f"{proc}/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def detect(
    mode: GroupMode, environ: Mapping[str, str] | None = None, *, ppid: int | None = None, proc: str = "/proc"
) -> GroupIdentity | None:
    """The group this process should join, or None (``off``, no recognised master, or an orphan)."""
    if mode == "off":
        return None
    env = os.environ if environ is None else environ
    parent = os.getppid() if ppid is None else ppid
    if parent <= 1:
        return None  # orphaned (or a container's init): no master to belong to
    started = start_time(parent, proc)
    if started is None:
        return None
    if mode == "parent":
        kind: str | None = "parent"
    elif env.get(MASTER_ENV) == str(parent):
        kind = "stator"
    else:
        kind = master_name(cmdline(parent, proc))
    if kind is None:
        return None
    return GroupIdentity(parent, started, boot_id(proc), kind)


def base_dir(configured: str = "", environ: Mapping[str, str] | None = None) -> Path:
    """``configured``, else ``$XDG_RUNTIME_DIR/stator``, else ``<tmp>/stator-<uid>``: created 0700 and checked
    to be a real directory owned by this uid that nobody else can enter."""
    env = os.environ if environ is None else environ
    if configured:
        path = Path(configured)
    elif env.get("XDG_RUNTIME_DIR"):
        path = Path(env["XDG_RUNTIME_DIR"]) / "stator"
    else:
        path = Path(tempfile.gettempdir()) / f"stator-{os.getuid()}"
    return private_dir(path)


def private_dir(path: Path) -> Path:
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=False)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise GroupDirError(f"{path} is not a directory (a symlink?)")
    if info.st_uid != os.getuid():
        raise GroupDirError(f"{path} is owned by uid {info.st_uid}, not {os.getuid()}")
    if info.st_mode & 0o077:
        raise GroupDirError(f"{path} is accessible to other users (mode {stat.S_IMODE(info.st_mode):o}); want 0700")
    return path


def group_dir(base: Path, identity: GroupIdentity) -> Path:
    return private_dir(base / identity.dirname)


def remove_stale(base: Path, keep: GroupIdentity | None = None, proc: str = "/proc") -> list[str]:
    """Remove group directories whose master is gone or whose pid now belongs to a later process; returns the
    names removed. Safe to run from several processes at once (a directory another process is removing is
    skipped)."""
    removed = []
    with os.scandir(base) as entries:
        names = [e.name for e in entries if e.name.startswith(_PREFIX) and e.is_dir(follow_symlinks=False)]
    for name in names:
        if keep is not None and name == keep.dirname:
            continue
        try:
            pid_text, start_text = name[len(_PREFIX) :].split("-", 1)
            pid, started = int(pid_text), int(start_text)
        except ValueError:
            continue  # not ours
        if start_time(pid, proc) == started:
            continue  # its master lives
        shutil.rmtree(base / name, ignore_errors=True)
        removed.append(name)
    return removed

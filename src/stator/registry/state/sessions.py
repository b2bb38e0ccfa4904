"""Sessions: the lease behind Consul's locks and leader elections.

A session belongs to a node and to health checks (``serfHealth`` by default); it ends when destroyed, when its
TTL runs out without a renewal, or when one of its checks turns critical or goes away. Ending it releases the
KV locks it holds (``Behavior: release``) or deletes those keys (``delete``), and blocks re-locking each of them
for its ``LockDelay``. Timing follows Consul: a TTL between ``session_ttl_min`` (10 s) and 24 h, invalidation
after TTL x 2 (``SessionTTLMultiplier``), renewals restarting that clock, lock-delay at most 60 s.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from stator.config.durations import DurationError, format_duration_ns, parse_duration_ns
from stator.registry.model import CRITICAL
from stator.registry.state.kv import KVStore
from stator.registry.state.watch import Watch

JSON = dict[str, Any]
SERF_CHECK: Final = "serfHealth"
SESSION_TTL_MAX_NS: Final = 24 * 3600 * 10**9
MAX_LOCK_DELAY_NS: Final = 60 * 10**9
DEFAULT_LOCK_DELAY_NS: Final = 15 * 10**9


class SessionError(Exception):
    """A session request Consul refuses (its RPC error text, answered as a 500)."""


@dataclass
class Session:
    id: str
    name: str
    node: str
    lock_delay_ns: int
    behavior: str
    ttl: str
    node_checks: list[str]
    service_checks: list[str]
    create_index: int
    modify_index: int
    ttl_ns: int = 0
    timer: asyncio.TimerHandle | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> JSON:
        return {
            "ID": self.id,
            "Name": self.name,
            "Node": self.node,
            "LockDelay": self.lock_delay_ns,
            "Behavior": self.behavior,
            "TTL": self.ttl,
            "NodeChecks": list(self.node_checks),
            "ServiceChecks": [{"ID": c, "Namespace": ""} for c in self.service_checks] or None,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


@dataclass
class SessionRequest:
    """A decoded ``PUT /v1/session/create`` body, with the agent's defaults applied."""

    name: str = ""
    node: str = ""
    lock_delay_ns: int = DEFAULT_LOCK_DELAY_NS
    behavior: str = "release"
    ttl: str = ""
    node_checks: list[str] | None = None
    service_checks: list[str] = field(default_factory=list)
    checks: list[str] | None = None


class Sessions:
    def __init__(
        self,
        watch: Watch,
        kv: KVStore,
        node_name: str,
        check_status: Callable[[str], str | None],
        changed: Callable[[], None],
        *,
        ttl_min_ns: int = 10 * 10**9,
        ttl_multiplier: float = 2.0,
    ) -> None:
        self.watch = watch
        self.kv = kv
        self.node_name = node_name
        self._check_status = check_status
        self._changed = changed
        self.ttl_min_ns = ttl_min_ns
        # Consul's SessionTTLMultiplier (2): a session expires TTL x this after its last renewal.
        self.ttl_multiplier = ttl_multiplier
        self._sessions: dict[str, Session] = {}
        self.timers_enabled = False

    # ------------------------------------------------------------------------------------------ reads

    def index(self) -> int:
        return self.watch.table("sessions")

    def exists(self, session_id: str) -> bool:
        return session_id in self._sessions

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def listing(self, node: str | None = None) -> list[JSON]:
        rows = [s for s in self._sessions.values() if node is None or s.node == node]
        rows.sort(key=lambda s: s.create_index)
        return [s.to_json() for s in rows]

    # ------------------------------------------------------------------------------------------ writes

    def create(self, req: SessionRequest) -> str:
        """Validate as Consul's ``Session.Apply`` and the state store do, then create; returns the ID."""
        node = req.node or self.node_name
        if req.behavior not in ("release", "delete"):
            raise SessionError(f"Invalid Behavior setting '{req.behavior}'")
        ttl_ns = 0
        if req.ttl:
            try:
                ttl_ns = parse_duration_ns(req.ttl)
            except DurationError as exc:
                raise SessionError(f"Session TTL '{req.ttl}' invalid: {exc}") from None
            if ttl_ns != 0 and (ttl_ns < self.ttl_min_ns or ttl_ns > SESSION_TTL_MAX_NS):
                raise SessionError(
                    f"Invalid Session TTL '{ttl_ns}', must be between "
                    f"[{format_duration_ns(self.ttl_min_ns)}={format_duration_ns(SESSION_TTL_MAX_NS)}]"
                )
        if node != self.node_name:
            raise SessionError("Missing node registration")
        node_checks, service_checks = _fixup_checks(req)
        for check_id in [*node_checks, *service_checks]:
            status = self._check_status(check_id)
            if status is None:
                raise SessionError(f"Missing check '{check_id}' registration")
            if status == CRITICAL:
                raise SessionError(f"Check '{check_id}' is in {status} state")
        lock_delay = min(max(req.lock_delay_ns, 0), MAX_LOCK_DELAY_NS)
        idx = self.watch.bump("sessions")
        session = Session(
            id=str(uuid.uuid4()),
            name=req.name,
            node=node,
            lock_delay_ns=lock_delay,
            behavior=req.behavior,
            ttl=req.ttl,
            node_checks=node_checks,
            service_checks=service_checks,
            create_index=idx,
            modify_index=idx,
            ttl_ns=ttl_ns,
        )
        self._sessions[session.id] = session
        self._arm(session)
        self._wrote()
        return session.id

    def renew(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is not None:
            self._arm(session)
        return session

    def destroy(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        if session.timer is not None:
            session.timer.cancel()
        idx = self.watch.bump("sessions")
        self.kv.invalidate_session(session.id, session.behavior == "delete", session.lock_delay_ns / 1e9, idx)
        self._wrote()
        self._changed()

    def checks_failed(self, check_ids: list[str]) -> list[str]:
        """Checks turned critical or were removed: every session bound to one of them ends. Returns their IDs."""
        failed: set[str] = set(check_ids)
        doomed = [
            s.id
            for s in self._sessions.values()
            if failed.intersection(s.node_checks) or failed.intersection(s.service_checks)
        ]
        for session_id in doomed:
            self.destroy(session_id)
        return doomed

    def start_timers(self) -> None:
        self.timers_enabled = True
        for session in self._sessions.values():
            self._arm(session)

    def stop_timers(self) -> None:
        self.timers_enabled = False
        for session in self._sessions.values():
            if session.timer is not None:
                session.timer.cancel()
                session.timer = None

    def _arm(self, session: Session) -> None:
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        if session.ttl_ns and self.timers_enabled:
            delay = session.ttl_ns / 1e9 * self.ttl_multiplier
            session.timer = asyncio.get_running_loop().call_later(delay, self._expired, session.id)

    def _expired(self, session_id: str) -> None:
        if session_id in self._sessions:
            self._sessions[session_id].timer = None
            self.destroy(session_id)

    def _wrote(self) -> None:
        self.watch.notify(("sessions",))


def _fixup_checks(req: SessionRequest) -> tuple[list[str], list[str]]:
    """Consul's ``fixupEmptySessionChecks``: the legacy ``Checks`` field and ``NodeChecks`` both default to
    ``serfHealth``; an explicit empty ``Checks`` empties the node checks; legacy checks count as node checks."""
    checks = req.checks if req.checks is not None else [SERF_CHECK]
    node_checks = req.node_checks if req.node_checks is not None else [SERF_CHECK]
    if len(checks) == 0:
        node_checks = []
        checks = []
    elif checks == [SERF_CHECK] or len(node_checks) == 0:
        checks = []
    merged = list(dict.fromkeys([*node_checks, *checks]))
    return merged, list(req.service_checks)

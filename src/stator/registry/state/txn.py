"""``PUT /v1/txn`` over the KV store: every operation sees the ones before it, and either all apply (under one
index, as one Raft entry would) or none does.

Operations run against an overlay (key -> entry or deletion) on top of the store; the store is only touched
when every operation succeeded. Error texts are those of Consul's ``state/txn.go`` and ``state/kvs.go``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stator.registry.state.kv import KVEntry, KVError, KVStore
from stator.registry.wire import go_quote

JSON = dict[str, Any]
_DELETED = None

WRITE_VERBS = frozenset({"set", "cas", "lock", "unlock", "delete", "delete-cas", "delete-tree"})
VERBS = WRITE_VERBS | {"get", "get-tree", "check-session", "check-index", "check-not-exists"}


@dataclass
class KVOp:
    verb: str
    key: str
    value: bytes | None = None
    flags: int = 0
    index: int = 0
    session: str = ""


class _Overlay:
    def __init__(self, store: KVStore, idx: int) -> None:
        self.store = store
        self.idx = idx
        self.changes: dict[str, KVEntry | None] = {}

    def get(self, key: str) -> KVEntry | None:
        if key in self.changes:
            return self.changes[key]
        return self.store.entry(key)

    def keys_under(self, prefix: str) -> list[str]:
        keys = {e.key for e in self.store.list_prefix(prefix)[1]}
        for key, entry in self.changes.items():
            if key.startswith(prefix):
                if entry is None:
                    keys.discard(key)
                else:
                    keys.add(key)
        return sorted(keys)

    def put(self, key: str, value: bytes | None, flags: int, lock_index: int, session: str) -> KVEntry:
        old = self.get(key)
        create = old.create_index if old is not None else self.idx
        entry = KVEntry(key, value, flags, create, self.idx, lock_index, session)
        self.changes[key] = entry
        return entry


def _blank(entry: KVEntry) -> JSON:
    """Write results carry the entry without its value (Consul clones it and blanks ``Value``)."""
    out = dict(entry.to_json())
    out["Value"] = None
    return {"KV": out}


def run(store: KVStore, ops: list[KVOp]) -> tuple[list[JSON], list[JSON]]:
    """Apply ``ops`` atomically: (results, []) on success, ([], errors) when any operation failed."""
    view = _Overlay(store, store.watch.index + 1)
    results: list[JSON] = []
    errors: list[JSON] = []
    for i, op in enumerate(ops):
        try:
            results.extend(_apply(view, op))
        except KVError as exc:
            errors.append({"OpIndex": i, "What": str(exc)})
    if errors:
        return [], errors
    if view.changes:
        store.apply_overlay(view.changes)
    return results, []


def _apply(view: _Overlay, op: KVOp) -> list[JSON]:
    key, q = op.key, go_quote(op.key)
    old = view.get(key)
    verb = op.verb
    if verb == "set":
        return [_blank(view.put(key, op.value, op.flags, old.lock_index if old else 0, old.session if old else ""))]
    if verb == "cas":
        ok = old is None if op.index == 0 else old is not None and old.modify_index == op.index
        if not ok:
            raise KVError(f"failed to set key {q}, index is stale")
        return [_blank(view.put(key, op.value, op.flags, old.lock_index if old else 0, old.session if old else ""))]
    if verb == "lock":
        if not op.session:
            raise KVError("missing session")
        if not view.store._session_exists(op.session):
            raise KVError(f"invalid session {go_quote(op.session)}")
        if old is not None and old.session and old.session != op.session:
            raise KVError(f"failed to lock key {q}, lock is already held")
        if (old is None or old.session != op.session) and view.store.lock_delayed(key):
            raise KVError(f"failed to lock key {q}, lock is already held")
        lock_index = (
            old.lock_index if old is not None and old.session == op.session else (old.lock_index if old else 0) + 1
        )
        return [_blank(view.put(key, op.value, op.flags, lock_index, op.session))]
    if verb == "unlock":
        if not op.session:
            raise KVError("missing session")
        if old is None or old.session != op.session:
            raise KVError(f"failed to unlock key {q}, lock isn't held, or is held by another session")
        return [_blank(view.put(key, op.value, op.flags, old.lock_index, ""))]
    if verb == "get":
        if old is None:
            raise KVError(f"key {q} doesn't exist")
        return [{"KV": old.to_json()}]
    if verb == "get-tree":
        found = [view.get(k) for k in view.keys_under(key)]
        return [{"KV": e.to_json()} for e in found if e is not None]
    if verb == "check-session":
        if old is None:
            raise KVError(f"failed to check session, key {q} doesn't exist")
        if old.session != op.session:
            raise KVError(
                f"failed session check for key {q}, current session {go_quote(old.session)} != {go_quote(op.session)}"
            )
        return [_blank(old)]
    if verb == "check-index":
        if old is None:
            raise KVError(f"failed to check index, key {q} doesn't exist")
        if old.modify_index != op.index:
            raise KVError(f"failed index check for key {q}, current modify index {old.modify_index} != {op.index}")
        return [_blank(old)]
    if verb == "check-not-exists":
        if old is not None:
            raise KVError(f"key {q} exists")
        return []
    if verb == "delete":
        if old is not None:
            view.changes[key] = _DELETED
        return []
    if verb == "delete-cas":
        if old is None or old.modify_index != op.index:
            if old is not None:
                raise KVError(f"failed to delete key {q}, index is stale")
            return []
        view.changes[key] = _DELETED
        return []
    if verb == "delete-tree":
        for k in view.keys_under(key):
            view.changes[k] = _DELETED
        return []
    raise KVError(f"unknown KV verb {go_quote(verb)}")

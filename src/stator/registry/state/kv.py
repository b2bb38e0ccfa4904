"""The KV store: entries with Raft-like indexes, tombstones, locks held by sessions, and lock-delay.

Entries are replaced, never mutated, so each caches its JSON and its encoded ``[entry]`` body. Every write goes
through :class:`KVWrite` operations so the transaction endpoint and the single-key endpoints share one code path:
a transaction validates all its operations against a private view first and only then applies them.
"""

from __future__ import annotations

import base64
import bisect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from stator.registry.state.watch import Watch
from stator.registry.wire import go_quote

JSON = dict[str, Any]


@dataclass
class KVEntry:
    key: str
    value: bytes | None
    flags: int
    create_index: int
    modify_index: int
    lock_index: int = 0
    session: str = ""
    _json: JSON | None = field(default=None, repr=False, compare=False)
    _body: bytes | None = field(default=None, repr=False, compare=False)

    def body(self) -> bytes:
        """``[entry]`` encoded, cached: what a plain ``GET /v1/kv/<key>`` answers."""
        if self._body is None:
            self._body = orjson.dumps([self.to_json()])
        return self._body

    def to_json(self) -> JSON:
        if self._json is None:
            out: JSON = {
                "LockIndex": self.lock_index,
                "Key": self.key,
                "Flags": self.flags,
                "Value": base64.b64encode(self.value).decode() if self.value else None,
                "CreateIndex": self.create_index,
                "ModifyIndex": self.modify_index,
            }
            if self.session:
                out["Session"] = self.session
            self._json = out
        return self._json


class KVError(Exception):
    """A KV operation Consul refuses with an error (not a plain ``false``); ``str`` is Consul's text."""


class KVStore:
    """Keys in sorted order (prefix scans by bisection), tombstones for prefix indexes, lock-delays."""

    def __init__(
        self,
        watch: Watch,
        clock: Callable[[], float],
        session_exists: Callable[[str], bool],
        changed: Callable[[], None],
    ) -> None:
        self.watch = watch
        self.clock = clock
        self._session_exists = session_exists
        self._changed = changed
        self._kv: dict[str, KVEntry] = {}
        self._keys: list[str] = []
        self._tombstones: dict[str, tuple[int, float]] = {}
        self._tomb_keys: list[str] = []
        # Key -> clock time before which a lock on it is refused (set when a session holding it is invalidated).
        self._lock_delay: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------ reads

    def table_index(self) -> int:
        return self.watch.table("kvs")

    def get(self, key: str) -> tuple[int, KVEntry | None]:
        entry = self._kv.get(key)
        if entry is not None:
            return max(entry.modify_index, 1), entry
        return self.table_index(), None

    def entry(self, key: str) -> KVEntry | None:
        return self._kv.get(key)

    def _scan(self, keys: list[str], prefix: str) -> Iterator[str]:
        i = bisect.bisect_left(keys, prefix)
        while i < len(keys) and keys[i].startswith(prefix):
            yield keys[i]
            i += 1

    def _prefix_index(self, prefix: str, entries: list[KVEntry]) -> int:
        """Max ModifyIndex under the prefix, tombstones included (so a delete moves the index forward);
        the whole table's index for the empty prefix or when nothing is there."""
        if prefix == "":
            return self.table_index()
        idx = max((e.modify_index for e in entries), default=0)
        for key in self._scan(self._tomb_keys, prefix):
            idx = max(idx, self._tombstones[key][0])
        return idx if idx else self.table_index()

    def list_prefix(self, prefix: str) -> tuple[int, list[KVEntry]]:
        entries = [self._kv[k] for k in self._scan(self._keys, prefix)]
        return self._prefix_index(prefix, entries), entries

    def keys(self, prefix: str, separator: str = "") -> tuple[int, list[str]]:
        entries = [self._kv[k] for k in self._scan(self._keys, prefix)]
        keys: list[str] = []
        prev = None
        for e in entries:
            if not separator:
                keys.append(e.key)
                continue
            after = e.key[len(prefix) :]
            pos = after.find(separator)
            if pos >= 0:
                k = e.key[: len(prefix) + pos + len(separator)]
                if k != prev:
                    keys.append(k)
                    prev = k
            else:
                keys.append(e.key)
        return self._prefix_index(prefix, entries), keys

    def count(self) -> int:
        return len(self._kv)

    def held_by(self, session: str) -> list[str]:
        return [k for k, e in self._kv.items() if e.session == session]

    def lock_delayed(self, key: str) -> bool:
        until = self._lock_delay.get(key)
        if until is None:
            return False
        if self.clock() >= until:
            del self._lock_delay[key]
            return False
        return True

    def all_entries(self) -> list[KVEntry]:
        return list(self._kv.values())

    # ------------------------------------------------------------------------------------------ writes

    def _store(self, key: str, value: bytes | None, flags: int, idx: int, lock_index: int, session: str) -> KVEntry:
        old = self._kv.get(key)
        if old is None:
            bisect.insort(self._keys, key)
            entry = KVEntry(key, value, flags, idx, idx, lock_index, session)
        else:
            entry = KVEntry(key, value, flags, old.create_index, idx, lock_index, session)
        self._kv[key] = entry
        self._notify_key(key)
        return entry

    def _remove(self, key: str, idx: int, now: float) -> None:
        del self._kv[key]
        del self._keys[bisect.bisect_left(self._keys, key)]
        if key not in self._tombstones:
            bisect.insort(self._tomb_keys, key)
        self._tombstones[key] = (idx, now)
        self._notify_key(key)

    def _notify_key(self, key: str) -> None:
        self.watch.notify(("kv", key))
        for prefix in self.watch.kv_prefixes_of(key):
            self.watch.notify(("kvp", prefix))

    def _commit(self, idx: int) -> None:
        self.watch.tables["kvs"] = idx
        self._changed()

    def set(self, key: str, value: bytes | None, flags: int = 0) -> bool:
        idx = self.watch.bump()
        old = self._kv.get(key)
        # A plain write keeps the lock (Consul's kvsSetTxn preserves Session and LockIndex).
        self._store(key, value, flags, idx, old.lock_index if old else 0, old.session if old else "")
        self._commit(idx)
        return True

    def cas(self, key: str, value: bytes | None, flags: int, cas: int) -> bool:
        """Check-and-set: ``cas=0`` only creates; otherwise only if the ModifyIndex is exactly ``cas``."""
        if not self.cas_ok(key, cas):
            return False
        return self.set(key, value, flags)

    def cas_ok(self, key: str, cas: int) -> bool:
        old = self._kv.get(key)
        return old is None if cas == 0 else old is not None and old.modify_index == cas

    def acquire(self, key: str, value: bytes | None, flags: int, session: str) -> bool:
        """``?acquire=``: take the lock for ``session`` (re-acquiring a held lock updates the value)."""
        if not self.can_lock(key, session):
            return False
        idx = self.watch.bump()
        old = self._kv.get(key)
        lock_index = (
            old.lock_index if old is not None and old.session == session else (old.lock_index if old else 0) + 1
        )
        self._store(key, value, flags, idx, lock_index, session)
        self._commit(idx)
        return True

    def can_lock(self, key: str, session: str) -> bool:
        """Whether ``session`` may lock ``key`` now; an unknown session is an error, as in Consul."""
        if not session:
            raise KVError("missing session")
        if not self._session_exists(session):
            raise KVError(f"invalid session {go_quote(session)}")
        old = self._kv.get(key)
        if old is not None and old.session and old.session != session:
            return False
        if old is not None and old.session == session:
            return True
        return not self.lock_delayed(key)

    def release(self, key: str, value: bytes | None, flags: int, session: str) -> bool:
        """``?release=``: give the lock up (only its holder can); the value is written as with a plain PUT."""
        if not self.can_unlock(key, session):
            return False
        idx = self.watch.bump()
        old = self._kv[key]
        self._store(key, value, flags, idx, old.lock_index, "")
        self._commit(idx)
        return True

    def can_unlock(self, key: str, session: str) -> bool:
        if not session:
            raise KVError("missing session")
        old = self._kv.get(key)
        return old is not None and old.session == session

    def delete(self, key: str) -> bool:
        if key in self._kv:
            idx = self.watch.bump()
            self._remove(key, idx, self.clock())
            self._commit(idx)
        return True

    def delete_cas(self, key: str, cas: int) -> bool:
        entry = self._kv.get(key)
        if entry is None or entry.modify_index != cas:
            # Consul answers true for a missing key (nothing to protect), false for a mismatch.
            return entry is None
        return self.delete(key)

    def delete_tree(self, prefix: str) -> bool:
        keys = list(self._scan(self._keys, prefix))
        if keys:
            idx = self.watch.bump()
            now = self.clock()
            for key in keys:
                self._remove(key, idx, now)
            self._commit(idx)
        return True

    def apply_overlay(self, changes: dict[str, KVEntry | None]) -> None:
        """Commit a transaction's changes under one new index (entries were built with that index)."""
        idx = self.watch.bump()
        now = self.clock()
        for key, entry in changes.items():
            if entry is None:
                if key in self._kv:
                    self._remove(key, idx, now)
                continue
            if key not in self._kv:
                bisect.insort(self._keys, key)
            self._kv[key] = entry
            self._notify_key(key)
        self._commit(idx)

    def invalidate_session(self, session: str, delete: bool, lock_delay: float, idx: int) -> None:
        """A session ended: its locks are released (or the keys deleted) and each key gets the lock-delay."""
        now = self.clock()
        held = self.held_by(session)
        for key in held:
            if delete:
                self._remove(key, idx, now)
            else:
                old = self._kv[key]
                self._store(key, old.value, old.flags, idx, old.lock_index, "")
            if lock_delay > 0:
                self._lock_delay[key] = now + lock_delay
        if held:
            self.watch.tables["kvs"] = idx

    def reap_tombstones(self, older_than: float) -> int:
        """Forget tombstones recorded before ``older_than`` (Consul's tombstone GC)."""
        dead = [k for k, (_, t) in self._tombstones.items() if t < older_than]
        for key in dead:
            del self._tombstones[key]
            del self._tomb_keys[bisect.bisect_left(self._tomb_keys, key)]
        for key in [k for k, until in self._lock_delay.items() if until <= self.clock()]:
            del self._lock_delay[key]
        return len(dead)

    def restore_entry(self, entry: KVEntry) -> None:
        if entry.key not in self._kv:
            bisect.insort(self._keys, entry.key)
        self._kv[entry.key] = entry
        self.watch.tables["kvs"] = max(self.watch.tables["kvs"], entry.modify_index)

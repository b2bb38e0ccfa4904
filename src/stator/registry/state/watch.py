"""Raft-like indexes and the parking lot of blocking queries.

Every write takes the next index and records it on the tables it touched (Consul's state store keeps one index per
table, plus finer ones: per service, per KV key/prefix, per session). Writers name the *topics* they changed;
blocking queries wait on a topic.

Parked queries are grouped: connections waiting on the same query (same path and parameters, whatever their
``?index=``) form one :class:`Group`. When a topic changes, each of its groups renders its answer once, after the
write is complete (at the next loop iteration, so a write that touches several tables is seen whole), and the
same bytes go to every member whose ``?index`` the answer passes. Members not yet passed stay parked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Final

from stator.registry.http import Park, Response, encode_response

if TYPE_CHECKING:
    from stator.registry.http import Connection

Topic = tuple[Hashable, ...]
TABLES: Final = ("nodes", "services", "checks", "kvs", "sessions")


class Group:
    """Connections parked on one query: rendered once per wake-up, answered with the same bytes."""

    __slots__ = ("key", "members", "park", "topic")

    def __init__(self, topic: Topic, key: object, park: Park) -> None:
        self.topic = topic
        self.key = key
        self.park = park
        self.members: dict[Connection, int] = {}


class Watch:
    """The global index, per-table indexes and parked blocking queries."""

    def __init__(self) -> None:
        self._index = 0
        self.tables: dict[str, int] = dict.fromkeys(TABLES, 0)
        self._groups: dict[Topic, dict[object, Group]] = {}
        self._kv_prefixes: dict[str, int] = {}
        self._dirty: dict[int, Group] = {}
        self._flush_scheduled = False
        self._parked = 0
        self.shutting_down = False

    # ------------------------------------------------------------------------------------------ indexes

    @property
    def index(self) -> int:
        return self._index

    def bump(self, *tables: str) -> int:
        """Take the next index for a write to ``tables``."""
        self._index += 1
        for table in tables:
            self.tables[table] = self._index
        return self._index

    def restore_index(self, index: int) -> None:
        self._index = max(self._index, index)

    def table(self, name: str) -> int:
        return max(self.tables[name], 1)

    # ------------------------------------------------------------------------------------------ parking

    def park(self, conn: Connection, park: Park) -> None:
        groups = self._groups.setdefault(park.topic, {})
        group = groups.get(park.key)
        if group is None:
            group = groups[park.key] = Group(park.topic, park.key, park)
            if park.topic[0] == "kvp":
                prefix = str(park.topic[1])
                self._kv_prefixes[prefix] = self._kv_prefixes.get(prefix, 0) + 1
        group.members[conn] = park.min_index
        self._parked += 1

    def unpark(self, conn: Connection) -> None:
        park = conn.parked
        if park is None:
            return
        groups = self._groups.get(park.topic)
        group = groups.get(park.key) if groups is not None else None
        if group is None or group.members.pop(conn, None) is None:
            return
        self._parked -= 1
        if not group.members:
            self._drop(group)

    def _drop(self, group: Group) -> None:
        groups = self._groups.get(group.topic)
        if groups is None or groups.get(group.key) is not group:
            return
        del groups[group.key]
        if not groups:
            del self._groups[group.topic]
        if group.topic[0] == "kvp":
            prefix = str(group.topic[1])
            left = self._kv_prefixes[prefix] - 1
            if left:
                self._kv_prefixes[prefix] = left
            else:
                del self._kv_prefixes[prefix]

    def parked(self) -> int:
        """Blocking queries currently parked."""
        return self._parked

    def kv_prefixes_of(self, key: str) -> Iterator[str]:
        """The watched KV prefixes that ``key`` falls under."""
        return (p for p in self._kv_prefixes if key.startswith(p))

    # ------------------------------------------------------------------------------------------ waking

    def notify(self, topic: Topic) -> None:
        groups = self._groups.get(topic)
        if not groups:
            return
        for group in groups.values():
            self._dirty[id(group)] = group
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Render each changed group once and answer the members its index passes."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, {}
        for group in dirty.values():
            if not group.members:
                continue
            index, resp = group.park.render()
            self._answer(group, index, resp)

    def _answer(self, group: Group, index: int, resp: Response) -> None:
        everyone = self.shutting_down
        ready = [c for c, m in group.members.items() if everyone or index > m]
        if not ready:
            return
        data = encode_response(resp)
        members = group.members
        for conn in ready:
            del members[conn]
        self._parked -= len(ready)
        if not members:
            self._drop(group)
        for conn in ready:
            conn.answer_parked(data)

    def wake_all(self) -> None:
        """Answer every parked query now with its current data (shutdown)."""
        self.shutting_down = True
        for groups in list(self._groups.values()):
            for group in list(groups.values()):
                index, resp = group.park.render()
                self._answer(group, index, resp)

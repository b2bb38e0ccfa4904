"""Several worker processes, one truthful service instance: groups, slots, merged metrics, the supervisor.

See docs/workers.md. The pieces, one module per concept: :mod:`~stator.workers.identity` (which group, where its
files live), :mod:`~stator.workers.slots` (flock-held slots and leadership), :mod:`~stator.workers.snapshot`
(a worker's metrics as bytes), :mod:`~stator.workers.channel` (the slot socket), :mod:`~stator.workers.policy`
and :mod:`~stator.workers.merge` (how families combine), :mod:`~stator.workers.group` (membership, merged
scrapes, the roster) and :mod:`~stator.workers.supervisor` (``stator run --workers N``).
"""

from stator.workers.group import WorkerGroup
from stator.workers.identity import GroupIdentity, GroupMode, detect
from stator.workers.leader import LeaderOnly
from stator.workers.policy import Policies, Policy
from stator.workers.supervisor import Listeners, Supervisor, bind

__all__ = [
    "GroupIdentity",
    "GroupMode",
    "LeaderOnly",
    "Listeners",
    "Policies",
    "Policy",
    "Supervisor",
    "WorkerGroup",
    "bind",
    "detect",
]

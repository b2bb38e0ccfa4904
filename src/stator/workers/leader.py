"""LeaderOnly: run a background worker (registration) in one process of the group only.

``service.add_worker(LeaderOnly(roster, group))``: the wrapped worker starts once this process takes the group's
``leader.lock`` (tried every ``interval`` seconds; immediately for the first worker) and runs for the life of the
process. When the leader dies the kernel drops its lock and another worker's next try wins, so a dead leader's
duty moves on within ``interval``. Its pre-drain step (deregistration) runs only where the worker ran.
"""

from __future__ import annotations

from stator.lifecycle.worker import PreDrain, Worker
from stator.workers.group import WorkerGroup


class LeaderOnly:
    def __init__(self, worker: Worker, group: WorkerGroup, interval: float = 1.0) -> None:
        self.worker = worker
        self.group = group
        self.interval = interval
        self.leading = False

    @property
    def name(self) -> str:
        return self.worker.name

    async def run(self) -> None:
        if not self.leading:
            await self.group.wait_leader(self.interval)
            self.leading = True
            self.group.logger.info("leading the worker group", worker=self.group.slot, duty=self.worker.name)
        await self.worker.run()

    async def before_drain(self) -> None:
        if self.leading and isinstance(self.worker, PreDrain):
            await self.worker.before_drain()

"""Workers and their supervision."""

from stator.lifecycle.worker import PreDrain, Worker, WorkerState, supervise

__all__ = ["PreDrain", "Worker", "WorkerState", "supervise"]

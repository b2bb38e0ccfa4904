"""The default collectors every service gets (``ServiceMetrics.install_defaults``)."""

from stator.metrics.collectors.build import BuildInfoCollector, detect_git_commit
from stator.metrics.collectors.disk import DiskCollector
from stator.metrics.collectors.loop import LOOP_LAG_BUCKETS, LoopCollector
from stator.metrics.collectors.process import ProcessCollector
from stator.metrics.collectors.python import PythonCollector
from stator.metrics.collectors.wave import WaveCollector

__all__ = [
    "LOOP_LAG_BUCKETS",
    "BuildInfoCollector",
    "DiskCollector",
    "LoopCollector",
    "ProcessCollector",
    "PythonCollector",
    "WaveCollector",
    "detect_git_commit",
]

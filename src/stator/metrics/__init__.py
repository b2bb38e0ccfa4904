"""Metrics: one registry per service, guarded collectors, off-loop exposition in both formats."""

from stator.metrics.guard import GuardedCollector
from stator.metrics.hub import ServiceMetrics
from stator.metrics.negotiation import accepts_gzip, negotiate

__all__ = ["GuardedCollector", "ServiceMetrics", "accepts_gzip", "negotiate"]

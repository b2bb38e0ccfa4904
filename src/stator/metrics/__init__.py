"""Metrics: one registry per service, guarded collectors, off-loop exposition."""

from stator.metrics.hub import ServiceMetrics

__all__ = ["ServiceMetrics"]

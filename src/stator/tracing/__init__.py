"""OpenTelemetry tracing: per-service provider, server spans in the middleware pass, off-loop OTLP export."""

from stator.tracing.tracing import Tracing

__all__ = ["Tracing"]

"""Calling other services: ``service.upstream(name)`` — discovered instances, balancing, retries with a budget,
outlier ejection, a circuit breaker, a client-side rate limit, and their telemetry. See ``docs/upstream.md``."""

from stator.upstream.client import INSTANCE_EXTENSION, Instancer, Upstream
from stator.upstream.errors import (
    AttemptsFailed,
    CircuitOpen,
    DeadlineExceeded,
    NoInstances,
    RateLimited,
    UpstreamError,
)
from stator.upstream.instancer import InstanceWatcher, StaticInstancer
from stator.upstream.instances import Instance, parse_static
from stator.upstream.setup import ServiceLike, UpstreamHub, build_upstream

__all__ = [
    "INSTANCE_EXTENSION",
    "AttemptsFailed",
    "CircuitOpen",
    "DeadlineExceeded",
    "Instance",
    "InstanceWatcher",
    "Instancer",
    "NoInstances",
    "RateLimited",
    "ServiceLike",
    "StaticInstancer",
    "Upstream",
    "UpstreamError",
    "UpstreamHub",
    "build_upstream",
    "parse_static",
]

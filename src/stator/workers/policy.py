"""How a gauge of several workers becomes one value: the declared merge policy per metric family.

Counters, histograms, gauge histograms and summaries (count and sum) are always summed — across live workers,
dead workers' last files and the group archive. Everything else (gauges, info, state sets, unknown) is merged from
**live** workers only, by a policy:

========== ==================================================================================================
sum        the total (in-flight requests, queue lengths, tasks)
max        the largest (timestamps of last success, readiness-like flags, identical values such as disk size)
min        the smallest (a success flag any worker can pull to 0, the tightest fd limit)
mostrecent the value of the newest sample (the sample's own timestamp, else the time its worker was snapshotted)
worker     one series per worker, with a ``worker`` label (the slot index): lossless; the default for gauges
           stator does not know
worker+sum per-worker series plus the total in a family ``stator_workers_<name without process_>``
first      the lowest live slot's value (identity: ``target_info``)
========== ==================================================================================================

Declare a policy for your own gauge with :meth:`Policies.declare` (``service.metrics_policy("queue_depth",
"sum")`` once wired into the Service); the declaration travels with the worker's snapshot, so the worker that
answers a scrape merges with the owner's declaration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, get_args

Policy = Literal["sum", "max", "min", "mostrecent", "worker", "worker+sum", "first"]
POLICIES: Final = frozenset(get_args(Policy))
ADDITIVE: Final = frozenset({"counter", "histogram", "gaugehistogram", "summary"})

DEFAULTS: Final[Mapping[str, Policy]] = {
    # HTTP and runtime
    "http_requests_in_flight": "sum",
    "python_asyncio_tasks": "sum",
    "python_info": "max",
    # process collector: per worker, plus the group total where a total means something
    "process_resident_memory_bytes": "worker+sum",
    "process_virtual_memory_bytes": "worker",
    "process_open_fds": "worker+sum",
    "process_threads": "worker+sum",
    "process_start_time_seconds": "worker",
    "process_max_fds": "min",
    # stator's own
    "stator_collector_duration_seconds": "max",
    "stator_collector_success": "min",
    "stator_registration_up": "max",
    "stator_registration_last_success_timestamp_seconds": "max",
    "stator_discovery_last_update_timestamp_seconds": "max",
    "stator_discovery_services": "max",
    "stator_tracing_queue_spans": "sum",
    "disk_usage_size_bytes": "max",
    "disk_usage_available_bytes": "min",
    "disk_usage_used_bytes": "max",
    "disk_usage_used_ratio": "max",
    "wave_sine": "max",
    "target": "first",
}
KIND_DEFAULTS: Final[Mapping[str, Policy]] = {"info": "max", "stateset": "worker"}
FALLBACK: Final[Policy] = "worker"


class Policies:
    """Gauge merge policies: the defaults above, overridden per family name by :meth:`declare`."""

    def __init__(self, declared: Mapping[str, Policy] | None = None) -> None:
        self._declared: dict[str, Policy] = {}
        for name, policy in (declared or {}).items():
            self.declare(name, policy)

    def declare(self, metric: object, policy: str) -> None:
        """``metric``: a family name (``"queue_depth"``) or a prometheus_client metric object (a ``Gauge``)."""
        if policy not in POLICIES:
            raise ValueError(f"unknown merge policy {policy!r}; one of {', '.join(sorted(POLICIES))}")
        name = metric if isinstance(metric, str) else getattr(metric, "_name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"cannot tell the metric name of {metric!r}; pass the family name")
        self._declared[name] = policy  # type: ignore[assignment]  # checked against POLICIES above

    def policy(self, name: str, kind: str) -> str:
        """The policy of a family ("" for additive kinds, which are always summed)."""
        if kind in ADDITIVE:
            return ""
        found = self._declared.get(name) or DEFAULTS.get(name) or KIND_DEFAULTS.get(kind)
        return found or FALLBACK

    def declared(self) -> dict[str, Policy]:
        return dict(self._declared)

"""A real OpenTelemetry ``TracerProvider`` for a service, and the one process-wide hook that makes it global.

:class:`ServiceTracerProvider` hands out :class:`~stator.tracing.spans.LightTracer` s — one per instrumentation
scope, all sharing the service's sampler, resource, id generator and bounded export queue — so
``trace.get_tracer(__name__)`` in user code and the tracers of ``opentelemetry-instrumentation-*`` libraries
(httpx, SQLAlchemy, redis, ...) make spans that are exported through stator, in the trace of the request that is
running, at the light span's cost.

OpenTelemetry's global provider can be set once per process and never unset. So stator sets it at most once, to
:data:`GLOBAL`, a :class:`DelegatingTracerProvider` that forwards to the providers services attach to it and
detach at shutdown. Its tracers pick, for each span, the provider of the span's parent when the parent is a
stator span (a span joins the service whose request it runs in, so two services in one process stay apart), else
the most recently attached provider; with none attached they make non-recording spans — the same cheap no-op the
API gives when no SDK is installed. Tracers that libraries fetched before any service started follow along,
because OpenTelemetry's proxy tracers resolve to the global provider once it is set.

A process whose global provider was already set by someone else (an SDK ``TracerProvider`` the user installed)
keeps it: :func:`attach_global` says so and returns ``False``, and the user's spans then go to their pipeline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util import types

from stator.tracing.spans import CurrentSpanTracer, LightSpan, LightTracer


class ServiceTracerProvider(trace.TracerProvider):
    """One service's provider: a :class:`LightTracer` per instrumentation scope over one export queue."""

    def __init__(
        self,
        sampler: Sampler,
        resource: Resource,
        on_end: Callable[[LightSpan], None],
        id_generator: IdGenerator | None = None,
    ) -> None:
        self.sampler = sampler
        self.resource = resource
        self.on_end = on_end
        self.id_generator = id_generator
        self._tracers: dict[tuple[str, str, str], LightTracer] = {}
        self._lock = threading.Lock()

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes | None = None,
    ) -> LightTracer:
        key = (instrumenting_module_name or "", instrumenting_library_version or "", schema_url or "")
        tracer = self._tracers.get(key)
        if tracer is None:
            with self._lock:
                tracer = self._tracers.get(key)
                if tracer is None:
                    scope = InstrumentationScope(
                        instrumenting_module_name, instrumenting_library_version, schema_url, attributes
                    )
                    tracer = LightTracer(self.sampler, self.resource, scope, self.on_end, self.id_generator)
                    tracer.provider = self
                    self._tracers[key] = tracer
        return tracer


class DelegatingTracerProvider(trace.TracerProvider):
    """The process-wide provider stator installs once; forwards to the attached service providers."""

    def __init__(self) -> None:
        self._providers: list[ServiceTracerProvider] = []
        self._lock = threading.Lock()

    def attach(self, provider: ServiceTracerProvider) -> None:
        with self._lock:
            self._providers = [*self._providers, provider]

    def detach(self, provider: ServiceTracerProvider) -> None:
        with self._lock:
            self._providers = [p for p in self._providers if p is not provider]

    @property
    def attached(self) -> Sequence[ServiceTracerProvider]:
        return self._providers

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes | None = None,
    ) -> trace.Tracer:
        return _DelegatingTracer(
            self, (instrumenting_module_name, instrumenting_library_version, schema_url, attributes)
        )

    def tracer_for(self, context: Context | None, key: tuple[Any, ...]) -> trace.Tracer | None:
        parent = trace.get_current_span(context)
        if isinstance(parent, LightSpan):
            owner: ServiceTracerProvider | None = parent.provider
            if owner is not None:
                return owner.get_tracer(*key)
        providers = self._providers
        return providers[-1].get_tracer(*key) if providers else None


class _DelegatingTracer(CurrentSpanTracer):
    __slots__ = ("key", "owner")

    def __init__(self, owner: DelegatingTracerProvider, key: tuple[Any, ...]) -> None:
        self.owner = owner
        self.key = key

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        tracer = self.owner.tracer_for(context, self.key)
        if tracer is None:
            return trace.NonRecordingSpan(trace.get_current_span(context).get_span_context())
        return tracer.start_span(name, context, kind, attributes, links, start_time)


GLOBAL = DelegatingTracerProvider()
_install_lock = threading.Lock()


def attach_global(provider: ServiceTracerProvider) -> bool:
    """Make ``provider`` answer OpenTelemetry's global ``get_tracer()``; False when another global provider was
    installed first (it is left alone). Undo with :func:`detach_global`."""
    with _install_lock:
        current = trace.get_tracer_provider()
        if current is not GLOBAL:
            if not isinstance(current, trace.ProxyTracerProvider):
                return False
            trace.set_tracer_provider(GLOBAL)
            if trace.get_tracer_provider() is not GLOBAL:  # lost a race with another installer
                return False
        GLOBAL.attach(provider)
        return True


def detach_global(provider: ServiceTracerProvider) -> None:
    GLOBAL.detach(provider)

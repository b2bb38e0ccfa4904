"""Our own exposition encoder: byte-for-byte prometheus_client's output, 3x faster, GC-neutral and GIL-polite.

Why, measured by ``bench/bench_metrics.py`` (10k series): rendering in a thread keeps the event loop running,
but prometheus_client's ``generate_latest`` still stalled it for 12-19 ms at a time, for two reasons:

- **GC.** ``collect()`` materialises every sample as a ``Sample`` tuple plus a labels dict and keeps a whole
  family alive while it is encoded: ~30k live container objects per render. That trips generation-0/1
  collections, promotes the survivors, and every few scrapes triggers a full collection of the whole heap
  (10-14 ms with 10k series), which stops every thread, the event loop included.
- **The GIL.** A busy thread gives the GIL up only when another thread has waited for a whole switch interval
  (5 ms), and the loop needs it twice to wake a sleeping task: ~10 ms.

This encoder walks prometheus_client's metric objects directly (the children of a labelled metric and their
``_child_samples()``, what ``collect()`` itself uses), formats each line at once and keeps only strings, so the
number of live container objects does not grow and no collection is triggered. Every ~1 ms of work it sleeps
50 µs, which hands the GIL to the loop if the loop wants it. Result: ~3x faster, longest loop stall ~2-4 ms.

Compatibility is the contract: output must equal prometheus_client's ``generate_latest`` (text 0.0.4) and
``openmetrics.exposition.generate_latest`` byte for byte — HELP/label escaping, ``_created``/``_gsum``/
``_gcount`` regrouping in the text format, exemplars, timestamps, units, ``# EOF``. Anything this module does not
reproduce itself is handed to prometheus_client's encoder one family at a time (names outside
``[a-zA-Z_][a-zA-Z0-9_]*``, which its escaping rewrites; metric subclasses with their own ``collect()``).
Native-histogram samples are left out, as prometheus_client's OpenMetrics 1.0 encoder does (its text encoder
crashes on them). Tests compare both on hypothesis-generated registries, and :func:`self_check` repeats the
comparison on a canary registry at the first render: if a future prometheus_client formats differently, stator
logs it and falls back to prometheus_client's encoders (``STATOR_METRICS_RENDERER=prometheus_client`` does that
by hand).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal, cast

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.exposition import generate_latest as generate_text
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as _generate_openmetrics
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

Format = Literal["text", "openmetrics"]

_number: Final = cast(Callable[[float], str], floatToGoString)
_PLAIN: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
# Text-format sample suffixes that prometheus_client moves out of their family into a gauge family of their own.
_REGROUPED: Final = ("_created", "_gsum", "_gcount")
_TEXT_TYPES: Final = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
TYPE_SUFFIXES: Final[dict[str, tuple[str, ...]]] = {
    "counter": ("_total", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}

generate_openmetrics: Final = cast(Callable[[Any], bytes], _generate_openmetrics)  # untyped upstream

# Cooperative GIL hand-off: after SLICE seconds of work, sleep NAP seconds (a real sleep: sleep(0) releases the
# GIL for too short a moment for the waiting thread to take it, and resets that thread's wait).
SLICE: Final = 0.001
NAP: Final = 0.00005


class Delegate(Exception):
    """This family needs prometheus_client's own encoder."""


def exposed_names(name: str, kind: str) -> tuple[str, ...]:
    return (name, *(name + suffix for suffix in TYPE_SUFFIXES.get(kind, ())))


def _escape_value(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _plain(name: str) -> bool:
    return _PLAIN.match(name) is not None


def _plain_label(name: str) -> bool:
    return _PLAIN.match(name) is not None and not name.startswith("__")


def _labels(labels: dict[str, str], good: set[str]) -> str:
    """``k="v",...`` sorted by name; Delegate for label names prometheus_client would escape."""
    parts = []
    for key, value in sorted(labels.items()):
        if key not in good:
            if not _plain_label(key):
                raise Delegate(key)
            good.add(key)
        parts.append(f'{key}="{_escape_value(value)}"')
    return ",".join(parts)


class Pacer:
    """Counts units of work; every ``SLICE`` seconds of them, naps so a thread waiting for the GIL gets it."""

    __slots__ = ("_last", "_n", "nap", "naps", "slice")

    def __init__(self, slice_seconds: float = SLICE, nap: float = NAP) -> None:
        self.slice = slice_seconds
        self.nap = nap
        self.naps = 0
        self._n = 0
        self._last = time.perf_counter()

    def tick(self) -> None:
        self._n += 1
        if self._n & 63 or not self.slice:
            return
        now = time.perf_counter()
        if now - self._last >= self.slice:
            time.sleep(self.nap)
            self.naps += 1
            self._last = time.perf_counter()


class _One:
    """A registry-like view of one family, for prometheus_client's encoders."""

    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> list[Metric]:
        return [self.family]


class Encoder:
    """One render: families go in (:meth:`family`, :meth:`wrapper`), bytes come out (:meth:`finish`)."""

    def __init__(
        self,
        fmt: Format,
        pacer: Pacer | None = None,
        on_clash: Callable[[str, object | None], None] | None = None,
    ) -> None:
        self.om = fmt == "openmetrics"
        self.pacer = pacer or Pacer(0.0)
        self.on_clash = on_clash
        self.out: list[str] = []
        self._seen: set[str] = set()
        self._good_labels: set[str] = set()
        self._good_names: set[str] = set()

    # -- bookkeeping -------------------------------------------------------------------------------------

    def _claim(self, name: str, kind: str, origin: object | None) -> bool:
        """Reserve the family's exposed names; False (and reported) if an earlier family holds any of them.

        A second ``# TYPE`` for the same name makes Prometheus reject the whole scrape; the later family goes."""
        names = exposed_names(name, kind)
        if not self._seen.isdisjoint(names):
            if self.on_clash is not None:
                self.on_clash(name, origin)
            return False
        self._seen.update(names)
        return True

    def _check_name(self, name: str) -> None:
        if name not in self._good_names:
            if not _plain(name):
                raise Delegate(name)
            self._good_names.add(name)

    def _delegate(self, family: Metric) -> None:
        if self.om:
            body = generate_openmetrics(_One(family)).decode("utf-8")
            self.out.append(body.removesuffix("# EOF\n"))
        else:
            self.out.append(generate_text(_One(family)).decode("utf-8"))

    def _header(self, name: str, kind: str, doc: str, unit: str) -> list[str]:
        if self.om:
            doc = doc.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
            head = f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"
            if unit:
                head += f"# UNIT {name} {unit}\n"
            return [head]
        doc = doc.replace("\\", r"\\").replace("\n", r"\n")
        if kind == "counter":
            shown = name + "_total"
        elif kind == "info":
            shown = name + "_info"
        else:
            shown = name
        return [f"# HELP {shown} {doc}\n# TYPE {shown} {_TEXT_TYPES.get(kind, kind)}\n"]

    def _regrouped(self, name: str, doc: str, groups: dict[str, list[str]]) -> list[str]:
        doc = doc.replace("\\", r"\\").replace("\n", r"\n")
        out: list[str] = []
        for suffix in sorted(groups):
            out.append(f"# HELP {name}{suffix} {doc}\n# TYPE {name}{suffix} gauge\n")
            out.extend(groups[suffix])
        return out

    def _line(self, name: str, labelstr: str, value: float, timestamp: Any, exemplar: Any) -> str:
        lbl = "{" + labelstr + "}" if labelstr else ""
        if self.om:
            ts = f" {timestamp}" if timestamp is not None else ""
            ex = ""
            if exemplar is not None:
                exl = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(exemplar.labels.items()))
                ex = f" # {{{exl}}} {_number(exemplar.value)}"
                if exemplar.timestamp is not None:
                    ex += f" {exemplar.timestamp}"
            return f"{name}{lbl} {_number(value)}{ts}{ex}\n"
        ts = f" {int(float(timestamp) * 1000):d}" if timestamp is not None else ""
        return f"{name}{lbl} {_number(value)}{ts}\n"

    # -- families ------------------------------------------------------------------------------------------

    def family(self, family: Metric, origin: object | None = None) -> None:
        """Encode a metric family as yielded by a collector."""
        if not self._claim(family.name, family.type, origin):
            return
        try:
            lines = self._rows_lines(family) if isinstance(family, RowsMetric) else self._family_lines(family)
        except Delegate:
            self._delegate(family)
        else:
            self.out.extend(lines)

    def _family_lines(self, family: Metric) -> list[str]:
        name = family.name
        self._check_name(name)
        lines = self._header(name, family.type, family.documentation, family.unit)
        groups: dict[str, list[str]] = {}
        good = self._good_labels
        tick = self.pacer.tick
        for sample in family.samples:
            if getattr(sample, "native_histogram", None) is not None:
                # Neither format here can carry a native histogram: OpenMetrics 1.0 output skips the sample
                # (as prometheus_client does), and so does the text format (where prometheus_client crashes).
                continue
            if sample.value is None:
                raise Delegate(name)
            self._check_name(sample.name)
            line = self._line(
                sample.name,
                _labels(sample.labels, good) if sample.labels else "",
                sample.value,
                sample.timestamp,
                sample.exemplar,
            )
            if not self.om and sample.name.startswith(name) and sample.name[len(name) :] in _REGROUPED:
                groups.setdefault(sample.name[len(name) :], []).append(line)
            else:
                lines.append(line)
            tick()
        if groups:
            lines.extend(self._regrouped(name, family.documentation, groups))
        return lines

    def _rows_lines(self, family: RowsMetric) -> list[str]:
        """:meth:`_family_lines` for a :class:`RowsMetric`: each row's ``name{labels}`` arrives formatted, so a
        line is one concatenation (no ``Sample``, labels dict or tuple per series: nothing for the GC)."""
        name = family.name
        if not family.plain:
            raise Delegate(name)
        self._check_name(name)
        lines = self._header(name, family.type, family.documentation, family.unit)
        groups: dict[str, list[str]] = {}
        regroup = not self.om
        regrouped = tuple(name + suffix for suffix in _REGROUPED)  # a cheap first test: most heads fail it
        tick = self.pacer.tick
        number = _number
        columns = zip(family.heads, family.values, map(repr, family.values), family.timestamps, family.exemplars,
                      strict=True)  # fmt: skip
        for head, value, text, timestamp, ex in columns:
            if timestamp is None and ex is None:
                # repr() is floatToGoString's answer when a "." is among its first 7 characters (no inf/nan, no
                # exponent; Go's exponent form starts at 1e+06): the common case, without a Python call.
                line = f"{head} {text if text.find('.', 0, 7) >= 0 else number(value)}\n"
            else:
                exemplar = None if ex is None else Exemplar(dict(ex[0]), ex[1], ex[2])
                line = self._line(head, "", value, timestamp, exemplar)
            if regroup and head.startswith(regrouped):
                sname = cast(str, head).partition("{")[0]
                suffix = sname[len(name) :]
                if suffix in _REGROUPED and sname.startswith(name):
                    groups.setdefault(suffix, []).append(line)
                    tick()
                    continue
            lines.append(line)
            tick()
        if groups:
            lines.extend(self._regrouped(name, family.documentation, groups))
        return lines

    def wrapper(self, metric: MetricWrapperBase) -> None:
        """Encode a prometheus_client metric straight from its children (no Sample materialisation)."""
        private: Any = metric  # prometheus_client internals are untyped
        head: Metric = private._get_metric()  # name, help, type and unit exactly as collect() would report them
        if not self._claim(head.name, head.type, None):
            return
        try:
            lines = self._wrapper_lines(metric, head)
        except Delegate:
            for family in metric.collect():
                self._delegate(family)
        else:
            self.out.extend(lines)

    def _wrapper_lines(self, metric: Any, head: Metric) -> list[str]:
        name: str = metric._name
        if head.name != name:
            raise Delegate(name)
        self._check_name(name)
        labelnames: Sequence[str] = metric._labelnames
        for label in labelnames:
            if not _plain_label(label):
                raise Delegate(label)
        order = sorted(range(len(labelnames)), key=labelnames.__getitem__)
        children: Iterable[tuple[Sequence[str], Any]]
        if metric._is_parent():
            with metric._lock:
                children = metric._metrics.copy().items()
        else:
            children = (((), metric),)
        lines = self._header(name, head.type, head.documentation, head.unit)
        groups: dict[str, list[str]] = {}
        good = self._good_labels
        om = self.om
        tick = self.pacer.tick
        line = self._line
        for values, child in children:
            series = ",".join([f'{labelnames[i]}="{_escape_value(values[i])}"' for i in order])
            for sample in child._child_samples():
                suffix: str = sample[0]
                extra: dict[str, str] = sample[1]
                if getattr(sample, "native_histogram", None) is not None:
                    continue  # see _family_lines
                if sample[2] is None:
                    raise Delegate(name)
                if extra:
                    merged = dict(zip(labelnames, values, strict=False))
                    merged.update(extra)
                    labelstr = _labels(merged, good)
                else:
                    labelstr = series
                text = line(name + suffix, labelstr, sample[2], sample[3], sample[4])
                if not om and suffix in _REGROUPED:
                    groups.setdefault(suffix, []).append(text)
                else:
                    lines.append(text)
            tick()
        if groups:
            lines.extend(self._regrouped(name, head.documentation, groups))
        return lines

    def finish(self) -> bytes:
        if self.om:
            self.out.append("# EOF\n")
        return "".join(self.out).encode("utf-8")


LabelPairs = tuple[tuple[str, str], ...]
ExemplarRow = tuple[LabelPairs, float, "float | None"]
"""An exemplar as (label pairs sorted by name, value, timestamp)."""
Head = "str | tuple[str, LabelPairs]"
"""A series: ``name{k="v",...}`` formatted (labels sorted by name, values escaped as both formats escape them;
just ``name`` without labels) in a plain family; ``(name, label pairs)`` in a family whose metric or label names
need prometheus_client's own escaping."""


class RowsMetric(Metric):
    """A family held as columns — series heads, values, timestamps, exemplars — as :mod:`stator.workers` merges
    them. :class:`Encoder` writes a line per row as ``head + value``; ``samples`` builds ``Sample`` objects for
    anyone else. ``plain`` is False when the heads are ``(name, label pairs)`` (see :data:`Head`)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        typ: str,
        unit: str,
        heads: list[Any],
        values: list[float],
        timestamps: list[float | None],
        exemplars: list[ExemplarRow | None],
        plain: bool = True,
    ) -> None:
        super().__init__(name, documentation, typ, unit)
        self.heads = heads
        self.values = values
        self.timestamps = timestamps
        self.exemplars = exemplars
        self.plain = plain

    @property
    def samples(self) -> list[Sample]:
        out = []
        for head, value, ts, ex in zip(self.heads, self.values, self.timestamps, self.exemplars, strict=True):
            sname, pairs = split_head(head) if self.plain else head
            exemplar = None if ex is None else Exemplar(dict(ex[0]), ex[1], ex[2])
            out.append(Sample(sname, dict(pairs), value, ts, exemplar))
        return out

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        if value:
            raise AttributeError("RowsMetric samples come from its rows")


def format_head(name: str, pairs: Iterable[tuple[str, str]]) -> str:
    """``name{k="v",...}`` for label pairs already sorted by name (plain names), as :class:`Encoder` writes it."""
    body = ",".join([f'{k}="{_escape_value(v)}"' for k, v in pairs])
    return f"{name}{{{body}}}" if body else name


_PAIR: Final = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE: Final = re.compile(r"\\(.)")


def split_head(head: str) -> tuple[str, list[tuple[str, str]]]:
    """The inverse of :func:`format_head`: (sample name, label pairs with values unescaped)."""
    name, brace, rest = head.partition("{")
    if not brace:
        return name, []
    pairs = [
        (k, _UNESCAPE.sub(lambda m: "\n" if m[1] == "n" else m[1], v) if "\\" in v else v)
        for k, v in _PAIR.findall(rest)
    ]
    return name, pairs


def wrapper_rows(metric: MetricWrapperBase, tick: Callable[[], None] | None = None) -> RowsMetric | None:
    """A prometheus_client metric's samples as a :class:`RowsMetric`, read from its children like
    :meth:`Encoder.wrapper` (no ``Sample`` per series); None when the metric is not a plain one (use collect()).
    ``tick`` is called per child (a :class:`Pacer`)."""
    if not fast_path(metric):
        return None
    private: Any = metric  # prometheus_client internals are untyped
    head: Metric = private._get_metric()
    name: str = private._name
    labelnames: Sequence[str] = private._labelnames
    if head.name != name or not _plain(name) or not all(_plain_label(label) for label in labelnames):
        return None
    order = sorted(range(len(labelnames)), key=labelnames.__getitem__)
    children: Iterable[tuple[Sequence[str], Any]]
    if private._is_parent():
        with private._lock:
            children = private._metrics.copy().items()
    else:
        children = (((), metric),)
    heads: list[Any] = []
    values: list[float] = []
    timestamps: list[float | None] = []
    exemplars: list[ExemplarRow | None] = []
    for labelvalues, child in children:
        base = [(labelnames[i], labelvalues[i]) for i in order]
        series = ",".join([f'{k}="{_escape_value(v)}"' for k, v in base])
        for sample in child._child_samples():
            suffix: str = sample[0]
            extra: dict[str, str] = sample[1]
            if sample[2] is None or getattr(sample, "native_histogram", None) is not None:
                continue
            if extra:
                heads.append(format_head(name + suffix, sorted([*base, *extra.items()])))
            else:
                heads.append(f"{name}{suffix}{{{series}}}" if series else name + suffix)
            values.append(float(sample[2]))
            ts = sample[3]
            timestamps.append(None if ts is None else float(ts))
            ex = sample[4]
            exemplars.append(
                None
                if ex is None
                else (
                    tuple(sorted(ex.labels.items())),
                    float(ex.value),
                    None if ex.timestamp is None else float(ex.timestamp),
                )
            )
        if tick is not None:
            tick()
    return RowsMetric(head.name, head.documentation, head.type, head.unit, heads, values, timestamps, exemplars)


def fast_path(collector: object) -> bool:
    """True for prometheus_client metrics whose collection is the stock one (what :meth:`Encoder.wrapper` reads)."""
    if not isinstance(collector, MetricWrapperBase):
        return False
    cls = type(collector)
    return (
        cls.collect is MetricWrapperBase.collect
        and cls._samples is MetricWrapperBase._samples
        and cls._multi_samples is MetricWrapperBase._multi_samples
        and cls._get_metric is MetricWrapperBase._get_metric
    )


def target_info_family(labels: dict[str, str]) -> Metric:
    family = Metric("target", "Target metadata", "info")
    family.add_sample("target_info", labels, 1)
    return family


# -- self check --------------------------------------------------------------------------------------------


class _CanaryCollector:
    def collect(self) -> list[Metric]:
        gauge = GaugeMetricFamily("canary_temperature_celsius", 'With unit,\ttabs and a "quote".', unit="celsius")
        gauge.add_metric([], -3.5, timestamp=1700000000.25)
        counter = CounterMetricFamily("canary_events", "Custom counter.", labels=["kind"], created=1700000000.0)
        counter.add_metric(["a\\b"], 7, created=1700000000.0)
        return [gauge, counter]


def canary_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    counter = Counter("canary_requests", "Help with \\ backslash\nand newline.", ["method", "path"], registry=registry)
    counter.labels("GET", 'a"quoted"\\path\n').inc(3)
    counter.labels("POST", "ünïcödé").inc(1.5, exemplar={"trace_id": 'abc"d'})
    Gauge("canary_plain", "No labels.", registry=registry).set(float("nan"))
    hist = Histogram("canary_latency_seconds", "Histogram.", ["route"], buckets=(0.1, 1, 10), registry=registry)
    hist.labels("/x").observe(0.5, exemplar={"trace_id": "t1"})
    hist.labels("/y").observe(20)
    Summary("canary_size_bytes", "Summary.", registry=registry).observe(1e21)
    Info("canary_build", "Info.", registry=registry).info({"version": "1.2.3", "commit": "abc"})
    Enum("canary_state", "Enum.", states=["up", "down"], registry=registry).state("down")
    registry.register(_CanaryCollector())
    registry.set_target_info({"app_id": "canary", "run_id": 'x"y'})
    return registry


def render_plain_registry(registry: CollectorRegistry, fmt: Format) -> bytes:
    """Our encoder over a plain prometheus_client registry (tests and the self check)."""
    encoder = Encoder(fmt)
    target = registry.get_target_info()
    if target:
        encoder.family(target_info_family(target))
    for collector in _registry_collectors(registry):
        if fast_path(collector):
            encoder.wrapper(cast(MetricWrapperBase, collector))
        else:
            for family in collector.collect():
                encoder.family(family)
    return encoder.finish()


def _registry_collectors(registry: CollectorRegistry) -> list[Collector]:
    # Registration order, as CollectorRegistry.collect() uses (tests and the canary only; the service's own
    # registry keeps its own ordered list).
    with registry._lock:
        return list(registry._collector_to_names)


def self_check() -> str | None:
    """None if our encoder reproduces prometheus_client's output on the canary registry, else the first
    differing line (for the log)."""
    try:
        registry = canary_registry()
        for fmt, reference in (("text", generate_text), ("openmetrics", generate_openmetrics)):
            ours = render_plain_registry(registry, cast(Format, fmt))
            theirs = reference(registry)
            if ours != theirs:
                for a, b in zip(ours.splitlines(), theirs.splitlines(), strict=False):
                    if a != b:
                        return f"{fmt}: ours {a!r} vs prometheus_client {b!r}"
                return f"{fmt}: outputs differ in length ({len(ours)} vs {len(theirs)} bytes)"
    except Exception as exc:  # an internal prometheus_client changed shape: say so, fall back
        return f"{type(exc).__name__}: {exc}"
    return None

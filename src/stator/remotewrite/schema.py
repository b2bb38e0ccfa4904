"""The remote-write 1.0 protobuf schema (prometheus/prompb ``types.proto`` + ``remote.proto``), built at import.

The messages are described with a ``FileDescriptorProto`` and parsed by the protobuf runtime stator already
depends on (upb, in C): no generated code to keep in step, no ``protoc`` in the build, and malformed wire data
(truncated fields, bad varints, invalid UTF-8 in strings) is rejected by the same parser Google ships.

Two message sets are built over the same wire format:

- :data:`PROMPB` — the real schema (``Label{string name=1; string value=2}`` ...). Tests and the benchmark encode
  with it; the receiver decodes the labels of a series it has not seen before with it.
- :data:`FAST` — a wire-compatible *shadow* in which ``TimeSeries.labels`` is ``repeated bytes``: parsing a
  series yields its labels as the encoded ``Label`` messages, decoded and validated only for a series the
  store has not seen.
- :data:`OUTER` — ``WriteRequest`` with every ``TimeSeries`` left as bytes: the C parser checks the framing and
  hands back one bytes object per series, which :mod:`stator.remotewrite.decode` splits without building any
  message object (see there).
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

__all__ = ["FAST", "OUTER", "PROMPB", "STALE_NAN_BITS", "DecodeError", "Messages"]

STALE_NAN_BITS: Final = 0x7FF0000000000002
"""Prometheus's staleness marker: a NaN with this exact bit pattern ends a series."""

_F = descriptor_pb2.FieldDescriptorProto


class Messages:
    """The message classes of one build of the schema."""

    def __init__(self, classes: dict[str, Any]) -> None:
        self.WriteRequest: Any = classes["WriteRequest"]
        self.TimeSeries: Any = classes["TimeSeries"]
        self.Label: Any = classes["Label"]
        self.Sample: Any = classes["Sample"]
        self.MetricMetadata: Any = classes["MetricMetadata"]
        self.Exemplar: Any = classes["Exemplar"]


def _build(package: str, *, raw_labels: bool) -> Messages:
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package, syntax="proto3")
    ref = f".{package}."

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        m = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = ref + type_name

    one, many = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    message("Label", ("name", 1, _F.TYPE_STRING, one, ""), ("value", 2, _F.TYPE_STRING, one, ""))
    message("Sample", ("value", 1, _F.TYPE_DOUBLE, one, ""), ("timestamp", 2, _F.TYPE_INT64, one, ""))
    message(
        "Exemplar",
        ("labels", 1, _F.TYPE_MESSAGE, many, "Label"),
        ("value", 2, _F.TYPE_DOUBLE, one, ""),
        ("timestamp", 3, _F.TYPE_INT64, one, ""),
    )
    labels = ("labels", 1, _F.TYPE_BYTES, many, "") if raw_labels else ("labels", 1, _F.TYPE_MESSAGE, many, "Label")
    message(
        "TimeSeries",
        labels,
        ("samples", 2, _F.TYPE_MESSAGE, many, "Sample"),
        ("exemplars", 3, _F.TYPE_MESSAGE, many, "Exemplar"),
        # Native histograms (field 4) are not stored: kept as bytes, only to be counted.
        ("histograms", 4, _F.TYPE_BYTES, many, ""),
    )
    message(
        "MetricMetadata",
        ("type", 1, _F.TYPE_INT32, one, ""),  # an enum in prompb; int32 has the same wire form
        ("metric_family_name", 2, _F.TYPE_STRING, one, ""),
        ("help", 4, _F.TYPE_STRING, one, ""),
        ("unit", 5, _F.TYPE_STRING, one, ""),
    )
    message(
        "WriteRequest",
        ("timeseries", 1, _F.TYPE_MESSAGE, many, "TimeSeries"),
        ("metadata", 3, _F.TYPE_MESSAGE, many, "MetricMetadata"),
    )
    pool = descriptor_pool.DescriptorPool()  # a private pool: nothing registered globally
    pool.Add(fdp)
    names = ("WriteRequest", "TimeSeries", "Label", "Sample", "MetricMetadata", "Exemplar")
    return Messages({n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{n}")) for n in names})


PROMPB: Final = _build("prometheus", raw_labels=False)
FAST: Final = _build("stator.prw_fast", raw_labels=True)


def _build_outer() -> Any:
    fdp = descriptor_pb2.FileDescriptorProto(name="stator.prw_outer.proto", package="stator.prw_outer", syntax="proto3")
    m = fdp.message_type.add(name="WriteRequest")
    m.field.add(name="timeseries", number=1, type=_F.TYPE_BYTES, label=_F.LABEL_REPEATED)
    m.field.add(name="metadata", number=3, type=_F.TYPE_BYTES, label=_F.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("stator.prw_outer.WriteRequest"))


OUTER: Final = _build_outer()
"""``WriteRequest`` with each ``TimeSeries`` (and ``MetricMetadata``) left as its encoded bytes."""

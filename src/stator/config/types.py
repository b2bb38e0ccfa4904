"""Annotated field types shared by every settings group.

Each carries an :class:`EnvType` marker so ``stator run -h`` can name the type the way an operator types it
(``duration``, ``list``, ``secret``) rather than as a Python annotation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, SecretStr

from stator.config.durations import format_duration, parse_duration


@dataclass(frozen=True)
class EnvType:
    """How a field's type is shown in ``-h`` output."""

    name: str


def _to_seconds(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    return value


def _to_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


Duration = Annotated[
    float,
    BeforeValidator(_to_seconds),
    Field(ge=0),
    PlainSerializer(format_duration, return_type=str),
    EnvType("duration"),
]
"""Seconds as float; accepts Go duration strings; shown and dumped as Go strings."""

CSVList = Annotated[list[str], BeforeValidator(_to_list), EnvType("list")]
"""Comma-separated list of strings."""

FloatList = Annotated[list[float], BeforeValidator(_to_list), EnvType("list of numbers")]
"""Comma-separated list of numbers (histogram buckets)."""

Port = Annotated[int, Field(ge=0, le=65535), EnvType("port")]
"""TCP port; 0 asks the OS for a free one (the bound port is logged and shown in /monitor)."""

Secret = Annotated[SecretStr, EnvType("secret")]
"""A value that is redacted in ``-c``, ``/config`` and logs."""

"""Reading :class:`Settings` from the environment, describing every setting, and dumping them redacted.

Pydantic does the validation; this module only maps ``STATOR_<GROUP>_<FIELD>`` names onto the nested models and
maps validation errors back onto those names, so an operator reads the variable they set, not a Python path.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from stator.config.settings import Settings
from stator.config.types import EnvType, redact_url

PREFIX = "STATOR_"
REDACTED = "--redacted--"
UNSET = "--unset--"
# Variables in the STATOR_ namespace that are not service settings (read by the test suite and tools).
NOT_SETTINGS = frozenset({"STATOR_REQUIRE_EXTERNAL"})


class ConfigError(Exception):
    """Configuration that cannot be used; ``str()`` is a readable message naming the variables."""


@dataclass(frozen=True)
class EnvVar:
    """One setting, as ``-h`` shows it."""

    name: str
    group: str
    field: str
    type: str
    default: str
    required: bool
    description: str


def _env_name(group: str, field: str, info: FieldInfo) -> str:
    extra = info.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("env"), str):
        return str(extra["env"])
    if field == "":
        return f"{PREFIX}{group.upper()}"
    return f"{PREFIX}{group.upper()}_{field.upper()}"


def _groups(model: type[BaseModel]) -> Iterator[tuple[str, type[BaseModel]]]:
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield name, annotation


def _fields(model: type[BaseModel]) -> Iterator[tuple[str, str, str, FieldInfo]]:
    """(group, field, env name, info) for every leaf setting."""
    for group, group_model in _groups(model):
        for field, info in group_model.model_fields.items():
            yield group, field, _env_name(group, field, info), info


def load_settings(environ: Mapping[str, str], model: type[Settings] = Settings) -> Settings:
    """Build settings from an environment mapping; raise :class:`ConfigError` naming each bad variable."""
    data: dict[str, dict[str, Any]] = {}
    names: dict[tuple[str, str], str] = {}
    secrets: set[str] = set()
    urls: set[str] = set()
    for group, field, env, info in _fields(model):
        names[(group, field)] = env
        kind = _type_name(info)
        if kind == "secret":
            secrets.add(env)
        elif kind == "url":
            urls.add(env)
        if env in environ:
            raw = environ[env]
            if raw == "" and info.default is None:
                continue  # an empty optional means "unset", as with most env-configured tools
            data.setdefault(group, {})[field] = raw
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc = tuple(str(p) for p in err["loc"])
            env = (names.get((loc[0], loc[1])) if len(loc) >= 2 else None) or ".".join(loc)
            shown = environ.get(env)
            if shown is None:
                where = f"{env} (unset)"
            elif env in secrets:
                where = f"{env} (value hidden)"  # an error message must not leak a secret
            elif env in urls:
                where = f"{env}={redact_url(shown)!r}"  # nor a password in a URL
            else:
                where = f"{env}={shown!r}"
            lines.append(f"{where}: {_message(err)}")
        raise ConfigError("invalid configuration: " + "; ".join(lines)) from None


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "missing":
        return "required but not set"
    return msg


def unknown_variables(environ: Mapping[str, str], model: type[Settings] = Settings) -> list[str]:
    """``STATOR_*`` variables that name no setting: usually a typo worth a warning."""
    known = {env for _, _, env, _ in _fields(model)} | NOT_SETTINGS
    return sorted(k for k in environ if k.startswith(PREFIX) and k not in known)


def describe_settings(model: type[Settings] = Settings) -> list[EnvVar]:
    """Every setting with its env name, type, default and description, in declaration order."""
    out = []
    for group, group_model in _groups(model):
        defaults = _default_dump(group_model)
        for field, info in group_model.model_fields.items():
            required = info.is_required()
            default = "" if required else _show_default(defaults.get(field))
            out.append(
                EnvVar(
                    name=_env_name(group, field, info),
                    group=group,
                    field=field,
                    type=_type_name(info),
                    default=default,
                    required=required,
                    description=info.description or "",
                )
            )
    return out


def _default_dump(group_model: type[BaseModel]) -> dict[str, Any]:
    try:
        return redacted_dump(group_model())
    except ValidationError:  # a group with required fields has no default instance
        return {}


def _show_default(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _type_name(info: FieldInfo) -> str:
    for meta in info.metadata:
        if isinstance(meta, EnvType):
            return meta.name
    return _annotation_name(info.annotation)


def _annotation_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "|".join(str(a) for a in get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in get_args(annotation) if a is not type(None)]
        return " or ".join(_annotation_name(p) for p in parts)
    if origin is typing.Annotated:
        args = get_args(annotation)
        for meta in args[1:]:
            if isinstance(meta, EnvType):
                return meta.name
        return _annotation_name(args[0])
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "|".join(str(m.value) for m in annotation)
    names = {bool: "bool", int: "int", float: "float", str: "string", SecretStr: "secret"}
    if isinstance(annotation, type) and annotation in names:
        return names[annotation]
    return str(annotation)


def redacted_dump(model: BaseModel) -> dict[str, Any]:
    """JSON-ready dump with every secret shown as ``--redacted--`` (or ``--unset--`` when empty)."""
    out: dict[str, Any] = {}
    dumped = model.model_dump(mode="json")
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out[name] = redacted_dump(value)
        elif isinstance(value, SecretStr):
            out[name] = REDACTED if value.get_secret_value() else UNSET
        else:
            out[name] = dumped[name]
    return out


def format_help(model: type[Settings] = Settings) -> str:
    """The settings table printed by ``stator run -h``."""
    rows = [("KEY", "TYPE", "DEFAULT", "REQUIRED", "DESCRIPTION")]
    for var in describe_settings(model):
        rows.append((var.name, var.type, var.default, "yes" if var.required else "", var.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    return "\n".join(lines)

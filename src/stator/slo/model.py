"""SLOs as data: the model of ``deploy/slo.yaml``, validated strictly.

A document declares service level objectives over the RED metrics every stator service exports:

* ``availability``: the ratio of requests answered without a server error (``http_requests_total``, bad events are
  the statuses matching ``error_status``, ``5..`` by default);
* ``latency``: the ratio of requests served within ``threshold`` seconds (``http_request_duration_seconds``; the
  threshold must be one of the histogram's bucket bounds, since a classic histogram can only count below a bound).

Everything that could make a rule wrong is an error with the path of the field: unknown keys, duplicate YAML keys,
objectives outside (0, 100), windows that are not whole days, thresholds that are not bucket bounds, label names
Prometheus would reject, regular expressions that do not compile, the same SLO declared twice.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stator.config.settings import HTTPSettings

__all__ = [
    "AvailabilitySLI",
    "LatencySLI",
    "SLODocument",
    "SLOError",
    "ServiceLevelObjective",
    "format_le",
    "load_document",
    "parse_document",
    "parse_prometheus_duration",
]

NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Labels the generator sets itself on every alert; a user label may not override them.
RESERVED_LABELS = frozenset({"alertname", "service", "slo", "severity", "long_window", "short_window", "burn_rate"})
DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
DURATION_UNITS: tuple[Decimal, ...] = tuple(Decimal(u) for u in (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, "0.001"))
DEFAULT_BUCKETS: tuple[float, ...] = tuple(HTTPSettings().buckets)


class SLOError(ValueError):
    """An SLO document that cannot be used; the message names the file, the field and the problem."""


def parse_prometheus_duration(text: str) -> int:
    """Seconds in a Prometheus duration (``30d``, ``1h30m``); whole seconds only, at least 1 s."""
    match = DURATION_RE.match(text) if isinstance(text, str) else None
    if not text or match is None:
        raise ValueError(f"{text!r} is not a Prometheus duration like 30d, 6h or 1h30m")
    total = sum(Decimal(int(group)) * unit for group, unit in zip(match.groups(), DURATION_UNITS, strict=True) if group)
    if total < 1 or total != int(total):
        raise ValueError(f"{text!r} must be a whole number of seconds, at least 1s")
    return int(total)


def format_le(bound: float) -> str:
    """A bucket bound as the ``le`` label value stator's exposition writes (``0.25``, ``1.0``, ``10.0``)."""
    return repr(float(bound))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AvailabilitySLI(_Strict):
    """Good events: requests whose status does not match ``error_status``; valid events: all requests."""

    type: Literal["availability"]
    error_status: str = Field(
        "5..", min_length=1, description="Regular expression (RE2, fully anchored) of statuses counted as errors."
    )

    @field_validator("error_status")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if re.fullmatch(value, "200"):
            raise ValueError("matches status 200: every request would count as an error")
        return value


class LatencySLI(_Strict):
    """Good events: requests served within ``threshold`` seconds; valid events: all requests."""

    type: Literal["latency"]
    threshold: float = Field(gt=0, description="Seconds; must be a bucket bound of http_request_duration_seconds.")


SLI = Annotated[AvailabilitySLI | LatencySLI, Field(discriminator="type")]


class ServiceLevelObjective(_Strict):
    """One objective: ``objective`` percent of ``sli``'s valid events are good, over a rolling ``window``."""

    service: str = Field(min_length=1, description="Value of the 'service' label (the registered service name).")
    name: str = Field(description="Name of the SLO, unique per service: the 'slo' label of every series.")
    description: str = ""
    objective: Decimal = Field(gt=0, lt=100, description="Percent of good events, e.g. 99.9.")
    window: str = Field("30d", description="Rolling period of the objective and its error budget, whole days.")
    sli: SLI
    routes: list[str] = Field(default_factory=list, description="Only these route templates (empty = all).")
    exclude_routes: list[str] = Field(default_factory=list, description="Route templates left out.")
    methods: list[str] = Field(default_factory=list, description="Only these HTTP methods (empty = all).")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra labels on the alerts (team, tier).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("must match [a-z][a-z0-9_-]* (at most 63 characters)")
        return value

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        if value != value.strip() or any(ch in value for ch in '"\\\n'):
            raise ValueError("must not contain quotes, backslashes, newlines or surrounding spaces")
        return value

    @field_validator("objective", mode="before")
    @classmethod
    def _objective_is_a_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
            raise ValueError("must be a number of percent, e.g. 99.9")
        return Decimal(str(value))  # from the text, so 99.9 stays 99.9 and the budget is exactly 0.001

    @field_validator("objective")
    @classmethod
    def _objective_precision(cls, value: Decimal) -> Decimal:
        if value.as_tuple().exponent < -6:  # type: ignore[operator]
            raise ValueError("at most 6 decimal places")
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        seconds = parse_prometheus_duration(value)
        if seconds % 86400:
            raise ValueError("must be a whole number of days (e.g. 28d or 30d)")
        if not 7 <= seconds // 86400 <= 90:
            raise ValueError("must be between 7d and 90d: the 3d burn-rate window needs a longer period")
        return value

    @field_validator("routes", "exclude_routes", "methods")
    @classmethod
    def _non_empty_items(cls, value: list[str]) -> list[str]:
        for item in value:
            if not isinstance(item, str) or not item or any(ch in item for ch in '"\\\n'):
                raise ValueError(f"{item!r}: items must be non-empty strings without quotes or backslashes")
        if len(set(value)) != len(value):
            raise ValueError("duplicate items")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not LABEL_NAME_RE.match(key) or key.startswith("__"):
                raise ValueError(f"{key!r} is not a valid Prometheus label name")
            if key in RESERVED_LABELS:
                raise ValueError(f"{key!r} is set by the generator and cannot be overridden")
            if not isinstance(item, str):
                raise ValueError(f"value of {key!r} must be a string")
        return value

    @model_validator(mode="after")
    def _routes_disjoint(self) -> ServiceLevelObjective:
        both = set(self.routes) & set(self.exclude_routes)
        if both:
            raise ValueError(f"routes both included and excluded: {sorted(both)}")
        return self

    @property
    def ratio(self) -> Decimal:
        """The objective as a ratio (0.999)."""
        return self.objective / 100

    @property
    def budget(self) -> Decimal:
        """The error budget as a ratio (0.001): the share of events allowed to be bad over the window."""
        return (100 - self.objective) / 100

    @property
    def window_seconds(self) -> int:
        return parse_prometheus_duration(self.window)


class SLODocument(_Strict):
    """The whole file: a format version, the histogram's buckets, and the objectives."""

    version: Literal[1]
    buckets: list[float] = Field(
        default_factory=lambda: list(DEFAULT_BUCKETS),
        description="Bucket bounds of http_request_duration_seconds (STATOR_HTTP_BUCKETS) when not the default.",
    )
    slos: list[ServiceLevelObjective] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> SLODocument:
        seen: set[tuple[str, str]] = set()
        for index, slo in enumerate(self.slos):
            key = (slo.service, slo.name)
            if key in seen:
                raise ValueError(f"slos[{index}]: SLO {slo.name!r} of service {slo.service!r} is declared twice")
            seen.add(key)
            if isinstance(slo.sli, LatencySLI) and float(slo.sli.threshold) not in self.buckets:
                bounds = ", ".join(format_le(b) for b in self.buckets)
                raise ValueError(
                    f"slos[{index}].sli.threshold: {slo.sli.threshold} is not a bucket bound of"
                    f" http_request_duration_seconds ({bounds}); a histogram can only count requests below a bound"
                )
        return self


def _yaml() -> Any:
    import yaml  # type: ignore[import-untyped]

    return yaml


def _strict_loader() -> Any:
    """A PyYAML SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently)."""
    yaml = _yaml()

    loader: Any = type("StrictLoader", (yaml.SafeLoader,), {})

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        keys: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in keys:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                ) from None
            keys.add(key)
        return dict(loader.construct_mapping(node, deep=deep))

    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return loader


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("availability", "latency") and out.endswith("sli"):
            continue  # the discriminated union's branch name: not a key of the file
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def parse_document(text: str, source: str = "<slo document>") -> SLODocument:
    """Parse and validate an SLO document; :class:`SLOError` lists every problem with its field path."""
    yaml = _yaml()
    try:
        data = yaml.load(text, Loader=_strict_loader())
    except yaml.YAMLError as exc:
        raise SLOError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SLOError(f"{source}: expected a mapping with 'version' and 'slos'")
    try:
        return SLODocument.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_location(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise SLOError(f"{source}: invalid SLO document:\n  " + "\n  ".join(problems)) from None


def load_document(path: Path) -> SLODocument:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SLOError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_document(text, str(path))

"""The service's settings, one group per concern, read from ``STATOR_<GROUP>_<FIELD>`` environment variables.

The models are the single source of truth: ``stator run -h`` is generated from them (env name, type, default,
required, description) and ``stator run -c`` / ``/config`` dump them with secrets redacted. A field whose env name
does not follow the group scheme says so with ``json_schema_extra={"env": "STATOR_..."}``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from stator.config.types import CSVList, Duration, FloatList, Port, Secret


class Group(BaseModel):
    """Base of every settings group: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ServiceSettings(Group):
    name: str = Field("stator", min_length=1, description="Service name: registry name, metrics job, log app_id.")
    id: str = Field(
        "",
        description="Instance id used in the registry; empty means '<name>-<run_id>'.",
        pattern=r"^[A-Za-z0-9_.:-]*$",
    )
    tags: CSVList = Field(
        default_factory=lambda: ["metrics"],
        description="Registry tags; 'metrics' lets Prometheus consul_sd select the instance.",
    )
    address: str = Field(
        "",
        description="Address advertised to the registry; empty means detected from local interfaces.",
    )


class HTTPSettings(Group):
    host: str = Field("0.0.0.0", description="Interface the HTTP server binds.")
    port: Port = Field(8087, description="Port the HTTP server binds (0 = any free port).")
    slow: Duration = Field(1.0, description="Requests slower than this are logged at warning as 'slow request'.")
    request_id_header: str = Field(
        "X-Request-ID", min_length=1, description="Header carrying the request id, in and out."
    )
    buckets: FloatList = Field(
        default_factory=lambda: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
        description="Buckets (seconds) of http_request_duration_seconds.",
    )
    max_label_sets: int = Field(
        1000,
        ge=1,
        description="Cap on distinct label sets per HTTP metric; beyond it labels become overflow.",
    )
    instrument_ops: bool = Field(False, description="Record RED metrics for the ops endpoints too.")
    access_log: bool = Field(True, description="Log one line per request.")
    access_log_ops_sample: float = Field(
        0.0, ge=0.0, le=1.0, description="Fraction of ops-endpoint requests written to the access log."
    )


class OpsSettings(Group):
    port: Port | None = Field(
        None,
        description="Serve the ops endpoints (/-/healthy, /metrics, ...) on this separate port; unset = app port.",
    )
    ready_timeout: Duration = Field(2.0, description="Per-check timeout of /-/ready.")
    ready_cache: Duration = Field(1.0, description="How long a readiness result is reused.")


class LogSettings(Group):
    format: Literal["json", "logfmt", "console"] = Field("json", description="Log line format.")
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Lowest level written.")
    maxlen: int = Field(
        2048, ge=0, description="String values longer than this are truncated with '--truncated--' (0 = off)."
    )
    redact_keys: CSVList = Field(
        default_factory=lambda: ["authorization", "token", "password", "secret", "cookie", "api_key"],
        description="Log keys containing any of these words have their values redacted.",
    )


class ShutdownSettings(Group):
    timeout: Duration = Field(15.0, description="Deadline for draining in-flight requests and stopping workers.")


class MetricsSettings(Group):
    path: str = Field("/metrics", description="Path of the metrics endpoint.")
    collector_timeout: Duration = Field(
        0.5, gt=0, description="Time budget of one collector per scrape; an overrun drops its families."
    )
    loop_probe_interval: Duration = Field(0.1, description="How often the event-loop lag probe runs.")
    git_commit: str = Field(
        "",
        description="Git commit shown in stator_build_info; empty = from pip's VCS metadata or the git checkout.",
    )
    renderer: Literal["stator", "prometheus_client"] = Field(
        "stator",
        description="Exposition encoder: stator's (same bytes, faster, GC-neutral) or prometheus_client's own.",
    )


class DiskSettings(Group):
    paths: CSVList = Field(default_factory=lambda: ["/"], description="Paths whose filesystems are reported.")


class WaveSettings(Group):
    enabled: bool = Field(True, description="Export the demo sine 'wave' series.")
    period: Duration = Field(600.0, gt=0, description="Period of the 'simple' wave (wall-clock driven).")


class ConsulSettings(Group):
    """Where Consul (or the dev registry) is and how to talk to it; shared by registration and discovery."""

    addr: str = Field(
        "http://127.0.0.1:8500",
        min_length=1,
        description="Consul HTTP API address, scheme://host:port (https for TLS; a bare host:port means http).",
    )
    token: Secret = Field(SecretStr(""), description="ACL token sent as X-Consul-Token; empty = none.")
    ca_file: str = Field("", description="PEM CA bundle verifying Consul's certificate; empty = system CAs.")
    cert_file: str = Field("", description="PEM client certificate for mutual TLS (may hold the key too).")
    key_file: str = Field("", description="PEM private key of the client certificate.")
    server_name: str = Field(
        "", description="Name expected in Consul's certificate (and sent as SNI) when it differs from the host."
    )
    timeout: Duration = Field(
        10.0,
        gt=0,
        description="Timeout of ordinary Consul requests; blocking queries allow wait*17/16 plus this.",
    )

    @field_validator("addr")
    @classmethod
    def _default_scheme(cls, value: str) -> str:
        # CONSUL_HTTP_ADDR accepts "host:port"; so do we.
        return value if "://" in value else f"http://{value}"


class EtcdSettings(Group):
    """Where etcd is; shared by registration (leases under the prefix) and discovery (watching a key)."""

    addr: str = Field(
        "http://127.0.0.1:2379",
        min_length=1,
        description="etcd client URL (its v3 JSON gateway), scheme://host:port.",
    )
    prefix: str = Field("/stator/services", description="Key prefix under which instances register.")
    ttl: Duration = Field(15.0, gt=0, description="Lease TTL of a registration; it lapses this long after a crash.")

    @field_validator("addr")
    @classmethod
    def _default_scheme(cls, value: str) -> str:
        return value if "://" in value else f"http://{value}"


class DiscoverSettings(Group):
    """The discovery watcher: which source holds the services document and how it is followed."""

    source: Literal["none", "consul", "etcd", "file"] = Field(
        "none",
        description="Where the services document lives: a Consul KV key, an etcd key, a local JSON file, or none.",
    )
    key: str = Field(
        "",
        description="Consul KV key, etcd key or file path of the services document (required unless source=none).",
    )
    wait: Duration = Field(
        300.0,
        gt=0,
        le=600,
        description="Longest wait of one blocking query (Consul caps it at 10m); also the etcd watch idle restart.",
    )
    limit_burst: int = Field(
        3, ge=1, description="Blocking queries allowed back to back before limit_interval spaces them out."
    )
    limit_interval: Duration = Field(
        0.1,
        description="Sustained spacing of blocking queries when the registry answers at once (token bucket refill).",
    )
    retry_initial: Duration = Field(0.5, gt=0, description="First delay after a failed poll (then doubled, jittered).")
    retry_max: Duration = Field(30.0, gt=0, description="Cap of the delay between failed polls.")
    max_bytes: int = Field(
        1_048_576, ge=1, description="Largest services document accepted; bigger ones are refused while reading."
    )
    file_interval: Duration = Field(
        0.5, gt=0, description="How often source=file checks the file (mtime, size, inode) for changes."
    )

    @field_validator("key")
    @classmethod
    def _key_needed(cls, value: str, info: ValidationInfo) -> str:
        source = info.data.get("source", "none")
        if source != "none" and not value.strip():
            raise ValueError(f"required when STATOR_DISCOVER_SOURCE={source}")
        return value


class OTLPSettings(Group):
    """Tracing: OpenTelemetry spans exported over OTLP/HTTP (protobuf). Unset endpoint = tracing off, no cost."""

    endpoint: str = Field(
        "",
        description="OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces (a bare base URL gets /v1/traces).",
    )
    sample_ratio: float = Field(
        1.0, ge=0.0, le=1.0, description="Fraction of new traces sampled; an incoming traceparent's decision wins."
    )
    headers: Secret = Field(
        SecretStr(""),
        description="Extra export headers, comma-separated key=value pairs (often an API key): a secret.",
    )
    timeout: Duration = Field(10.0, gt=0, description="Timeout of one export request.")
    queue_size: int = Field(
        2048, ge=1, description="Finished spans waiting for export; beyond it spans are dropped and counted."
    )
    batch_size: int = Field(512, ge=1, description="Most spans sent in one export request.")
    batch_delay: Duration = Field(1.0, gt=0, description="Longest a finished span waits before it is exported.")

    @field_validator("endpoint")
    @classmethod
    def _traces_path(cls, value: str) -> str:
        if not value:
            return value
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in ("http", "https") or not rest.split("/", 1)[0]:
            raise ValueError("must be an http(s) URL like http://host:4318/v1/traces")
        return value if "/" in rest.strip("/") else value.rstrip("/") + "/v1/traces"

    @field_validator("headers")
    @classmethod
    def _pairs(cls, value: SecretStr) -> SecretStr:
        for item in filter(None, (i.strip() for i in value.get_secret_value().split(","))):
            if "=" not in item or not item.split("=", 1)[0].strip():
                raise ValueError("must be comma-separated key=value pairs")
        return value


class RosterSettings(Group):
    """Registration of this instance with a registry: the roster worker and the Consul check it asks for."""

    registry: Literal["none", "consul", "etcd"] = Field(
        "none",
        description="Registry this instance registers with: Consul agent API (STATOR_CONSUL_*), etcd (STATOR_ETCD_*),"
        " or none.",
        json_schema_extra={"env": "STATOR_REGISTRY"},
    )
    interval: Duration = Field(
        30.0,
        gt=0,
        description="True-up period: check the registration is still there and re-register when the registry lost it.",
    )
    check: Literal["http", "ttl"] = Field(
        "http",
        description="Consul health check: 'http' (Consul probes /-/ready) or 'ttl' (the roster reports readiness"
        " as a heartbeat and re-registers when Consul answers 404).",
    )
    check_interval: Duration = Field(10.0, gt=0, description="How often Consul probes /-/ready (check=http).")
    check_timeout: Duration = Field(5.0, gt=0, description="Timeout of one Consul probe of /-/ready (check=http).")
    ttl: Duration = Field(
        30.0, gt=0, description="TTL of the Consul check (check=ttl); the roster heartbeats every third of it."
    )
    deregister_critical_after: Duration = Field(
        600.0,
        description="Consul drops the instance once its check stayed critical this long (Consul floors it at 1m);"
        " 0 = never. Cleans up after a crash that skipped deregistration.",
    )
    deregister_timeout: Duration = Field(
        5.0,
        gt=0,
        description="Time allowed for deregistration at shutdown (retried within it; counted in"
        " STATOR_SHUTDOWN_TIMEOUT).",
    )
    retry_initial: Duration = Field(
        1.0, gt=0, description="First delay after a failed registry call (then doubled up to retry_max, jittered)."
    )
    retry_max: Duration = Field(30.0, gt=0, description="Cap of the delay between failed registry calls.")


class Settings(Group):
    """All settings of a stator service."""

    service: ServiceSettings = ServiceSettings()
    http: HTTPSettings = HTTPSettings()
    ops: OpsSettings = OpsSettings()
    log: LogSettings = LogSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    metrics: MetricsSettings = MetricsSettings()
    disk: DiskSettings = DiskSettings()
    wave: WaveSettings = WaveSettings()
    consul: ConsulSettings = ConsulSettings()
    etcd: EtcdSettings = EtcdSettings()
    discover: DiscoverSettings = DiscoverSettings()
    roster: RosterSettings = RosterSettings()
    otlp: OTLPSettings = OTLPSettings()

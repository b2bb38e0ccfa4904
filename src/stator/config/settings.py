"""The service's settings, one group per concern, read from ``STATOR_<GROUP>_<FIELD>`` environment variables.

The models are the single source of truth: ``stator run -h`` is generated from them (env name, type, default,
required, description) and ``stator run -c`` / ``/-/config`` dump them with secrets redacted. A field whose env name
does not follow the group scheme says so with ``json_schema_extra={"env": "STATOR_..."}``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from stator.config.types import URL, CSVList, Duration, FloatList, Port, Secret, SecretURL


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
    # Edge limits (README "HTTP limits"): max_body applies under every server, the others in `stator run`.
    max_body: int = Field(
        1_048_576,
        ge=0,
        description="Largest request body in bytes: a larger declared Content-Length, or a body that grows past it"
        " while read, gets 413 without the rest being read (0 = no limit).",
    )
    max_header_bytes: int = Field(
        65_536, ge=0, description="Largest request line + headers in bytes; larger gets 431 (stator run; 0 = no limit)."
    )
    max_headers: int = Field(
        100, ge=0, description="Most header fields in a request; more gets 431 (stator run; 0 = no limit)."
    )
    header_timeout: Duration = Field(
        10.0,
        ge=0,
        description="Time allowed to send the request line and headers (from connect, or from the first byte of a"
        " keep-alive request); then 408, or a close when nothing was sent (stator run; 0 = none).",
    )
    body_timeout: Duration = Field(
        30.0,
        ge=0,
        description="Longest pause between two reads of a request body the application is waiting for; then 408"
        " (stator run; 0 = none).",
    )
    max_connections: int = Field(
        0,
        ge=0,
        description="Open connections on the application port (stator run). At the cap a new connection closes the"
        " oldest one that is idle or still sending its head; when all run requests it gets 503 (logged, rate-limited)."
        " 0 = the open-file limit minus 128 kept for the service's own files and clients.",
    )


class OpsSettings(Group):
    port: Port | None = Field(
        None,
        description="Serve the ops endpoints (/-/healthy, /metrics, ...) on this separate port; unset = app port.",
    )
    ready_timeout: Duration = Field(2.0, description="Per-check timeout of /-/ready.")
    ready_cache: Duration = Field(1.0, description="How long a readiness result is reused.")
    expose_sensitive: bool = Field(
        True,
        description="Serve /-/config (and the profiling endpoints) on the application port when there is no"
        " separate ops port; with STATOR_OPS_PORT set they are only ever served there.",
    )


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
    delay: Duration = Field(
        5.0,
        ge=0,
        description="Lame duck (stator run): after readiness turns 503 and the instance deregisters, keep serving"
        " this long (responses say Connection: close) before the drain and its timeout start.",
    )


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
    default_registry: bool = Field(
        True,
        description="Include the metrics registered on prometheus_client's default REGISTRY (its own process/GC"
        " collectors excluded: stator exports those).",
    )


class DiskSettings(Group):
    paths: CSVList = Field(default_factory=lambda: ["/"], description="Paths whose filesystems are reported.")


class WaveSettings(Group):
    enabled: bool = Field(
        False, description="Export the demo sine 'wave' series (on by default in `stator run` and the demo only)."
    )
    period: Duration = Field(600.0, gt=0, description="Period of the 'simple' wave (wall-clock driven).")


class ConsulSettings(Group):
    """Where Consul (or the dev registry) is and how to talk to it; shared by registration and discovery."""

    addr: URL = Field(
        SecretURL("http://127.0.0.1:8500"),
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
    def _default_scheme(cls, value: SecretURL) -> SecretURL:
        # CONSUL_HTTP_ADDR accepts "host:port"; so do we.
        if not value:
            raise ValueError("must not be empty")
        return value.with_default_scheme("http")


class EtcdSettings(Group):
    """Where etcd is; shared by registration (leases under the prefix) and discovery (watching a key)."""

    addr: URL = Field(
        SecretURL("http://127.0.0.1:2379"),
        description="etcd client URL (its v3 JSON gateway), scheme://host:port.",
    )
    prefix: str = Field("/stator/services", description="Key prefix under which instances register.")
    ttl: Duration = Field(15.0, gt=0, description="Lease TTL of a registration; it lapses this long after a crash.")

    @field_validator("addr")
    @classmethod
    def _default_scheme(cls, value: SecretURL) -> SecretURL:
        if not value:
            raise ValueError("must not be empty")
        return value.with_default_scheme("http")


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

    endpoint: URL = Field(
        SecretURL(""),
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
    global_provider: bool = Field(
        True,
        description="Install the service's tracer provider as OpenTelemetry's global one, so trace.get_tracer()"
        " and instrumentation libraries export through stator (in the request's trace).",
    )

    @field_validator("endpoint")
    @classmethod
    def _traces_path(cls, value: SecretURL) -> SecretURL:
        if not value:
            return value
        if value.scheme not in ("http", "https") or not value.host:
            raise ValueError("must be an http(s) URL like http://host:4318/v1/traces")
        return value.with_default_path("/v1/traces")

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


class WorkersSettings(Group):
    """Several worker processes serving one instance (docs/workers.md): how many, and which group to join."""

    count: int = Field(
        1,
        ge=1,
        le=512,
        description="Worker processes 'stator run' starts on one pre-bound port (supervised, restarted with backoff).",
        json_schema_extra={"env": "STATOR_WORKERS"},
    )
    group: Literal["auto", "parent", "off"] = Field(
        "auto",
        description="Join the parent's worker group (merged /metrics, one registration): 'auto' when the parent is"
        " stator's supervisor, a gunicorn arbiter, a uvicorn/hypercorn/granian master; 'parent' always; 'off' never.",
    )
    dir: str = Field(
        "",
        description="Directory holding the group directories; empty = $XDG_RUNTIME_DIR/stator or /tmp/stator-<uid>.",
    )
    scrape_timeout: Duration = Field(
        1.0, gt=0, description="How long a merged scrape waits for each live worker's snapshot before using its file."
    )


class StatsdSettings(Group):
    """Pushing the service's metrics to a StatsD or DogStatsD agent over UDP (or a unix datagram socket)."""

    addr: str = Field(
        "",
        description="Agent address: host:port (UDP) or unix:///path/to/dsd.socket; empty = no push.",
        pattern=r"^(|unix://.+|\[[0-9A-Fa-f:.]+\]:\d{1,5}|[^:/\s]+:\d{1,5})$",
    )
    format: Literal["statsd", "dogstatsd"] = Field(
        "statsd",
        description="Line format: plain StatsD (labels folded into the name) or DogStatsD 1.1 (labels as tags,"
        " histogram values packed).",
    )
    prefix: str = Field("", description="Prefix of every metric name (a '.' is added unless it ends with one).")
    flush: Duration = Field(
        10.0, gt=0, description="Aggregation window: counters summed, gauges last-valued, then sent."
    )
    max_packet: int = Field(
        1432,
        ge=64,
        le=65000,
        description="Largest datagram sent (1432 fits an Ethernet MTU; 8192 suits a DogStatsD agent over UDS).",
    )
    tags: CSVList = Field(
        default_factory=list,
        description="Constant tags added to every line, as key:value (plain StatsD folds them into the name).",
    )
    histogram: Literal["auto", "timer", "histogram", "distribution"] = Field(
        "auto",
        description="Type histogram observations are sent as: ms, h or d; auto = ms for statsd, d for dogstatsd.",
    )
    registry: bool = Field(
        True, description="Push the service's own metrics (RED, runtime, the user's) read from its registry."
    )
    exclude: CSVList = Field(
        default_factory=list, description="Glob patterns of metric names not pushed (e.g. python_gc_*)."
    )
    max_series: int = Field(
        10000, ge=1, description="Cap on distinct series per flush; beyond it observations are dropped and counted."
    )


class RemoteWriteSettings(Group):
    """The Prometheus remote-write 1.0 receiver: POST /api/v1/write, a latest-sample store, series/query API."""

    enabled: bool = Field(
        False,
        description="Accept Prometheus remote write at POST /api/v1/write and answer /api/v1/series and"
        " /api/v1/query from the latest samples.",
        json_schema_extra={"env": "STATOR_REMOTE_WRITE"},
    )
    max_series: int = Field(
        100_000, ge=1, description="Series kept; beyond it new series are refused (400, counted), known ones update."
    )
    rate: float = Field(
        0.0, ge=0.0, description="Ingest limit in samples/s; over it writes get 429 with Retry-After (0 = no limit)."
    )
    burst: int = Field(0, ge=0, description="Samples admitted at once above the rate (0 = one second's worth).")
    max_body: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest compressed request body; bigger ones get 413 unread."
    )
    max_decoded: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest decompressed WriteRequest; bigger ones get 413 undecoded."
    )
    lookback: Duration = Field(
        300.0, gt=0, description="Instant queries skip series whose latest sample is older than this (Prometheus: 5m)."
    )
    log_interval: Duration = Field(
        10.0, gt=0, description="Rejections are logged at warning at most once per reason per interval."
    )


class UpstreamSettings(Group):
    """Calling other services (``service.upstream(name)``): discovery of their instances, balancing, retries,
    outlier ejection, the circuit breaker and the client-side rate limit. Defaults for every upstream; a call to
    ``service.upstream(name, **options)`` overrides any of them by field name. See docs/upstream.md."""

    service: str = Field(
        "",
        description="Reference app only: forward POST /sum and POST /concat to this service through an upstream.",
    )
    discovery: Literal["auto", "consul", "etcd", "static"] = Field(
        "auto",
        description="Where instances come from: Consul health (passing only, blocking queries), the etcd roster"
        " prefix, or STATOR_UPSTREAM_INSTANCES; auto = static when instances are listed, else STATOR_REGISTRY's"
        " registry, else Consul.",
    )
    instances: CSVList = Field(
        default_factory=list, description="Static instances: host:port or http(s)://host:port, optionally id=..."
    )
    tag: str = Field("", description="Consul: only instances carrying this tag.")
    scheme: Literal["http", "https"] = Field("http", description="Scheme used to call discovered instances.")
    wait: Duration = Field(
        300.0, gt=0, le=600, description="Longest blocking query (Consul) or idle watch (etcd) before it is renewed."
    )
    retry_initial: Duration = Field(0.5, gt=0, description="First delay after a failed registry poll (doubled).")
    retry_max: Duration = Field(10.0, gt=0, description="Cap of the delay between failed registry polls.")
    balancer: Literal["p2c", "round_robin", "random"] = Field(
        "p2c", description="Balancer: power of two choices on outstanding requests, round robin, or random."
    )
    attempts: int = Field(3, ge=1, le=10, description="Most attempts per call (1 = no retries).")
    try_timeout: Duration = Field(5.0, gt=0, description="Timeout of one attempt.")
    deadline: Duration = Field(10.0, gt=0, description="Timeout of a whole call, retries included.")
    retry_backoff: Duration = Field(0.01, description="Delay before the first retry (doubled, jittered; 0 = none).")
    retry_backoff_max: Duration = Field(0.2, description="Cap of the delay between retries.")
    retry_statuses: CSVList = Field(
        default_factory=lambda: ["500", "502", "503", "504"],
        description="Answers retried (idempotent calls only) and counted as instance failures with any 5xx.",
    )
    retry_non_idempotent: bool = Field(
        False, description="Also retry POST/PATCH after they may have reached an instance (unsent ones always are)."
    )
    retry_budget_percent: float = Field(
        20.0, ge=0, le=100, description="Retries allowed as a percentage of calls over the last 10 s."
    )
    retry_budget_min_per_second: float = Field(
        10.0, ge=0, description="Retries per second always allowed on top of the percentage (quiet services)."
    )
    outlier_consecutive_failures: int = Field(
        5, ge=0, description="Failed attempts in a row that eject an instance (0 = rule off)."
    )
    outlier_failure_rate: float = Field(
        0.5, ge=0, le=1, description="Failure ratio over outlier_interval that ejects an instance (0 = rule off)."
    )
    outlier_min_requests: int = Field(20, ge=1, description="Attempts needed in the interval for the rate rule.")
    outlier_interval: Duration = Field(10.0, gt=0, description="Window of the failure-rate rule.")
    outlier_base_ejection: Duration = Field(
        30.0, gt=0, description="First ejection's length; the n-th ejection in a row lasts n times this."
    )
    outlier_max_ejection: Duration = Field(300.0, gt=0, description="Cap of an ejection's length.")
    outlier_max_ejection_percent: float = Field(
        50.0, ge=0, le=100, description="Most instances ejected at once, in percent of the set (at least one)."
    )
    breaker_failure_rate: float = Field(
        0.5, ge=0, le=1, description="Failed-call ratio over breaker_window that opens the circuit (0 = no breaker)."
    )
    breaker_min_calls: int = Field(20, ge=1, description="Calls needed in the window before the circuit may open.")
    breaker_window: Duration = Field(10.0, gt=0, description="Window of the circuit breaker's failure ratio.")
    breaker_open: Duration = Field(10.0, gt=0, description="How long an open circuit refuses calls.")
    breaker_half_open_calls: int = Field(
        3, ge=1, description="Trial calls let through half-open; all must succeed to close the circuit."
    )
    limit_rate: float = Field(0.0, ge=0, description="Client-side calls per second to the upstream (0 = no limit).")
    limit_burst: int = Field(10, ge=1, description="Calls allowed back to back by the client-side limit.")
    limit_max_wait: Duration = Field(
        0.0, description="Longest a call waits for the client-side limit; beyond it the call is refused."
    )
    max_connections: int = Field(100, ge=1, description="Connection pool size of an upstream client.")

    @field_validator("retry_statuses")
    @classmethod
    def _statuses(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.isdigit() or not 100 <= int(item) <= 599:
                raise ValueError(f"{item!r} is not an HTTP status code")
        return value


class RateLimitSettings(Group):
    """The server-side rate limit of the application's routes (token bucket; 429 with Retry-After)."""

    rate: float = Field(0.0, ge=0, description="Requests per second admitted (per key); 0 = no rate limit.")
    burst: int = Field(20, ge=1, description="Requests admitted back to back before the rate applies.")
    key: str = Field(
        "",
        description="What a bucket is per: empty = one for the whole service, 'client' = per client address,"
        " 'header:NAME' = per value of that request header.",
        pattern=r"^(|client|header:[A-Za-z0-9-]+)$",
    )
    max_keys: int = Field(10000, ge=1, description="Keys tracked at once; the least recently seen are forgotten.")


class ProfileSettings(Group):
    """Profiling: pprof endpoints (CPU/wall, heap, task and thread dumps) and optional continuous profiling."""

    enabled: bool = Field(
        True, description="Serve the pprof endpoints under /-/debug/pprof/ (on the ops port when one is set)."
    )
    max_seconds: Duration = Field(
        120.0, gt=0, description="Longest profile?seconds= / heap?seconds= accepted (profile's default is 30s)."
    )
    rate: int = Field(
        100,
        ge=1,
        le=1000,
        description="Sampling rate in Hz (a Python sampler achieves at most ~1/switchinterval = 200 Hz when"
        " a thread is CPU-bound; the achieved rate is reported).",
    )
    continuous: bool = Field(
        False, description="Profile all the time in back-to-back windows kept in memory (profile?start=&end=)."
    )
    window: Duration = Field(10.0, ge=1.0, le=300.0, description="Length of one continuous-profiling window.")
    retention: Duration = Field(
        3600.0, ge=1.0, description="How much continuous-profiling history is kept in memory (a bounded ring)."
    )
    push_url: URL = Field(
        SecretURL(""),
        description="Pyroscope base URL to push each window to (POST <url>/ingest?format=pprof); userinfo is sent"
        " as basic auth and redacted wherever shown. Empty = no push.",
    )
    push_timeout: Duration = Field(10.0, gt=0, description="Timeout of one push request.")

    @field_validator("push_url")
    @classmethod
    def _push_scheme(cls, value: SecretURL) -> SecretURL:
        if str(value) and value.scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL like http://pyroscope:4040")
        return value


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
    workers: WorkersSettings = WorkersSettings()
    statsd: StatsdSettings = StatsdSettings()
    remote_write: RemoteWriteSettings = RemoteWriteSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    ratelimit: RateLimitSettings = RateLimitSettings()
    profile: ProfileSettings = ProfileSettings()

"""The project's HTTP client (also offered to users): httpx with base URL, TLS, timeouts, redacted debug logs,
request-id propagation and outgoing-request hooks. See ``docs/client.md``."""

from stator.client.http import (
    SENSITIVE_HEADERS,
    HTTPClient,
    RequestFinish,
    RequestHook,
    ResponseTooLarge,
    TLSConfig,
    UnexpectedStatus,
    aexpect_2xx,
    body_excerpt,
    expect_2xx,
)
from stator.client.presets import consul_client, consul_tls, etcd_client

__all__ = [
    "SENSITIVE_HEADERS",
    "HTTPClient",
    "RequestFinish",
    "RequestHook",
    "ResponseTooLarge",
    "TLSConfig",
    "UnexpectedStatus",
    "aexpect_2xx",
    "body_excerpt",
    "consul_client",
    "consul_tls",
    "etcd_client",
    "expect_2xx",
]

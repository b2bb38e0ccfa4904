"""Ready-made clients for the registries stator talks to, built from the shared settings groups.

Registration and discovery both call Consul (and etcd); building their clients in one place keeps the token,
TLS and timeouts identical for both and the token out of every log line.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from stator.client.http import HTTPClient, RequestHook, TLSConfig
from stator.config.settings import ConsulSettings, EtcdSettings
from stator.logs import Logger
from stator.logs.logger import DEFAULT_REDACT


def consul_tls(consul: ConsulSettings) -> TLSConfig | None:
    """TLS settings for Consul, or None for plain HTTP with nothing to configure."""
    if not (consul.ca_file or consul.cert_file or consul.key_file or consul.server_name):
        return None
    return TLSConfig(
        ca_file=consul.ca_file,
        cert_file=consul.cert_file,
        key_file=consul.key_file,
        server_name=consul.server_name,
    )


def consul_client(
    consul: ConsulSettings,
    logger: Logger | None = None,
    *,
    redact: Iterable[str] = DEFAULT_REDACT,
    request_id_header: str = "X-Request-ID",
    hooks: Iterable[RequestHook] = (),
    transport: httpx.AsyncBaseTransport | None = None,
) -> HTTPClient:
    """A client for the Consul HTTP API at ``consul.addr``: token header, TLS, ``consul.timeout`` per request.

    Blocking queries pass their own, longer read timeout per request (see ``stator.discover.consul``).
    """
    token = consul.token.get_secret_value()
    return HTTPClient(
        consul.addr,
        logger=logger,
        headers={"X-Consul-Token": token} if token else None,
        timeout=consul.timeout,
        tls=consul_tls(consul),
        redact=redact,
        request_id_header=request_id_header,
        hooks=hooks,
        transport=transport,
    )


def etcd_client(
    etcd: EtcdSettings,
    logger: Logger | None = None,
    *,
    timeout: float = 10.0,
    redact: Iterable[str] = DEFAULT_REDACT,
    request_id_header: str = "X-Request-ID",
    hooks: Iterable[RequestHook] = (),
    transport: httpx.AsyncBaseTransport | None = None,
) -> HTTPClient:
    """A client for etcd's v3 JSON gateway at ``etcd.addr`` (watches pass their own read timeout)."""
    return HTTPClient(
        etcd.addr,
        logger=logger,
        timeout=timeout,
        redact=redact,
        request_id_header=request_id_header,
        hooks=hooks,
        transport=transport,
    )

"""The project's HTTP client: a thin layer over one explicitly created ``httpx.AsyncClient``.

What it adds to httpx, and why:

* base URL, default headers, per-request timeouts and TLS (CA file, client certificate, server name) configured
  in one place, so registry clients (Consul, etcd) and users' own upstream calls behave the same way;
* the current ``request_id`` (from the log context) sent as ``X-Request-ID``, so an upstream's logs join ours;
* debug logs of every exchange (method, url, status, elapsed_ms, request_id, headers) with credentials
  redacted — tokens travel in headers (``X-Consul-Token``, ``Authorization``) and must never reach a log;
* credentials in a URL (``http://user:password@host``, a base URL or a request's) never travel *in* the URL:
  they are taken out and sent as an ``Authorization: Basic`` header, so no URL this client (or httpx's own
  log line, or an exception message) shows can carry them; a :class:`~stator.config.types.SecretURL` setting
  is accepted as the base URL and its real credentials are used;
* a list of *outgoing request hooks* (``HTTPClient.hooks``): each sees the request before it is sent and may
  return a callback that sees how it ended. Request-id propagation is the first hook; tracing (``traceparent``
  and client spans) plugs in the same way;
* an optional cap on the response body (``max_body``): a registry answering with megabytes is refused while
  reading, not after.

Non-2xx answers are *not* raised: Consul's 404 on a missing key is information, not failure. Callers that
want the seed's behaviour ("unexpected status code N with body: ...") call :func:`expect_2xx`.
Nothing here is global: create an :class:`HTTPClient`, pass it to what needs it, close it when done.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, TypedDict, Unpack
from urllib.parse import parse_qsl, urlencode

import httpx
from httpx._client import UseClientDefault  # the type of httpx.USE_CLIENT_DEFAULT, not re-exported

from stator.config.types import SecretURL, redact_url
from stator.logs import Logger, bound
from stator.logs.logger import DEFAULT_REDACT, REDACTED, TRUNCATED

RequestFinish = Callable[[httpx.Response | None, BaseException | None], None]
"""Called once when an exchange ends: with the response (body read or stream closed) or with the error."""

RequestHook = Callable[[httpx.Request], RequestFinish | None]
"""Sees (and may modify) each outgoing request just before it is sent; may return a :data:`RequestFinish`."""

# Headers that carry credentials whatever the logger's redact list says.
SENSITIVE_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "x-consul-token", "cookie", "set-cookie", "x-vault-token"}
)
BODY_EXCERPT: Final = 512
_DEFAULT: Final = httpx.USE_CLIENT_DEFAULT

TimeoutArg = float | httpx.Timeout | None | UseClientDefault


class RequestOptions(TypedDict, total=False):
    """What a request may carry besides method and URL (httpx's names and meanings)."""

    params: Mapping[str, str | int] | None
    headers: Mapping[str, str] | None
    content: bytes | str | None
    json: Any
    # httpx's per-phase timeouts (connect/read/write/pool), which asyncio.timeout cannot express.
    timeout: TimeoutArg
    extensions: dict[str, Any] | None


class UnexpectedStatus(Exception):
    """A non-2xx answer where a 2xx was required; carries the status and the start of the body."""

    def __init__(self, status: int, body: str, method: str = "", url: str = "") -> None:
        self.status = status
        self.body = body
        self.method = method
        self.url = url
        super().__init__(f"unexpected status code {status} with body: {body}")


class ResponseTooLarge(Exception):
    """The response body exceeded the ``max_body`` the caller allowed; the connection was dropped."""

    def __init__(self, limit: int, seen: int, url: str = "") -> None:
        self.limit = limit
        self.seen = seen
        self.url = url
        super().__init__(f"response body larger than {limit} bytes (at least {seen}) from {url}")


@dataclass(frozen=True)
class TLSConfig:
    """TLS towards an upstream. Empty fields mean "system default"."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""
    verify: bool = True

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file or None)
        if self.cert_file:
            # A key embedded in the certificate file is allowed, as with curl and Consul's CONSUL_CLIENT_CERT.
            ctx.load_cert_chain(self.cert_file, self.key_file or None)
        elif self.key_file:
            raise ValueError("TLS key file given without a certificate file")
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def body_excerpt(data: bytes, limit: int = BODY_EXCERPT) -> str:
    """The start of a body as text, cut at ``limit`` characters with the logger's truncation marker."""
    text = data.decode("utf-8", errors="replace").strip()
    if len(text) > limit:
        return text[:limit] + TRUNCATED
    return text


def expect_2xx(response: httpx.Response, limit: int = BODY_EXCERPT) -> httpx.Response:
    """Return ``response`` if its status is 2xx, else raise :class:`UnexpectedStatus` with the body's start.

    For a streamed response whose body was not read, use :func:`aexpect_2xx`.
    """
    if 200 <= response.status_code < 300:
        return response
    try:
        body = body_excerpt(response.content, limit)
    except httpx.ResponseNotRead:
        body = "(body not read)"
    raise UnexpectedStatus(response.status_code, body, response.request.method, safe_url(response.request.url))


async def aexpect_2xx(response: httpx.Response, limit: int = BODY_EXCERPT) -> httpx.Response:
    """:func:`expect_2xx` for streamed responses: reads at most ~``limit`` bytes of an error body."""
    if 200 <= response.status_code < 300:
        return response
    data = b""
    try:
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > limit * 4:  # UTF-8: a character is at most 4 bytes
                break
    except httpx.HTTPError:
        pass  # the status is the news; a body cut short by the upstream still says something
    raise UnexpectedStatus(
        response.status_code, body_excerpt(data, limit), response.request.method, safe_url(response.url)
    )


class HTTPClient:
    """One upstream (or many, with absolute URLs), one connection pool, logged and hookable.

    ``client`` wraps an existing ``httpx.AsyncClient`` (its settings are used as they are, and it is not closed
    by :meth:`aclose`); otherwise one is created from the other arguments. ``transport`` is for tests
    (``httpx.MockTransport``) and custom connection handling.
    """

    def __init__(
        self,
        base_url: str | httpx.URL = "",
        *,
        logger: Logger | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | httpx.Timeout = 10.0,
        tls: TLSConfig | None = None,
        redact: Iterable[str] = DEFAULT_REDACT,
        request_id_header: str = "X-Request-ID",
        hooks: Iterable[RequestHook] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        client: httpx.AsyncClient | None = None,
        trust_env: bool = False,
        limits: httpx.Limits | None = None,
    ) -> None:
        self.logger = logger
        self.request_id_header = request_id_header
        self.server_name = tls.server_name if tls else ""
        self._redact = tuple(w.lower() for w in redact)
        self._redact_cache: dict[str, bool] = {}
        # Request-id propagation first: later hooks (tracing) see the final headers.
        self.hooks: list[RequestHook] = [self._propagate_request_id, *hooks]
        base_url, credentials = split_credentials(base_url)
        default_headers = {**credentials, **(headers or {})}  # an explicit Authorization header wins
        if client is not None:
            self._client = client
            self._owned = False
        else:
            verify: ssl.SSLContext | bool = tls.ssl_context() if tls else True
            self._client = httpx.AsyncClient(
                base_url=base_url,
                headers=default_headers,
                timeout=timeout,
                verify=verify,
                transport=transport,
                # Calls to infrastructure (registries) must not wander through an HTTP(S)_PROXY from the
                # environment unless asked: loopback registries behind a corporate proxy break silently.
                trust_env=trust_env,
                follow_redirects=False,  # as the seed: a redirect from a registry is an answer to look at
                limits=limits or httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
            self._owned = True

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def inner(self) -> httpx.AsyncClient:
        """The underlying client (escape hatch: requests sent through it bypass hooks and logs)."""
        return self._client

    @property
    def base_url(self) -> httpx.URL:
        return self._client.base_url

    @property
    def is_closed(self) -> bool:
        return self._client.is_closed

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()

    async def __aenter__(self) -> HTTPClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- requests ----------------------------------------------------------------------------------------

    def build_request(self, method: str, url: str | httpx.URL, **options: Unpack[RequestOptions]) -> httpx.Request:
        ext = dict(options.get("extensions") or {})
        if self.server_name:
            # Certificate name checked (and SNI sent) when it differs from the host dialled, like Go's ServerName.
            ext.setdefault("sni_hostname", self.server_name)
        headers = options.get("headers")
        if isinstance(url, SecretURL) or "@" in str(url):
            url, credentials = split_credentials(url)
            if credentials:
                headers = {**credentials, **(headers or {})}
        return self._client.build_request(
            method,
            url,
            params=options.get("params"),
            headers=headers,
            content=options.get("content"),
            json=options.get("json"),
            timeout=options.get("timeout", _DEFAULT),
            extensions=ext,
        )

    async def request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        max_body: int | None = None,
        **options: Unpack[RequestOptions],
    ) -> httpx.Response:
        """Send a request and read the whole answer (at most ``max_body`` bytes). Non-2xx is returned."""
        return await self.send(self.build_request(method, url, **options), max_body=max_body)

    async def send(self, request: httpx.Request, *, max_body: int | None = None) -> httpx.Response:
        """Send a prepared request (see :meth:`build_request`) and read the answer."""
        finishers = self._before(request)
        start = time.perf_counter()
        response: httpx.Response | None = None
        try:
            response = await self._client.send(request, stream=True)
            try:
                await _read_bounded(response, max_body)
            finally:
                await response.aclose()
        except BaseException as exc:
            self._failed(request, start, exc, finishers, response)
            raise
        self._received(request, response, start, len(response.content))
        _finish(finishers, response, None)
        return response

    @asynccontextmanager
    async def stream(
        self, method: str, url: str | httpx.URL, **options: Unpack[RequestOptions]
    ) -> AsyncIterator[httpx.Response]:
        """Send a request and yield the response as soon as its headers arrive (body not read).

        The response is logged when its headers arrive; the finish hooks run when the block exits.
        """
        request = self.build_request(method, url, **options)
        finishers = self._before(request)
        start = time.perf_counter()
        try:
            response = await self._client.send(request, stream=True)
        except BaseException as exc:
            self._failed(request, start, exc, finishers, None)
            raise
        self._received(request, response, start, None)
        error: BaseException | None = None
        try:
            yield response
        except BaseException as exc:
            error = exc
            raise
        finally:
            await response.aclose()
            _finish(finishers, response, error)

    async def get(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return await self.request("GET", url, **kw)

    async def put(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return await self.request("PUT", url, **kw)

    async def post(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return await self.request("POST", url, **kw)

    async def delete(self, url: str | httpx.URL, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kw)

    # -- hooks and logs ----------------------------------------------------------------------------------

    def _propagate_request_id(self, request: httpx.Request) -> None:
        request_id = bound().get("request_id")
        if request_id and self.request_id_header not in request.headers:
            request.headers[self.request_id_header] = str(request_id)

    def _before(self, request: httpx.Request) -> list[RequestFinish]:
        finishers = []
        for hook in self.hooks:
            done = hook(request)
            if done is not None:
                finishers.append(done)
        log = self.logger
        if log is not None and log.enabled("debug"):
            log.debug(
                "sending request",
                method=request.method,
                url=self.redact_url(request.url),
                headers=self.redact_headers(request.headers),
                request_id=request.headers.get(self.request_id_header),
            )
        return finishers

    def _received(self, request: httpx.Request, response: httpx.Response, start: float, size: int | None) -> None:
        log = self.logger
        if log is not None and log.enabled("debug"):
            log.debug(
                "received response",
                method=request.method,
                url=self.redact_url(request.url),
                status=response.status_code,
                elapsed_ms=round((time.perf_counter() - start) * 1000, 3),
                headers=self.redact_headers(response.headers),
                bytes=size,
                request_id=request.headers.get(self.request_id_header),
            )

    def _failed(
        self,
        request: httpx.Request,
        start: float,
        exc: BaseException,
        finishers: list[RequestFinish],
        response: httpx.Response | None,
    ) -> None:
        log = self.logger
        if log is not None and log.enabled("debug"):
            log.debug(
                "request failed",
                method=request.method,
                url=self.redact_url(request.url),
                status=response.status_code if response is not None else None,
                elapsed_ms=round((time.perf_counter() - start) * 1000, 3),
                error=f"{type(exc).__name__}: {exc}",
                request_id=request.headers.get(self.request_id_header),
            )
        _finish(finishers, None, exc)

    def _sensitive(self, name: str) -> bool:
        hit = self._redact_cache.get(name)
        if hit is None:
            lowered = name.lower()
            # Header words are dash-separated, log keys underscore-separated: "X-Api-Key" matches "api_key".
            words = lowered.replace("-", "_")
            hit = lowered in SENSITIVE_HEADERS or any(word in words for word in self._redact)
            self._redact_cache[name] = hit
        return hit

    def redact_headers(self, headers: httpx.Headers) -> dict[str, str]:
        """Headers as a dict for a log line, credentials replaced by ``--redacted--``."""
        return {k: (REDACTED if self._sensitive(k) else v) for k, v in headers.items()}

    def redact_url(self, url: httpx.URL) -> str:
        """The URL for a log line; userinfo and query values whose names look secret (``?token=``) are redacted."""
        if url.userinfo:  # not sent by this client (see split_credentials), but an escape-hatch request may carry it
            url = httpx.URL(redact_url(str(url)))
        if not url.query:
            return str(url)
        pairs = parse_qsl(url.query.decode(), keep_blank_values=True)
        if not any(self._sensitive(k) for k, _ in pairs):
            return str(url)
        query = urlencode([(k, REDACTED if self._sensitive(k) else v) for k, v in pairs], safe="-")
        return str(url.copy_with(query=query.encode()))


def split_credentials(url: str | httpx.URL) -> tuple[str | httpx.URL, dict[str, str]]:
    """``url`` without its userinfo, and the userinfo as an ``Authorization: Basic`` header (``{}`` if none).

    A :class:`SecretURL` gives its real credentials (its text is the redacted URL). Sending them as a header
    rather than in the URL is what httpx does anyway; doing it here keeps them out of ``request.url`` — which
    httpx logs at INFO and which exception messages and ``/monitor`` endpoints quote.
    """
    if isinstance(url, str) and not isinstance(url, SecretURL) and "@" not in url:
        return url, {}  # the common case, with no parsing
    if isinstance(url, httpx.URL):
        if not url.userinfo:
            return url, {}
        url = str(url)
    secret = url if isinstance(url, SecretURL) else SecretURL(url)
    if secret.userinfo is None:
        return secret.get_secret_value(), {}
    return secret.bare, secret.auth_headers()


def safe_url(url: str | httpx.URL) -> str:
    """``url`` as text that may be shown: userinfo and secret query values redacted."""
    return redact_url(str(url))


async def _read_bounded(response: httpx.Response, max_body: int | None) -> None:
    if max_body is None:
        await response.aread()
        return
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise ResponseTooLarge(max_body, int(declared), safe_url(response.url))
    chunks: list[bytes] = []
    seen = 0
    async for chunk in response.aiter_bytes():
        seen += len(chunk)
        if seen > max_body:
            raise ResponseTooLarge(max_body, seen, safe_url(response.url))
        chunks.append(chunk)
    # What httpx's own aread() does once the stream is consumed; it has no public way to store a body that
    # was read with a limit (tests/client cover that .content and .json() work afterwards).
    response._content = b"".join(chunks)


def _finish(finishers: list[RequestFinish], response: httpx.Response | None, error: BaseException | None) -> None:
    for done in finishers:
        # A broken hook (tracing exporter, ...) must not fail the request it observes.
        with contextlib.suppress(Exception):
            done(response, error)

"""Annotated field types shared by every settings group.

Each carries an :class:`EnvType` marker so ``stator run -h`` can name the type the way an operator types it
(``duration``, ``list``, ``secret``, ``url``) rather than as a Python annotation."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated, Any, Final
from urllib.parse import unquote

from pydantic import BeforeValidator, Field, GetCoreSchemaHandler, PlainSerializer, SecretStr
from pydantic_core import core_schema

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
"""A value that is redacted in ``-c``, ``/-/config`` and logs."""


# -- URLs whose userinfo is a secret ------------------------------------------------------------------------------

URL_REDACTED: Final = "--redacted--"
# Query parameters whose values are credentials (``?token=``, ``?api_key=``, ``?X-Amz-Signature=``): redacted too.
_SECRET_QUERY_WORDS: Final = ("token", "password", "passwd", "secret", "key", "auth", "signature", "credential")


def _split_userinfo(url: str) -> tuple[str, str | None, str]:
    """(scheme://, userinfo or None, rest) of ``url``.

    The authority ends at the first ``/`` after ``scheme://`` and the userinfo at the *last* ``@`` before it, so
    a password with a raw ``@``, ``?`` or ``#`` (which should have been percent-encoded) is still all hidden:
    redaction errs towards hiding too much, never too little.
    """
    scheme, sep, after = url.partition("://")
    if not sep or not scheme or "/" in scheme or "@" in scheme:
        return "", None, url
    authority, slash, path = after.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        return scheme + sep, None, after
    return scheme + sep, userinfo, hostport + slash + path


def redact_url(url: str) -> str:
    """``url`` with its password (or a lone userinfo, usually a token) and secret query values redacted.

    ``http://admin:pw@host/`` → ``http://admin:--redacted--@host/``; ``https://TOKEN@host`` →
    ``https://--redacted--@host``; ``http://host/?token=x`` → ``http://host/?token=--redacted--``.
    Works on any string, valid URL or not (it is also used for values that failed validation).
    """
    prefix, userinfo, rest = _split_userinfo(url)
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        shown = f"{user}:{URL_REDACTED}" if colon and user else URL_REDACTED
        url = f"{prefix}{shown}@{rest}"
    head, q, query = url.partition("?")
    if not q:
        return url
    query, h, fragment = query.partition("#")
    parts = []
    for item in query.split("&"):
        name, eq, value = item.partition("=")
        words = name.lower().replace("-", "_")
        if eq and value and any(word in words for word in _SECRET_QUERY_WORDS):
            item = f"{name}={URL_REDACTED}"
        parts.append(item)
    return f"{head}?{'&'.join(parts)}{h}{fragment}"


class SecretURL(str):
    """A URL setting whose userinfo is a secret: as a string it *is* the redacted URL.

    Everything that turns the value into text — logs, ``-c``, ``/-/config``, ``/-/monitor`` (orjson serialises str
    subclasses by their content), f-strings, ``repr``, exception messages — gets ``http://admin:--redacted--@host``,
    by construction. Code that connects asks for the parts explicitly: :attr:`bare` (the URL without userinfo)
    plus :meth:`auth_headers` (the credentials as an ``Authorization: Basic`` header), or
    :meth:`get_secret_value` (the URL as configured). Without userinfo or secret query values the string is the
    URL itself, so such values behave exactly like the plain strings they replace.
    """

    _secret: str

    def __new__(cls, url: str = "") -> SecretURL:
        real = url.get_secret_value() if isinstance(url, SecretURL) else str(url)
        self = super().__new__(cls, redact_url(real))
        self._secret = real
        return self

    def get_secret_value(self) -> str:
        """The URL as configured, credentials included (pydantic's ``SecretStr`` spelling)."""
        return self._secret

    @property
    def has_secret(self) -> bool:
        return self._secret != str.__str__(self)

    @property
    def scheme(self) -> str:
        prefix, _, _ = _split_userinfo(self._secret)
        return prefix[:-3].lower()

    @property
    def host(self) -> str:
        """``host:port`` (the authority without userinfo)."""
        _, _, rest = _split_userinfo(self._secret)
        return rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]

    @property
    def path(self) -> str:
        _, _, rest = _split_userinfo(self._secret)
        _, slash, path = rest.partition("/")
        return (slash + path).split("?", 1)[0].split("#", 1)[0]

    @property
    def userinfo(self) -> tuple[str, str] | None:
        """(username, password), percent-decoded, or None when the URL has no userinfo."""
        _, userinfo, _ = _split_userinfo(self._secret)
        if userinfo is None:
            return None
        user, _, password = userinfo.partition(":")
        return unquote(user), unquote(password)

    @property
    def bare(self) -> str:
        """The URL to dial: as configured, minus the userinfo (send :meth:`auth_headers` with it)."""
        prefix, _, rest = _split_userinfo(self._secret)
        return prefix + rest

    def auth_headers(self) -> dict[str, str]:
        """``{"Authorization": "Basic ..."}`` from the userinfo (what curl and httpx send), or ``{}``."""
        creds = self.userinfo
        if creds is None:
            return {}
        token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    def with_default_scheme(self, scheme: str) -> SecretURL:
        """``host:port`` → ``scheme://host:port`` (``CONSUL_HTTP_ADDR`` accepts a bare host:port)."""
        return self if "://" in self._secret or not self._secret else SecretURL(f"{scheme}://{self._secret}")

    def with_default_path(self, path: str) -> SecretURL:
        """The URL with ``path`` when it has none (``http://collector:4318`` → ``.../v1/traces``)."""
        if self.path.strip("/") or "?" in self._secret or "#" in self._secret:
            return self
        return SecretURL(self._secret.rstrip("/") + path)

    def __repr__(self) -> str:
        return f"SecretURL({str.__repr__(self)})"

    def __reduce__(self) -> tuple[type[SecretURL], tuple[str]]:
        return (SecretURL, (self._secret,))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SecretURL):
            return self._secret == other._secret
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = str.__hash__

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            # JSON dumps get the redacted text; python dumps keep the object (it re-validates with its secret).
            serialization=core_schema.plain_serializer_function_ser_schema(
                str, return_schema=core_schema.str_schema(), when_used="json"
            ),
        )

    @classmethod
    def _validate(cls, value: Any) -> SecretURL:
        if isinstance(value, SecretURL):
            return value
        if not isinstance(value, str):
            raise ValueError("must be a URL string")
        return cls(value.strip())


URL = Annotated[SecretURL, EnvType("url")]
"""A URL setting: userinfo (``http://user:password@host``) and secret query values are redacted wherever the value
is shown — ``-c``, ``/-/config``, ``/-/monitor``, logs, error messages. Every URL setting uses this type."""

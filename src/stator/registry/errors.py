"""The error a request handler raises to answer with a status and Consul's exact plain-text message."""

from __future__ import annotations


class APIError(Exception):
    """Answered as ``status`` with ``text`` as a ``text/plain; charset=utf-8`` body (how Consul reports errors)."""

    def __init__(self, status: int, text: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers or []


def bad_request(text: str) -> APIError:
    return APIError(400, text)


def not_found(text: str) -> APIError:
    return APIError(404, text)

"""The business logic, and nothing else: no HTTP, no logging, no metrics."""

from __future__ import annotations

from typing import Protocol

from examples.gokit.kit import ServiceError


class EmptyString(ServiceError):
    def __init__(self) -> None:
        super().__init__("empty string")


class StringService(Protocol):
    async def uppercase(self, s: str) -> str: ...

    async def count(self, s: str) -> int: ...


class Strings:
    async def uppercase(self, s: str) -> str:
        if not s:
            raise EmptyString()
        return s.upper()

    async def count(self, s: str) -> int:
        return len(s)

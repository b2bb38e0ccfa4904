"""The business logic: Sum and Concat, with the workshop's errors."""

from __future__ import annotations

from typing import Protocol

from examples.gokit.kit import ServiceError

MAX_CONCAT = 10
INT32_MAX = 2**31 - 1


class AddService(Protocol):
    async def sum(self, a: int, b: int) -> int: ...

    async def concat(self, a: str, b: str) -> str: ...


class Adder:
    async def sum(self, a: int, b: int) -> int:
        if a == 0 and b == 0:
            raise ServiceError("can't sum two zeroes")
        total = a + b
        if not -INT32_MAX - 1 <= total <= INT32_MAX:
            raise ServiceError("integer overflow")
        return total

    async def concat(self, a: str, b: str) -> str:
        if len(a) + len(b) > MAX_CONCAT:
            raise ServiceError(f"result exceeds maximum size of {MAX_CONCAT}")
        return a + b

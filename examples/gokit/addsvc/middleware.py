"""Service middleware: addsvc's behaviour extended without touching its logic — Concat's result uppercased by
stringsvc (the workshop's challenge: "a Service middleware that uppercases the result of Concat")."""

from __future__ import annotations

from examples.gokit.addsvc.service import AddService
from examples.gokit.stringsvc.service import StringService


class UppercaseConcat:
    def __init__(self, next_: AddService, strings: StringService) -> None:
        self.next = next_
        self.strings = strings

    async def sum(self, a: int, b: int) -> int:
        return await self.next.sum(a, b)

    async def concat(self, a: str, b: str) -> str:
        result = await self.next.concat(a, b)
        return await self.strings.uppercase(result) if result else result

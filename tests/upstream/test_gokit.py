"""The Go kit workshop's services written the stator way, as real processes: addsvc's Concat uppercased by
stringsvc, called through ``service.upstream``; business errors mapped to 4xx JSON on both sides."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx

from tests.conftest import ServiceProcess


async def test_addsvc_calls_stringsvc_through_an_upstream(spawn: Any) -> None:
    strings: ServiceProcess = spawn([sys.executable, "-m", "examples.gokit.stringsvc.main"])
    strings_url = await asyncio.to_thread(lambda: strings.base_url)
    adder: ServiceProcess = spawn(
        [sys.executable, "-m", "examples.gokit.addsvc.main"],
        STATOR_UPSTREAM_SERVICE="stringsvc",
        STATOR_UPSTREAM_INSTANCES=strings_url,
    )
    url = await asyncio.to_thread(lambda: adder.base_url)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        assert (await client.post("/concat", json={"a": "go", "b": "kit"})).json() == {"v": "GOKIT"}
        assert (await client.post("/sum", json={"a": 2, "b": 3})).json() == {"v": 5}
        zero = await client.post("/sum", json={"a": 0, "b": 0})
        assert zero.status_code == 400 and zero.json()["error"] == "can't sum two zeroes"
        bad = await client.post("/sum", json={"a": "2", "b": 3})
        assert bad.status_code == 400 and "a must be of type int" in bad.json()["error"]
        long = await client.post("/concat", json={"a": "0123456789", "b": "x"})
        assert long.status_code == 400
        monitor = (await client.get("/monitor")).json()["upstreams"]["stringsvc"]
        assert monitor["calls"]["success"] == 1 and monitor["discovery"]["source"] == "static"
    async with httpx.AsyncClient(base_url=strings_url, timeout=10) as client:
        empty = await client.post("/uppercase", json={"s": ""})
        assert empty.status_code == 400 and empty.json()["error"] == "empty string"
        assert (await client.post("/count", json={"s": "four"})).json() == {"v": 4}
    assert any(line.get("msg") == "endpoint" and line.get("method") == "uppercase" for line in strings.lines)

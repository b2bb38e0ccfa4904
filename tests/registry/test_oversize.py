"""Oversized PUTs: every client reads the 413, whatever the size, because the server drains the body before
closing (a client that writes its whole body before reading would otherwise see a reset)."""

from __future__ import annotations

import urllib.error
import urllib.request

import httpx
import pytest
import requests

from .conftest import RegistryThread

SIZES = [513 * 1024, 2 * 1000 * 1000, 8 * 1000 * 1000]
TEXT = "too large, max size: 524288 bytes"


@pytest.mark.parametrize("size", SIZES)
def test_urllib_reads_413(registry: RegistryThread, size: int) -> None:
    req = urllib.request.Request(f"{registry.url}/v1/kv/big", data=b"x" * size, method="PUT")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 413
    assert f"Request body({size} bytes) {TEXT}" in info.value.read().decode()


@pytest.mark.parametrize("size", SIZES)
def test_httpx_reads_413(registry: RegistryThread, size: int) -> None:
    resp = httpx.put(f"{registry.url}/v1/kv/big", content=b"x" * size, timeout=30)
    assert resp.status_code == 413 and TEXT in resp.text


@pytest.mark.parametrize("size", SIZES)
def test_requests_reads_413(registry: RegistryThread, size: int) -> None:
    resp = requests.put(f"{registry.url}/v1/kv/big", data=b"x" * size, timeout=30)
    assert resp.status_code == 413 and TEXT in resp.text


def test_chunked_oversize_and_limit_exact(registry: RegistryThread) -> None:
    def chunks() -> object:
        for _ in range(9):
            yield b"y" * (64 * 1024)

    resp = httpx.put(f"{registry.url}/v1/kv/big", content=chunks(), timeout=30)  # type: ignore[arg-type]
    assert resp.status_code == 413 and TEXT in resp.text
    ok = httpx.put(f"{registry.url}/v1/kv/big", content=b"z" * 524288, timeout=30)
    assert ok.status_code == 200 and ok.json() is True
    # The connection that got a 413 was closed; a new one works and the value was not touched by the rejects.
    assert httpx.get(f"{registry.url}/v1/kv/big?raw").content == b"z" * 524288

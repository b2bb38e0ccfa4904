"""TLS towards an upstream, over real loopback sockets: private CA, server name, client certificates.

Certificates are made with the openssl CLI (no Python crypto dependency just for tests)."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from stator.client import HTTPClient, TLSConfig, consul_client
from stator.config.settings import ConsulSettings
from tests.externals import require_tool

pytestmark = pytest.mark.external


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    openssl = require_tool("openssl")
    d = tmp_path_factory.mktemp("pki")
    _run(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "2", "-subj", "/CN=stator test CA", cwd=d)  # fmt: skip
    for name, cn, ext in (
        ("server", "stator.test", "subjectAltName=DNS:stator.test\nextendedKeyUsage=serverAuth"),
        ("client", "stator-client", "extendedKeyUsage=clientAuth"),
    ):
        (d / f"{name}.ext").write_text(ext + "\n")
        _run(openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={cn}", cwd=d)  # fmt: skip
        _run(openssl, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)  # fmt: skip
    return d


async def _serve_tls(pki: Path, require_client_cert: bool) -> tuple[asyncio.Server, int, list[str]]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    peers: list[str] = []
    if require_client_cert:
        ctx.load_verify_locations(pki / "ca.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()
            return
        cert = writer.get_extra_info("peercert")
        peers.append(str(cert["subject"]) if cert else "")
        body = b'{"tls":true}'
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    return server, server.sockets[0].getsockname()[1], peers


@pytest.fixture
async def tls_server(pki: Path) -> AsyncIterator[tuple[int, list[str]]]:
    server, port, peers = await _serve_tls(pki, require_client_cert=False)
    yield port, peers
    server.close()


@pytest.fixture
async def mtls_server(pki: Path) -> AsyncIterator[tuple[int, list[str]]]:
    server, port, peers = await _serve_tls(pki, require_client_cert=True)
    yield port, peers
    server.close()


async def test_private_ca_and_server_name(pki: Path, tls_server: tuple[int, list[str]]) -> None:
    port, _ = tls_server
    tls = TLSConfig(ca_file=str(pki / "ca.pem"), server_name="stator.test")
    async with HTTPClient(f"https://127.0.0.1:{port}", tls=tls) as client:
        assert (await client.get("/")).json() == {"tls": True}


async def test_wrong_name_or_unknown_ca_is_refused(pki: Path, tls_server: tuple[int, list[str]]) -> None:
    port, _ = tls_server
    # Dialled by IP without server_name: the certificate (for stator.test) does not match.
    async with HTTPClient(f"https://127.0.0.1:{port}", tls=TLSConfig(ca_file=str(pki / "ca.pem"))) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/")
    # System CAs do not know our private CA.
    async with HTTPClient(f"https://127.0.0.1:{port}", tls=TLSConfig(server_name="stator.test")) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/")


async def test_client_certificate(pki: Path, mtls_server: tuple[int, list[str]]) -> None:
    port, peers = mtls_server
    base = TLSConfig(ca_file=str(pki / "ca.pem"), server_name="stator.test")
    async with HTTPClient(f"https://127.0.0.1:{port}", tls=base) as client:
        with pytest.raises(httpx.HTTPError):
            await client.get("/")
    settings = ConsulSettings(
        addr=f"https://127.0.0.1:{port}",
        ca_file=str(pki / "ca.pem"),
        cert_file=str(pki / "client.pem"),
        key_file=str(pki / "client.key"),
        server_name="stator.test",
    )
    async with consul_client(settings) as client:
        assert (await client.get("/v1/agent/self")).status_code == 200
    assert any("stator-client" in p for p in peers)


def test_key_without_certificate_is_a_config_error(pki: Path) -> None:
    with pytest.raises(ValueError, match="without a certificate"):
        TLSConfig(key_file=str(pki / "client.key")).ssl_context()

"""With TLS on, every listener takes it: the HTTP door and the metrics endpoint, as well as gRPC, each requiring a
client certificate when the server has a client CA; none is left in plaintext beside them."""

from __future__ import annotations

import asyncio
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
import pytest

from tests.certificates import make_certificates
from tests.conftest import serving_doors
from warpcore.server.rpc.server import ServingOptions
from warpcore.server.tls import TlsFiles


@pytest.fixture
def tls(tmp_path: Path) -> tuple[TlsFiles, Path, Path]:
    """The server's files (client CA included), and a client's certificate and key."""
    pems = make_certificates()
    files = {
        "ca": pems.ca,
        "cert": pems.server_certificate,
        "key": pems.server_key,
        "client": pems.client_certificate,
        "client-key": pems.client_key,
    }
    for name, pem in files.items():
        (tmp_path / f"{name}.pem").write_bytes(pem)
    server = TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem")
    return server, tmp_path / "client.pem", tmp_path / "client-key.pem"


def client_context(server: TlsFiles, certificate: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=server.client_ca)  # one CA signed both sides here
    if certificate is not None:
        context.load_cert_chain(certificate, key)
    return context


async def test_the_http_door_takes_tls_and_requires_the_client_certificate(
    server_env: dict[str, str], tls: tuple[TlsFiles, Path, Path]
) -> None:
    server, certificate, key = tls
    async with serving_doors(server_env, ServingOptions(tls=server)) as doors:
        assert doors.http is not None
        port = doors.http.port
        async with httpx2.AsyncClient(verify=client_context(server, certificate, key)) as mutual:
            answer = await mutual.get(f"https://127.0.0.1:{port}/health")
        async with httpx2.AsyncClient(verify=client_context(server)) as anonymous:
            with pytest.raises(httpx2.HTTPError):  # no client certificate: the handshake fails
                await anonymous.get(f"https://127.0.0.1:{port}/health")
        async with httpx2.AsyncClient() as plain:
            with pytest.raises(httpx2.HTTPError):  # no plaintext beside TLS
                await plain.get(f"http://127.0.0.1:{port}/health")
    assert answer.status_code == 200


async def test_the_metrics_endpoint_takes_tls_and_requires_the_client_certificate(
    server_env: dict[str, str], tls: tuple[TlsFiles, Path, Path]
) -> None:
    server, certificate, key = tls
    async with serving_doors(server_env) as doors:
        metrics = doors.grpc.metrics.serve("127.0.0.1", 0, server)
        url = f"https://127.0.0.1:{metrics.server_port}/metrics"

        def scrape(context: ssl.SSLContext | None, address: str = url) -> str:
            with urllib.request.urlopen(address, context=context, timeout=10) as response:
                return str(response.read().decode())

        try:
            text = await asyncio.to_thread(scrape, client_context(server, certificate, key))
            with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
                await asyncio.to_thread(scrape, client_context(server))
            with pytest.raises((urllib.error.URLError, ConnectionError)):
                await asyncio.to_thread(scrape, None, url.replace("https:", "http:"))
        finally:
            metrics.shutdown()
    assert "warpcore_num_requests_running" in text

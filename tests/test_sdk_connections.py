"""The Python SDK, sync and asyncio, against the real server: retries while a server restarts, round robin over
replicas, the token as metadata, mutual TLS, and targets or certificate files it cannot use."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.certificates import make_certificates
from tests.conftest import TINY_MODEL
from tests.sdk_support import target
from warpcore.client import AsyncClient, AuthenticationError, Client, UnavailableError
from warpcore.server.adapters.factory import create_adapter
from warpcore.server.core.registry import ModelRegistry
from warpcore.server.rpc.server import ServingOptions, WarpcoreServer, start_server
from warpcore.server.tls import TlsFiles

__all__ = ["target"]  # the fixture, used by name


async def start_named(models_path: Path, address: str, **options: Any) -> WarpcoreServer:
    registry = ModelRegistry(functools.partial(create_adapter, env={"MODELS_PATH": str(models_path)}))
    server = await start_server(registry, address, ServingOptions(**options))
    await server.set_serving(True)
    return server


async def test_unary_calls_are_retried_while_a_server_restarts(models_path: Path) -> None:
    first = await start_named(models_path, "127.0.0.1:0")
    port = first.port
    quick_reconnect = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 300)]
    async with AsyncClient(f"127.0.0.1:{port}", max_retries=4, channel_options=quick_reconnect) as client:
        assert await client.list_models() == []
        await first.stop(None)
        listing = asyncio.create_task(client.list_models(timeout=10))
        await asyncio.sleep(0.3)  # the first attempts fail while nothing listens
        second = await start_named(models_path, f"127.0.0.1:{port}")
        try:
            assert await listing == []
        finally:
            await second.stop(None)


async def test_without_retries_a_down_server_is_unavailable(models_path: Path) -> None:
    server = await start_named(models_path, "127.0.0.1:0")
    await server.stop(None)
    async with AsyncClient(f"127.0.0.1:{server.port}", max_retries=0) as client:
        with pytest.raises(UnavailableError):
            await client.list_models(timeout=5)


async def test_round_robin_over_several_replicas(models_path: Path) -> None:
    replicas = [await start_named(models_path, "127.0.0.1:0") for _ in range(2)]
    try:
        for name, replica in zip(("a", "b"), replicas, strict=True):
            async with AsyncClient(f"127.0.0.1:{replica.port}") as direct:
                await direct.load_model(TINY_MODEL, model_id=name)
        target = "ipv4:" + ",".join(f"127.0.0.1:{replica.port}" for replica in replicas)
        async with AsyncClient(target) as client:
            seen = {tuple(m.id for m in await client.list_models()) for _ in range(8)}
        assert seen == {("a",), ("b",)}  # calls went to both replicas
    finally:
        for replica in replicas:
            await replica.stop(None)


class RecordingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self.metadata: list[Mapping[str, str]] = []

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        self.metadata.append(dict(handler_call_details.invocation_metadata or ()))  # type: ignore[arg-type]
        return await continuation(handler_call_details)


async def test_token_is_sent_as_authorization_metadata(models_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    interceptor = RecordingInterceptor()
    server = await start_named(models_path, "127.0.0.1:0", interceptors=[interceptor])
    try:
        async with AsyncClient(f"127.0.0.1:{server.port}", token="s3cret") as client:
            await client.list_models()
        monkeypatch.setenv("WARPCORE_TOKEN", "from-env\n")  # a secret's last newline is no part of it
        monkeypatch.setenv("WARPCORE_TARGET", f"127.0.0.1:{server.port}")
        async with AsyncClient() as client:
            await client.list_models()
    finally:
        await server.stop(None)
    assert [m.get("authorization") for m in interceptor.metadata] == ["Bearer s3cret", "Bearer from-env"]


async def test_an_empty_token_sends_none_where_the_environment_has_one(
    models_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tester's finding: token="" still sent $WARPCORE_TOKEN, so no code could call without the environment's token.
    None, the default, reads the environment; "" is no token."""
    server = await start_named(models_path, "127.0.0.1:0", token="s3cret")
    monkeypatch.setenv("WARPCORE_TOKEN", "s3cret")
    target = f"127.0.0.1:{server.port}"

    async def listed(token: str | None) -> None:
        async with AsyncClient(target, token=token) as client:
            await client.list_models()

    def sync_listed(token: str | None) -> None:
        with Client(target, token=token) as client:
            client.list_models()

    try:
        await listed(None)
        await asyncio.to_thread(sync_listed, None)
        with pytest.raises(AuthenticationError):
            await listed("")
        with pytest.raises(AuthenticationError):
            await asyncio.to_thread(sync_listed, "")
    finally:
        await server.stop(None)


async def test_mutual_tls(models_path: Path, tmp_path: Path) -> None:
    pems = make_certificates()
    for name, pem in (("ca", pems.ca), ("cert", pems.server_certificate), ("key", pems.server_key)):
        (tmp_path / f"{name}.pem").write_bytes(pem)
    tls = TlsFiles(tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem")
    server = await start_named(models_path, "127.0.0.1:0", tls=tls)
    target = f"127.0.0.1:{server.port}"
    try:
        async with AsyncClient(
            target,
            root_certificates=tmp_path / "ca.pem",
            client_certificate=pems.client_certificate,
            client_key=pems.client_key,
        ) as client:
            assert await client.health() == "SERVING"
        async with AsyncClient(target, root_certificates=pems.ca, max_retries=0) as anonymous:
            with pytest.raises(UnavailableError):  # no client certificate: the handshake fails
                await anonymous.health(timeout=5)
    finally:
        await server.stop(None)


async def test_fixture_free_unreachable_target_is_unavailable() -> None:
    async with AsyncClient("127.0.0.1:1", max_retries=0) as client:
        with pytest.raises(UnavailableError):
            await client.list_models(timeout=5)


@pytest.mark.parametrize("option", ["root_certificates", "client_certificate", "client_key"])
@pytest.mark.parametrize("make", [Client, AsyncClient], ids=["sync", "async"])
async def test_unreadable_certificate_file_is_an_error_naming_the_option(
    make: Callable[..., object], option: str, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ValueError, match=re.escape(f"{option}: cannot read '{missing}': No such file or directory")):
        make("127.0.0.1:1", **{option: missing})
    with pytest.raises(ValueError, match=re.escape(f"{option}: cannot read '{tmp_path}': Is a directory")):
        make("127.0.0.1:1", **{option: str(tmp_path)})
    pem_text = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    with pytest.raises(ValueError, match=f"^{option}: PEM data must be bytes; a str is the path of a PEM file$"):
        make("127.0.0.1:1", **{option: pem_text})

"""Clients may point API backends elsewhere only where the operator allows it (server-side request forgery)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.fakes.openai_api import FakeOpenAI
from warpcore.server.adapters.factory import create_adapter
from warpcore.server.core.policy import ApiOverridePolicy, default_policy
from warpcore.server.core.registry import ModelRegistry
from warpcore.server.rpc.server import ServingOptions, start_server
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

KEY = "sk-client-0123456789"


@pytest.mark.parametrize(
    ("mode", "listen", "allowed"),
    [
        ("auto", ["127.0.0.1:50051", "unix:///run/w.sock"], True),
        ("auto", ["[::1]:50051", "localhost:1"], True),
        ("auto", ["127.0.0.1:50051", "0.0.0.0:50051"], False),
        ("auto", ["10.1.2.3:50051"], False),
        ("allow", ["0.0.0.0:50051"], True),
        ("deny", ["127.0.0.1:50051"], False),
    ],
)
def test_default_policy_refuses_overrides_off_loopback(mode: str, listen: list[str], allowed: bool) -> None:
    assert default_policy(mode, listen, None).allow is allowed


async def serve_with(policy: ApiOverridePolicy, env: dict[str, str]) -> AsyncIterator[Stub]:
    registry = ModelRegistry(functools.partial(create_adapter, env=env))
    server = await start_server(registry, "127.0.0.1:0", ServingOptions(api_overrides=policy))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield inference_pb2_grpc.InferenceServiceStub(channel)
    finally:
        await server.stop(None)
        await registry.close()


def load(base_url: str | None, api_key: str | None, model_id: str = "gpt") -> pb.LoadModelRequest:
    config = pb.BackendConfig(api=pb.ApiConfig(base_url=base_url, api_key=api_key)) if base_url or api_key else None
    return pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_OPENAI, model="gpt-4o-mini", model_id=model_id, backend_config=config
    )


async def test_denied_overrides_refuse_client_urls_and_keys_but_serve_the_operators(tmp_path: Path) -> None:
    async with FakeOpenAI() as operator_upstream, FakeOpenAI() as client_upstream:
        env = {"OPENAI_API_KEY": "sk-operator-0123456789", "OPENAI_API_BASE": operator_upstream.base_url}
        async for stub in serve_with(ApiOverridePolicy(allow=False), env):
            by_organization = load(None, None, model_id="org")  # a tester's finding: it went with the server's key
            by_organization.backend_config.api.organization = "org-chosen-by-the-client"
            for request in (load(client_upstream.base_url, KEY), load(None, KEY), by_organization):
                with pytest.raises(grpc.aio.AioRpcError) as denied:
                    await stub.LoadModel(request)
                assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert "--api-overrides" in (denied.value.details() or "")
            listing = pb.ListModelsRequest(
                backend=pb.BACKEND_TYPE_OPENAI,
                backend_config=pb.BackendConfig(api=pb.ApiConfig(base_url=client_upstream.base_url, api_key=KEY)),
            )
            with pytest.raises(grpc.aio.AioRpcError) as denied_listing:
                await stub.ListModels(listing)
            assert denied_listing.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert client_upstream.requests == []  # never contacted
            await stub.LoadModel(load(None, None))  # the operator's own settings still work
            assert operator_upstream.requests


async def test_allowed_hosts_limit_client_base_urls() -> None:
    async with FakeOpenAI() as upstream:
        policy = ApiOverridePolicy(allow=True, allowed_hosts=frozenset({"127.0.0.1"}))
        async for stub in serve_with(policy, {}):
            await stub.LoadModel(load(upstream.base_url, KEY))
            elsewhere = upstream.base_url.replace("127.0.0.1", "localhost")
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.LoadModel(load(elsewhere, KEY, model_id="other"))
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "'localhost' is not among the hosts" in (denied.value.details() or "")


async def test_the_servers_organization_and_project_go_only_to_its_own_base_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tester's finding: the server's OPENAI_ORGANIZATION, and the OPENAI_ORG_ID and OPENAI_PROJECT_ID the SDK reads
    from the environment by itself, went to a base URL a client named, telling it whom the server's key bills."""
    monkeypatch.setenv("OPENAI_ORG_ID", "org-from-the-sdks-variable")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-of-the-server")
    async with FakeOpenAI() as operator_upstream, FakeOpenAI() as client_upstream:
        env = {
            "OPENAI_API_KEY": "sk-operator-0123456789",
            "OPENAI_API_BASE": operator_upstream.base_url,
            "OPENAI_ORGANIZATION": "org-of-the-server",
        }
        async for stub in serve_with(ApiOverridePolicy(allow=True), env):
            await stub.LoadModel(load(None, None, model_id="own"))
            await stub.LoadModel(load(client_upstream.base_url, KEY, model_id="theirs"))
            chosen = load(client_upstream.base_url, KEY, model_id="theirs-with-an-organization")
            chosen.backend_config.api.organization = "org-chosen-by-the-client"
            await stub.LoadModel(chosen)
    own = operator_upstream.requests[-1].headers
    assert (own["openai-organization"], own["openai-project"]) == ("org-of-the-server", "proj-of-the-server")
    theirs, with_organization = (request.headers for request in client_upstream.requests[-2:])
    assert "openai-organization" not in theirs
    assert "openai-project" not in theirs
    assert with_organization["openai-organization"] == "org-chosen-by-the-client"
    assert "openai-project" not in with_organization

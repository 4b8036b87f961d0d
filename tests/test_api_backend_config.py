"""OpenAI and Anthropic backends through the real SDKs, against loopback servers that speak their protocols: the key,
base URL, organization and version from the request config or the environment, the models listed, and the beta
header."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest

from tests.api_backends_support import Code, details
from tests.conftest import collect, failed_stream, rich_details
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import ANTHROPIC_KEY, OPENAI_KEY, api_config, backend_of, key_of, load, prompt
from warpcore.server.core.bounds import MAX_ID_LENGTH
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


# Configuration: request config, then environment, then an error naming both.


async def test_key_and_base_url_from_the_request_config(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    await collect(stub.Generate(prompt()))
    headers = upstream.requests[-1].headers
    assert key_of(upstream) in (headers.get("authorization", "") + headers.get("x-api-key", ""))


async def test_everything_from_the_environment_without_backend_config(
    stub: Stub, server_env: dict[str, str], openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    server_env.update(
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_API_BASE=openai_upstream.base_url,
        OPENAI_ORGANIZATION="org-from-env",
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        ANTHROPIC_API_BASE=anthropic_upstream.base_url,
    )
    for upstream in (openai_upstream, anthropic_upstream):
        request = pb.LoadModelRequest(
            backend=backend_of(upstream), model=upstream.models[0], model_id=f"env-{id(upstream)}"
        )
        model = (await stub.LoadModel(request)).model
        text, _ = await collect(stub.Generate(pb.GenerateRequest(model_id=model.id, prompt="hi")))
        assert text == "Hello, world"
    openai_headers = openai_upstream.requests[-1].headers
    assert openai_headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert openai_headers["openai-organization"] == "org-from-env"
    anthropic_headers = anthropic_upstream.requests[-1].headers
    assert anthropic_headers["authorization"] == f"Bearer {ANTHROPIC_KEY}"  # how anthropic 2.x sends the key
    assert anthropic_headers["anthropic-version"] == "2023-06-01"


async def test_unset_config_fields_fall_back_to_the_environment(
    stub: Stub, server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    server_env.update(
        OPENAI_API_KEY="sk-env-key-should-lose", OPENAI_ORGANIZATION="org-env", OPENAI_API_BASE=openai_upstream.base_url
    )
    config = pb.BackendConfig(api=pb.ApiConfig(api_key=OPENAI_KEY))
    await load(stub, openai_upstream, config)
    await collect(stub.Generate(prompt()))
    headers = openai_upstream.requests[-1].headers
    assert headers["authorization"] == f"Bearer {OPENAI_KEY}"  # the request's key wins
    # Unset in the request: from the environment (the server's organization goes to its own base URL only).
    assert headers["openai-organization"] == "org-env"


async def test_organization_from_the_request_config(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    await load(stub, openai_upstream, api_config(openai_upstream, organization="org-config"))
    await collect(stub.Generate(prompt()))
    assert openai_upstream.requests[-1].headers["openai-organization"] == "org-config"


async def test_an_organization_is_refused_for_anthropic(stub: Stub, anthropic_upstream: FakeAnthropic) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await load(stub, anthropic_upstream, api_config(anthropic_upstream, organization="org-config"))
    assert refused.value.code() == Code.INVALID_ARGUMENT
    assert rich_details(refused.value)[1] == ["backend_config.api.organization"]


async def test_anthropic_version_from_the_environment(
    stub: Stub, server_env: dict[str, str], anthropic_upstream: FakeAnthropic
) -> None:
    server_env["ANTHROPIC_API_VERSION"] = "2099-01-01"
    await load(stub, anthropic_upstream)
    await collect(stub.Generate(prompt()))
    assert {request.headers["anthropic-version"] for request in anthropic_upstream.requests} == {"2099-01-01"}


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("TIMEOUT", "0", "timeout must be positive and at most 86400 seconds"),  # was the default, in silence
        ("TIMEOUT", "inf", "timeout must be positive and at most 86400 seconds"),
        ("API_BASE", "http://u:sk-live-CREDSECRET999@127.0.0.1:9/v1", "base_url must hold no credentials"),
    ],
)
async def test_a_bad_variable_is_refused_where_a_load_reads_it_naming_it(
    stub: Stub, upstream: FakeUpstream, server_env: dict[str, str], setting: str, value: str, said: str
) -> None:
    """As a request's own value would be (the server refuses it at start too: test_startup_refusals.py)."""
    variable = f"{'OPENAI' if isinstance(upstream, FakeOpenAI) else 'ANTHROPIC'}_{setting}"
    server_env[variable] = value
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load(stub, upstream)
    assert raised.value.code() == Code.FAILED_PRECONDITION
    assert (raised.value.details() or "").startswith(f"environment variable {variable}: {said}")
    assert "CREDSECRET" not in (raised.value.details() or "")
    assert details(raised.value)["reason"] == "BAD_ENVIRONMENT"


async def test_missing_key_names_both_sources(stub: Stub, upstream: FakeUpstream, server_env: dict[str, str]) -> None:
    variable = "OPENAI_API_KEY" if isinstance(upstream, FakeOpenAI) else "ANTHROPIC_API_KEY"
    server_env[variable.replace("_KEY", "_BASE")] = upstream.base_url
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load(stub, upstream, pb.BackendConfig(api=pb.ApiConfig()))
    assert raised.value.code() == Code.FAILED_PRECONDITION
    assert "backend_config.api.api_key" in (raised.value.details() or "")
    assert variable in (raised.value.details() or "")
    assert details(raised.value)["reason"] == "API_KEY_MISSING"
    assert upstream.requests == []


async def test_the_servers_key_is_never_sent_to_a_base_url_from_a_request(
    stub: Stub, upstream: FakeUpstream, server_env: dict[str, str]
) -> None:
    server_env.update(OPENAI_API_KEY=OPENAI_KEY, ANTHROPIC_API_KEY=ANTHROPIC_KEY)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load(stub, upstream, pb.BackendConfig(api=pb.ApiConfig(base_url=upstream.base_url)))
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert "api_key must be set too" in (raised.value.details() or "")
    assert upstream.requests == []


async def test_unknown_model_is_not_found(stub: Stub, upstream: FakeUpstream) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load(stub, upstream, model="no-such-model")
    assert raised.value.code() == Code.NOT_FOUND
    assert "ListModels" in (raised.value.details() or "")
    # What it offers, as a compatible server may name its models unguessably (llama.cpp's: its file's path).
    assert f"(it offers {', '.join(map(repr, upstream.models))})" in (raised.value.details() or "")


async def test_list_models_shows_loaded_then_provider_models(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    request = pb.ListModelsRequest(backend=backend_of(upstream), backend_config=api_config(upstream))
    models = (await stub.ListModels(request)).models
    assert [(m.id, m.state) for m in models] == [("m", pb.MODEL_STATE_READY)] + [
        (name, pb.MODEL_STATE_AVAILABLE) for name in upstream.models
    ]
    listing = upstream.requests[-1]
    assert (listing.method, listing.path) == ("GET", "/v1/models")
    if isinstance(upstream, FakeAnthropic):
        assert listing.headers["x-api-key"] == ANTHROPIC_KEY
        assert listing.headers["anthropic-version"] == "2023-06-01"


async def test_a_listed_model_id_made_of_the_key_or_too_long_is_left_out(stub: Stub, upstream: FakeUpstream) -> None:
    """An upstream chooses the ids it lists: one that spelled the key it was called with reached any caller. A part
    of the key alone is no key (README: never a part of the key alone is scrubbed), and a name like one is listed."""
    key = api_config(upstream).api.api_key
    shaped = "sk-proj-Qw7ZtLm2RbXc9VhNk4FsT8"  # shaped as OpenAI's keys are, not the one the upstream was called with
    upstream.models = [f"m-Bearer {key}|", f"{key}-model", shaped, "x" * (MAX_ID_LENGTH + 1), f"{key[:10]}-model"]
    request = pb.ListModelsRequest(backend=backend_of(upstream), backend_config=api_config(upstream))
    assert [model.id for model in (await stub.ListModels(request)).models] == [f"{key[:10]}-model"]


async def test_anthropic_betas_go_in_the_header_to_anthropic_only(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    betas = ["interleaved-thinking-2025-05-14", "output-128k-2025-02-19"]
    await collect(stub.Generate(prompt(anthropic_betas=betas)))
    sent = upstream.requests[-1].headers.get("anthropic-beta")
    assert sent == (None if isinstance(upstream, FakeOpenAI) else ",".join(betas))
    requests = len(upstream.requests)
    for bad in (["Bad Name"], ["a,b"], [""], [f"b{n}" for n in range(17)]):
        _, error = await failed_stream(stub.Generate(prompt(anthropic_betas=bad)))
        assert (error.code(), rich_details(error)[1]) == (Code.INVALID_ARGUMENT, ["options.anthropic_betas"])
    assert len(upstream.requests) == requests

"""A hosted model holds no memory to be evicted for, so the number loaded at once has a bound of its own
(--max-api-models): a tester loaded 300 under ids of his own, and each added its series to /metrics, for good."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import rich_details, serving
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import api_config
from warpcore.server.cli import serving_options, startup_models
from warpcore.server.core.limits import Limits
from warpcore.server.preload import ConfigError
from warpcore.server.rpc.server import ServingOptions, WarpcoreServer
from warpcore.server.settings import parse_settings
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

LIMIT = 2


@pytest.fixture
async def limited(server_env: dict[str, str]) -> AsyncIterator[tuple[WarpcoreServer, Stub]]:
    async with (
        serving(server_env, ServingOptions(limits=Limits(max_api_models=LIMIT))) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield server, inference_pb2_grpc.InferenceServiceStub(channel)


def hosted(upstream: FakeOpenAI, model_id: str, model: str | None = None) -> pb.LoadModelRequest:
    return pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_OPENAI,
        model=model or upstream.models[0],
        model_id=model_id,
        backend_config=api_config(upstream),
    )


def model_series(server: WarpcoreServer) -> set[str]:
    """The model labels of the per-model series /metrics shows."""
    families = server.metrics.registry.collect()
    return {sample.labels["model"] for family in families for sample in family.samples if "model" in sample.labels}


async def test_a_hosted_load_past_the_limit_is_refused_naming_it_until_one_is_unloaded(
    limited: tuple[WarpcoreServer, Stub], openai_upstream: FakeOpenAI
) -> None:
    server, stub = limited
    for number in range(LIMIT):
        await stub.LoadModel(hosted(openai_upstream, f"client-model-{number}"))
    await stub.LoadModel(hosted(openai_upstream, "client-model-1"))  # one held, asked again: no new model
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.LoadModel(hosted(openai_upstream, f"client-model-{LIMIT}"))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rich_details(refused.value)[0].reason == "API_MODELS_FULL"
    assert refused.value.details() == (
        f"no room to load 'client-model-{LIMIT}': the server holds its most hosted-API models ({LIMIT} of {LIMIT}"
        " loaded, --max-api-models); unload one with UnloadModel (ListModels lists them), or have the server's"
        " operator raise --max-api-models (WARPCORE_MAX_API_MODELS)"
    )
    # Another model under a held id is told that the id is taken, as below the limit.
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await stub.LoadModel(hosted(openai_upstream, "client-model-0", openai_upstream.models[1]))
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert model_series(server) == {"client-model-0", "client-model-1"}
    await stub.UnloadModel(pb.UnloadModelRequest(model_id="client-model-0"))
    await stub.LoadModel(hosted(openai_upstream, f"client-model-{LIMIT}"))
    assert model_series(server) == {"client-model-1", f"client-model-{LIMIT}"}


async def test_hosted_loads_at_once_past_the_limit_are_refused_too(
    limited: tuple[WarpcoreServer, Stub], openai_upstream: FakeOpenAI
) -> None:
    stub = limited[1]
    calls = (stub.LoadModel(hosted(openai_upstream, f"m{number}")) for number in range(5))
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    refused = [outcome for outcome in outcomes if isinstance(outcome, grpc.aio.AioRpcError)]
    assert len(outcomes) - len(refused) == LIMIT
    assert {error.code() for error in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert len((await stub.ListModels(pb.ListModelsRequest())).models) == LIMIT


def test_the_limit_is_256_unless_set_and_0_lifts_it() -> None:
    assert serving_options(parse_settings([], {})).limits.max_api_models == 256
    assert serving_options(parse_settings([], {"WARPCORE_MAX_API_MODELS": "8"})).limits.max_api_models == 8
    assert serving_options(parse_settings(["--max-api-models", "0"], {})).limits.max_api_models is None


def test_a_config_declaring_more_hosted_models_than_the_limit_stops_the_start(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    entry = '[[models]]\nid = "{}"\nbackend = "openai"\nmodel = "gpt-x"\nlazy = true\napi = {{ api_key_env = "KEY" }}\n'
    config.write_text(entry.format("a") + entry.format("b"))
    env = {"KEY": "sk-test-0123456789", "MODELS_PATH": str(tmp_path)}
    argv = ["--config", str(config), "--no-default-model"]
    assert len(startup_models(parse_settings([*argv, "--max-api-models", "2"], env), env)) == 2
    with pytest.raises(ConfigError) as refused:
        startup_models(parse_settings([*argv, "--max-api-models", "1"], env), env)
    assert str(refused.value) == (
        f"{config} declares 2 hosted-API models, more than the server holds at once (--max-api-models 1); raise"
        " --max-api-models (WARPCORE_MAX_API_MODELS)"
    )

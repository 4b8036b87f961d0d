"""A hosted model the API serves but does not list (a router's wildcard route, tester T2's LiteLLM `wild/*`): loaded
with ApiConfig.unlisted, from every place a load comes from; without it, the refusal says how."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest

from tests.cli import ENV, Run, warpcore
from tests.conftest import collect, rich_details
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import OPENAI_KEY, api_config, key_of, load
from warpcore.client import AsyncClient
from warpcore.server.core.domain import ApiSettings
from warpcore.server.preload import ConfigError, read_preload
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from pathlib import Path

    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

WILDCARD_MODEL = "wild/any-model"
"""A name the fake upstreams answer (they answer any) but do not list."""


def asked_for_models(upstream: FakeUpstream) -> int:
    return sum(request.method == "GET" and request.path.endswith("/models") for request in upstream.requests)


async def test_a_model_the_api_does_not_list_loads_when_unlisted_and_generates(
    stub: Stub, upstream: FakeUpstream
) -> None:
    assert WILDCARD_MODEL not in upstream.models
    model = await load(stub, upstream, api_config(upstream, unlisted=True), model=WILDCARD_MODEL)
    assert (model.id, model.state) == ("m", pb.MODEL_STATE_READY)
    assert asked_for_models(upstream) == 1  # still asked: a wrong key or base URL fails the load
    text, result = await collect(stub.Generate(pb.GenerateRequest(model_id="m", prompt="hi")))
    assert (bool(text), result.finish_reason) == (True, pb.FINISH_REASON_STOP)
    sent = upstream.requests[-1].body
    assert sent is not None
    assert sent["model"] == WILDCARD_MODEL


async def test_without_unlisted_the_refusal_names_the_setting(stub: Stub, upstream: FakeUpstream) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await load(stub, upstream, model=WILDCARD_MODEL)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert rich_details(refused.value)[0].reason == "UPSTREAM_MODEL_NOT_FOUND"
    assert "backend_config.api.unlisted" in (refused.value.details() or "")


async def test_an_unlisted_model_with_a_wrong_key_still_fails_its_load(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.required_api_key = key_of(upstream)
    config = api_config(upstream, unlisted=True, api_key="sk-not-the-key")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await load(stub, upstream, config, model=WILDCARD_MODEL)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "sk-not-the-key" not in (refused.value.details() or "")


async def test_the_same_id_loaded_listed_and_unlisted_is_two_settings(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    await load(stub, upstream)  # the same settings: the model loaded
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await load(stub, upstream, api_config(upstream, unlisted=True))
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_the_sdk_and_the_cli_load_an_unlisted_model(server: WarpcoreServer, openai_upstream: FakeOpenAI) -> None:
    target = f"127.0.0.1:{server.port}"
    async with AsyncClient(target) as client:
        model = await client.load_model(
            WILDCARD_MODEL,
            backend="openai",
            model_id="sdk",
            api_key=OPENAI_KEY,
            base_url=openai_upstream.base_url,
            unlisted=True,
        )
    assert model.id == "sdk"
    load = ["load", WILDCARD_MODEL, "--backend", "openai", "--base-url", openai_upstream.base_url]
    load += ["--api-key-env", "CLI_TEST_KEY", "--id", "cli"]
    env = {**ENV, "CLI_TEST_KEY": OPENAI_KEY}
    assert (await warpcore(target, *load, env=env)).code == 1  # listed only
    assert await warpcore(target, *load, "--unlisted", env=env) == Run(0, "cli\n", "")
    refused = await warpcore(target, "load", "tiny.gguf", "--unlisted")
    assert (refused.code, "--unlisted: only with --backend openai or anthropic" in refused.stderr) == (2, True)


def test_the_preload_file_takes_unlisted(tmp_path: Path, openai_upstream: FakeOpenAI) -> None:
    config = tmp_path / "models.toml"
    entry = f'[[models]]\nid = "wild"\nbackend = "openai"\nmodel = "{WILDCARD_MODEL}"\n[models.api]\n'
    entry += f'api_key_env = "K"\nbase_url = "{openai_upstream.base_url}"\n'
    config.write_text(entry + "unlisted = true\n")
    (spec,) = read_preload(config, {"K": OPENAI_KEY})
    assert isinstance(spec.settings, ApiSettings)
    assert spec.settings.unlisted
    config.write_text(entry + 'unlisted = "yes"\n')
    with pytest.raises(ConfigError, match=r"models\[0\]\.api\.unlisted has the wrong type"):
        read_preload(config, {"K": OPENAI_KEY})

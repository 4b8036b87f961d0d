"""A LoadModel of a hosted model the operator preloaded, that leaves its settings to the server (as the README's
examples do: key and base URL from the server's environment), gets the preloaded model, loaded or declared lazy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import collect, rich_details
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import OPENAI_KEY
from warpcore.server.core.domain import LoadSpec
from warpcore.server.preload import read_preload
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


def preloaded(upstream: FakeOpenAI, folder: Path, *, lazy: bool) -> LoadSpec:
    """What the preload file gives for `[[models]]` with `api_key_env` and `base_url`: the key read from the
    environment, written into the model's settings."""
    config = folder / "warpcore.toml"
    config.write_text(
        f'[[models]]\nid = "gpt"\nbackend = "openai"\nmodel = "{upstream.models[0]}"\nlazy = {str(lazy).lower()}\n'
        f'[models.api]\napi_key_env = "OPERATOR_KEY"\nbase_url = "{upstream.base_url}"\n'
    )
    (spec,) = read_preload(config, {"OPERATOR_KEY": OPENAI_KEY})
    return spec


def load_leaving_settings_to_the_server(upstream: FakeOpenAI, **fields: object) -> pb.LoadModelRequest:
    return pb.LoadModelRequest(backend=pb.BACKEND_TYPE_OPENAI, model=upstream.models[0], model_id="gpt", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("lazy", [False, True])
async def test_a_load_that_leaves_settings_to_the_server_gets_the_preloaded_model(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI, lazy: bool, tmp_path: Path
) -> None:
    """A tester's finding: the README's load_model(..., model_id="gpt") against a server whose --config declared
    "gpt" was ALREADY_EXISTS ("loaded with other settings"; when lazy, "unloaded while idle", never loaded)."""
    spec = preloaded(openai_upstream, tmp_path, lazy=lazy)
    if lazy:
        server.engine.declare(spec)
    else:
        await server.engine.load(spec, from_operator=True)
    model = (await stub.LoadModel(load_leaving_settings_to_the_server(openai_upstream))).model
    assert (model.id, model.state) == ("gpt", pb.MODEL_STATE_READY)
    text, _ = await collect(stub.Generate(pb.GenerateRequest(model_id="gpt", prompt="hi")))
    assert text
    # The model as the operator declared it: its base URL and its key.
    assert openai_upstream.requests[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"


@pytest.mark.parametrize("lazy", [False, True])
async def test_a_load_asking_for_other_settings_under_a_preloaded_id_is_already_exists(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI, lazy: bool, tmp_path: Path
) -> None:
    spec = preloaded(openai_upstream, tmp_path, lazy=lazy)
    if lazy:
        server.engine.declare(spec)
    else:
        await server.engine.load(spec, from_operator=True)
    other = pb.BackendConfig(api=pb.ApiConfig(api_key=OPENAI_KEY, base_url=f"{openai_upstream.base_url}/other"))
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await stub.LoadModel(load_leaving_settings_to_the_server(openai_upstream, backend_config=other))
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert rich_details(taken.value)[0].reason == "MODEL_ID_TAKEN"
    if lazy:
        assert "the operator's, or unloaded while idle" in (taken.value.details() or "")


@pytest.mark.parametrize("lazy", [False, True])
async def test_a_load_giving_a_key_for_the_operators_model_is_refused_whatever_the_key(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI, lazy: bool, tmp_path: Path
) -> None:
    """An outside tester's finding: the key of the operator's model (read from the environment its api_key_env
    names) got OK, any other ALREADY_EXISTS naming api_key: a caller could tell whether it had guessed the key."""
    spec = preloaded(openai_upstream, tmp_path, lazy=lazy)
    if lazy:
        server.engine.declare(spec)
    else:
        await server.engine.load(spec, from_operator=True)
    answers = []
    for key in (OPENAI_KEY, "sk-test-openai-guessed-0123456789"):
        config = pb.BackendConfig(api=pb.ApiConfig(api_key=key))
        with pytest.raises(grpc.aio.AioRpcError) as taken:
            await stub.LoadModel(load_leaving_settings_to_the_server(openai_upstream, backend_config=config))
        answers.append((taken.value.code(), taken.value.details(), rich_details(taken.value)[0].reason))
    assert answers[0] == answers[1]
    assert answers[0][0] == grpc.StatusCode.ALREADY_EXISTS
    # The model stays the operator's, for a load that leaves its key to the server.
    model = (await stub.LoadModel(load_leaving_settings_to_the_server(openai_upstream))).model
    assert model.id == "gpt"


async def test_a_base_url_with_a_trailing_slash_names_the_same_model(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    """A tester's finding: "…/v1/" against a preloaded "…/v1" was ALREADY_EXISTS (base_url), where both SDKs call the
    same endpoints for either."""
    await server.engine.load(preloaded(openai_upstream, tmp_path, lazy=False), from_operator=True)
    slashed = pb.BackendConfig(api=pb.ApiConfig(base_url=f"{openai_upstream.base_url}/"))
    model = (await stub.LoadModel(load_leaving_settings_to_the_server(openai_upstream, backend_config=slashed))).model
    assert model.id == "gpt"


async def test_the_operators_model_keeps_its_id_after_an_unload(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    """A tester's finding: once a client had unloaded the operator's model, it could load another under its id (its
    own upstream, without the operator's limits), and nobody could load the operator's again (its key came from the
    server's --config)."""
    await server.engine.load(preloaded(openai_upstream, tmp_path, lazy=False), from_operator=True)
    await stub.UnloadModel(pb.UnloadModelRequest(model_id="gpt"))
    elsewhere = pb.BackendConfig(api=pb.ApiConfig(api_key="sk-other-0123456789", base_url=openai_upstream.base_url))
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await stub.LoadModel(load_leaving_settings_to_the_server(openai_upstream, backend_config=elsewhere))
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (await stub.LoadModel(load_leaving_settings_to_the_server(openai_upstream))).model.id == "gpt"
    await collect(stub.Generate(pb.GenerateRequest(model_id="gpt", prompt="hi")))
    assert openai_upstream.requests[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"

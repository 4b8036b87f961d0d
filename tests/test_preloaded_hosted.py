"""A LoadModel of a hosted model the operator preloaded, that leaves its settings to the server (as the README's
examples do: key and base URL from the server's environment), gets the preloaded model, loaded or declared lazy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import collect, rich_details
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import OPENAI_KEY
from warpcore.server.core.domain import ApiSettings, BackendKind, LoadSpec
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


def preloaded(upstream: FakeOpenAI, *, lazy: bool) -> LoadSpec:
    """What the preload file gives for `[[models]]` with `api_key_env` and `base_url`: the key read from the
    environment, written into the model's settings."""
    settings = ApiSettings(api_key=OPENAI_KEY, base_url=upstream.base_url)
    return LoadSpec("gpt", BackendKind.OPENAI, upstream.models[0], settings, None, lazy=lazy, keep_alive=None)


def load_leaving_settings_to_the_server(upstream: FakeOpenAI, **fields: object) -> pb.LoadModelRequest:
    return pb.LoadModelRequest(backend=pb.BACKEND_TYPE_OPENAI, model=upstream.models[0], model_id="gpt", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("lazy", [False, True])
async def test_a_load_that_leaves_settings_to_the_server_gets_the_preloaded_model(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI, lazy: bool
) -> None:
    """A tester's finding: the README's load_model(..., model_id="gpt") against a server whose --config declared
    "gpt" was ALREADY_EXISTS ("loaded with other settings"; when lazy, "unloaded while idle", never loaded)."""
    spec = preloaded(openai_upstream, lazy=lazy)
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
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI, lazy: bool
) -> None:
    spec = preloaded(openai_upstream, lazy=lazy)
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


async def test_a_base_url_with_a_trailing_slash_names_the_same_model(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: "…/v1/" against a preloaded "…/v1" was ALREADY_EXISTS (base_url), where both SDKs call the
    same endpoints for either."""
    await server.engine.load(preloaded(openai_upstream, lazy=False), from_operator=True)
    slashed = pb.BackendConfig(api=pb.ApiConfig(api_key=OPENAI_KEY, base_url=f"{openai_upstream.base_url}/"))
    model = (await stub.LoadModel(load_leaving_settings_to_the_server(openai_upstream, backend_config=slashed))).model
    assert model.id == "gpt"


async def test_the_operators_model_keeps_its_id_after_an_unload(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: once a client had unloaded the operator's model, it could load another under its id (its
    own upstream, without the operator's limits), and nobody could load the operator's again (its key came from the
    server's --config)."""
    await server.engine.load(preloaded(openai_upstream, lazy=False), from_operator=True)
    await stub.UnloadModel(pb.UnloadModelRequest(model_id="gpt"))
    elsewhere = pb.BackendConfig(api=pb.ApiConfig(api_key="sk-other-0123456789", base_url=openai_upstream.base_url))
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await stub.LoadModel(load_leaving_settings_to_the_server(openai_upstream, backend_config=elsewhere))
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (await stub.LoadModel(load_leaving_settings_to_the_server(openai_upstream))).model.id == "gpt"
    await collect(stub.Generate(pb.GenerateRequest(model_id="gpt", prompt="hi")))
    assert openai_upstream.requests[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"

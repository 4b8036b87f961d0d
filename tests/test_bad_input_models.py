"""Bad models and model calls get the right status code, a message a user can act on, and rich details: a symlink out of
MODELS_PATH, a corrupt file, no MODELS_PATH, a taken model id, an unknown backend to list, an unknown model unloaded;
concurrent loads of one model share one load; a listing with settings but no backend to ask lists the loaded models."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import load_tiny, rich_details
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


Code = grpc.StatusCode


async def test_symlink_out_of_models_path_is_refused(stub: Stub, models_path: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.gguf"
    outside.write_bytes(b"GGUF")
    link = models_path / "link.gguf"
    link.symlink_to(outside)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.LoadModel(pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="link.gguf"))
        assert raised.value.code() == Code.FAILED_PRECONDITION
        assert rich_details(raised.value)[1] == ["model"]  # as for the other refusals of the path
        assert "outside MODELS_PATH" in (raised.value.details() or "")
        assert str(tmp_path) not in (raised.value.details() or "")  # server paths are not revealed
        listed = await stub.ListModels(pb.ListModelsRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP))
        assert "link.gguf" not in [model.id for model in listed.models]
    finally:
        link.unlink()


async def test_corrupt_model_file_fails_cleanly(stub: Stub, models_path: Path) -> None:
    broken = models_path / "broken.gguf"
    broken.write_bytes(b"GGUF but not really" * 10)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.LoadModel(pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="broken.gguf"))
        assert raised.value.code() == Code.FAILED_PRECONDITION
        assert rich_details(raised.value)[0].reason == "MODEL_LOAD_FAILED"
    finally:
        broken.unlink()
    await load_tiny(stub)  # the server is still healthy


async def test_missing_models_path_is_a_failed_precondition(server_env: dict[str, str], stub: Stub) -> None:
    server_env.pop("MODELS_PATH")  # the adapters read this dict when a model is loaded
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load_tiny(stub)
    assert raised.value.code() == Code.FAILED_PRECONDITION
    assert "MODELS_PATH is not set" in (raised.value.details() or "")
    assert rich_details(raised.value)[0].reason == "MODELS_PATH_UNSET"


async def test_a_taken_model_id_is_already_exists_unless_the_request_is_the_same(stub: Stub, tiny: str) -> None:
    same = await load_tiny(stub, model_id=tiny)  # a retried LoadModel gets the loaded model
    assert same.id == tiny
    # So does one that names the defaults the model got: its context size (as LoadModel answered it) and 1 slot.
    named = await load_tiny(stub, model_id=tiny, context_size=same.context_size, parallel=1)
    assert (named.id, named.context_size) == (tiny, same.context_size)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load_tiny(stub, model_id=tiny, context_size=512)
    assert raised.value.code() == Code.ALREADY_EXISTS
    assert rich_details(raised.value)[1] == ["model_id"]
    assert "loaded with other settings (context_size); unload it first to change them" in (raised.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load_tiny(stub, model_id=tiny, context_size=512, parallel=2)
    assert "loaded with other settings (context_size, parallel); unload" in (raised.value.details() or "")


async def test_concurrent_loads_of_one_model_share_one_load(stub: Stub) -> None:
    first, second = await asyncio.gather(load_tiny(stub, model_id="twin"), load_tiny(stub, model_id="twin"))
    for answer in (first, second):
        answer.residency.ClearField("last_used")  # the second takes its turn once the model is loaded: a use
    assert first == second
    listed = await stub.ListModels(pb.ListModelsRequest())
    assert [model.id for model in listed.models] == ["twin"]


async def test_a_listing_with_settings_but_no_backend_to_ask_lists_the_loaded_models(stub: Stub) -> None:
    """As the first release did (its contract: "Absent: the server's environment", no more): the settings ask no
    backend, and are left unread. An outside tester's finding: a client built from the released contract was refused
    it."""
    await load_tiny(stub)
    config = pb.BackendConfig(api=pb.ApiConfig(base_url="http://127.0.0.1:9/v1", api_key="sk-unread"))
    listed = await stub.ListModels(pb.ListModelsRequest(backend_config=config))
    assert listed == await stub.ListModels(pb.ListModelsRequest())
    assert [(model.id, model.state) for model in listed.models] == [("tiny", pb.MODEL_STATE_READY)]


async def test_an_unknown_backend_to_list_is_refused_naming_every_value_a_listing_takes(stub: Stub) -> None:
    """A tester's finding: the message named only the three backends LoadModel takes, though a listing takes
    BACKEND_TYPE_UNSPECIFIED too (every backend's models)."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListModels(pb.ListModelsRequest(backend=99))  # type: ignore[arg-type]
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert rich_details(raised.value)[1] == ["backend"]
    assert raised.value.details() == (
        "backend must be one of BACKEND_TYPE_UNSPECIFIED (every backend), BACKEND_TYPE_OPENAI, BACKEND_TYPE_ANTHROPIC,"
        " BACKEND_TYPE_LLAMA_CPP"
    )


async def test_unload_unknown_model_not_found(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UnloadModel(pb.UnloadModelRequest(model_id="nope"))
    assert raised.value.code() == Code.NOT_FOUND
    assert "load it with LoadModel" in (raised.value.details() or "")


async def test_count_tokens_without_its_request_names_the_request(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CountTokens(pb.CountTokensRequest())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(raised.value)[1] == ["request"]
    assert (raised.value.details() or "").startswith("request is required")

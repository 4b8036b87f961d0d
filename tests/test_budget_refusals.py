"""A load refused for its files unloads nothing: under a budget of local models, the idle model a load would make room
for stays loaded when the new model's file is missing, not a GGUF, outside MODELS_PATH, or its projector missing.
The real server and the real llama.cpp with the tiny model."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import TINY_MODEL, collect, greedy, rich_details
from tests.residency import listed, load_request, server_and_stub
from warpcore.server.core.residency import ResidencyPolicy
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


@pytest.fixture(params=[ResidencyPolicy(max_models=1), ResidencyPolicy(max_bytes=1)], ids=["models", "bytes"])
async def one_model_loaded(
    request: pytest.FixtureRequest, models_path: Path, tmp_path: Path
) -> AsyncIterator[tuple[WarpcoreServer, Stub, Path]]:
    """A server whose budget holds one model (by count, or by bytes: a model larger than the budget loads alone),
    with the tiny model loaded as "kept", idle; its MODELS_PATH a folder of its own, for the broken files."""
    own = tmp_path / "models"
    shutil.copytree(models_path, own)
    async for server, stub, _ in server_and_stub({"MODELS_PATH": str(own)}, request.param):
        await stub.LoadModel(load_request("kept"))
        await collect(stub.Generate(greedy("the", 2, model_id="kept")))
        yield server, stub, own


def broken_files(models_path: Path, tmp_path: Path) -> dict[str, tuple[str, str | None]]:
    """Loads that fail for their files, by name: (model, mmproj)."""
    (models_path / "not-a-model.gguf").write_bytes(b"GGUF" + bytes(60))
    outside = tmp_path / "outside.gguf"
    outside.write_bytes((models_path / "hf" / "warpcore" / "tiny" / "tiny.gguf").read_bytes())
    link = models_path / "link-out.gguf"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    return {
        "missing": ("no/such/file.gguf", None),
        "not a GGUF": ("not-a-model.gguf", None),
        "outside MODELS_PATH": ("link-out.gguf", None),
        "missing projector": (TINY_MODEL, "no/such/mmproj.gguf"),
    }


@pytest.mark.parametrize("broken", ["missing", "not a GGUF", "outside MODELS_PATH", "missing projector"])
async def test_a_load_refused_for_its_files_unloads_nothing(
    one_model_loaded: tuple[WarpcoreServer, Stub, Path], tmp_path: Path, broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    server, stub, models_path = one_model_loaded
    model, mmproj = broken_files(models_path, tmp_path)[broken]
    local = pb.LocalBackendConfig(llama_cpp=pb.LlamaCppConfig(mmproj=mmproj))
    request = pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP, model=model, model_id="new", backend_config=pb.BackendConfig(local=local)
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.LoadModel(request)
    assert refused.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)
    assert rich_details(refused.value)[0].reason.startswith("MODEL_")
    if broken == "not a GGUF":  # the refusal says the details are in the server log: they are
        assert "details in the server log" in (refused.value.details() or "")
        assert any("llama.cpp could not load" in record.getMessage() for record in caplog.records)
    models = await listed(stub)
    assert models["kept"].state == pb.MODEL_STATE_READY
    assert "new" not in models
    unloads = server.metrics.registry.get_sample_value("warpcore_model_unloads_total", {"reason": "room"})
    assert unloads == 0

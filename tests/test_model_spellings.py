"""One GGUF file, one model id: every spelling of a file's name (`./x.gguf`, `x.gguf/`, `a//x.gguf`, `hf/o/r/f.gguf`)
loads, lists, generates and unloads as the one model registered under the file's canonical id, so its weights are
never loaded twice and residency counts it once."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import TINY_MODEL, collect, greedy, rich_details
from tests.residency import ModelEvents, listed, server_and_stub
from tests.tiny_model import write_tiny_model
from tests.tiny_projector import write_tiny_projector
from warpcore.server.core.residency import ResidencyPolicy
from warpcore.server.preload import ConfigError, read_preload
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

SPELLINGS = ["x.gguf", "./x.gguf", "x.gguf/", ".//x.gguf", "././x.gguf/"]
NESTED_SPELLINGS = ["sub/y.gguf", "sub//y.gguf", "./sub/./y.gguf", "sub/y.gguf/"]
HF_SPELLINGS = [
    TINY_MODEL,
    "hf/warpcore/tiny/tiny.gguf",
    "./hf/warpcore/tiny//tiny.gguf",
    "hf:warpcore/tiny:./tiny.gguf",
]


@pytest.fixture
def models_root(server_env: dict[str, str], tmp_path: Path) -> Path:
    """A private MODELS_PATH holding x.gguf, sub/y.gguf and the tiny hf: model (all the tiny model)."""
    root = tmp_path / "models"
    tiny = write_tiny_model(root / "hf" / "warpcore" / "tiny" / "tiny.gguf")
    shutil.copyfile(tiny, root / "x.gguf")
    (root / "sub").mkdir()
    shutil.copyfile(tiny, root / "sub" / "y.gguf")
    server_env["MODELS_PATH"] = str(root)  # read when each adapter is made
    return root


@pytest.fixture
async def one_model_budget(
    server_env: dict[str, str], models_root: Path
) -> AsyncIterator[tuple[WarpcoreServer, Stub, ModelEvents]]:
    # A budget of one model: were a second spelling a second model, loading it would evict the first.
    async for running in server_and_stub(server_env, ResidencyPolicy(max_models=1)):
        yield running


def local(model: str, model_id: str = "") -> pb.LoadModelRequest:
    return pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=model, model_id=model_id)


@pytest.mark.parametrize(
    ("spellings", "canonical"),
    [(SPELLINGS, "x.gguf"), (NESTED_SPELLINGS, "sub/y.gguf"), (HF_SPELLINGS, TINY_MODEL)],
    ids=["top", "nested", "hf"],
)
async def test_every_spelling_of_a_file_loads_one_model_under_its_canonical_id(
    one_model_budget: tuple[WarpcoreServer, Stub, ModelEvents], spellings: list[str], canonical: str
) -> None:
    _, stub, events = one_model_budget
    for spelling in spellings:
        model = (await stub.LoadModel(local(spelling))).model
        assert (model.id, model.name, model.state) == (canonical, canonical, pb.MODEL_STATE_READY), spelling
        # The CLI's way: the name it was given as the id too.
        assert (await stub.LoadModel(local(spelling, model_id=spelling))).model.id == canonical
    assert events.seen == [(canonical, True)]  # one load, nothing evicted to make room for a copy
    assert [(model.id, model.state) for model in (await listed(stub)).values()] == [(canonical, pb.MODEL_STATE_READY)]


async def test_a_call_may_name_a_loaded_model_by_any_spelling_of_its_file(
    one_model_budget: tuple[WarpcoreServer, Stub, ModelEvents],
) -> None:
    _, stub, events = one_model_budget
    await stub.LoadModel(local("./x.gguf"))
    for spelling in SPELLINGS:
        text, result = await collect(stub.Generate(greedy("the", 3, model_id=spelling)))
        assert (bool(text), result.usage.completion_tokens) == (True, 3), spelling
        count = await stub.CountTokens(pb.CountTokensRequest(request=greedy("the", 3, model_id=spelling)))
        assert count.count.prompt_tokens > 0
    assert events.seen == [("x.gguf", True)]
    unloaded = await stub.UnloadModel(pb.UnloadModelRequest(model_id="x.gguf/"))
    assert unloaded.model.id == "x.gguf"
    assert events.seen == [("x.gguf", True), ("x.gguf", False)]
    assert await listed(stub) == {}


async def test_a_lazy_model_is_loaded_once_whichever_spelling_calls_it_first(
    one_model_budget: tuple[WarpcoreServer, Stub, ModelEvents], tmp_path: Path
) -> None:
    server, stub, events = one_model_budget
    config = tmp_path / "models.toml"
    config.write_text('[[models]]\nbackend = "llama_cpp"\nmodel = "./x.gguf"\nlazy = true\n')
    (spec,) = read_preload(config, {})
    assert (spec.model_id, spec.name) == ("x.gguf", "x.gguf")
    server.engine.declare(spec)
    await collect(stub.Generate(greedy("the", 2, model_id=".//x.gguf")))
    await collect(stub.Generate(greedy("the", 2, model_id="x.gguf")))
    assert events.seen == [("x.gguf", True)]


async def test_a_projector_is_one_file_whichever_its_spelling(
    one_model_budget: tuple[WarpcoreServer, Stub, ModelEvents], models_root: Path
) -> None:
    _, stub, events = one_model_budget
    write_tiny_projector(models_root / "hf" / "warpcore" / "tiny" / "mmproj.gguf")
    for mmproj in ["hf/warpcore/tiny/mmproj.gguf", "hf:warpcore/tiny:mmproj.gguf", "./hf/warpcore/tiny/mmproj.gguf/"]:
        local_config = pb.LocalBackendConfig(llama_cpp=pb.LlamaCppConfig(mmproj=mmproj))
        request = pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, backend_config=pb.BackendConfig(local=local_config)
        )
        model = (await stub.LoadModel(request)).model  # not ALREADY_EXISTS: the same model, with the same projector
        assert (model.id, model.capabilities.images) == (TINY_MODEL, True)
    assert events.seen == [(TINY_MODEL, True)]


async def test_the_files_listed_are_those_a_load_takes_each_by_the_id_it_loads_under(
    one_model_budget: tuple[WarpcoreServer, Stub, ModelEvents], models_root: Path
) -> None:
    _, stub, _ = one_model_budget
    shutil.copyfile(models_root / "x.gguf", models_root / "back\\slash.gguf")  # a name LoadModel refuses
    (models_root / "folder.gguf").mkdir()
    (models_root / "notes.gguf").write_text("not a model")  # named as one, but no GGUF file: its load would fail
    listed = await stub.ListModels(pb.ListModelsRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP))
    available = [model.id for model in listed.models]
    assert available == [TINY_MODEL, "sub/y.gguf", "x.gguf"]
    for model_id in available:
        assert (await stub.LoadModel(local(model_id))).model.id == model_id
    # Loaded under its own name, a file is listed once: loaded, not a second time as servable.
    listed = await stub.ListModels(pb.ListModelsRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP))
    states = [(model.id, model.state) for model in listed.models]
    assert len({model_id for model_id, _ in states}) == len(states), states
    assert ("x.gguf", pb.MODEL_STATE_READY) in states


def test_a_preload_file_naming_one_file_twice_under_one_id_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    entry = '[[models]]\nbackend = "llama_cpp"\nmodel = "{}"\n'
    config.write_text(entry.format("x.gguf") + entry.format("./x.gguf"))
    with pytest.raises(ConfigError, match=r"model ids listed twice: x\.gguf$"):
        read_preload(config, {})


@pytest.mark.parametrize(
    ("spelling", "suggested"),
    [
        ("sub/../x.gguf", "x.gguf"),
        ("./sub/../sub//y.gguf", "sub/y.gguf"),
        ("hf:warpcore/tiny:../tiny/tiny.gguf", TINY_MODEL),
    ],
)
async def test_a_spelling_through_dot_dot_is_refused_naming_the_file_it_would_be(
    one_model_budget: tuple[WarpcoreServer, Stub, ModelEvents], spelling: str, suggested: str
) -> None:
    # Not folded away: `sub/..` is MODELS_PATH only if `sub` is no link, which the spelling alone cannot tell.
    _, stub, events = one_model_budget
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.LoadModel(local(spelling))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, fields = rich_details(refused.value)
    assert (info.reason, fields) == ("MODEL_PATH_OUTSIDE_MODELS_PATH", ["model"])
    assert f"without '..' (here {suggested!r}, unless a folder on the way is a link)" in (refused.value.details() or "")
    assert events.seen == []

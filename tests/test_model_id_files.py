"""A model id spelled as a GGUF file's name stands for that file (ListModels lists the file by it, LoadModel and calls
reach the file by it): LoadModel takes it for that file's model only, never for another model, whose id would hide
the file. An outside tester's finding: the Gemma file loaded as `hf/a/b/tiny.gguf` took the id of another file,
which then left ListModels, could not be loaded by its own name and whose Generate ran Gemma. The real server, a
private MODELS_PATH of tiny GGUF files, and a loopback fake of OpenAI's API."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import TINY_MODEL, collect, greedy, rich_details
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import OPENAI_KEY, api_config
from tests.tiny_model import write_tiny_model
from warpcore.server.cli import startup_models
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.preload import ConfigError, read_preload
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.server.settings import parse_settings
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

OTHER_FILE = "hf:a/b:tiny.gguf"


@pytest.fixture
def models_root(server_env: dict[str, str], tmp_path: Path) -> Path:
    """A private MODELS_PATH holding the tiny hf: model, another file (hf/a/b/tiny.gguf) and x.gguf."""
    root = tmp_path / "models"
    tiny = write_tiny_model(root / "hf" / "warpcore" / "tiny" / "tiny.gguf")
    (root / "hf" / "a" / "b").mkdir(parents=True)
    shutil.copyfile(tiny, root / "hf" / "a" / "b" / "tiny.gguf")
    shutil.copyfile(tiny, root / "x.gguf")
    server_env["MODELS_PATH"] = str(root)  # read when each adapter is made
    return root


def local(model: str, model_id: str = "") -> pb.LoadModelRequest:
    return pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=model, model_id=model_id)


async def files(stub: Stub) -> list[str]:
    listed = await stub.ListModels(pb.ListModelsRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP))
    return sorted(model.id for model in listed.models)


def assert_refused(error: grpc.aio.AioRpcError, model_id: str, file: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, fields = rich_details(error)
    assert (info.reason, fields) == ("MODEL_ID_NAMES_ANOTHER_FILE", ["model_id"])
    message = error.details() or ""
    assert message.startswith(f"model_id {model_id!r} names another model file under MODELS_PATH ({file!r})")
    assert "choose a model_id that is no file's name" in message
    assert message.endswith("or load that file")


@pytest.mark.parametrize(
    ("model_id", "file"),
    [
        ("hf/a/b/tiny.gguf", OTHER_FILE),  # the tester's
        (OTHER_FILE, OTHER_FILE),
        ("./hf/a/b//tiny.gguf", OTHER_FILE),
        ("x.gguf", "x.gguf"),
        ("x.gguf/", "x.gguf"),
        ("nowhere/yet.gguf", "nowhere/yet.gguf"),  # no such file now: one copied or pulled there later has this id
    ],
)
async def test_a_local_model_is_refused_an_id_spelled_as_another_files_name(
    models_root: Path, stub: Stub, model_id: str, file: str
) -> None:
    before = await files(stub)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.LoadModel(local(TINY_MODEL, model_id=model_id))
    assert_refused(refused.value, model_id, file)
    assert (await stub.ListModels(pb.ListModelsRequest())).models == []  # nothing loaded
    assert await files(stub) == before
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # a bad name is the fault to fix first
        await stub.LoadModel(local("/elsewhere/tiny.gguf", model_id=model_id))
    assert rich_details(refused.value)[1] == ["model"]
    # Under a name of no file, the model loads; the file loads under its id in any spelling, and calls naming it run it.
    assert (await stub.LoadModel(local(TINY_MODEL, model_id="tiny"))).model.id == "tiny"
    if file in before:
        model = (await stub.LoadModel(local(file, model_id=model_id))).model
        assert (model.id, model.name) == (file, file)
        text, result = await collect(stub.Generate(greedy("the", 2, model_id=model_id)))
        assert (bool(text), result.usage.completion_tokens) == (True, 2)


@pytest.mark.parametrize(("model", "model_id"), [("gpt-x", "x.gguf"), ("m", "hf/a/b/tiny.gguf")])
async def test_a_hosted_model_is_refused_an_id_spelled_as_a_files_name(
    models_root: Path, stub: Stub, openai_upstream: FakeOpenAI, model: str, model_id: str
) -> None:
    openai_upstream.models.append(model)
    request = pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_OPENAI, model=model, model_id=model_id, backend_config=api_config(openai_upstream)
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.LoadModel(request)
    assert_refused(refused.value, model_id, model_id if model_id != "hf/a/b/tiny.gguf" else OTHER_FILE)
    assert openai_upstream.requests == []  # refused before the API was asked
    assert OTHER_FILE in await files(stub)
    request.model_id = "hosted"
    assert (await stub.LoadModel(request)).model.id == "hosted"


@pytest.mark.parametrize(
    ("model", "model_id"),
    [
        ("served.gguf", ""),
        ("served.gguf", "served.gguf"),
        ("served.gguf", "./served.gguf"),  # its own name in another spelling (a tester's finding: refused)
        ("served.gguf", "served.gguf/"),
        ("./served.gguf", ""),
    ],
)
async def test_a_hosted_model_keeps_its_own_name_spelled_as_a_file(
    models_root: Path, stub: Stub, openai_upstream: FakeOpenAI, model: str, model_id: str
) -> None:
    """A compatible server may name its model as a file (llama.cpp's server, its GGUF's path), and the first release's
    clients load it under that name, model_id unset: it stays the hosted model's id, as it was, while no such file is
    under MODELS_PATH."""
    openai_upstream.models.append(model)
    request = pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_OPENAI, model=model, model_id=model_id, backend_config=api_config(openai_upstream)
    )
    assert (await stub.LoadModel(request)).model.id == "served.gguf"


@pytest.mark.parametrize(
    ("model", "model_id", "file"),
    [
        ("x.gguf", "", "x.gguf"),
        ("./x.gguf", "", "x.gguf"),
        ("x.gguf", "./x.gguf", "x.gguf"),
        ("hf/a/b/tiny.gguf", "", OTHER_FILE),
    ],
)
async def test_a_hosted_model_named_as_a_file_under_models_path_is_refused_its_name_as_id(
    models_root: Path, stub: Stub, openai_upstream: FakeOpenAI, model: str, model_id: str, file: str
) -> None:
    """A tester's finding: the hosted model took the file's id and hid it (ListModels still listed the file, its
    LoadModel was ALREADY_EXISTS, a Generate naming it ran the hosted model)."""
    openai_upstream.models.append(model)
    request = pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_OPENAI, model=model, model_id=model_id, backend_config=api_config(openai_upstream)
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.LoadModel(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(refused.value)[0].reason == "MODEL_ID_NAMES_ANOTHER_FILE"
    assert rich_details(refused.value)[1] == ["model_id"]
    assert refused.value.details() == (
        f"the hosted model {model!r} would take the id {file!r}, the name of a model file under MODELS_PATH, which it"
        " would hide: give the hosted model a model_id of its own"
    )
    assert (await stub.ListModels(pb.ListModelsRequest())).models == []  # nothing loaded
    assert (await stub.LoadModel(local(file))).model.id == file  # the file loads under its id
    request.model_id = "hosted"
    assert (await stub.LoadModel(request)).model.id == "hosted"


@pytest.mark.parametrize("lazy", [False, True])
async def test_a_preloaded_hosted_model_keeps_its_own_name_spelled_as_a_file(
    models_root: Path, server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI, tmp_path: Path, lazy: bool
) -> None:
    """A tester's finding: a preload entry for a hosted model named ./dot.gguf, with no id, stopped the server at
    start (its id, dot.gguf, taken for another file's than its name ./dot.gguf), while LoadModel took the same."""
    openai_upstream.models += ["./dot.gguf", "x.gguf"]
    config = tmp_path / "models.toml"
    entry = f'lazy = {str(lazy).lower()}\n[models.api]\napi_key_env = "KEY"\nbase_url = "{openai_upstream.base_url}"\n'
    config.write_text(
        "".join(f'[[models]]\nbackend = "openai"\nmodel = "{model}"\n{entry}' for model in ("./dot.gguf", "x.gguf"))
    )
    served, hiding = read_preload(config, {"KEY": OPENAI_KEY})
    assert (served.model_id, hiding.model_id) == ("dot.gguf", "x.gguf")
    for spec in (served, hiding):
        server.engine.declare(spec, loads_at_start=not lazy)
    await server.engine.load(served, from_operator=True)
    assert server.engine.registry.get("dot.gguf").name == "./dot.gguf"
    with pytest.raises(InvalidArgumentError, match="give the hosted model a model_id of its own"):
        await server.engine.load(hiding, from_operator=True)  # x.gguf is under MODELS_PATH


def test_a_preload_file_is_refused_an_id_spelled_as_another_files_name(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(f'[[models]]\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\nid = "x.gguf"\n')
    with pytest.raises(ConfigError, match=r"models\[0\]\.id: model_id 'x\.gguf' names another model file"):
        read_preload(config, {})


def test_a_lazy_hosted_model_named_as_a_file_under_models_path_stops_the_start(models_root: Path) -> None:
    """Declared lazy, it would hide the file from the start on, until its first call: refused as the server starts."""
    config = models_root.parent / "models.toml"
    config.write_text(
        '[[models]]\nbackend = "openai"\nmodel = "./x.gguf"\nlazy = true\napi = { api_key_env = "KEY" }\n'
    )
    env = {"KEY": OPENAI_KEY}
    argv = ["--config", str(config), "--models-path", str(models_root), "--no-default-model"]
    with pytest.raises(InvalidArgumentError) as refused:
        startup_models(parse_settings(argv, env), env)
    assert refused.value.message == (
        "cannot declare lazy startup model 'x.gguf' (./x.gguf): the hosted model './x.gguf' would take the id"
        " 'x.gguf', the name of a model file under MODELS_PATH, which it would hide: give the hosted model a model_id"
        " of its own"
    )
    (models_root / "x.gguf").unlink()
    assert [spec.model_id for spec in startup_models(parse_settings(argv, env), env)] == ["x.gguf"]


async def test_a_lazy_hosted_model_serves_its_calls_when_a_file_of_its_name_comes_later(
    models_root: Path, server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    """An outside tester's finding (T89): a file copied under MODELS_PATH after the start made every call to the
    operator's lazy model of that name INVALID_ARGUMENT, telling the caller to give it a model_id, which only the
    operator could; the file stays hidden instead, as behind a hosted model loaded before it came."""
    openai_upstream.models.append("later.gguf")
    config = tmp_path / "models.toml"
    config.write_text(
        f'[[models]]\nbackend = "openai"\nmodel = "later.gguf"\nlazy = true\n[models.api]\napi_key_env = "KEY"\n'
        f'base_url = "{openai_upstream.base_url}"\n'
    )
    (spec,) = read_preload(config, {"KEY": OPENAI_KEY})
    server.engine.declare(spec)
    shutil.copyfile(models_root / "x.gguf", models_root / "later.gguf")
    text, result = await collect(stub.Generate(greedy("hello", 2, model_id="later.gguf")))
    assert text
    assert result.finish_reason != pb.FINISH_REASON_UNSPECIFIED
    assert len(openai_upstream.requests) >= 1  # the hosted model answered, not the file
    # Unloaded, it is the operator's still: a LoadModel leaving its settings unset brings it back, file or not (T90).
    await stub.UnloadModel(pb.UnloadModelRequest(model_id="later.gguf"))
    again = pb.LoadModelRequest(backend=pb.BACKEND_TYPE_OPENAI, model="later.gguf")
    assert (await stub.LoadModel(again)).model.id == "later.gguf"


async def test_a_hosted_model_loaded_again_keeps_its_id_though_a_file_of_its_name_came(
    models_root: Path, stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    """A regression tester's finding (T90): the same LoadModel sent again, once a file of the model's name had come
    under MODELS_PATH, was refused as hiding the file, which the model hid already."""
    openai_upstream.models.append("again.gguf")
    request = pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_OPENAI, model="again.gguf", backend_config=api_config(openai_upstream)
    )
    assert (await stub.LoadModel(request)).model.id == "again.gguf"
    shutil.copyfile(models_root / "x.gguf", models_root / "again.gguf")
    assert (await stub.LoadModel(request)).model.id == "again.gguf"
    await stub.UnloadModel(pb.UnloadModelRequest(model_id="again.gguf"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # a new load under it would hide the file now
        await stub.LoadModel(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await stub.LoadModel(local("again.gguf"))).model.id == "again.gguf"

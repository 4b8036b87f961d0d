"""Models that manage their own residency: lazy models loaded by their first Generate, declared in the preload file or
the flags and environment, and a dormant model keeping its id until unloaded."""

from __future__ import annotations

import asyncio
import math
import re
import socket
from pathlib import Path

import grpc
import pytest

from tests.conftest import TINY_MODEL, collect, failed_stream, greedy, rich_details
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import OPENAI_KEY
from tests.residency import ModelEvents, listed, load_request
from warpcore.server.core.domain import ApiSettings, BackendKind, LoadSpec
from warpcore.server.preload import ConfigError, read_preload
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.server.setting_values import SettingsError
from warpcore.server.settings import parse_settings
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc


async def test_a_lazy_model_is_listed_and_concurrent_first_calls_share_one_load(server: WarpcoreServer) -> None:
    events = ModelEvents(server)
    server.engine.declare(LoadSpec("lazy", BackendKind.LLAMA_CPP, TINY_MODEL, None, None, lazy=True))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        model = (await listed(stub))["lazy"]
        assert (model.state, model.name, model.backend) == (
            pb.MODEL_STATE_AVAILABLE,
            TINY_MODEL,
            pb.BACKEND_TYPE_LLAMA_CPP,
        )
        assert events.loads("lazy") == 0
        answers = await asyncio.gather(*(collect(stub.Generate(greedy("the", 4, model_id="lazy"))) for _ in range(4)))
        assert answers[0][0]
        assert {text for text, _ in answers} == {answers[0][0]}
        assert events.loads("lazy") == 1
        assert (await listed(stub))["lazy"].state == pb.MODEL_STATE_READY


async def test_a_lazy_model_that_cannot_load_is_refused_naming_the_callers_field(server: WarpcoreServer) -> None:
    server.engine.declare(LoadSpec("gone", BackendKind.LLAMA_CPP, "nowhere/gone.gguf", None, None, lazy=True))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        _, error = await failed_stream(stub.Generate(greedy("the", 4, model_id="gone")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert rich_details(error)[1] == ["model_id"]  # GenerateRequest's field, not LoadModelRequest's
    assert "model 'gone' could not be loaded for this call" in (error.details() or "")


async def test_a_lazy_hosted_model_whose_provider_cannot_answer_fails_its_calls_until_it_can(
    server: WarpcoreServer, openai_upstream: FakeOpenAI
) -> None:
    """The sidecar's hosted models are lazy, so that a provider out of reach fails their calls, not the start: a
    call made then is refused, and a later one loads the model and is answered."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
    unreachable = ApiSettings(api_key=OPENAI_KEY, base_url=f"http://127.0.0.1:{closed.getsockname()[1]}/v1")
    offered = ApiSettings(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
    server.engine.declare(LoadSpec("away", BackendKind.OPENAI, "gpt-4o-mini", unreachable, None, lazy=True))
    server.engine.declare(LoadSpec("later", BackendKind.OPENAI, "gpt-later", offered, None, lazy=True))
    openai_upstream.script = Script(chunks=["answered"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        _, away = await failed_stream(stub.Generate(greedy("hi", 4, model_id="away")))
        _, not_yet = await failed_stream(stub.Generate(greedy("hi", 4, model_id="later")))
        openai_upstream.models.append("gpt-later")  # the provider offers it now
        answered, _ = await collect(stub.Generate(greedy("hi", 4, model_id="later")))
    closed.close()
    assert away.code() == grpc.StatusCode.UNAVAILABLE, away.details()
    assert not_yet.code() == grpc.StatusCode.NOT_FOUND, not_yet.details()
    assert answered == "answered"


def test_the_preload_file_declares_lazy_models_and_keep_alive(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        f'[[models]]\nid = "lazy"\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\nlazy = true\nkeep_alive = "5m"\n'
        f'[[models]]\nid = "kept"\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\nkeep_alive = "forever"\n'
        f'[[models]]\nid = "plain"\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\nkeep_alive = 90\n'
    )
    lazy, kept, plain = read_preload(config, {})
    assert (lazy.lazy, lazy.keep_alive) == (True, 300)
    assert (kept.lazy, kept.keep_alive) == (False, math.inf)
    assert plain.keep_alive == 90
    config.write_text(f'[[models]]\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\nkeep_alive = "soon"\n')
    with pytest.raises(ConfigError, match=r"models\[0\]\.keep_alive must be seconds \(90\)"):
        read_preload(config, {})
    config.write_text(f'[[models]]\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\nlazy = "yes"\n')
    with pytest.raises(ConfigError, match=r"models\[0\]\.lazy must be true or false"):
        read_preload(config, {})


def test_residency_settings_come_from_flags_and_environment() -> None:
    settings = parse_settings(
        ["--keep-alive", "5m", "--max-loaded-models", "2"], {"WARPCORE_MAX_LOADED_MEMORY": "1.5GiB"}
    )
    assert (settings.keep_alive, settings.max_loaded_models, settings.max_loaded_bytes) == (300, 2, 3 * 2**29)
    defaults = parse_settings([], {})
    assert (defaults.keep_alive, defaults.max_loaded_models, defaults.max_loaded_bytes) == (math.inf, None, None)
    assert not defaults.allow_pull
    assert parse_settings(["--allow-pull"], {}).allow_pull
    assert parse_settings([], {"WARPCORE_ALLOW_PULL": "1"}).allow_pull
    with pytest.raises(SettingsError, match=r"--keep-alive must be seconds \(90\)"):
        parse_settings(["--keep-alive", "later"], {})
    with pytest.raises(SettingsError, match="--max-loaded-memory must be a size"):
        parse_settings(["--max-loaded-memory", "lots"], {})


def test_the_readme_lazy_entry_is_a_valid_preload_file(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = next(block for block in re.findall(r"```toml\n(.*?)```", readme, re.DOTALL) if "lazy = true" in block)
    config = tmp_path / "models.toml"
    config.write_text(block)
    (spec,) = read_preload(config, {})
    assert (spec.lazy, spec.keep_alive) == (True, 600)


async def test_a_dormant_model_keeps_its_id_until_unloaded_which_forgets_it(server: WarpcoreServer) -> None:
    """A model known but not loaded (declared, or unloaded while idle) holds its id: another model under it is
    ALREADY_EXISTS; UnloadModel forgets it (returning it), after which a Generate naming it is NOT_FOUND. The id of
    one the operator declared stays its own (a tester's finding: a client unloaded it and loaded its own model under
    it, without the operator's limits): a LoadModel that leaves its settings unset gets it as declared."""
    server.engine.declare(LoadSpec("later", BackendKind.LLAMA_CPP, TINY_MODEL, None, 64, lazy=True))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        listed_before = (await listed(stub))["later"]
        assert (listed_before.state, listed_before.context_size) == (pb.MODEL_STATE_AVAILABLE, 64)
        assert listed_before.loads_on_demand  # told apart from a file the backend offers
        with pytest.raises(grpc.aio.AioRpcError) as taken:
            await stub.LoadModel(load_request("later", context_size=128))
        assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert rich_details(taken.value)[0].reason == "MODEL_ID_TAKEN"
        forgotten = (await stub.UnloadModel(pb.UnloadModelRequest(model_id="later"))).model
        assert (forgotten.id, forgotten.state, forgotten.name) == ("later", pb.MODEL_STATE_AVAILABLE, TINY_MODEL)
        assert not forgotten.loads_on_demand
        assert "later" not in await listed(stub)
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await collect(stub.Generate(greedy("the", 2, model_id="later")))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await stub.UnloadModel(pb.UnloadModelRequest(model_id="later"))
        assert again.value.code() == grpc.StatusCode.NOT_FOUND
        # The operator's id: not another model's, and the operator's model again for a load that leaves it so.
        with pytest.raises(grpc.aio.AioRpcError) as still_taken:
            await stub.LoadModel(load_request("later", context_size=128))
        assert still_taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert (await stub.LoadModel(load_request("later"))).model.context_size == 64

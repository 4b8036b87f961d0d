"""LoadModel's model_type on the hosted backends: an OpenAI-compatible model embeds or generates as the request says,
whatever its name; Anthropic, which has no embedding models, refuses to load one. The real server, the real SDKs
against the loopback fakes, and warpcore's own SDK."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.cli import ENV, warpcore
from tests.conftest import collect, rich_details
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI, fake_embedding
from tests.hosted import api_config, key_of, prompt
from warpcore.client import ApiConfig, AsyncClient, FailedPreconditionError
from warpcore.server.core.domain import ApiSettings, BackendKind, LoadSpec
from warpcore.server.preload import ConfigError, read_preload
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import embeddings_pb2 as epb
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

CUSTOM_EMBEDDER = "nomic-embed-text-v1.5"
"""An embedding model as a compatible server (llama.cpp's, LiteLLM) may name it: without "embedding" in its name."""


async def load_as(stub: Stub, upstream: FakeOpenAI | FakeAnthropic, model: str, model_type: int) -> pb.Model:
    backend = pb.BACKEND_TYPE_OPENAI if isinstance(upstream, FakeOpenAI) else pb.BACKEND_TYPE_ANTHROPIC
    request = pb.LoadModelRequest(
        backend=backend,
        model=model,
        model_id="m",
        model_type=model_type,  # type: ignore[arg-type]
        backend_config=api_config(upstream),
    )
    return (await stub.LoadModel(request)).model


async def test_a_compatible_servers_model_named_otherwise_embeds_when_loaded_as_an_embedding_model(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.models.append(CUSTOM_EMBEDDER)
    model = await load_as(stub, openai_upstream, CUSTOM_EMBEDDER, pb.MODEL_TYPE_TEXT_TO_EMBEDDING)
    assert model.type == pb.MODEL_TYPE_TEXT_TO_EMBEDDING
    assert (model.capabilities.embed, model.capabilities.generate) == (True, False)
    response = await stub.Embed(epb.EmbedRequest(model_id="m", inputs=["one text"], options=epb.EmbedOptions()))
    assert list(response.embeddings[0].values) == pytest.approx(fake_embedding("one text"), abs=1e-6)
    sent = openai_upstream.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.body is not None
    assert sent.body["model"] == CUSTOM_EMBEDDER
    sent_before = len(openai_upstream.requests)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await collect(stub.Generate(prompt()))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info, fields = rich_details(refused.value)
    assert (info.reason, fields) == ("MODEL_LOADED_FOR_EMBEDDINGS", ["model_id"])
    assert (refused.value.details() or "").startswith("this model was loaded as an embedding model")
    assert len(openai_upstream.requests) == sent_before  # refused before anything went upstream


async def test_a_model_named_as_an_embedder_generates_when_loaded_as_a_text_model(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.models.append("text-embedding-lookalike-chat")
    model = await load_as(stub, openai_upstream, "text-embedding-lookalike-chat", pb.MODEL_TYPE_TEXT_TO_TEXT)
    assert model.type == pb.MODEL_TYPE_TEXT_TO_TEXT
    assert (model.capabilities.generate, model.capabilities.embed) == (True, False)
    text, result = await collect(stub.Generate(prompt()))
    assert (bool(text), result.finish_reason) == (True, pb.FINISH_REASON_STOP)
    assert openai_upstream.requests[-1].path == "/v1/chat/completions"
    sent_before = len(openai_upstream.requests)
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # a tester's finding: it was sent to /v1/embeddings
        await stub.Embed(epb.EmbedRequest(model_id="m", inputs=["one text"], options=epb.EmbedOptions()))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(refused.value)[0].reason == "MODEL_NOT_LOADED_FOR_EMBEDDINGS"
    assert len(openai_upstream.requests) == sent_before


async def test_a_text_model_of_unspecified_type_still_embeds_as_before(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    """Before model_type held on hosted backends, Embed on a compatible server's embedding model named otherwise was
    sent on whatever its listed capabilities: a client of that time keeps working."""
    openai_upstream.models.append(CUSTOM_EMBEDDER)
    await load_as(stub, openai_upstream, CUSTOM_EMBEDDER, pb.MODEL_TYPE_UNSPECIFIED)
    response = await stub.Embed(epb.EmbedRequest(model_id="m", inputs=["one text"], options=epb.EmbedOptions()))
    assert len(response.embeddings) == 1


async def test_an_unspecified_type_follows_the_models_name_and_generate_is_still_sent(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: Generate on a model loaded without a type (as the released contract's clients load every
    model, "unspecified means text to text") was refused when its name said embedding; the proto says such a model is
    still sent a Generate, for the API to answer or refuse."""
    openai_upstream.models.append("text-embedding-3-small")
    embedder = await load_as(stub, openai_upstream, "text-embedding-3-small", pb.MODEL_TYPE_UNSPECIFIED)
    assert embedder.type == pb.MODEL_TYPE_TEXT_TO_EMBEDDING
    text, result = await collect(stub.Generate(prompt()))
    assert (bool(text), result.finish_reason) == (True, pb.FINISH_REASON_STOP)
    assert openai_upstream.requests[-1].path == "/v1/chat/completions"


async def listed_and_loaded_types(stub: Stub, upstream: FakeOpenAI | FakeAnthropic) -> dict[str, tuple[int, int]]:
    """Each model the backend lists as available: its listed type, and the type LoadModel of it with model_type unset
    gives."""
    backend = pb.BACKEND_TYPE_OPENAI if isinstance(upstream, FakeOpenAI) else pb.BACKEND_TYPE_ANTHROPIC
    listing = await stub.ListModels(pb.ListModelsRequest(backend=backend, backend_config=api_config(upstream)))
    listed = {model.name: model.type for model in listing.models if model.state == pb.MODEL_STATE_AVAILABLE}
    assert sorted(listed) == sorted(upstream.models)
    types: dict[str, tuple[int, int]] = {}
    for name, listed_type in listed.items():
        load = pb.LoadModelRequest(backend=backend, model=name, backend_config=api_config(upstream))
        types[name] = (listed_type, (await stub.LoadModel(load)).model.type)
    return types


async def test_an_openai_listing_says_the_type_a_load_of_unspecified_type_gives(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: ListModels of the openai backend listed text-embedding-* as MODEL_TYPE_TEXT_TO_TEXT, while
    LoadModel of it with model_type unset gave MODEL_TYPE_TEXT_TO_EMBEDDING."""
    openai_upstream.models.append("text-embedding-3-small")
    text, embedding = pb.MODEL_TYPE_TEXT_TO_TEXT, pb.MODEL_TYPE_TEXT_TO_EMBEDDING
    assert await listed_and_loaded_types(stub, openai_upstream) == {
        "gpt-4o-mini": (text, text),
        "gpt-4o": (text, text),
        "text-embedding-3-small": (embedding, embedding),
    }


async def test_an_anthropic_listing_says_the_type_a_load_of_unspecified_type_gives(
    stub: Stub, anthropic_upstream: FakeAnthropic
) -> None:
    types = await listed_and_loaded_types(stub, anthropic_upstream)
    assert set(types.values()) == {(pb.MODEL_TYPE_TEXT_TO_TEXT, pb.MODEL_TYPE_TEXT_TO_TEXT)}


async def test_a_declared_model_of_unspecified_type_is_listed_as_its_name_says(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    """Not yet loaded (a lazy model of the operator's, or one unloaded while idle), it is listed as it will load."""
    openai_upstream.models.append("text-embedding-3-small")
    settings = ApiSettings(api_key=key_of(openai_upstream), base_url=openai_upstream.base_url)
    for model_id, name in (("embedder", "text-embedding-3-small"), ("chat", openai_upstream.models[0])):
        server.engine.declare(LoadSpec(model_id, BackendKind.OPENAI, name, settings, None, lazy=True, keep_alive=None))
    listing = await stub.ListModels(pb.ListModelsRequest())
    assert {model.id: model.type for model in listing.models} == {
        "embedder": pb.MODEL_TYPE_TEXT_TO_EMBEDDING,
        "chat": pb.MODEL_TYPE_TEXT_TO_TEXT,
    }
    embedder = await load_as(stub, openai_upstream, "text-embedding-3-small", pb.MODEL_TYPE_UNSPECIFIED)
    assert embedder.type == pb.MODEL_TYPE_TEXT_TO_EMBEDDING


async def test_the_same_id_asked_as_the_other_type_is_already_exists(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.models.append(CUSTOM_EMBEDDER)
    await load_as(stub, openai_upstream, CUSTOM_EMBEDDER, pb.MODEL_TYPE_TEXT_TO_EMBEDDING)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await load_as(stub, openai_upstream, CUSTOM_EMBEDDER, pb.MODEL_TYPE_TEXT_TO_TEXT)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize("loaded_as", [pb.MODEL_TYPE_UNSPECIFIED, pb.MODEL_TYPE_TEXT_TO_TEXT])
async def test_a_load_naming_the_kind_the_loaded_model_is_gets_it(
    stub: Stub, openai_upstream: FakeOpenAI, loaded_as: int
) -> None:
    """A client that names the type outright (as a generated client may) gets the model loaded without one, as before
    the type held on hosted backends."""
    model = openai_upstream.models[0]
    first = await load_as(stub, openai_upstream, model, loaded_as)
    again = await load_as(stub, openai_upstream, model, pb.MODEL_TYPE_TEXT_TO_TEXT)
    assert (again.id, again.type) == (first.id, pb.MODEL_TYPE_TEXT_TO_TEXT)
    assert (await load_as(stub, openai_upstream, model, pb.MODEL_TYPE_UNSPECIFIED)).id == again.id


async def test_anthropic_refuses_to_load_an_embedding_model_before_asking_its_api(
    stub: Stub, anthropic_upstream: FakeAnthropic
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await load_as(stub, anthropic_upstream, anthropic_upstream.models[0], pb.MODEL_TYPE_TEXT_TO_EMBEDDING)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, fields = rich_details(refused.value)
    assert (info.reason, fields) == ("EMBEDDINGS_UNSUPPORTED", ["model_type"])
    assert "the Anthropic API has no embedding models" in (refused.value.details() or "")
    assert anthropic_upstream.requests == []
    model = await load_as(stub, anthropic_upstream, anthropic_upstream.models[0], pb.MODEL_TYPE_TEXT_TO_TEXT)
    assert model.type == pb.MODEL_TYPE_TEXT_TO_TEXT


@pytest.mark.parametrize("config", ["none", "base_url_without_key"])
async def test_anthropic_refuses_an_embedding_model_before_looking_for_a_key(stub: Stub, config: str) -> None:
    """An outside tester's finding: with no Anthropic key on the server, the refusal was API_KEY_MISSING, telling the
    caller to set a key for a load no key can make work; and a base_url without a key, API_KEY_REQUIRED_WITH_BASE_URL.
    The request's own fault comes first."""
    backend_config = pb.BackendConfig(api=pb.ApiConfig(base_url="http://127.0.0.1:1")) if config != "none" else None
    request = pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_ANTHROPIC,
        model="claude-x",
        model_type=pb.MODEL_TYPE_TEXT_TO_EMBEDDING,
        backend_config=backend_config,
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.LoadModel(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, fields = rich_details(refused.value)
    assert (info.reason, fields, dict(info.metadata)) == (
        "EMBEDDINGS_UNSUPPORTED",
        ["model_type"],
        {"provider": "anthropic"},
    )
    assert "the Anthropic API has no embedding models" in (refused.value.details() or "")


def test_a_preload_file_naming_an_anthropic_embedding_model_is_refused_at_its_embedding_key(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text('[[models]]\nbackend = "anthropic"\nmodel = "claude-x"\n[models.api]\nembedding = true\n')
    with pytest.raises(ConfigError, match=r"models\[0\]\.api\.embedding: the Anthropic API has no embedding models"):
        read_preload(config, {})


async def test_the_sdk_loads_a_hosted_embedding_model_by_its_type(
    server: WarpcoreServer, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.models.append(CUSTOM_EMBEDDER)
    async with AsyncClient(f"127.0.0.1:{server.port}", timeout=30) as client:
        config = ApiConfig(api_key=key_of(openai_upstream), base_url=openai_upstream.base_url)
        model = await client.load_model(
            CUSTOM_EMBEDDER, backend="openai", model_id="m", model_type="text_to_embedding", config=config
        )
        assert model.type == "text_to_embedding"
        assert len((await client.embed("m", "one text")).embeddings) == 1
        with pytest.raises(ValueError, match="model_type is one of text_to_text, text_to_embedding, not 'image'"):
            await client.load_model(CUSTOM_EMBEDDER, backend="openai", model_type="image", config=config)  # type: ignore[arg-type]
        with pytest.raises(FailedPreconditionError):
            await client.generate("m", prompt="hello")


async def test_the_cli_loads_a_hosted_embedding_model_by_its_type(
    server: WarpcoreServer, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.models.append(CUSTOM_EMBEDDER)
    target = f"127.0.0.1:{server.port}"
    options = ["--backend", "openai", "--base-url", openai_upstream.base_url, "--api-key-env", "UPSTREAM_KEY"]
    env = {**ENV, "UPSTREAM_KEY": key_of(openai_upstream)}
    loaded = await warpcore(
        target, "load", CUSTOM_EMBEDDER, "--id", "cli", "--model-type", "text_to_embedding", *options, env=env
    )
    assert loaded.code == 0, loaded.stderr
    async with AsyncClient(target, timeout=30) as client:
        (model,) = await client.list_models()
    assert (model.id, model.type) == ("cli", "text_to_embedding")


def test_the_preload_file_declares_a_hosted_embedding_model(tmp_path: Path) -> None:
    config = tmp_path / "warpcore.toml"
    config.write_text(
        f'[[models]]\nbackend = "openai"\nmodel = "{CUSTOM_EMBEDDER}"\n[models.api]\nembedding = true\n'
        'api_key_env = "OPENAI_API_KEY"\n'
    )
    (spec,) = read_preload(config, {"OPENAI_API_KEY": "sk-test"})
    assert spec.settings == ApiSettings(api_key="sk-test", embedding=True)

"""Every bad request gets the right status code, a message a user can act on, and rich details."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import TINY_MODEL, collect, failed_stream, greedy, load_tiny, rich_details
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load, prompt
from warpcore.server.core.bounds import MAX_ERROR_MESSAGE_BYTES
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from warpcore.server.rpc.server import WarpcoreServer
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

Code = grpc.StatusCode


def local(**fields: object) -> pb.BackendConfig:
    llama_cpp = fields.pop("llama_cpp", None)
    return pb.BackendConfig(local=pb.LocalBackendConfig(llama_cpp=llama_cpp, **fields))  # type: ignore[arg-type]


LOAD_CASES = [
    ("no backend", pb.LoadModelRequest(model=TINY_MODEL), Code.INVALID_ARGUMENT, "backend must be one of", "backend"),
    (
        "unknown backend",
        pb.LoadModelRequest(backend=99, model=TINY_MODEL),  # type: ignore[arg-type]
        Code.INVALID_ARGUMENT,
        "backend must be one of",
        "backend",
    ),
    (
        "no model",
        pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP),
        Code.INVALID_ARGUMENT,
        "model is required",
        "model",
    ),
    (
        "model type",
        pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, model_type=5),  # type: ignore[arg-type]
        Code.INVALID_ARGUMENT,
        "MODEL_TYPE_TEXT_TO_TEXT",
        "model_type",
    ),
    (
        "api config on a local backend",
        pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, backend_config=pb.BackendConfig(api=pb.ApiConfig())
        ),
        Code.INVALID_ARGUMENT,
        "takes backend_config.local",
        "backend_config",
    ),
    (
        "zero threads",
        pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, backend_config=local(threads=0)),
        Code.INVALID_ARGUMENT,
        "threads must be between",
        "backend_config.local.threads",
    ),
    (
        "unknown chat format",
        pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_LLAMA_CPP,
            model=TINY_MODEL,
            backend_config=local(llama_cpp=pb.LlamaCppConfig(chat_format="klingon")),
        ),
        Code.INVALID_ARGUMENT,
        "unknown chat_format 'klingon'; known:",
        "backend_config.local.llama_cpp.chat_format",
    ),
    (
        "tiny context",
        pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, model_config=pb.ModelConfig(context_size=1)
        ),
        Code.INVALID_ARGUMENT,
        "context_size must be between",
        "model_config.context_size",
    ),
    (
        "credentials in base_url",
        pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_OPENAI,
            model="gpt",
            backend_config=pb.BackendConfig(api=pb.ApiConfig(base_url="http://user:pw@127.0.0.1:9/v1")),
        ),
        Code.INVALID_ARGUMENT,
        "base_url must hold no credentials (user:password@); give the key in api_key",
        "backend_config.api.base_url",
    ),
    (
        "long base_url",
        pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_OPENAI,
            model="gpt",
            backend_config=pb.BackendConfig(api=pb.ApiConfig(base_url="http://127.0.0.1:9/" + "v" * 66_000)),
        ),
        Code.INVALID_ARGUMENT,
        "base_url must be at most 2048 characters",
        "backend_config.api.base_url",
    ),
    (
        "zero api timeout",
        pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_OPENAI,
            model="gpt",
            backend_config=pb.BackendConfig(api=pb.ApiConfig(timeout=duration_pb2.Duration(seconds=-1))),
        ),
        Code.INVALID_ARGUMENT,
        "timeout must be positive and at most 86400 seconds",
        "backend_config.api.timeout",
    ),
    (
        "parent escape",
        pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="../outside.gguf"),
        Code.INVALID_ARGUMENT,
        "must stay inside MODELS_PATH",
        "model",
    ),
    (
        "hidden parent escape",
        pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="hf:warpcore/tiny:../../../../outside.gguf"),
        Code.INVALID_ARGUMENT,
        "must stay inside MODELS_PATH",
        "model",
    ),
    (
        "absolute path",
        pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="/etc/passwd.gguf"),
        Code.INVALID_ARGUMENT,
        "must stay inside MODELS_PATH: give a path relative to it, not an absolute one",
        "model",
    ),
    (
        "windows separators",
        pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="..\\..\\etc\\passwd.gguf"),
        Code.INVALID_ARGUMENT,
        "holds a backslash: separate folders with '/'",
        "model",
    ),
    (
        "malformed hf id",
        pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="hf:just-a-name.gguf"),
        Code.INVALID_ARGUMENT,
        "hf:owner/repo:file.gguf",
        "model",
    ),
    (
        "not a gguf name",
        pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="notes.txt"),
        Code.INVALID_ARGUMENT,
        "must name a .gguf file",
        "model",
    ),
    (
        "missing file",
        pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="hf:someone/absent:model.gguf"),
        Code.NOT_FOUND,
        "hf/someone/absent/model.gguf was not found under MODELS_PATH",
        "model",
    ),
]


@pytest.mark.parametrize(
    ("request_", "code", "message", "field"), [case[1:] for case in LOAD_CASES], ids=[case[0] for case in LOAD_CASES]
)
async def test_bad_load_requests(
    stub: Stub, request_: pb.LoadModelRequest, code: Code, message: str, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LoadModel(request_)
    assert raised.value.code() == code
    assert message in (raised.value.details() or "")
    info, fields = rich_details(raised.value)
    assert info.domain == "warpcore.v1"
    assert info.reason
    assert fields == [field]


NAMED_IN_LOAD = {
    "model": "model",
    "mmproj": "backend_config.local.llama_cpp.mmproj",
    "chat_format": "backend_config.local.llama_cpp.chat_format",
}


@pytest.mark.parametrize("name", NAMED_IN_LOAD)
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("x" * 6000 + ".gguf", "is longer than 256 characters"),
        (" tiny.gguf", "must be printable, without surrounding spaces"),
        ("tiny.gguf\x00.txt", "must be printable, without surrounding spaces"),
    ],
    ids=["long", "leading-space", "nul"],
)
async def test_the_names_a_load_gives_obey_one_rule(stub: Stub, name: str, value: str, message: str) -> None:
    # A 6,000-character mmproj or chat_format was quoted whole, twice, in the status: the client saw a transport
    # error (metadata over its limit) instead; " tiny.gguf" was NOT_FOUND and a NUL "a non-empty path" for mmproj.
    request = pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL)
    if name == "model":
        request.model = value
    else:
        setattr(request.backend_config.local.llama_cpp, name, value)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LoadModel(request)
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert raised.value.details() == f"{NAMED_IN_LOAD[name]} {message}"
    assert rich_details(raised.value)[1] == [NAMED_IN_LOAD[name]]


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


async def test_a_listing_with_settings_but_no_backend_to_ask_is_refused(stub: Stub) -> None:
    """A tester's finding: the settings were dropped unread, and the server's own listing came back as if they were
    used."""
    config = pb.BackendConfig(api=pb.ApiConfig(base_url="http://127.0.0.1:9/v1", api_key="sk-unread"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.ListModels(pb.ListModelsRequest(backend_config=config))
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert rich_details(raised.value)[1] == ["backend_config"]
    assert "set backend too" in (raised.value.details() or "")


async def test_unload_unknown_model_not_found(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.UnloadModel(pb.UnloadModelRequest(model_id="nope"))
    assert raised.value.code() == Code.NOT_FOUND
    assert "load it with LoadModel" in (raised.value.details() or "")


def generate(**fields: object) -> pb.GenerateRequest:
    options = fields.pop("options", None)
    fields.setdefault("model_id", "tiny")
    return pb.GenerateRequest(options=pb.GenerationOptions(**options or {}), **fields)  # type: ignore[arg-type]


USER = pb.ChatMessage(role=pb.ROLE_USER, content="hi")
GENERATE_CASES = [
    ("no model id", generate(model_id="", prompt="x"), Code.INVALID_ARGUMENT, "model_id is required", "model_id"),
    ("unknown model", generate(model_id="ghost", prompt="x"), Code.NOT_FOUND, "no model with id 'ghost'", "model_id"),
    ("no input", generate(), Code.INVALID_ARGUMENT, "exactly one of prompt and messages", "prompt"),
    ("both inputs", generate(prompt="x", messages=[USER]), Code.INVALID_ARGUMENT, "exactly one of", "prompt"),
    (
        "role unset",
        generate(messages=[pb.ChatMessage(content="hi")]),
        Code.INVALID_ARGUMENT,
        "role must be",
        "messages[0].role",
    ),
    (
        "only system",
        generate(messages=[pb.ChatMessage(role=pb.ROLE_SYSTEM, content="be nice")]),
        Code.INVALID_ARGUMENT,
        "at least one user or assistant message",
        "messages",
    ),
    (
        "zero max tokens",
        generate(prompt="x", options={"max_tokens": 0}),
        Code.INVALID_ARGUMENT,
        "max_tokens",
        "options.max_tokens",
    ),
    (
        "huge max tokens",
        generate(prompt="x", options={"max_tokens": 10**6}),
        Code.INVALID_ARGUMENT,
        "max_tokens must be between 1 and",
        "options.max_tokens",
    ),
    (
        "hot temperature",
        generate(prompt="x", options={"temperature": 2.5}),
        Code.INVALID_ARGUMENT,
        "temperature must be between 0 and 2",
        "options.temperature",
    ),
    (
        "nan temperature",
        generate(prompt="x", options={"temperature": float("nan")}),
        Code.INVALID_ARGUMENT,
        "temperature",
        "options.temperature",
    ),
    ("zero top_p", generate(prompt="x", options={"top_p": 0.0}), Code.INVALID_ARGUMENT, "top_p", "options.top_p"),
    ("zero top_k", generate(prompt="x", options={"top_k": 0}), Code.INVALID_ARGUMENT, "top_k", "options.top_k"),
    (
        "empty stop",
        generate(prompt="x", options={"stop_sequences": [""]}),
        Code.INVALID_ARGUMENT,
        "options.stop_sequences must not hold an empty sequence",
        "options.stop_sequences",
    ),
    (
        "long stop",
        generate(prompt="x", options={"stop_sequences": ["x" * 1001]}),
        Code.INVALID_ARGUMENT,
        "at most 1000 characters",
        "options.stop_sequences",
    ),
    (
        "many stops",
        generate(prompt="x", options={"stop_sequences": [str(n) for n in range(17)]}),
        Code.INVALID_ARGUMENT,
        "at most 16",
        "options.stop_sequences",
    ),
]


@pytest.mark.parametrize(
    ("request_", "code", "message", "field"),
    [case[1:] for case in GENERATE_CASES],
    ids=[case[0] for case in GENERATE_CASES],
)
async def test_bad_generate_requests(
    stub: Stub, tiny: str, request_: pb.GenerateRequest, code: Code, message: str, field: str
) -> None:
    frames, error = await failed_stream(stub.Generate(request_))
    assert frames == []  # rejected before any generation
    assert error.code() == code
    assert message in (error.details() or "")
    assert rich_details(error)[1] == [field]


async def test_prompt_longer_than_the_context_is_rejected(stub: Stub) -> None:
    model = await load_tiny(stub, model_id="small", context_size=64)  # llama.cpp rounds it up to 256
    frames, error = await failed_stream(stub.Generate(greedy("the " * 200, 8, model_id="small")))
    assert error.code() == Code.INVALID_ARGUMENT
    assert f"{model.context_size}-token context" in (error.details() or "")
    assert rich_details(error)[0].reason == "CONTEXT_LENGTH_EXCEEDED"
    assert frames == []  # rejected before any text: the status alone
    _, result = await collect(stub.Generate(greedy("the", 4, model_id="small")))
    assert result.usage.completion_tokens == 4


@pytest.mark.parametrize(
    ("schema", "said"),
    [
        ({"$ref": "#/" + "a" * 20_000}, "points at nothing"),
        ({"type": "object", "properties": {"é" * 20_000: {"$ref": "#/nowhere"}}}, "points at nothing"),
        ({"type": "object", "properties": {"é" * 20_000: {"type": "string", "pattern": "(?=x)"}}}, "pattern '(?=x)'"),
    ],
    ids=["ref", "property-name", "property-name-for-the-grammar"],
)
async def test_a_refusal_quoting_a_long_value_of_the_callers_still_reaches_it(
    stub: Stub, tiny: str, schema: dict[str, object], said: str
) -> None:
    # A schema's $ref, or a property's name on the way to the refused one, was quoted whole: a status over the
    # client's metadata limit, which it reported as a transport error of its own instead of the refusal.
    as_json = json.dumps(schema, ensure_ascii=False)  # 20,000 é in 40,000 bytes, under the schema's limit
    kind = tools_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    response_format = tools_pb2.ResponseFormat(type=kind, name="answer", schema_json=as_json)
    _, refused = await failed_stream(stub.Generate(greedy("x", 2, model_id=tiny, response_format=response_format)))
    assert refused.code() == Code.INVALID_ARGUMENT
    assert said in (refused.details() or "")
    assert rich_details(refused)[1] == ["options.response_format.schema_json"]


async def test_health_for_an_unknown_service_of_any_length_is_not_found(server: WarpcoreServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="s" * 20_000))
    assert raised.value.code() == Code.NOT_FOUND
    assert raised.value.details() == f"unknown service '{'s' * 256}... (20000 characters)'"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="\U0001f600" * 9000))
    assert len((raised.value.details() or "").encode()) <= MAX_ERROR_MESSAGE_BYTES


async def test_an_upstreams_error_of_any_length_reaches_the_client_cut_short(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    # The upstream's words are quoted in the status: 20,000 of them made a status over the client's metadata
    # limit, a transport error in place of the upstream's refusal.
    await load(stub, openai_upstream)
    openai_upstream.script = Script(status=400, error_message="no such option " + "z" * 20_000)
    _, refused = await failed_stream(stub.Generate(prompt()))
    assert refused.code() == Code.INVALID_ARGUMENT
    assert len((refused.details() or "").encode()) < 1100
    assert (refused.details() or "").endswith(" characters)")
    assert "no such option zzz" in (refused.details() or "")

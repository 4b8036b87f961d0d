"""Every bad LoadModel request gets the right status code, a message a user can act on, and rich details; the names a
load gives obey one rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import duration_pb2

from tests.conftest import TINY_MODEL, rich_details
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import models_pb2

if TYPE_CHECKING:
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
        "chat_format must be one of alpaca, chatml, gemma, llama-2, llama-3, mistral-instruct, zephyr",
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


@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:9/v1/?key=CANARY", "http://127.0.0.1:9/v1#CANARY", "http://h/v1?"]
)
async def test_a_base_url_with_a_query_or_a_fragment_is_refused_unquoted(stub: Stub, base_url: str) -> None:
    """A tester's finding: accepted, the upstream was asked `GET /v1/?api-version=2024-06-01models`, and its
    NOT_FOUND quoted the query back, a key in it too."""
    api = pb.ApiConfig(api_key="sk-test-openai-0123456789abcdef", base_url=base_url)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LoadModel(
            pb.LoadModelRequest(backend=pb.BACKEND_TYPE_OPENAI, model="gpt", backend_config=pb.BackendConfig(api=api))
        )
    assert raised.value.code() == Code.INVALID_ARGUMENT
    said = raised.value.details() or ""
    assert "base_url must hold no query (?...) or fragment (#...)" in said
    assert "CANARY" not in said
    assert rich_details(raised.value)[1] == ["backend_config.api.base_url"]


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


DURATION_FIELDS = {
    "model_config.keep_alive.idle": lambda duration: pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP,
        model=TINY_MODEL,
        model_config=pb.ModelConfig(keep_alive=models_pb2.KeepAlive(idle=duration)),
    ),
    "backend_config.api.timeout": lambda duration: pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_OPENAI, model="gpt", backend_config=pb.BackendConfig(api=pb.ApiConfig(timeout=duration))
    ),
}
"""Each google.protobuf.Duration a load takes, and a load setting it."""


@pytest.mark.parametrize("field", DURATION_FIELDS)
@pytest.mark.parametrize(("seconds", "nanos"), [(1, -1), (1, 10**9), (0, 10**9), (5, 2 * 10**9)])
async def test_grpc_refuses_a_duration_protobuf_calls_invalid(stub: Stub, field: str, seconds: int, nanos: int) -> None:
    """Read as a number of nanoseconds, such a Duration passed the range as some other value than it says; a tester
    found a timeout of {seconds: 1, nanos: -1} told it must be positive and at most 86400 seconds, which 1 s is."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.LoadModel(DURATION_FIELDS[field](duration_pb2.Duration(seconds=seconds, nanos=nanos)))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == (
        f"{field} is not a valid Duration: nanos must be under a second and not of the other sign than seconds"
    )
    assert rich_details(refused.value)[1] == [field]  # the Duration at fault, by its path

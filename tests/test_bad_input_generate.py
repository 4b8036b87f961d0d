"""Every bad Generate request gets the right status code, a message a user can act on, and rich details, however long
the prompt, the value quoted, the health service's name or an upstream's error."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import collect, failed_stream, greedy, load_tiny, rich_details
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load, prompt
from warpcore.server.core.bounds import MAX_ERROR_MESSAGE_BYTES
from warpcore.server.core.errors import EXCEEDS_CONTEXT_SIZE, MAXIMUM_CONTEXT_LENGTH, PROMPT_TOO_LONG
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from warpcore.server.rpc.server import WarpcoreServer
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


Code = grpc.StatusCode


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
    (
        "continuing a user message",
        generate(messages=[USER], continue_last_message=True),
        Code.INVALID_ARGUMENT,
        "unset it, or end messages with the assistant message to continue",
        "continue_last_message",
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
    message = error.details() or ""
    assert f"{MAXIMUM_CONTEXT_LENGTH} {model.context_size} tokens" in message
    assert all(phrase in message for phrase in (EXCEEDS_CONTEXT_SIZE, PROMPT_TOO_LONG))  # the words routers read
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
    assert raised.value.details() == f"unknown service '{'s' * 256}'... (20000 characters)"
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

"""CountTokens end to end: the exact prompt size Generate reports, from llama.cpp's own template and tokenizer and
from Anthropic's count_tokens API (the real SDK against the fake); OpenAI has no exact count and says so."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import collect, failed_stream, greedy, load_tiny, rich_details
from tests.embeddings import load_tiny_embedder
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import load, prompt
from tests.tool_wire import WEATHER
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


def chat(model_id: str = "tiny", system: str | None = "Be brief.") -> pb.GenerateRequest:
    return pb.GenerateRequest(
        model_id=model_id,
        messages=[
            pb.ChatMessage(role=pb.ROLE_USER, content="the world says hello"),
            pb.ChatMessage(role=pb.ROLE_ASSISTANT, content="hello people"),
            pb.ChatMessage(role=pb.ROLE_USER, content="and again"),
        ],
        options=pb.GenerationOptions(max_tokens=3, temperature=0, system=system),
    )


async def count(stub: Stub, request: pb.GenerateRequest, include_tokens: bool = False) -> pb.CountTokensResponse:
    return await stub.CountTokens(pb.CountTokensRequest(request=request, include_tokens=include_tokens))


async def refused(stub: Stub, request: pb.CountTokensRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CountTokens(request)
    return raised.value


@pytest.mark.parametrize("parallel", [1, 4])
async def test_counts_equal_the_prompt_usage_generate_reports(stub: Stub, parallel: int) -> None:
    await load_tiny(stub, parallel=parallel)
    for request in (greedy("the world", 3), greedy("the world", 3, system="Be brief."), chat(), chat(system=None)):
        counted = (await count(stub, request)).count
        _, result = await collect(stub.Generate(request))
        assert counted.prompt_tokens == result.usage.prompt_tokens > 1
        assert not counted.tokens  # only when asked for


async def test_tokens_and_pieces_spell_the_rendered_prompt(stub: Stub) -> None:
    await load_tiny(stub)
    counted = (await count(stub, chat(), include_tokens=True)).count
    assert len(counted.tokens) == counted.prompt_tokens
    spelled = b"".join(token.piece for token in counted.tokens)
    for text in (b"Be brief.", b"the world says hello", b"hello people", b"and again"):
        assert text in spelled
    assert spelled.index(b"Be brief.") < spelled.index(b"the world") < spelled.index(b"and again")
    plain = (await count(stub, greedy("the world", 3), include_tokens=True)).count
    assert b"".join(token.piece for token in plain.tokens).endswith(b"the world")


async def test_a_prompt_too_long_for_the_context_is_counted_whole_where_generate_refuses_it(stub: Stub) -> None:
    """A caller counts to learn whether a prompt fits: past the context, the count is still exact (the same as on
    the same model with room for it); only a prompt of more bytes than any context can hold is refused."""
    await load_tiny(stub, context_size=16)
    await load_tiny(stub, model_id="roomy", context_size=1024)
    request = greedy(" ".join(["the world"] * 50), 3)  # under the bytes a 16-token context may take
    counted = (await count(stub, request)).count.prompt_tokens
    request.model_id = "roomy"
    assert counted == (await count(stub, request)).count.prompt_tokens > 16
    request.model_id = "tiny"
    frames, error = await failed_stream(stub.Generate(request))
    assert (frames, error.code()) == ([], grpc.StatusCode.INVALID_ARGUMENT)
    assert rich_details(error)[0].reason == "CONTEXT_LENGTH_EXCEEDED"
    assert "prompt is too long: more than 16 tokens" in (error.details() or "")
    assert rich_details(error)[0].metadata["prompt_tokens_more_than"] == "16"  # not a partial count as a count
    assert "prompt_tokens" not in rich_details(error)[0].metadata
    huge = greedy("the world " * 16 * 64, 3)  # more bytes than a 16-token context can hold, whatever its tokens
    assert rich_details(await refused(stub, pb.CountTokensRequest(request=huge)))[0].reason == "CONTEXT_LENGTH_EXCEEDED"


async def test_bad_requests_and_models_that_cannot_count(stub: Stub) -> None:
    await load_tiny_embedder(stub)
    error = await refused(stub, pb.CountTokensRequest(request=greedy("hello", 3, model_id="tiny-embed")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(error)[0].reason == "MODEL_LOADED_FOR_EMBEDDINGS"
    assert rich_details(error)[1] == ["request.model_id"]  # the model named is what cannot count
    error = await refused(stub, pb.CountTokensRequest(request=greedy("hello", 3, model_id="")))
    assert (error.code(), rich_details(error)[1]) == (grpc.StatusCode.INVALID_ARGUMENT, ["request.model_id"])
    error = await refused(stub, pb.CountTokensRequest(request=pb.GenerateRequest(model_id="tiny-embed")))
    assert (error.code(), rich_details(error)[1]) == (grpc.StatusCode.INVALID_ARGUMENT, ["request.prompt"])
    error = await refused(stub, pb.CountTokensRequest(request=greedy("hello", 3, model_id="tiny-embed", top_k=0)))
    assert rich_details(error)[1] == ["request.options.top_k"]
    error = await refused(stub, pb.CountTokensRequest(request=greedy("hello", 3, model_id="nobody")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_anthropic_counts_through_its_count_tokens_api(stub: Stub, anthropic_upstream: FakeAnthropic) -> None:
    await load(stub, anthropic_upstream)
    anthropic_upstream.script.prompt_tokens = 23
    request = chat(model_id="m")
    counted = (await count(stub, request)).count
    _, result = await collect(stub.Generate(request))
    assert counted.prompt_tokens == result.usage.prompt_tokens == 23
    sent = next(r for r in anthropic_upstream.requests if r.path == "/v1/messages/count_tokens")
    assert sent.body == {
        "model": anthropic_upstream.models[0],
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "the world says hello"},
            {"role": "assistant", "content": "hello people"},
            {"role": "user", "content": "and again"},
        ],
    }
    error = await refused(stub, pb.CountTokensRequest(request=request, include_tokens=True))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == ["include_tokens"]


async def test_anthropic_upstream_failure_is_mapped(stub: Stub, anthropic_upstream: FakeAnthropic) -> None:
    await load(stub, anthropic_upstream)
    anthropic_upstream.script.status = 401
    error = await refused(stub, pb.CountTokensRequest(request=prompt()))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


RECURSIVE = {
    "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
    "$ref": "#/$defs/node",
}
"""A schema no grammar can spell out."""


def schema_format(schema: object) -> tools_pb2.ResponseFormat:
    kind = tools_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA
    return tools_pb2.ResponseFormat(type=kind, name="answer", schema_json=json.dumps(schema))


@pytest.mark.parametrize(
    "options",
    [
        pb.GenerationOptions(max_tokens=3, response_format=schema_format(RECURSIVE)),
        pb.GenerationOptions(max_tokens=3, response_format=schema_format({"enum": []})),
        pb.GenerationOptions(
            max_tokens=3, response_format=schema_format({"type": "integer", "minimum": 5, "maximum": 4})
        ),
        pb.GenerationOptions(max_tokens=3, logit_bias={10**6: 5.0}),
    ],
    ids=["recursive $ref", "empty enum", "empty range", "logit_bias token out of range"],
)
async def test_what_generate_refuses_on_a_local_model_count_tokens_refuses_too(
    stub: Stub, options: pb.GenerationOptions
) -> None:
    """The tester's finding: the proto says CountTokens is checked as Generate is, but these were counted."""
    await load_tiny(stub)
    request = pb.GenerateRequest(model_id="tiny", prompt="the world", options=options)
    with pytest.raises(grpc.aio.AioRpcError) as generating:
        await collect(stub.Generate(request))
    counting = await refused(stub, pb.CountTokensRequest(request=request))
    assert counting.code() == generating.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(counting)[0].reason == rich_details(generating.value)[0].reason
    assert rich_details(counting)[1] == [f"request.{field}" for field in rich_details(generating.value)[1]]
    # The message names the field as the BadRequest does, where Generate's begins with it.
    said = generating.value.details() or ""
    assert counting.details() == (f"request.{said}" if said.startswith(rich_details(generating.value)[1][0]) else said)


async def test_tools_whose_schema_generate_refuses_on_a_local_model_are_refused_by_count_tokens(stub: Stub) -> None:
    await load_tiny(stub)
    looping = tools_pb2.Tool(name="walk", parameters_json=json.dumps(RECURSIVE))
    required = tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_REQUIRED)
    request = pb.GenerateRequest(
        model_id="tiny",
        prompt="the world",
        tools=[looping],
        tool_choice=required,
        options=pb.GenerationOptions(max_tokens=3),
    )
    with pytest.raises(grpc.aio.AioRpcError) as generating:
        await collect(stub.Generate(request))
    counting = await refused(stub, pb.CountTokensRequest(request=request))
    assert (counting.code(), rich_details(counting)[0].reason) == (
        generating.value.code(),
        rich_details(generating.value)[0].reason,
    )


async def test_openai_has_no_exact_count(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    await load(stub, openai_upstream)
    sent_before = len(openai_upstream.requests)
    error = await refused(stub, pb.CountTokensRequest(request=prompt()))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(error)[0].reason == "TOKEN_COUNT_UNSUPPORTED"
    assert rich_details(error)[1] == ["request.model_id"]
    assert "exact" in (error.details() or "")
    assert len(openai_upstream.requests) == sent_before


async def test_anthropic_counts_the_tools_and_thinking_generate_sends(
    stub: Stub, anthropic_upstream: FakeAnthropic
) -> None:
    await load(stub, anthropic_upstream)
    request = pb.GenerateRequest(
        model_id="m",
        prompt="weather in Paris?",
        tools=[WEATHER],
        options=pb.GenerationOptions(max_tokens=2048, reasoning=tools_pb2.ReasoningOptions(budget_tokens=1024)),
    )
    await count(stub, request)
    await collect(stub.Generate(request))
    counted, generated = (
        next(r.body for r in anthropic_upstream.requests if r.path == path)
        for path in ("/v1/messages/count_tokens", "/v1/messages")
    )
    assert counted is not None
    assert generated is not None
    assert counted["tools"] == generated["tools"]
    assert counted["tools"][0]["name"] == "get_weather"
    assert counted["thinking"] == generated["thinking"] == {"type": "enabled", "budget_tokens": 1024}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"reasoning": tools_pb2.ReasoningOptions(effort=tools_pb2.REASONING_EFFORT_LOW)}, "request.options.reasoning"),
        ({"verbosity": pb.VERBOSITY_LOW}, "request.options.verbosity"),
    ],
)
async def test_what_a_local_model_would_refuse_to_generate_it_refuses_to_count(
    stub: Stub, options: dict[str, object], field: str
) -> None:
    await load_tiny(stub)
    request = greedy("hello", 3)
    request.options.MergeFrom(pb.GenerationOptions(**options))  # type: ignore[arg-type]
    generated = await refused_generation(stub, request)
    counted = await refused(stub, pb.CountTokensRequest(request=request))
    assert generated.code() == counted.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(counted)[1] == [field]


async def refused_generation(stub: Stub, request: pb.GenerateRequest) -> grpc.aio.AioRpcError:
    _, error = await failed_stream(stub.Generate(request))
    return error

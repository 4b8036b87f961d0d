"""Refusals and failures of the HTTP door as each official SDK parses it: an upstream's status, Retry-After, quota,
request id and error event, and the context length, thinking, tool call, prefill and unknown model refusals."""

from __future__ import annotations

from typing import Any

import anthropic
import grpc
import openai
import pytest
from anthropic.types import MessageParam, ToolParam, ToolUseBlockParam
from openai.types.chat import ChatCompletionToolParam

from tests.api_backends_support import prompt_too_long
from tests.conftest import TINY_MODEL, AccessLines, collect
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.http_door import (
    async_anthropic_client,
    async_openai_client,
    base_url,
    load_hosted,
)
from tests.http_errors_support import ANTHROPIC_MESSAGES, OPENAI_MESSAGES, anthropic_failure, openai_failure
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.core.errors import EXCEEDS_CONTEXT_SIZE, MAXIMUM_CONTEXT_LENGTH, PROMPT_TOO_LONG
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

# Upstream status -> (door status, OpenAI error type, Anthropic error type).
STATUS_CASES = [
    (400, 400, "invalid_request_error", "invalid_request_error"),
    (401, 401, "invalid_request_error", "authentication_error"),
    (403, 403, "permission_error", "permission_error"),
    (404, 404, "invalid_request_error", "not_found_error"),
    (413, 413, "invalid_request_error", "request_too_large"),  # a tester's finding: it was a 400
    (429, 429, "requests", "rate_limit_error"),
    (500, 503, "server_error", "api_error"),
    (501, 400, "invalid_request_error", "invalid_request_error"),
    (503, 503, "server_error", "api_error"),
    (529, 529, "overloaded_error", "overloaded_error"),
]


@pytest.mark.parametrize(("upstream_status", "status", "openai_type", "anthropic_type"), STATUS_CASES)
async def test_upstream_statuses_in_each_dialect(
    hosted: Doors, upstream: FakeUpstream, upstream_status: int, status: int, openai_type: str, anthropic_type: str
) -> None:
    upstream.script = Script(status=upstream_status, error_message=f"scripted {upstream_status}")
    for stream in (False, True):
        from_openai = await openai_failure(hosted, stream=stream)
        from_anthropic = await anthropic_failure(hosted, stream=stream)
        assert (from_openai.status_code, from_openai.type) == (status, openai_type)
        assert (from_anthropic.status_code, from_anthropic.type) == (status, anthropic_type)
        assert f"scripted {upstream_status}" in from_openai.message
        assert from_anthropic.request_id == from_anthropic.response.headers["x-request-id"]
        assert isinstance(from_anthropic.body, dict)
        assert from_anthropic.body["request_id"] == from_anthropic.request_id
        retry_after = "retry-after" in from_openai.response.headers
        assert retry_after == (status in (429, 503, 529))
        assert ("retry-after" in from_anthropic.response.headers) == retry_after


@pytest.mark.parametrize("status", [429, 503, 529])
async def test_upstream_retry_after_is_passed_on(hosted: Doors, upstream: FakeUpstream, status: int) -> None:
    upstream.script = Script(status=status, headers={"retry-after": "7"})
    assert (await openai_failure(hosted)).response.headers["retry-after"] == "7"
    assert (await anthropic_failure(hosted)).response.headers["retry-after-ms"] == "7000"


async def test_a_quota_used_up_is_insufficient_quota_and_not_retried(doors: Doors, openai_upstream: FakeOpenAI) -> None:
    """A tester's finding: OpenAI's 429 insufficient_quota came out as a rate limit, code upstream_resource_exhausted
    with a made-up Retry-After of 1 s, and the SDKs' default retries sent it upstream three times; no wait ends it."""
    await load_hosted(doors, openai_upstream)
    openai_upstream.script = Script(status=429, error_code="insufficient_quota", error_message="Out of quota")
    async with openai.AsyncOpenAI(base_url=f"{base_url(doors)}/v1", api_key="x") as client:  # default retries
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(model="m", messages=OPENAI_MESSAGES)
    assert (refused.value.code, refused.value.response.headers["x-should-retry"]) == ("insufficient_quota", "false")
    assert "retry-after" not in refused.value.response.headers
    async with anthropic.AsyncAnthropic(base_url=base_url(doors), api_key="x") as anthropic_sdk:
        with pytest.raises(anthropic.RateLimitError):
            await anthropic_sdk.messages.create(model="m", messages=ANTHROPIC_MESSAGES, max_tokens=5)
    generations = [request for request in openai_upstream.requests if request.method == "POST"]
    assert len(generations) == 2  # one each: neither SDK retried
    openai_upstream.script = Script(status=429, error_code="rate_limit_exceeded")
    assert (await openai_failure(doors)).response.headers["retry-after"] == "1"  # a rate limit's wait, as before


async def test_the_upstreams_request_id_is_in_the_access_log_and_on_a_failure(
    hosted: Doors, upstream: FakeUpstream, access_lines: AccessLines
) -> None:
    """A tester's finding: over HTTP the upstream's id of a request reached neither the client nor the log, where
    gRPC's ErrorInfo carried it; the id a provider's support asks for."""
    upstream.script = Script(request_id="up-ok-1")
    await openai_failure(hosted, model="nothing-loaded")  # no upstream: no id
    async with async_openai_client(hosted) as client:
        await client.chat.completions.create(model="m", messages=OPENAI_MESSAGES)
    upstream.script = Script(status=500, request_id="up-failed-2")
    failure = await anthropic_failure(hosted)
    assert failure.response.headers["x-upstream-request-id"] == "up-failed-2"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hosted.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError):
            await collect(stub.Generate(pb.GenerateRequest(model_id="m", prompt="hi")))
    for _ in range(4):  # each call's line, written as the call ends: a gRPC call's may come after its client's error
        await access_lines.next()
    records = access_lines.records
    upstream_ids = [(record.protocol, getattr(record, "upstream_request_id", None)) for record in records]  # type: ignore[attr-defined]
    assert upstream_ids == [("http", None), ("http", "up-ok-1"), ("http", "up-failed-2"), ("grpc", "up-failed-2")]


async def test_an_upstreams_context_length_error_says_the_words_in_each_dialect(
    hosted: Doors, upstream: FakeUpstream
) -> None:
    """A tester's finding: an upstream's refusal of a prompt over its context said only its own words in both
    dialects, where README promises those routers read on every one, as a local model's refusal says them."""
    upstream.script, context_size = prompt_too_long(upstream)
    for stream in (False, True):
        from_openai = await openai_failure(hosted, stream=stream)
        from_anthropic = await anthropic_failure(hosted, stream=stream)
        assert (from_openai.status_code, from_openai.code) == (400, "context_length_exceeded")
        assert (from_anthropic.status_code, from_anthropic.type) == (400, "invalid_request_error")
        bodies: list[Any] = [from_openai.body, from_anthropic.body]
        for message in (bodies[0]["message"], bodies[1]["error"]["message"]):
            assert all(phrase in message for phrase in (MAXIMUM_CONTEXT_LENGTH, EXCEEDS_CONTEXT_SIZE, PROMPT_TOO_LONG))
            assert f"{MAXIMUM_CONTEXT_LENGTH} {context_size}" in message
            assert message.endswith(f"(the upstream said: {upstream.script.error_message})")


async def test_a_local_prompt_too_long_is_context_length_exceeded(doors: Doors) -> None:
    await doors.engine.load(LoadSpec("m", BackendKind.LLAMA_CPP, TINY_MODEL, None, 32))
    long = [{"role": "user", "content": "the world " * 40}]
    failure = await openai_failure(doors, messages=long, stream=True)
    assert (failure.status_code, failure.code, failure.param) == (400, "context_length_exceeded", "messages")
    from_anthropic = await anthropic_failure(doors, messages=long)
    assert from_anthropic.type == "invalid_request_error"
    # A tester's finding: routers read the words, not the code, and did not fall back to a larger model.
    bodies: list[Any] = [failure.body, from_anthropic.body]
    for message in (bodies[0]["message"], bodies[1]["error"]["message"]):
        assert all(phrase in message for phrase in (MAXIMUM_CONTEXT_LENGTH, EXCEEDS_CONTEXT_SIZE, PROMPT_TOO_LONG))
        assert message.endswith("; shorten it or load the model with a larger context_size")


async def test_a_local_models_refusal_of_thinking_begins_with_the_field(doors: Doors) -> None:
    """A tester's finding: "thinking options are not supported...", where every other message begins "thinking: "."""
    await doors.engine.load(LoadSpec("m", BackendKind.LLAMA_CPP, TINY_MODEL, None, 32))
    failure = await anthropic_failure(doors, thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2048)
    assert failure.status_code == 400
    assert failure.body["error"]["message"].startswith("thinking: local models take no reasoning options")  # type: ignore[index]
    refused = await openai_failure(doors, reasoning_effort="low")
    assert (refused.status_code, refused.param) == (400, "reasoning_effort")
    assert refused.body["message"].startswith("local models take no reasoning options")  # type: ignore[index]
    # A tester's finding: the chat route's refusal of `thinking` alone named reasoning_effort, which was not sent.
    for thinking in ({"type": "adaptive"}, {"type": "enabled", "budget_tokens": 1024}):
        refused = await openai_failure(doors, max_tokens=2048, extra_body={"thinking": thinking})
        assert (refused.status_code, refused.param) == (400, "thinking")


async def test_a_tool_call_cut_by_max_tokens_is_in_the_whole_answer_as_its_stream_gives_it(doors: Doors) -> None:
    """A call that max_tokens cuts short is in the whole answer as its stream gives it: the OpenAI message with the
    arguments it got (no JSON object), the Anthropic block with as much input as they hold, as the anthropic SDK's
    accumulator builds it; it used to be left out of the whole answer alone. A call that ends whole is there too."""
    await doors.engine.load(LoadSpec("m", BackendKind.LLAMA_CPP, TINY_MODEL, None, 1024))
    city = {"type": "string", "maxLength": 4}
    schema: dict[str, Any] = {"type": "object", "properties": {"city": city}, "required": ["city"]}
    schema["additionalProperties"] = False
    tool: ToolParam = {"name": "f", "input_schema": schema}
    function: ChatCompletionToolParam = {"type": "function", "function": {"name": "f", "parameters": schema}}
    anthropic_call: dict[str, Any] = {
        "model": "m",
        "messages": ANTHROPIC_MESSAGES,
        "tools": [tool],
        "tool_choice": {"type": "tool", "name": "f"},
        "extra_body": {"temperature": 0.0},
    }
    openai_call: dict[str, Any] = {
        "model": "m",
        "messages": OPENAI_MESSAGES,
        "tools": [function],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "temperature": 0.0,
    }
    outcomes: list[tuple[int, str | None, int]] = []
    async with async_anthropic_client(doors) as client, async_openai_client(doors) as openai_sdk:
        for max_tokens in range(1, 121, 3):
            message = await client.messages.create(max_tokens=max_tokens, **anthropic_call)
            async with client.messages.stream(max_tokens=max_tokens, **anthropic_call) as stream:
                accumulated = await stream.get_final_message()
            calls = [(block.name, block.input) for block in message.content if block.type == "tool_use"]
            assert calls == [(b.name, b.input) for b in accumulated.content if b.type == "tool_use"], max_tokens
            assert message.stop_reason == accumulated.stop_reason
            outcomes.append((max_tokens, message.stop_reason, len(calls)))
            completion = await openai_sdk.chat.completions.create(max_tokens=max_tokens, **openai_call)
            # The SDK's stream helper refuses to finish a completion cut by length: the pieces are joined here.
            streamed: dict[int, str] = {}
            async for chunk in await openai_sdk.chat.completions.create(
                max_tokens=max_tokens, stream=True, **openai_call
            ):
                for piece in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
                    streamed[piece.index] = streamed.get(piece.index, "") + (
                        (piece.function and piece.function.arguments) or ""
                    )
            whole = completion.choices[0]
            arguments = [call.function.arguments for call in whole.message.tool_calls or () if call.type == "function"]
            assert arguments == list(streamed.values()), max_tokens
            assert (whole.finish_reason, len(arguments)) == (
                {"max_tokens": "length", "tool_use": "tool_calls"}[message.stop_reason or ""],
                len(calls),
            )
    assert {stop for _, stop, _ in outcomes} == {"max_tokens", "tool_use"}, outcomes
    opened = min(max_tokens for max_tokens, _, calls in outcomes if calls)  # the call's opening decoded
    assert all(calls == 1 for max_tokens, _, calls in outcomes if max_tokens >= opened), outcomes
    cut_short = [max_tokens for max_tokens, stop, calls in outcomes if stop == "max_tokens" and calls]
    assert cut_short, outcomes  # cut inside the arguments, past the call's opening


async def test_a_prefill_goes_to_an_anthropic_upstream_and_is_refused_for_an_openai_one(
    hosted: Doors, upstream: FakeUpstream
) -> None:
    """Anthropic's API continues a last assistant message itself; OpenAI's answers after it, so the door refuses it
    naming the field (Anthropic's behaviour on models without prefill) before anything goes upstream. A last
    assistant message with a tool call is no text to continue."""
    prefilled: list[MessageParam] = [*ANTHROPIC_MESSAGES, {"role": "assistant", "content": "Hello"}]
    sent = len(upstream.requests)
    if isinstance(upstream, FakeOpenAI):
        failure = await anthropic_failure(hosted, messages=prefilled)
        assert (failure.status_code, failure.type) == (400, "invalid_request_error")
        assert "cannot continue it (prefill)" in failure.message
        assert "continue_last_message" not in failure.message  # a gRPC field this route's clients have not
        assert len(upstream.requests) == sent
    else:
        async with async_anthropic_client(hosted) as client:
            await client.messages.create(model="m", messages=prefilled, max_tokens=5)
        body = upstream.requests[-1].body
        assert body is not None
        assert body["messages"][-1] == {"role": "assistant", "content": "Hello"}
    tool_use: ToolUseBlockParam = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    last: MessageParam = {"role": "assistant", "content": [tool_use]}
    called: list[MessageParam] = [*ANTHROPIC_MESSAGES, last]
    failure = await anthropic_failure(hosted, messages=called)
    assert failure.status_code == 400
    assert "only a last assistant message of text can be continued" in failure.message


async def test_an_error_event_mid_stream_reaches_both_sdks(hosted: Doors, upstream: FakeUpstream) -> None:
    if isinstance(upstream, FakeOpenAI):
        upstream.script = Script(chunks=["a", "b", "c", "d"], cut_after=2)
    else:
        upstream.script = Script(chunks=["a", "b", "c"], error_event_after=2)
    async with async_openai_client(hosted) as client:
        stream = await client.chat.completions.create(model="m", messages=OPENAI_MESSAGES, stream=True)
        texts: list[str] = []

        async def read() -> None:
            async for chunk in stream:
                texts.extend(chunk.choices[0].delta.content or "" for _ in chunk.choices[:1])

        with pytest.raises(openai.APIError):
            await read()
    assert "".join(texts) == "ab"
    async with async_anthropic_client(hosted) as anthropic_sdk:
        with pytest.raises(anthropic.APIStatusError) as failure:
            async with anthropic_sdk.messages.stream(model="m", messages=ANTHROPIC_MESSAGES, max_tokens=9) as events:
                await events.get_final_message()
    if isinstance(upstream, FakeAnthropic):  # its error event is an overloaded_error, which stays one
        assert failure.value.type == "overloaded_error"
        whole = await anthropic_failure(hosted)  # not streamed: the status the event stands for
        assert (whole.status_code, whole.type) == (529, "overloaded_error")
    else:
        assert failure.value.type == "api_error"


async def test_unknown_model_is_404_in_each_dialect(doors: Doors) -> None:
    from_openai = await openai_failure(doors, model="nope")
    from_anthropic = await anthropic_failure(doors, model="nope")
    assert (from_openai.status_code, from_openai.code, from_openai.param) == (404, "model_not_found", "model")
    assert (from_anthropic.status_code, from_anthropic.type) == (404, "not_found_error")
    async with async_openai_client(doors) as client:
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("nope")

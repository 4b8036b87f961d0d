"""Every refusal and failure of the HTTP door as each official SDK parses it: status, error type and code, the
field, Retry-After, request ids, the token, and no secret in any answer."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import anthropic
import grpc
import httpx2
import openai
import pytest
from anthropic.types import MessageParam, ToolParam, ToolUseBlockParam
from openai.types.chat import ChatCompletionToolParam

from tests.conftest import TINY_MODEL, AccessLines, collect, serving_doors
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import key_of
from tests.http_door import (
    anthropic_messages,
    async_anthropic_client,
    async_openai_client,
    base_url,
    load_hosted,
    openai_messages,
)
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

OPENAI_MESSAGES = openai_messages("Say hello")
NOT_STOP_SEQUENCES: tuple[object, ...] = ({}, 0, False, "", "e", ["a", None])
ANTHROPIC_MESSAGES = anthropic_messages("Say hello")
# Upstream status -> (door status, OpenAI error type, Anthropic error type).
STATUS_CASES = [
    (400, 400, "invalid_request_error", "invalid_request_error"),
    (401, 401, "invalid_request_error", "authentication_error"),
    (403, 403, "permission_error", "permission_error"),
    (404, 404, "invalid_request_error", "not_found_error"),
    (429, 429, "requests", "rate_limit_error"),
    (500, 503, "server_error", "api_error"),
    (501, 400, "invalid_request_error", "invalid_request_error"),
    (503, 503, "server_error", "api_error"),
    (529, 529, "overloaded_error", "overloaded_error"),
]


@pytest.fixture
async def hosted(doors: Doors, upstream: FakeUpstream) -> Doors:
    await load_hosted(doors, upstream)
    return doors


async def openai_failure(doors: Doors, **options: object) -> openai.APIStatusError:
    async with async_openai_client(doors) as client:
        with pytest.raises(openai.APIStatusError) as failure:
            await client.chat.completions.create(**{"model": "m", "messages": OPENAI_MESSAGES, **options})  # type: ignore[call-overload]
    return failure.value


async def anthropic_failure(doors: Doors, **options: object) -> anthropic.APIStatusError:
    async with async_anthropic_client(doors) as client:
        with pytest.raises(anthropic.APIStatusError) as failure:
            await client.messages.create(**{"model": "m", "messages": ANTHROPIC_MESSAGES, "max_tokens": 10, **options})  # type: ignore[call-overload]
    return failure.value


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


async def test_context_length_errors_carry_the_openai_code(hosted: Doors, upstream: FakeUpstream) -> None:
    upstream.script = Script(status=400, error_code="context_length_exceeded", error_message="prompt is too long")
    failure = await openai_failure(hosted)
    assert (failure.status_code, failure.code) == (400, "context_length_exceeded")


async def test_a_local_prompt_too_long_is_context_length_exceeded(doors: Doors) -> None:
    await doors.engine.load(LoadSpec("m", BackendKind.LLAMA_CPP, TINY_MODEL, None, 32))
    long = [{"role": "user", "content": "the world " * 40}]
    failure = await openai_failure(doors, messages=long, stream=True)
    assert (failure.status_code, failure.code, failure.param) == (400, "context_length_exceeded", "messages")
    assert (await anthropic_failure(doors, messages=long)).type == "invalid_request_error"


async def test_a_local_models_refusal_of_thinking_begins_with_the_field(doors: Doors) -> None:
    """A tester's finding: "thinking options are not supported...", where every other message begins "thinking: "."""
    await doors.engine.load(LoadSpec("m", BackendKind.LLAMA_CPP, TINY_MODEL, None, 32))
    failure = await anthropic_failure(doors, thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2048)
    assert failure.status_code == 400
    assert failure.body["error"]["message"].startswith("thinking: local models take no reasoning options")  # type: ignore[index]
    refused = await openai_failure(doors, reasoning_effort="low")
    assert (refused.status_code, refused.param) == (400, "reasoning_effort")
    assert refused.body["message"].startswith("local models take no reasoning options")  # type: ignore[index]


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


OPENAI_CALLED = [
    *OPENAI_MESSAGES,
    {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "nope"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "ok"},
]
"""A call of a tool the request does not declare."""
F_TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"logprobs": True, "top_logprobs": 30}, "top_logprobs"),
        ({"logit_bias": {"1": 500}}, "logit_bias"),
        ({"logit_bias": {"one": 5}}, "logit_bias"),
        ({"n": 2}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"seed": 2**40}, "seed"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice.function.name"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, None),
        # The domain's call holds its name: named here by the request's path, inside `function`.
        ({"messages": OPENAI_CALLED, "tools": [F_TOOL]}, "messages[1].tool_calls[0].function.name"),
    ],
)
async def test_bad_openai_fields_are_400_naming_them(
    hosted: Doors, upstream: FakeUpstream, options: dict[str, object], param: str | None
) -> None:
    sent = len(upstream.requests)
    failure = await openai_failure(hosted, **options)
    assert (failure.status_code, failure.type) == (400, "invalid_request_error")
    assert failure.param == (param or "messages[0].content[0].type")
    assert len(upstream.requests) == sent  # refused before anything went upstream


def result_block(call_id: str) -> dict[str, object]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": "ok"}


CALLED = [
    {"role": "user", "content": "hi"},
    {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "c1", "name": "f", "input": {}},
            {"type": "tool_use", "id": "c2", "name": "f", "input": {}},
        ],
    },
]
"""A turn whose two calls wait for their results."""
TOOLS = [{"name": "f", "input_schema": {"type": "object"}}]
WELL = {"type": "text", "text": "well?"}
USE_T1 = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"messages": []}, "messages: must hold at least one message"),
        ({"messages": [{"role": "user", "content": [{"type": "video", "source": {}}]}]}, "messages[0].content[0].type"),
        ({"tool_choice": {"type": "tool", "name": "f"}}, "tool_choice.name"),
        *(({"stop_sequences": value}, "stop_sequences") for value in NOT_STOP_SEQUENCES),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"output_config": {"effort": "minimal"}}, "output_config.effort"),
        ({"inference_geo": "us"}, "inference_geo"),
        ({"mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "x"}]}, "mcp_servers"),
        ({"container": "container_1"}, "container"),
        ({"context_management": {"edits": []}}, "context_management"),
        # Tool results are turns of their own in the domain: refusals of them, or after them, name the request's.
        (
            {
                "messages": [*CALLED, {"role": "user", "content": [result_block("c1"), result_block("zz")]}],
                "tools": TOOLS,
            },
            "messages[2].content[1].tool_use_id: no call with id 'zz'",
        ),
        (
            {"messages": [*CALLED, {"role": "user", "content": [result_block("c1"), WELL]}], "tools": TOOLS},
            "messages[2]: call 'c2' of messages[1] has no tool result before this turn",
        ),
        ({"messages": [*CALLED, {"role": "user", "content": [WELL]}]}, "messages[1].content[0].name: no tool named"),
        (
            {
                "messages": [
                    CALLED[0],
                    {"role": "assistant", "content": [USE_T1, USE_T1]},
                    {"role": "user", "content": [result_block("t1")]},
                ],
                "tools": TOOLS,
            },
            "messages[1].content[1].id: two tool calls have id 't1'",  # the second block, not the first
        ),
    ],
)
async def test_bad_anthropic_fields_are_400_naming_them(hosted: Doors, options: dict[str, object], field: str) -> None:
    body = {"model": "m", "messages": ANTHROPIC_MESSAGES, "max_tokens": 10, **options}
    async with httpx2.AsyncClient() as client:
        response = await client.post(
            f"{base_url(hosted)}/v1/messages", json={k: v for k, v in body.items() if v is not None}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(field)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""])
async def test_a_body_a_web_page_could_send_cross_site_is_415_and_goes_nowhere(
    hosted: Doors, upstream: FakeUpstream, content_type: str
) -> None:
    """A tester's finding: a page in a browser could POST a text/plain body (no preflight asked) that the door read
    as JSON, spending the server's key; with no token set, by default."""
    body = json.dumps({"model": "m", "max_tokens": 4, "messages": OPENAI_MESSAGES}).encode()
    headers = {"content-type": content_type} if content_type else {}
    sent = len(upstream.requests)
    async with httpx2.AsyncClient(base_url=base_url(hosted)) as client:
        refused = await client.post("/v1/chat/completions", content=body, headers=headers)
        taken = await client.post(
            "/v1/chat/completions", content=body, headers={"content-type": "application/json; charset=utf-8"}
        )
    assert refused.status_code == 415
    assert refused.json()["error"]["message"].endswith("send JSON, with Content-Type: application/json")
    assert taken.status_code == 200
    assert len(upstream.requests) == sent + 1


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_bodies_that_are_not_json_objects_are_400_and_too_large_413(
    path: str, server_env: dict[str, str]
) -> None:
    async with (
        serving_doors(server_env, ServingOptions(max_message_bytes=1000)) as doors,
        httpx2.AsyncClient(base_url=base_url(doors)) as client,
    ):
        not_json = await client.post(path, content=b"{nope", headers={"content-type": "application/json"})
        not_object = await client.post(path, json=[1])
        too_large = await client.post(path, json={"messages": ["x" * 2000]})
        no_route = await client.get("/v1/nothing")
        wrong_method = await client.get(path)
    assert [response.status_code for response in (not_json, not_object, too_large, no_route, wrong_method)] == [
        400,
        400,
        413,
        404,
        405,
    ]
    assert "not valid JSON" in not_json.text
    assert wrong_method.headers["Allow"] == "POST"
    if path == "/v1/messages":
        assert too_large.json()["error"]["type"] == "request_too_large"
    else:
        assert too_large.json()["error"]["param"] == "request"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/v1/messages", "/v1/x"])
async def test_an_error_takes_the_routes_dialect_and_a_shared_routes_from_the_client(path: str, doors: Doors) -> None:
    """An OpenAI route answers in OpenAI's shape even to a client that sends anthropic-version (some proxies send
    it everywhere); the routes both SDKs call answer in the shape of the client that sent the request."""
    anthropic_route = path == "/v1/messages"
    shared = path == "/v1/x"
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        for headers in ({}, {"anthropic-version": "2023-06-01"}):
            body: dict[str, object] = {"model": "nope", "input": "hi"}
            if path != "/v1/embeddings":
                body = {"model": "nope", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
            response = await client.post(path, json=body, headers=headers)
            assert response.status_code == 404, response.text
            anthropic_shape = response.json().get("type") == "error"
            assert anthropic_shape == (anthropic_route or (shared and bool(headers))), (headers, response.text)


# Per route, a raw JSON body with HALF in one string, and that string's field: HALF is an escape of half a UTF-16
# surrogate pair, or a whole pair (one character) in the body that is let through.
UNPAIRED = {
    "/v1/chat/completions": (b'{"model":"m","messages":[{"role":"user","content":"hi HALF"}]}', "messages[0].content"),
    "/v1/messages": (
        b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"system":"HALF"}',
        "system",
    ),
    "/v1/messages/count_tokens": (
        b'{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a HALF b"}]}]}',
        "messages[0].content[0].text",
    ),
    "/v1/embeddings": (b'{"model":"m","input":["ok","HALF"]}', "input[1]"),
}


@pytest.mark.parametrize("path", list(UNPAIRED))
@pytest.mark.parametrize("half", [b"\\ud83d", b"\\uDE00", b"\\ude00\\ud83d"])
async def test_an_unpaired_surrogate_escape_is_400_naming_its_field(path: str, half: bytes, doors: Doors) -> None:
    body, field = UNPAIRED[path]
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        headers = {"content-type": "application/json"}
        refused = await client.post(path, content=body.replace(b"HALF", half), headers=headers)
        passed = await client.post(path, content=body.replace(b"HALF", b"\\ud83d\\ude00"), headers=headers)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert "unpaired UTF-16 surrogate" in error["message"]
    assert error["message"].startswith(field)
    assert error["message"].count(field) == 1, error["message"]  # named once, in either dialect
    if path in ("/v1/chat/completions", "/v1/embeddings"):
        assert error["param"] == field
    # Paired, the same escapes spell one character: the body goes on, to the unknown model's 404.
    assert passed.status_code == 404, passed.text


DEEP_SCHEMA = json.loads('{"items":' * 100 + "{}" + "}" * 100)
# Per dialect, a body with a JSON Schema at each place one goes, and the field each place is named by.
SCHEMA_PLACES: dict[str, tuple[Callable[[object], dict[str, object]], ...]] = {
    "/v1/chat/completions": (
        lambda schema: {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}},
        },
        lambda schema: {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
        },
    ),
    "/v1/messages": (
        lambda schema: {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}],
            "output_config": {"format": {"type": "json_schema", "schema": schema}},
        },
        lambda schema: {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "f", "input_schema": schema}],
        },
    ),
}
SCHEMA_FIELDS = {
    "/v1/chat/completions": ["response_format.json_schema.schema", "tools[0].function.parameters"],
    "/v1/messages": ["output_config.format.schema", "tools[0].input_schema"],
}


@pytest.mark.parametrize("path", list(SCHEMA_PLACES))
@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ({"type": "object", "required": 1}, "invalid JSON Schema at required"),
        ({"type": 3}, "invalid JSON Schema at type"),
        (DEEP_SCHEMA, "nested deeper than 64 levels"),
        (
            {"type": "object", "properties": {"code": {"type": "string", "pattern": "[A-Z"}}},
            "invalid JSON Schema at properties/code/pattern: '[A-Z' is not a regular expression",
        ),
        ({"patternProperties": {"(x": {}}}, "invalid JSON Schema at patternProperties: '(x' is not a regular"),
    ],
)
async def test_a_schema_is_checked_as_over_grpc_before_any_backend_sees_it(
    path: str, schema: dict[str, object], says: str, doors: Doors
) -> None:
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        for place, field in zip(SCHEMA_PLACES[path], SCHEMA_FIELDS[path], strict=True):
            refused = await client.post(path, json=place(schema))
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert says in error["message"]
            if path == "/v1/chat/completions":
                assert error["param"] == field
            valid = await client.post(path, json=place({"type": "object"}))
            assert valid.status_code == 404, valid.text  # taken, up to the unknown model


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses", "/v1/embeddings"])
async def test_a_number_of_more_digits_than_python_reads_is_400_saying_so(path: str, doors: Doors) -> None:
    body = b'{"model":"m","max_tokens":1' + b"0" * 5000 + b"}"
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        refused = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert refused.status_code == 400, refused.text
    assert "an integer of more digits than any field takes" in refused.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/embeddings"])
async def test_a_body_nested_beyond_the_parsers_bound_is_400(path: str, doors: Doors) -> None:
    deep = b'{"model":"m","messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        refused = await client.post(path, content=deep, headers={"content-type": "application/json"})
    assert refused.status_code == 400, refused.text
    assert "nests arrays and objects too deeply" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/messages", "/v1/embeddings", "/v1/messages/count_tokens"]
)
@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({"content-type": "application/json; charset=bogus"}, "not a text encoding"),
        ({"content-type": "application/json; charset=base64"}, "not a text encoding"),
        ({"content-type": "application/json; charset=punycode"}, "does not decode in its charset"),
        ({"content-type": "application/json", "content-encoding": "gzip"}, "not the gzip stream"),
        ({"content-type": "application/json", "content-encoding": "deflate"}, "not the deflate stream"),
    ],
    ids=["unknown charset", "no text charset", "failing codec", "not gzip", "not deflate"],
)
async def test_a_body_that_does_not_decode_as_its_headers_say_is_400(
    path: str, headers: dict[str, str], says: str, doors: Doors, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
    if path == "/v1/embeddings":
        body = b'{"model":"m","input":"hi"}'
    if path == "/v1/messages/count_tokens":
        body = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        refused = await client.post(path, content=body, headers=headers)
        served = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert refused.status_code == 400, refused.text
    assert says in refused.json()["error"]["message"]
    assert served.status_code == 404, served.text  # the same body, as it says: up to the unknown model
    # Answered, and not logged as an error besides (served came on the same connection, after its rest was read).
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("charset", ["utf-7", "unicode_escape"])
async def test_a_charset_that_decodes_to_an_unpaired_surrogate_is_400(charset: str, doors: Doors) -> None:
    """UTF-7's +2AA- and a unicode_escape \\ud800 spell one where no JSON escape shows it: a local model's tokenizer
    failed on it (500) and a hosted model's SDK too (a retryable 503, with nothing sent)."""
    spelled = "+2AA-" if charset == "utf-7" else "\\ud800"
    body = f'{{"model":"m","max_tokens":5,"messages":[{{"role":"user","content":"a{spelled}"}}]}}'.encode()
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        refused = await client.post(
            "/v1/chat/completions", content=body, headers={"content-type": f"application/json; charset={charset}"}
        )
    assert refused.status_code == 400, refused.text
    assert "unpaired UTF-16 surrogate" in refused.json()["error"]["message"]


async def test_the_token_is_required_by_bearer_or_x_api_key(
    server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    token = "door-token-0123456789"
    async with serving_doors(server_env, ServingOptions(token=token)) as doors:
        await load_hosted(doors, openai_upstream)
        for key in ("", "wrong"):
            async with async_openai_client(doors, key or "x") as client:
                with pytest.raises(openai.AuthenticationError) as refused:
                    await client.models.list()
            async with async_anthropic_client(doors, key or "x") as anthropic_sdk:
                with pytest.raises(anthropic.AuthenticationError) as refused_anthropic:
                    await anthropic_sdk.messages.create(model="m", messages=ANTHROPIC_MESSAGES, max_tokens=5)
            assert token not in refused.value.response.text + refused_anthropic.value.response.text
        assert refused_anthropic.value.type == "authentication_error"
        assert refused.value.code == "invalid_api_key"
        async with async_openai_client(doors, token) as client, async_anthropic_client(doors, token) as anthropic_sdk:
            answer = await client.chat.completions.create(model="m", messages=OPENAI_MESSAGES)
            message = await anthropic_sdk.messages.create(model="m", messages=ANTHROPIC_MESSAGES, max_tokens=5)
        assert answer.choices[0].message.content == message.content[0].text == "Hello, world"  # type: ignore[union-attr]
        async with httpx2.AsyncClient() as raw:
            unauthenticated = await raw.post(f"{base_url(doors)}/v1/chat/completions", json={})
            # The scheme's name is case-insensitive (RFC 9110).
            body = {"model": "m", "messages": OPENAI_MESSAGES, "max_tokens": 5}
            answers = [
                await raw.post(f"{base_url(doors)}/v1/chat/completions", json=body, headers={"Authorization": value})
                for value in (f"bearer {token}", f"BEARER  {token}", f"Basic {token}", token)
            ]
            # Twice, a wrong value and the token: refused whichever order, rather than the first or last counting.
            twice = [
                await raw.post(f"{base_url(doors)}/v1/chat/completions", json=body, headers=headers)
                for headers in (
                    [("Authorization", "Bearer wrong"), ("Authorization", f"Bearer {token}")],
                    [("x-api-key", token), ("x-api-key", "wrong")],
                )
            ]
            # Both headers, one holding the token (an SDK's stale default key beside it): let in, either way round.
            both = [
                await raw.post(f"{base_url(doors)}/v1/chat/completions", json=body, headers=headers)
                for headers in (
                    {"Authorization": f"Bearer {token}", "x-api-key": "stale"},
                    {"Authorization": "Bearer stale", "x-api-key": token},
                    {"Authorization": "Bearer stale", "x-api-key": "stale"},
                )
            ]
        assert unauthenticated.status_code == 401
        assert [answer.status_code for answer in answers] == [200, 200, 401, 401]
        assert [answer.status_code for answer in twice] == [401, 401]
        assert [answer.status_code for answer in both] == [200, 200, 401]


async def test_no_provider_key_in_any_answer(hosted: Doors, upstream: FakeUpstream) -> None:
    key = key_of(upstream)
    upstream.script = Script(status=401, error_message=f"Incorrect API key provided: {key}")
    failures: list[openai.APIStatusError | anthropic.APIStatusError] = [
        await openai_failure(hosted),
        await anthropic_failure(hosted),
        await openai_failure(hosted, stream=True),
    ]
    for failure in failures:
        assert key not in failure.response.text
        assert key[-12:] not in str(failure.body)


# Per route, a body whose assistant turn carries tool-call arguments as JSON text, and that text's field.
ARGUMENTS_TEXT: dict[str, tuple[Callable[[str], dict[str, object]], str]] = {
    "/v1/chat/completions": (
        lambda arguments: {
            "model": "m",
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        },
        "messages[1].tool_calls[0].function.arguments",
    ),
    "/v1/responses": (
        lambda arguments: {
            "model": "m",
            "input": [
                {"role": "user", "content": "hi"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": arguments},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            ],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        },
        "input[1].arguments",
    ),
}


@pytest.mark.parametrize("path", list(ARGUMENTS_TEXT))
@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ('{"x":' + "[" * 2000 + "]" * 2000 + "}", "nested deeper than"),
        ('{"x": "\\ud800"}', "unpaired UTF-16 surrogate"),
        ('{"x": NaN}', "NaN"),
    ],
    ids=["deep", "surrogate", "NaN"],
)
async def test_tool_call_arguments_text_is_read_as_the_grpc_doors_is(
    path: str, arguments: str, said: str, doors: Doors
) -> None:
    """A tester's finding: arguments nested 2,000 deep or holding half a surrogate pair were a 500 (a RecursionError,
    a UnicodeEncodeError), where the same text over gRPC is INVALID_ARGUMENT naming its field."""
    body, field = ARGUMENTS_TEXT[path]
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        refused = await client.post(path, json=body(arguments))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert said in error["message"]
    assert error["param"] == field

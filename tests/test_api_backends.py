"""OpenAI and Anthropic backends through the real SDKs, against loopback servers that speak their protocols."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from aiohttp import web
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.conftest import AccessLines, collect, failed_stream, rich_details, serving
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream, SseEvent, StreamPlan
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import ANTHROPIC_KEY, OPENAI_KEY, api_config, backend_of, key_of, load, prompt
from tests.key_leaks import Key, Transcript, leaks
from warpcore.server.adapters.hosted.openai import OpenAIAdapter
from warpcore.server.adapters.hosted.scrub import scrub_request_id, upstream_host
from warpcore.server.core.bounds import MAX_ID_LENGTH, MAX_REQUEST_ID, MAX_RETRY_AFTER
from warpcore.server.core.domain import ApiSettings, GenerationParams
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

Code = grpc.StatusCode


def details(error: grpc.aio.AioRpcError) -> dict[str, object]:
    """ErrorInfo reason/metadata and RetryInfo delay of a failed call."""
    status = rpc_status.from_call(error)
    assert status is not None
    found: dict[str, object] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            found["reason"], found["metadata"] = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            found["retry_after"] = retry.retry_delay.ToTimedelta().total_seconds()
    return found


# Configuration: request config, then environment, then an error naming both.


async def test_key_and_base_url_from_the_request_config(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    await collect(stub.Generate(prompt()))
    headers = upstream.requests[-1].headers
    assert key_of(upstream) in (headers.get("authorization", "") + headers.get("x-api-key", ""))


async def test_everything_from_the_environment_without_backend_config(
    stub: Stub, server_env: dict[str, str], openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    server_env.update(
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_API_BASE=openai_upstream.base_url,
        OPENAI_ORGANIZATION="org-from-env",
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        ANTHROPIC_API_BASE=anthropic_upstream.base_url,
    )
    for upstream in (openai_upstream, anthropic_upstream):
        request = pb.LoadModelRequest(
            backend=backend_of(upstream), model=upstream.models[0], model_id=f"env-{id(upstream)}"
        )
        model = (await stub.LoadModel(request)).model
        text, _ = await collect(stub.Generate(pb.GenerateRequest(model_id=model.id, prompt="hi")))
        assert text == "Hello, world"
    openai_headers = openai_upstream.requests[-1].headers
    assert openai_headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert openai_headers["openai-organization"] == "org-from-env"
    anthropic_headers = anthropic_upstream.requests[-1].headers
    assert anthropic_headers["authorization"] == f"Bearer {ANTHROPIC_KEY}"  # how anthropic 2.x sends the key
    assert anthropic_headers["anthropic-version"] == "2023-06-01"


async def test_unset_config_fields_fall_back_to_the_environment(
    stub: Stub, server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    server_env.update(
        OPENAI_API_KEY="sk-env-key-should-lose", OPENAI_ORGANIZATION="org-env", OPENAI_API_BASE=openai_upstream.base_url
    )
    config = pb.BackendConfig(api=pb.ApiConfig(api_key=OPENAI_KEY))
    await load(stub, openai_upstream, config)
    await collect(stub.Generate(prompt()))
    headers = openai_upstream.requests[-1].headers
    assert headers["authorization"] == f"Bearer {OPENAI_KEY}"  # the request's key wins
    # Unset in the request: from the environment (the server's organization goes to its own base URL only).
    assert headers["openai-organization"] == "org-env"


async def test_organization_from_the_request_config(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    await load(stub, openai_upstream, api_config(openai_upstream, organization="org-config"))
    await collect(stub.Generate(prompt()))
    assert openai_upstream.requests[-1].headers["openai-organization"] == "org-config"


async def test_an_organization_is_refused_for_anthropic(stub: Stub, anthropic_upstream: FakeAnthropic) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await load(stub, anthropic_upstream, api_config(anthropic_upstream, organization="org-config"))
    assert refused.value.code() == Code.INVALID_ARGUMENT
    assert rich_details(refused.value)[1] == ["backend_config.api.organization"]


async def test_anthropic_version_from_the_environment(
    stub: Stub, server_env: dict[str, str], anthropic_upstream: FakeAnthropic
) -> None:
    server_env["ANTHROPIC_API_VERSION"] = "2099-01-01"
    await load(stub, anthropic_upstream)
    await collect(stub.Generate(prompt()))
    assert {request.headers["anthropic-version"] for request in anthropic_upstream.requests} == {"2099-01-01"}


async def test_missing_key_names_both_sources(stub: Stub, upstream: FakeUpstream, server_env: dict[str, str]) -> None:
    variable = "OPENAI_API_KEY" if isinstance(upstream, FakeOpenAI) else "ANTHROPIC_API_KEY"
    server_env[variable.replace("_KEY", "_BASE")] = upstream.base_url
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load(stub, upstream, pb.BackendConfig(api=pb.ApiConfig()))
    assert raised.value.code() == Code.FAILED_PRECONDITION
    assert "backend_config.api.api_key" in (raised.value.details() or "")
    assert variable in (raised.value.details() or "")
    assert details(raised.value)["reason"] == "API_KEY_MISSING"
    assert upstream.requests == []


async def test_the_servers_key_is_never_sent_to_a_base_url_from_a_request(
    stub: Stub, upstream: FakeUpstream, server_env: dict[str, str]
) -> None:
    server_env.update(OPENAI_API_KEY=OPENAI_KEY, ANTHROPIC_API_KEY=ANTHROPIC_KEY)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load(stub, upstream, pb.BackendConfig(api=pb.ApiConfig(base_url=upstream.base_url)))
    assert raised.value.code() == Code.INVALID_ARGUMENT
    assert "api_key must be set too" in (raised.value.details() or "")
    assert upstream.requests == []


async def test_unknown_model_is_not_found(stub: Stub, upstream: FakeUpstream) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load(stub, upstream, model="no-such-model")
    assert raised.value.code() == Code.NOT_FOUND
    assert "ListModels" in (raised.value.details() or "")
    # What it offers, as a compatible server may name its models unguessably (llama.cpp's: its file's path).
    assert f"(it offers {', '.join(map(repr, upstream.models))})" in (raised.value.details() or "")


async def test_list_models_shows_loaded_then_provider_models(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    request = pb.ListModelsRequest(backend=backend_of(upstream), backend_config=api_config(upstream))
    models = (await stub.ListModels(request)).models
    assert [(m.id, m.state) for m in models] == [("m", pb.MODEL_STATE_READY)] + [
        (name, pb.MODEL_STATE_AVAILABLE) for name in upstream.models
    ]
    listing = upstream.requests[-1]
    assert (listing.method, listing.path) == ("GET", "/v1/models")
    if isinstance(upstream, FakeAnthropic):
        assert listing.headers["x-api-key"] == ANTHROPIC_KEY
        assert listing.headers["anthropic-version"] == "2023-06-01"


async def test_a_listed_model_id_made_of_the_key_or_too_long_is_left_out(stub: Stub, upstream: FakeUpstream) -> None:
    """An upstream chooses the ids it lists: one that spelled the key it was called with reached any caller."""
    key = api_config(upstream).api.api_key
    upstream.models = [f"m-Bearer {key}|", f"{key[:10]}-model", "x" * (MAX_ID_LENGTH + 1), "gpt-4o"]
    request = pb.ListModelsRequest(backend=backend_of(upstream), backend_config=api_config(upstream))
    assert [model.id for model in (await stub.ListModels(request)).models] == ["gpt-4o"]


# Generation


async def test_stream_passes_deltas_usage_finish_reason_and_request_id(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=["One", " two", " three"], prompt_tokens=9, request_id="req-42")
    await load(stub, upstream)
    frames = [frame async for frame in stub.Generate(prompt(max_tokens=50))]
    assert [frame.delta.text for frame in frames[:-1]] == ["One", " two", " three"]
    result = frames[-1].result
    assert result.finish_reason == pb.FINISH_REASON_STOP
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (9, 3)
    assert result.upstream_request_id == "req-42"


@pytest.mark.parametrize(
    ("start_usage", "delta_usage", "usage"),
    [
        pytest.param({"input_tokens": 0}, {"input_tokens": 11, "output_tokens": 42}, (11, 42), id="litellm"),
        pytest.param({"input_tokens": 11, "output_tokens": 1}, {"output_tokens": 42}, (11, 42), id="anthropic"),
        pytest.param({"input_tokens": 11}, {"input_tokens": 0, "output_tokens": 42}, (11, 42), id="zero-in-delta"),
        pytest.param({"input_tokens": 11, "output_tokens": 5}, {"output_tokens": None}, (11, 5), id="null-in-delta"),
        pytest.param({}, {"input_tokens": 13, "output_tokens": 42}, (13, 42), id="only-in-delta"),
        pytest.param({"input_tokens": 9}, {"input_tokens": 12, "output_tokens": 42}, (12, 42), id="latest-wins"),
    ],
)
async def test_anthropic_usage_from_whichever_event_carries_it(
    stub: Stub,
    anthropic_upstream: FakeAnthropic,
    start_usage: dict[str, int | None],
    delta_usage: dict[str, int | None],
    usage: tuple[int, int],
) -> None:
    anthropic_upstream.script = Script(start_usage=start_usage, delta_usage=delta_usage)
    await load(stub, anthropic_upstream)
    _, result = await collect(stub.Generate(prompt()))
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == usage


async def test_sampling_numbers_reach_the_upstream_as_written(stub: Stub, upstream: FakeUpstream) -> None:
    """A tester's finding: the proto's single-precision floats went upstream as 0.699999988079071, where the HTTP door
    and the SDK direct send 0.7."""
    await load(stub, upstream)
    options: dict[str, float] = {"temperature": 0.7, "top_p": 0.95}
    if isinstance(upstream, FakeOpenAI):
        options |= {"presence_penalty": 0.1, "frequency_penalty": -0.3}
    await collect(stub.Generate(prompt("Say hello", **options)))
    body = upstream.requests[-1].body
    assert body is not None
    assert {name: body[name] for name in options} == options


async def test_openai_request_mapping(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    await load(stub, openai_upstream)
    request = pb.GenerateRequest(
        model_id="m",
        messages=[
            pb.ChatMessage(role=pb.ROLE_USER, content="Hi"),
            pb.ChatMessage(role=pb.ROLE_ASSISTANT, content="Yo"),
        ],
        options=pb.GenerationOptions(
            max_tokens=33, temperature=0, top_p=0.5, seed=7, stop_sequences=["END"], system="Be brief."
        ),
    )
    await collect(stub.Generate(request))
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Yo"},
    ]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (33, 0, 0.5, 7)
    assert body["stop"] == ["END"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_anthropic_request_mapping(stub: Stub, anthropic_upstream: FakeAnthropic) -> None:
    await load(stub, anthropic_upstream)
    request = pb.GenerateRequest(
        model_id="m",
        messages=[
            pb.ChatMessage(role=pb.ROLE_SYSTEM, content="Be kind."),
            pb.ChatMessage(role=pb.ROLE_USER, content="Hi"),
            pb.ChatMessage(role=pb.ROLE_USER, content="Are you there?"),
            pb.ChatMessage(role=pb.ROLE_ASSISTANT, content="Yes"),
        ],
        options=pb.GenerationOptions(temperature=0.25, top_k=5, stop_sequences=["END"], system="Be brief."),
        continue_last_message=True,
    )
    await collect(stub.Generate(request))
    body = anthropic_upstream.requests[-1].body
    assert body is not None
    assert body["system"] == "Be brief.\n\nBe kind."
    assert body["messages"] == [
        {"role": "user", "content": "Hi\n\nAre you there?"},
        {"role": "assistant", "content": "Yes"},
    ]
    assert body["max_tokens"] == 256  # required by the API: warpcore's documented default
    assert (body["temperature"], body["top_k"], body["stop_sequences"]) == (0.25, 5, ["END"])
    # Not asked to continue it, a last assistant message would still be continued by the API: refused, unsent.
    request.continue_last_message = False
    sent = len(anthropic_upstream.requests)
    _, error = await failed_stream(stub.Generate(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "continues a last assistant message" in (error.details() or "")
    assert len(anthropic_upstream.requests) == sent


@pytest.mark.parametrize(
    ("provider_reason", "sequence", "finish_reason", "stop_sequence"),
    [
        ("end_turn", None, pb.FINISH_REASON_STOP, ""),
        ("max_tokens", None, pb.FINISH_REASON_LENGTH, ""),
        ("stop_sequence", "END", pb.FINISH_REASON_STOP_SEQUENCE, "END"),
        # llama.cpp's server ends a text cut by a stop sequence with end_turn, naming the sequence.
        ("end_turn", "END", pb.FINISH_REASON_STOP_SEQUENCE, "END"),
        ("max_tokens", "END", pb.FINISH_REASON_LENGTH, ""),  # a sequence is told only with its finish
    ],
)
async def test_anthropic_stop_reasons(
    stub: Stub,
    anthropic_upstream: FakeAnthropic,
    provider_reason: str,
    sequence: str | None,
    finish_reason: pb.FinishReason.ValueType,
    stop_sequence: str,
) -> None:
    anthropic_upstream.script = Script(finish_reason=provider_reason, stop_sequence=sequence)
    await load(stub, anthropic_upstream)
    _, result = await collect(stub.Generate(prompt()))
    assert (result.finish_reason, result.stop_sequence) == (finish_reason, stop_sequence)


async def test_openai_length_finish_reason(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script = Script(finish_reason="length")
    await load(stub, openai_upstream)
    _, result = await collect(stub.Generate(prompt()))
    assert result.finish_reason == pb.FINISH_REASON_LENGTH


@pytest.mark.parametrize(
    ("provider", "options", "field"),
    [
        ("anthropic", {"seed": 3}, "seed"),
        ("anthropic", {"temperature": 1.5}, "temperature"),
    ],
)
async def test_options_a_provider_cannot_honour_are_rejected(
    stub: Stub,
    openai_upstream: FakeOpenAI,
    anthropic_upstream: FakeAnthropic,
    provider: str,
    options: dict[str, Any],
    field: str,
) -> None:
    upstream: FakeUpstream = openai_upstream if provider == "openai" else anthropic_upstream
    await load(stub, upstream)
    sent_before = len(upstream.requests)
    frames, error = await failed_stream(stub.Generate(prompt(**options)))
    assert error.code() == Code.INVALID_ARGUMENT
    assert field in (error.details() or "")
    assert frames == []
    assert len(upstream.requests) == sent_before  # nothing went upstream


async def test_a_compatible_server_behind_openai_gets_top_k_and_more_stop_sequences(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    await load(stub, openai_upstream)
    stops = ["a", "b", "c", "d", "e"]
    await collect(stub.Generate(prompt(top_k=3, stop_sequences=stops)))
    assert (openai_upstream.requests[-1].body or {}).items() >= {"top_k": 3, "stop": stops}.items()


@pytest.mark.parametrize(("options", "field"), [({"top_k": 3}, "top_k"), ({"stop": ("a", "b", "c", "d", "e")}, "stop")])
async def test_openais_own_api_is_never_sent_what_it_refuses(options: dict[str, Any], field: str) -> None:
    adapter = OpenAIAdapter(ApiSettings(api_key=OPENAI_KEY, base_url="https://api.openai.com/v1"), env={})
    try:
        with pytest.raises(InvalidArgumentError) as refused:
            adapter._request(GenerationParams(prompt="hi", messages=(), max_tokens=8, **options))
        assert refused.value.field == field
    finally:
        await adapter.close()


async def test_deltas_pass_through_before_the_upstream_finishes_and_cancel_closes_it(
    stub: Stub, upstream: FakeUpstream
) -> None:
    upstream.script = Script(chunks=["a", "b", "c"], stall_after=2)
    await load(stub, upstream)
    call = stub.Generate(prompt())
    received = []
    async for frame in call:
        received.append(frame.delta.text)
        if len(received) == 2:
            break
    assert received == ["a", "b"]  # sent while the upstream still holds the rest back
    call.cancel()
    await asyncio.wait_for(upstream.disconnected.wait(), 5)


async def test_deadline_ends_a_stalled_stream_and_closes_the_upstream(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=["a", "b"], stall_after=1)
    await load(stub, upstream)
    _, error = await failed_stream(stub.Generate(prompt(), timeout=1.0))
    assert error.code() == Code.DEADLINE_EXCEEDED
    await asyncio.wait_for(upstream.disconnected.wait(), 5)


async def test_remaining_deadline_bounds_the_upstream_timeout(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream, api_config(upstream, timeout={"seconds": 600}))
    await collect(stub.Generate(prompt(), timeout=5))
    # Both SDKs announce the read timeout they apply in this header.
    assert float(upstream.requests[-1].headers["x-stainless-read-timeout"]) < 6  # 5 s, give or take rounding


async def test_configured_timeout_ends_a_stalled_stream(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=["a", "b"], stall_after=1)
    await load(stub, upstream, api_config(upstream, timeout={"nanos": 500_000_000}))
    frames, error = await failed_stream(stub.Generate(prompt(), timeout=30))
    assert error.code() == Code.DEADLINE_EXCEEDED
    assert [frame.WhichOneof("frame") for frame in frames] == ["delta", "result"]
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_ERROR


async def test_shutdown_ends_a_hosted_stream_with_a_cancelled_frame_and_its_usage(
    server_env: dict[str, str], anthropic_upstream: FakeAnthropic, access_lines: AccessLines
) -> None:
    # 1000 chunks 10 ms apart: far longer than the grace, so that only the drain can end the stream.
    anthropic_upstream.script = Script(chunks=["tick"] * 1000, delay=0.01, prompt_tokens=17, request_id="req-drained")
    async with serving(server_env) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load(stub, anthropic_upstream)
        frames = aiter(stub.Generate(prompt()))
        first = await anext(frames)
        stopping = asyncio.ensure_future(server.stop(1.0))
        rest = [frame async for frame in frames]
        await stopping
    assert first.delta.text == "tick"
    result = rest[-1].result
    assert result.finish_reason == pb.FINISH_REASON_CANCELLED
    # What the upstream had reported when the stream was stopped: message_start's prompt count; its output count (1)
    # is of the answer's start, no count of the answer cut.
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (17, 0)
    assert result.upstream_request_id == "req-drained"
    await asyncio.wait_for(anthropic_upstream.disconnected.wait(), 5)  # the upstream stream was closed
    # A tester's finding: the access line said completion_tokens 0 after the text it streamed, a false count.
    while (await access_lines.next())[0] != "Generate":
        pass
    logged = access_lines.records[-1].__dict__
    assert (logged["finish_reason"], logged["prompt_tokens"], "completion_tokens" in logged) == ("cancelled", 17, False)


async def test_a_hosted_stream_stalled_at_shutdown_ends_cancelled_with_the_prompt_usage_told(
    server_env: dict[str, str], anthropic_upstream: FakeAnthropic
) -> None:
    # Silent after its first chunk: no event comes to stop at, so the drain cuts the call, whose result still says
    # what the upstream told of the prompt (message_start) rather than nothing.
    anthropic_upstream.script = Script(chunks=["a", "b"], stall_after=1, prompt_tokens=17)
    async with serving(server_env) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load(stub, anthropic_upstream)
        frames = aiter(stub.Generate(prompt()))
        await anext(frames)
        stopping = asyncio.ensure_future(server.stop(1.0))
        rest = [frame async for frame in frames]
        await stopping
    result = rest[-1].result
    assert result.finish_reason == pb.FINISH_REASON_CANCELLED
    assert result.usage.prompt_tokens == 17


# Errors


STATUS_CASES = [
    (400, Code.INVALID_ARGUMENT),
    (401, Code.UNAUTHENTICATED),
    (403, Code.PERMISSION_DENIED),
    (404, Code.NOT_FOUND),
    (429, Code.RESOURCE_EXHAUSTED),
    (500, Code.UNAVAILABLE),
    (501, Code.FAILED_PRECONDITION),
    (503, Code.UNAVAILABLE),
    (529, Code.UNAVAILABLE),
]


@pytest.mark.parametrize(("status", "code"), STATUS_CASES)
async def test_upstream_status_maps_to_grpc_code(stub: Stub, upstream: FakeUpstream, status: int, code: Code) -> None:
    await load(stub, upstream)
    upstream.script = Script(status=status, error_message=f"scripted {status}")
    frames, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == code
    assert f"HTTP {status}" in (error.details() or "")
    assert f"scripted {status}" in (error.details() or "")
    found = details(error)
    assert found["metadata"] == {
        "provider": "openai" if isinstance(upstream, FakeOpenAI) else "anthropic",
        "http_status": str(status),
        "upstream_request_id": "req_fake_123",
    }
    assert "retry_after" not in found
    assert frames == []  # failed before any text: the status alone


@pytest.mark.parametrize("header", ["x-request-id", "request-id", "x-litellm-call-id"])
@pytest.mark.parametrize("status", [200, 429])
async def test_the_request_id_under_any_header_a_peer_uses(
    stub: Stub, upstream: FakeUpstream, header: str, status: int
) -> None:
    # A LiteLLM proxy says its provider's id as request-id on its OpenAI route too, and its own call id otherwise.
    await load(stub, upstream)
    upstream.script = Script(status=status, request_id="req-peer-7", request_id_header=header)
    if status == 200:
        _, result = await collect(stub.Generate(prompt()))
        assert result.upstream_request_id == "req-peer-7"
    else:
        _, error = await failed_stream(stub.Generate(prompt()))
        assert details(error)["metadata"]["upstream_request_id"] == "req-peer-7"  # type: ignore[index]


@pytest.mark.parametrize(
    ("status", "code"), [(429, Code.RESOURCE_EXHAUSTED), (503, Code.UNAVAILABLE), (529, Code.UNAVAILABLE)]
)
async def test_retry_info_carries_the_upstreams_retry_after(
    stub: Stub, upstream: FakeUpstream, status: int, code: Code
) -> None:
    await load(stub, upstream)
    upstream.script = Script(status=status, headers={"retry-after": "7"})
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == code
    assert details(error)["retry_after"] == 7.0


async def test_a_quota_used_up_is_its_own_reason_with_no_wait(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    """OpenAI's 429 for a used-up account says insufficient_quota: a rate limit's status, but no wait ends it."""
    await load(stub, openai_upstream)
    # Even with a retry-after (a tester's finding: the HTTP door left it out, gRPC passed it on as RetryInfo).
    openai_upstream.script = Script(status=429, error_code="insufficient_quota", headers={"retry-after": "7"})
    _, error = await failed_stream(stub.Generate(prompt()))
    assert (error.code(), details(error)["reason"]) == (Code.RESOURCE_EXHAUSTED, "UPSTREAM_QUOTA_EXHAUSTED")
    assert "retry_after" not in details(error)
    openai_upstream.script = Script(status=429, error_code="rate_limit_exceeded")
    _, error = await failed_stream(stub.Generate(prompt()))
    assert details(error)["reason"] == "UPSTREAM_RESOURCE_EXHAUSTED"


@pytest.mark.parametrize(
    "refusal",
    [
        "image input is not supported - hint: if this is unexpected, you may need to provide the mmproj",
        "tools param requires --jinja flag",
        "input (3002 tokens) is too large to process. increase the physical batch size",
    ],
)
async def test_a_500_that_says_what_is_not_supported_is_failed_precondition(
    stub: Stub, upstream: FakeUpstream, refusal: str
) -> None:
    """The testers' findings: llama.cpp's server answers an image it has no projector for, tools without its jinja
    templates and an embedding over its batch size with HTTP 500, which was UNAVAILABLE (retry) and the HTTP door's
    503 with Retry-After: a stock SDK sent the doomed request three times."""
    await load(stub, upstream)
    upstream.script = Script(status=500, error_message=refusal, headers={"retry-after": "1"})
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.FAILED_PRECONDITION
    assert refusal in (error.details() or "")
    assert "retry_after" not in details(error)
    for passing in ("the server ran out of memory", "Model requires more memory than available, retry later"):
        upstream.script = Script(status=500, error_message=passing)
        _, error = await failed_stream(stub.Generate(prompt()))
        assert error.code() == Code.UNAVAILABLE  # any other 500 may pass


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"llm_provider-retry-after": "60"}, 60.0),
        ({"llm_provider-retry-after-ms": "7500", "llm_provider-retry-after": "8"}, 7.5),
        ({"retry-after": "3", "llm_provider-retry-after": "60"}, 3.0),  # the standard header first
    ],
)
async def test_retry_info_from_what_a_litellm_proxy_passes_on(
    stub: Stub, upstream: FakeUpstream, headers: dict[str, str], wait: float
) -> None:
    """The tester's finding: behind LiteLLM, which sends only its llm_provider- forms, the wait was lost, and the HTTP
    door told clients to retry after 1 s where the upstream had said 60."""
    await load(stub, upstream)
    upstream.script = Script(status=429, headers=headers)
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.RESOURCE_EXHAUSTED
    assert details(error)["retry_after"] == wait


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "inf"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after-ms": "1e999", "retry-after": "5"}, 5.0),
        ({"retry-after": "99999999999999999999"}, MAX_RETRY_AFTER),
        ({"retry-after-ms": "1e308"}, MAX_RETRY_AFTER),
        ({"retry-after": "-5"}, None),  # no wait at all, not "retry at once"
        ({"retry-after-ms": "-1", "retry-after": "7"}, 7.0),
    ],
)
async def test_a_retry_after_of_no_finite_positive_or_sensible_wait_is_left_out_or_cut(
    stub: Stub, upstream: FakeUpstream, headers: dict[str, str], wait: float | None
) -> None:
    """An upstream's infinite or huge wait failed the error's own translation (UNKNOWN, an OverflowError, and the
    SDK's exception whole in the log)."""
    await load(stub, upstream)
    upstream.script = Script(status=429, headers=headers)
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.RESOURCE_EXHAUSTED
    assert details(error).get("retry_after") == wait


async def test_an_error_body_that_is_no_json_is_quoted(stub: Stub, upstream: FakeUpstream) -> None:
    """A proxy's HTML page in front of the API says what failed; OpenAI's said only "Error code: 502"."""
    await load(stub, upstream)
    upstream.script = Script(status=502, error_text="<html><h1>502 Bad Gateway</h1> nginx</html>")
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.UNAVAILABLE
    assert "(HTTP 502): <html><h1>502 Bad Gateway</h1> nginx</html>" in (error.details() or "")


async def test_context_length_errors_have_their_reason(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    upstream.script = Script(
        status=400,
        error_code="context_length_exceeded",
        error_message="This model's maximum context length is 8 tokens"
        if isinstance(upstream, FakeOpenAI)
        else "prompt is too long: 250000 tokens > 200000 maximum",
    )
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.INVALID_ARGUMENT
    assert details(error)["reason"] == "CONTEXT_LENGTH_EXCEEDED"


# What servers other than OpenAI's and Anthropic's answer, behind either backend: llama.cpp's server (its error type,
# with no code), LiteLLM's proxy (its exception's name in the message) and vLLM (its words).
@pytest.mark.parametrize(
    ("error_type", "message"),
    [
        ("exceed_context_size_error", "request (1524 tokens) exceeds the available context size (512 tokens)"),
        (None, "litellm.ContextWindowExceededError: litellm.BadRequestError: the prompt is 9000 tokens"),
        (None, "This model's maximum context length is 2048 tokens. However, you requested 2100 tokens"),
    ],
)
async def test_compatible_servers_context_length_errors_have_their_reason(
    stub: Stub, upstream: FakeUpstream, error_type: str | None, message: str
) -> None:
    await load(stub, upstream)
    upstream.script = Script(status=400, error_type=error_type, error_message=message)
    _, error = await failed_stream(stub.Generate(prompt()))
    assert (error.code(), details(error)["reason"]) == (Code.INVALID_ARGUMENT, "CONTEXT_LENGTH_EXCEEDED")


async def test_other_refusals_are_not_called_context_length(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    upstream.script = Script(status=400, error_message="temperature is out of range")
    _, error = await failed_stream(stub.Generate(prompt()))
    assert details(error)["reason"] == "UPSTREAM_INVALID_ARGUMENT"
    upstream.script = Script(status=429, error_message="too many tokens for the context window this minute")
    _, error = await failed_stream(stub.Generate(prompt()))
    assert details(error)["reason"] == "UPSTREAM_RESOURCE_EXHAUSTED"


async def test_connection_refused_is_unavailable(stub: Stub, upstream: FakeUpstream) -> None:
    base_url, port = upstream.base_url, upstream.port
    await upstream.stop()
    config = pb.BackendConfig(api=pb.ApiConfig(api_key=key_of(upstream), base_url=base_url))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load(stub, upstream, config)
    assert raised.value.code() == Code.UNAVAILABLE
    provider = "openai" if isinstance(upstream, FakeOpenAI) else "anthropic"
    # The aiohttp transport calls it a connect timeout; the caller needs to know the host refused.
    assert (
        raised.value.details()
        == f"{provider} upstream error: could not connect to 127.0.0.1:{port} (connection refused)"
    )


async def test_a_host_name_that_does_not_resolve_is_unavailable(stub: Stub, upstream: FakeUpstream) -> None:
    # .invalid never resolves (RFC 2606); the openai SDK's aiohttp transport calls the failure a connect timeout.
    config = pb.BackendConfig(api=pb.ApiConfig(api_key=key_of(upstream), base_url="http://upstream.invalid:8080/v1"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load(stub, upstream, config)
    assert raised.value.code() == Code.UNAVAILABLE
    provider = "openai" if isinstance(upstream, FakeOpenAI) else "anthropic"
    expected = f"{provider} upstream error: could not resolve the host name of upstream.invalid:8080"
    assert raised.value.details() == expected


@pytest.mark.parametrize(
    ("base_url", "host"),
    [
        ("http://127.0.0.1:1234/v1", "127.0.0.1:1234"),
        ("https://api.openai.com/v1", "api.openai.com:443"),
        ("http://Upstream.Example", "upstream.example:80"),
        ("http://user:sk-secret-password@10.0.0.1:8080/v1?api_key=sk-in-query#frag", "10.0.0.1:8080"),
        ("http://[::1]:8000/v1", "[::1]:8000"),
        ("http://127.0.0.1:99999/v1", "127.0.0.1"),
        ("not a url", "the upstream"),
    ],
)
def test_upstream_host_names_host_and_port_only(base_url: str, host: str) -> None:
    assert upstream_host(base_url) == host


async def test_stream_cut_midway_ends_with_error_after_the_deltas(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=["a", "b", "c", "d"], cut_after=2)
    await load(stub, upstream)
    frames, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.UNAVAILABLE
    # In the same words from either SDK, which raise the cut differently (the anthropic one as aiohttp's own).
    assert "closed the connection before the answer was complete" in (error.details() or "")
    assert [frame.delta.text for frame in frames[:-1]] == ["a", "b"]
    result = frames[-1].result
    assert result.finish_reason == pb.FINISH_REASON_ERROR
    # What was read before the cut still counts: the request's id, and Anthropic's prompt size from message_start
    # (OpenAI tells usage only in its last chunk).
    assert result.upstream_request_id == "req_fake_123"
    assert result.usage.prompt_tokens == (0 if isinstance(upstream, FakeOpenAI) else 11)
    # Whose failure, as an answered one says: the error's details had no provider and no request id.
    provider = "openai" if isinstance(upstream, FakeOpenAI) else "anthropic"
    assert details(error)["metadata"] == {"provider": provider, "upstream_request_id": "req_fake_123"}


def send_wrong_shape_as_malformed(upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the fake's malformed event valid JSON of the wrong shape: a text delta whose text is a number."""
    if isinstance(upstream, FakeOpenAI):
        wrong = SseEvent.of_json({"choices": [{"index": 0, "delta": {"content": 7}}]})
    else:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 7}}
        wrong = SseEvent.of_json(delta, event="content_block_delta")
    send = upstream.stream

    async def stream(request: web.Request, plan: StreamPlan) -> web.StreamResponse:
        return await send(request, dataclasses.replace(plan, malformed=wrong))

    monkeypatch.setattr(upstream, "stream", stream)


@pytest.mark.parametrize("malformed", ["not JSON", "wrong shape"])
async def test_malformed_event_ends_the_stream_cleanly(
    stub: Stub, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, malformed: str
) -> None:
    if malformed == "wrong shape":
        send_wrong_shape_as_malformed(upstream, monkeypatch)
    upstream.script = Script(chunks=["a", "b", "c"], malformed_after=1)
    await load(stub, upstream)
    frames, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.UNAVAILABLE
    assert details(error)["reason"] == "UPSTREAM_MALFORMED_STREAM"  # whichever the provider
    assert details(error)["metadata"]["upstream_request_id"] == "req_fake_123"  # type: ignore[index]
    assert frames[0].delta.text == "a"
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_ERROR


async def test_an_upstream_that_answers_a_stream_with_one_json_body_is_told_so(
    stub: Stub, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It read as a stream cut short (UPSTREAM_STREAM_TRUNCATED), which a retry would mend; this never will."""

    async def whole(request: web.Request, plan: StreamPlan) -> web.StreamResponse:
        return web.json_response({"id": "x", "object": "chat.completion", "choices": []})

    monkeypatch.setattr(upstream, "stream", whole)
    await load(stub, upstream)
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.UNAVAILABLE
    assert details(error)["reason"] == "UPSTREAM_NOT_STREAMING"
    assert "answered with application/json; charset=utf-8, not an event stream" in (error.details() or "")


async def test_text_after_the_stop_event_is_dropped(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=["a", "b"], after_stop=["late", "later"])
    await load(stub, upstream)
    text, result = await collect(stub.Generate(prompt()))
    assert text == "ab"
    assert result.finish_reason == pb.FINISH_REASON_STOP


async def test_anthropic_error_event_midstream(stub: Stub, anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.script = Script(chunks=["a", "b", "c"], error_event_after=2)
    await load(stub, anthropic_upstream)
    frames, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.UNAVAILABLE
    assert "Overloaded" in (error.details() or "")
    # No status of its own: the one its type stands for, which the HTTP door answers.
    assert details(error)["metadata"] == {
        "provider": "anthropic",
        "http_status": "529",
        "upstream_request_id": "req_fake_123",
        "upstream_error_type": "overloaded_error",
    }
    assert "(overloaded_error in the stream)" in (error.details() or "")
    assert [frame.delta.text for frame in frames[:-1]] == ["a", "b"]
    assert (frames[-1].result.usage.prompt_tokens, frames[-1].result.upstream_request_id) == (11, "req_fake_123")


async def test_api_keys_never_leak_into_errors_or_logs(
    stub: Stub, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = key_of(upstream)
    await load(stub, upstream)
    upstream.script = Script(status=401, error_message=f"Incorrect API key provided: {key}")
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.UNAUTHENTICATED
    assert key not in (error.details() or "")
    assert "[redacted]" in (error.details() or "")
    assert key not in str(rpc_status.from_call(error))
    upstream.script = Script()
    listed = await stub.ListModels(
        pb.ListModelsRequest(backend=backend_of(upstream), backend_config=api_config(upstream))
    )
    assert key not in str(listed)
    assert caplog.records  # the SDKs and the server did log
    assert key not in caplog.text


# A key not shaped like any vendor's, so only the server's knowledge of the exact key can scrub it.
ECHOED_KEY = Key("ApiConfig.api_key", "", "EchoedKey5Tq8Wm3Zr7Lx2Vb9Nh4Kc6Pj1Df")


@pytest.mark.parametrize("status", [200, 500, 401])
async def test_request_ids_echoing_the_key_are_scrubbed(stub: Stub, upstream: FakeUpstream, status: int) -> None:
    await load(stub, upstream, api_config(upstream, api_key=ECHOED_KEY.value))
    # Control characters inside the key do not hide it: they are dropped before the scrubbing.
    upstream.script = Script(status=status, request_id=f"req_{ECHOED_KEY.value[:10]}\t{ECHOED_KEY.value[10:]}")
    transcript = Transcript()
    await transcript.call("generate", stub.Generate(prompt()))
    assert transcript.outcomes == {"generate": {200: "OK", 500: "UNAVAILABLE", 401: "UNAUTHENTICATED"}[status]}
    assert leaks(transcript.texts, ECHOED_KEY) == []
    sent = transcript.joined("generate")
    assert ('upstream_request_id: "req_[redacted]"' if status == 200 else '"req_[redacted]"') in sent


def test_request_id_is_a_bounded_printable_token() -> None:
    key = ECHOED_KEY.value
    assert scrub_request_id("req_011CSHm9fWgjqY3uKJnzxZ5e", key) == "req_011CSHm9fWgjqY3uKJnzxZ5e"
    assert scrub_request_id("req_1\x1b[2J\r\nforged log line\x00", key) == "req_1[2Jforgedlogline"
    assert scrub_request_id(f"{key[:4]}\x7f{key[4:]}", key) == "[redacted]"  # the key, a control character in it
    assert scrub_request_id("r" * 10_000, key) == "r" * MAX_REQUEST_ID
    assert scrub_request_id("\t\u00e9\u200b", key) == scrub_request_id(None, key) == ""


async def test_anthropic_betas_go_in_the_header_to_anthropic_only(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    betas = ["interleaved-thinking-2025-05-14", "output-128k-2025-02-19"]
    await collect(stub.Generate(prompt(anthropic_betas=betas)))
    sent = upstream.requests[-1].headers.get("anthropic-beta")
    assert sent == (None if isinstance(upstream, FakeOpenAI) else ",".join(betas))
    requests = len(upstream.requests)
    for bad in (["Bad Name"], ["a,b"], [""], [f"b{n}" for n in range(17)]):
        _, error = await failed_stream(stub.Generate(prompt(anthropic_betas=bad)))
        assert (error.code(), rich_details(error)[1]) == (Code.INVALID_ARGUMENT, ["options.anthropic_betas"])
    assert len(upstream.requests) == requests


async def test_a_refused_load_says_the_upstreams_message_not_its_json_body(stub: Stub, upstream: FakeUpstream) -> None:
    upstream.required_api_key = "sk-another-key-0123456789"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load(stub, upstream)
    assert raised.value.code() == Code.UNAUTHENTICATED
    assert (raised.value.details() or "").endswith("(HTTP 401): Incorrect API key provided")

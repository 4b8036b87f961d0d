"""OpenAI and Anthropic backends through the real SDKs, against loopback servers that speak their protocols: an upstream
that cannot be reached, a stream cut or malformed midway, and an error event midstream."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import grpc
import pytest
from aiohttp import web

from tests.api_backends_support import Code, details
from tests.conftest import collect, failed_stream, rich_details
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream, SseEvent, StreamPlan
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import key_of, load, prompt
from tests.test_upstream_redirects import load_and_list_failures
from warpcore.server.adapters.hosted.scrub import upstream_host
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


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


class NotUtf8(SseEvent):
    """An event whose data holds the byte 0xFF, which no UTF-8 text does."""

    def encode(self) -> bytes:
        return b'data: {"x": "\xff"}\n\n'


def send_not_utf8_as_malformed(upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    send = upstream.stream

    async def stream(request: web.Request, plan: StreamPlan) -> web.StreamResponse:
        return await send(request, dataclasses.replace(plan, malformed=NotUtf8("")))

    monkeypatch.setattr(upstream, "stream", stream)


@pytest.mark.parametrize("malformed", ["not JSON", "wrong shape", "not UTF-8"])
async def test_malformed_event_ends_the_stream_cleanly(
    stub: Stub, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, malformed: str
) -> None:
    if malformed == "wrong shape":
        send_wrong_shape_as_malformed(upstream, monkeypatch)
    if malformed == "not UTF-8":  # an outside tester's finding: it was told as an event "of the wrong shape"
        send_not_utf8_as_malformed(upstream, monkeypatch)
    upstream.script = Script(chunks=["a", "b", "c"], malformed_after=1)
    await load(stub, upstream)
    frames, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.UNAVAILABLE
    assert details(error)["reason"] == "UPSTREAM_MALFORMED_STREAM"  # whichever the provider
    assert details(error)["metadata"]["upstream_request_id"] == "req_fake_123"  # type: ignore[index]
    assert frames[0].delta.text == "a"
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_ERROR
    said = {"not JSON": "that is not JSON", "wrong shape": "of the wrong shape", "not UTF-8": "that is not UTF-8 text"}
    assert f"a stream event {said[malformed]}" in (error.details() or "")


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


async def test_an_empty_event_stream_says_what_such_a_server_means_by_it(
    stub: Stub, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama-cpp-python's server answers a streamed prompt longer than its context with 200 and no event at all:
    read as a stream cut short, retried to no end. An outside tester's finding: the hint then spoke of the prompt's
    length alone, where the server had failed otherwise (tool_choice required, a prompt of 30 tokens)."""

    async def empty(request: web.Request, plan: StreamPlan) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write_eof()
        return response

    monkeypatch.setattr(upstream, "stream", empty)
    await load(stub, upstream)
    _, error = await failed_stream(stub.Generate(prompt()))
    assert error.code() == Code.UNAVAILABLE
    assert details(error)["reason"] == "UPSTREAM_STREAM_TRUNCATED"
    assert "sent an empty event stream" in (error.details() or "")
    assert "the server failed to generate, and its own log says why" in (error.details() or "")
    assert "longer than the model's context" in (error.details() or "")


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


async def test_a_base_url_with_no_model_list_under_it_is_named(stub: Stub, upstream: FakeUpstream) -> None:
    """A tester's finding: a base URL cut short of /v1 was a bare 404, naming no field; another's: ListModels, asked
    of the same base URL, still was (`openai upstream error (HTTP 404): Error code: 404`)."""
    openai_api = isinstance(upstream, FakeOpenAI)
    backend = pb.BACKEND_TYPE_OPENAI if openai_api else pb.BACKEND_TYPE_ANTHROPIC
    api, own = ("OpenAI", "https://api.openai.com/v1") if openai_api else ("Anthropic", "https://api.anthropic.com")
    for refused in await load_and_list_failures(stub, f"{upstream.base_url}/elsewhere", backend):
        assert refused.code() == Code.NOT_FOUND
        assert rich_details(refused)[1] == ["backend_config.api.base_url"]
        assert f"no model list under its base URL: check base_url (the {api} API's own is {own})" in (
            refused.details() or ""
        )

"""OpenAI and Anthropic backends through the real SDKs, against loopback servers that speak their protocols: how a
request's sampling options, stop sequences and finish reasons map to each API, and the options one cannot honour."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.api_backends_support import Code
from tests.conftest import collect, failed_stream
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import OPENAI_KEY, load, prompt
from warpcore.server.adapters.hosted.openai import OpenAIAdapter
from warpcore.server.core.domain import ApiSettings, GenerationParams
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


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

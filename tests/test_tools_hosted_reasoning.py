"""Reasoning through the OpenAI and Anthropic backends: the real SDKs against loopback servers that speak each wire
protocol, and the request bodies those servers received: reasoning options, adaptive thinking, effort and verbosity,
reasoning content, and the thinking signature on the Anthropic wire."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.conftest import failed_stream, rich_details
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load, posts
from tests.tool_wire import chat, stream, user
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


@pytest.mark.parametrize(
    ("effort", "name"),
    [
        (tools_pb2.REASONING_EFFORT_HIGH, "high"),
        (tools_pb2.REASONING_EFFORT_XHIGH, "xhigh"),
        (tools_pb2.REASONING_EFFORT_MAX, "max"),
    ],
)
async def test_reasoning_options_reach_the_provider(
    stub: Stub, upstream: FakeUpstream, effort: tools_pb2.ReasoningEffort.ValueType, name: str
) -> None:
    await load(stub, upstream)
    options = pb.GenerationOptions(reasoning=tools_pb2.ReasoningOptions(effort=effort))
    await stream(stub.Generate(chat(user("Think."), tools=(), options=options)))
    body = posts(upstream)[-1]
    if isinstance(upstream, FakeOpenAI):
        assert body["reasoning_effort"] == name
    else:
        assert body["output_config"] == {"effort": name}


async def test_adaptive_thinking_reaches_anthropic_and_openai_takes_it_as_it_is(
    stub: Stub, upstream: FakeUpstream
) -> None:
    await load(stub, upstream)
    options = pb.GenerationOptions(reasoning=tools_pb2.ReasoningOptions(adaptive=True))
    await stream(stub.Generate(chat(user("Think."), tools=(), options=options)))
    body = posts(upstream)[-1]
    if isinstance(upstream, FakeOpenAI):
        assert "reasoning_effort" not in body  # its reasoning models decide how much to think
    else:
        assert body["thinking"] == {"type": "adaptive"}


async def test_effort_none_is_no_reasoning_on_each_provider(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    options = pb.GenerationOptions(reasoning=tools_pb2.ReasoningOptions(effort=tools_pb2.REASONING_EFFORT_NONE))
    await stream(stub.Generate(chat(user("Answer."), tools=(), options=options)))
    body = posts(upstream)[-1]
    if isinstance(upstream, FakeOpenAI):
        assert body["reasoning_effort"] == "none"
    else:  # Claude thinks only when thinking is on: none is sending nothing
        assert "thinking" not in body
        assert "output_config" not in body


@pytest.mark.parametrize(
    ("provider", "reasoning", "field"),
    [
        ("openai", tools_pb2.ReasoningOptions(budget_tokens=2048), "options.reasoning.budget_tokens"),
        ("anthropic", tools_pb2.ReasoningOptions(budget_tokens=512), "options.reasoning.budget_tokens"),
        (
            "anthropic",
            tools_pb2.ReasoningOptions(effort=tools_pb2.REASONING_EFFORT_MINIMAL),
            "options.reasoning.effort",
        ),
        *(
            (provider, tools_pb2.ReasoningOptions(effort=tools_pb2.REASONING_EFFORT_NONE, budget_tokens=2048), field)
            for provider, field in (("openai", "options.reasoning.effort"), ("anthropic", "options.reasoning.effort"))
        ),
        *(
            (provider, tools_pb2.ReasoningOptions(adaptive=True, budget_tokens=2048), "options.reasoning.adaptive")
            for provider in ("openai", "anthropic")
        ),
    ],
)
async def test_reasoning_options_a_provider_cannot_honour_are_refused(
    stub: Stub,
    openai_upstream: FakeOpenAI,
    anthropic_upstream: FakeAnthropic,
    provider: str,
    reasoning: tools_pb2.ReasoningOptions,
    field: str,
) -> None:
    upstream = openai_upstream if provider == "openai" else anthropic_upstream
    await load(stub, upstream)
    options = pb.GenerationOptions(max_tokens=4096, reasoning=reasoning)
    _, error = await failed_stream(stub.Generate(chat(user("Think."), tools=(), options=options)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == [field]
    assert posts(upstream) == []


async def test_verbosity_reaches_openai_and_anthropic_refuses_it(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    request = chat(user("Explain."), tools=(), options=pb.GenerationOptions(verbosity=pb.VERBOSITY_LOW))
    if isinstance(upstream, FakeOpenAI):
        await stream(stub.Generate(request))
        assert posts(upstream)[-1]["verbosity"] == "low"
        await stream(stub.Generate(chat(user("Explain."), tools=())))
        assert "verbosity" not in posts(upstream)[-1]  # unset: the model's default, not a value of ours
        return
    _, error = await failed_stream(stub.Generate(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == ["options.verbosity"]
    assert posts(upstream) == []


async def test_an_unknown_verbosity_is_refused_by_name(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    await load(stub, openai_upstream)
    options = pb.GenerationOptions(verbosity=7)  # type: ignore[arg-type]
    _, error = await failed_stream(stub.Generate(chat(user("Explain."), tools=(), options=options)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == ["options.verbosity"]
    assert "verbosity must be one of low, medium, high" in (error.details() or "")


async def test_openai_compatible_reasoning_content_streams_as_reasoning(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    await load(stub, openai_upstream)
    openai_upstream.script = Script(
        events=[{"reasoning_content": "Two "}, {"reasoning_content": "plus two."}, {"content": "4"}]
    )
    streamed = await stream(stub.Generate(chat(user("2+2?"), tools=())))
    assert [delta.text for delta in streamed.reasoning] == ["Two ", "plus two."]
    assert streamed.text == "4"


THINKING_EVENTS: list[dict[str, Any]] = [
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Zürich is "}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "in Switzerland."}},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM+sig=="},
    },
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "redacted_thinking", "data": "ENCRYPTED/x=="},
    },
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Checking."}},
    {"type": "content_block_stop", "index": 2},
    {
        "type": "content_block_start",
        "index": 3,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
    },
    {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {
        "type": "content_block_delta",
        "index": 3,
        "delta": {"type": "input_json_delta", "partial_json": '{"city": "Zürich"}'},
    },
    {"type": "content_block_stop", "index": 3},
]


async def test_thinking_signature_round_trip_on_the_anthropic_wire(
    stub: Stub, anthropic_upstream: FakeAnthropic
) -> None:
    await load(stub, anthropic_upstream)
    anthropic_upstream.script = Script(events=THINKING_EVENTS, finish_reason="tool_use")
    options = pb.GenerationOptions(max_tokens=4096, reasoning=tools_pb2.ReasoningOptions(budget_tokens=2048))
    question = user("Weather in Zürich?")
    first = await stream(stub.Generate(chat(question, options=options)))

    assert [(d.text, d.signature, d.redacted) for d in first.reasoning] == [
        ("Zürich is ", "", False),
        ("in Switzerland.", "", False),
        ("", "EqQBCgIYAhIM+sig==", False),
        ("", "ENCRYPTED/x==", True),
    ]
    assert first.text == "Checking."
    assert first.result is not None
    assert first.result.finish_reason == pb.FINISH_REASON_TOOL_CALLS

    # The client hands the blocks back as they came: text joined, signature and redacted data unchanged; and an
    # unsigned block (another backend's reasoning), which the API would refuse, is left out.
    blocks = [
        tools_pb2.ReasoningBlock(text="An OpenAI-compatible model's reasoning."),
        tools_pb2.ReasoningBlock(text="Zürich is in Switzerland.", signature="EqQBCgIYAhIM+sig=="),
        tools_pb2.ReasoningBlock(signature="ENCRYPTED/x==", redacted=True),
    ]
    assistant = pb.ChatMessage(
        role=pb.ROLE_ASSISTANT, content=first.text, tool_calls=first.result.tool_calls, reasoning=blocks
    )
    result = pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id="toolu_1", content="18 °C")
    anthropic_upstream.script = Script(chunks=["Sunny."])
    await stream(stub.Generate(chat(question, assistant, result, options=options)))

    first_body, body = posts(anthropic_upstream)
    assert first_body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Zürich is in Switzerland.", "signature": "EqQBCgIYAhIM+sig=="},
            {"type": "redacted_thinking", "data": "ENCRYPTED/x=="},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Zürich"}},
        ],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 °C"}],
    }


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"options": pb.GenerationOptions(temperature=0.5)}, "options.temperature"),
        ({"options": pb.GenerationOptions(top_k=5)}, "options.top_k"),
        ({"tool_choice": tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_REQUIRED)}, "tool_choice"),
    ],
)
async def test_anthropic_refuses_what_extended_thinking_cannot_take(
    stub: Stub, anthropic_upstream: FakeAnthropic, fields: dict[str, Any], field: str
) -> None:
    await load(stub, anthropic_upstream)
    request = chat(user("Think."), **fields)
    request.options.max_tokens = 4096
    request.options.reasoning.budget_tokens = 2048
    _, error = await failed_stream(stub.Generate(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == [field]
    assert posts(anthropic_upstream) == []

"""Tools, structured output and reasoning through the OpenAI and Anthropic backends: the real SDKs against loopback
servers that speak each wire protocol, and the request bodies those servers received."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.conftest import failed_stream, rich_details
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load
from tests.tool_wire import CLOCK, WEATHER, WEATHER_SCHEMA, Args, Call, Step, Text, chat, script_steps, stream, user
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


def posts(upstream: FakeUpstream) -> list[dict[str, Any]]:
    """The bodies of the generation requests the upstream received."""
    return [r.body for r in upstream.requests if r.method == "POST" and r.body is not None]


def use(upstream: FakeUpstream, steps: list[Any], **fields: Any) -> None:
    events, reason = script_steps(upstream, steps)
    upstream.script = Script(events=events, finish_reason=reason, **fields)


INTERLEAVED = [
    Call(0, "call_a", "get_weather"),
    Call(1, "call_b", "get_weather"),
    Args(0, '{"city": "Z'),
    Args(1, '{"ci'),
    Args(0, 'ürich"}'),
    Args(1, 'ty": "München \\u00'),  # ends inside a JSON escape, itself inside a string
    Args(1, 'e9", "days": 3}'),
]


async def test_parallel_calls_whose_deltas_interleave(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    use(upstream, INTERLEAVED, split_utf8=True)  # every event reaches the SDK cut inside a UTF-8 character

    streamed = await stream(stub.Generate(chat(user("Weather in Zürich and München?"))))

    assert [delta.index for delta in streamed.calls] == [0, 1, 0, 1, 0, 1, 1]
    firsts = {delta.index: (delta.id, delta.name) for delta in reversed(streamed.calls)}
    assert firsts == {0: ("call_a", "get_weather"), 1: ("call_b", "get_weather")}
    assert all(not delta.id and not delta.name for delta in streamed.calls[2:])
    assert streamed.arguments(0) == '{"city": "Zürich"}'
    assert streamed.arguments(1) == '{"city": "München \\u00e9", "days": 3}'
    result = streamed.result
    assert result is not None
    assert result.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    assert [(call.id, call.name) for call in result.tool_calls] == [
        ("call_a", "get_weather"),
        ("call_b", "get_weather"),
    ]
    assert [json.loads(call.arguments) for call in result.tool_calls] == [
        {"city": "Zürich"},
        {"city": "München é", "days": 3},
    ]
    assert streamed.text == ""


async def test_empty_arguments_call_followed_by_text(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    use(upstream, [Call(0, "call_t", "get_time"), Text("Let me look "), Text("at the clock.")])

    streamed = await stream(stub.Generate(chat(user("What time is it?"), tools=(WEATHER, CLOCK))))

    assert streamed.text == "Let me look at the clock."
    assert streamed.arguments(0) == "{}"  # the call's deltas join to its arguments, and can be sent back
    assert streamed.result is not None
    assert streamed.result.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    assert list(streamed.result.tool_calls) == [tools_pb2.ToolCall(id="call_t", name="get_time", arguments="{}")]


async def test_tool_loop_call_result_answer(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    use(upstream, [Call(0, "call_1", "get_weather"), Args(0, '{"city": "Zürich", "days": 2}')])
    question = user("Weather in Zürich?")
    first = await stream(stub.Generate(chat(question)))
    assert first.result is not None

    upstream.script = Script(chunks=["It is ", "18 °C."])
    assistant = pb.ChatMessage(role=pb.ROLE_ASSISTANT, tool_calls=first.result.tool_calls)
    result = pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id="call_1", content="18 °C, sunny")
    second = await stream(stub.Generate(chat(question, assistant, result)))

    assert second.text == "It is 18 °C."
    assert second.result is not None
    assert second.result.finish_reason == pb.FINISH_REASON_STOP
    first_body, body = posts(upstream)
    call = {"city": "Zürich", "days": 2}
    if isinstance(upstream, FakeOpenAI):
        (tool,) = first_body["tools"]
        schema = tool["function"]["parameters"]
        assert first_body["tool_choice"] == "auto"
        assert body["messages"][1:] == [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps(call, ensure_ascii=False)},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 °C, sunny"},
        ]
    else:
        (tool,) = first_body["tools"]
        schema = tool["input_schema"]
        assert first_body["tool_choice"] == {"type": "auto"}
        assert body["messages"][1:] == [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": call}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "18 °C, sunny"}]},
        ]
    # The schema reaches the provider exactly as the client wrote it: integers stay integers.
    assert schema == WEATHER_SCHEMA
    assert type(schema["properties"]["city"]["maxLength"]) is int
    assert type(schema["properties"]["days"]["minimum"]) is int


async def test_error_result_and_user_text_after_results(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    calls = [tools_pb2.ToolCall(id=f"c{n}", name="get_weather", arguments=f'{{"city": "C{n}"}}') for n in (1, 2)]
    messages = [
        user("Weather?"),
        pb.ChatMessage(role=pb.ROLE_ASSISTANT, content="Checking.", tool_calls=calls),
        pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id="c2", content="no such city", is_error=True),
        pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id="c1", content="12 °C"),
        user("And tomorrow?"),
    ]
    await stream(stub.Generate(chat(*messages)))

    body = posts(upstream)[-1]
    if isinstance(upstream, FakeOpenAI):
        assert [message["role"] for message in body["messages"]] == ["user", "assistant", "tool", "tool", "user"]
        assert body["messages"][1]["content"] == "Checking."
        assert body["messages"][2] == {"role": "tool", "tool_call_id": "c2", "content": "Error: no such city"}
    else:
        assert [message["role"] for message in body["messages"]] == ["user", "assistant", "user"]
        assert body["messages"][1]["content"][0] == {"type": "text", "text": "Checking."}
        assert body["messages"][2]["content"] == [
            {"type": "tool_result", "tool_use_id": "c2", "content": "no such city", "is_error": True},
            {"type": "tool_result", "tool_use_id": "c1", "content": "12 °C"},
            {"type": "text", "text": "And tomorrow?"},
        ]


CHOICES = {
    "none": (tools_pb2.TOOL_CHOICE_MODE_NONE, "", "none", {"type": "none"}),
    "required": (
        tools_pb2.TOOL_CHOICE_MODE_REQUIRED,
        "",
        "required",
        {"type": "any", "disable_parallel_tool_use": True},
    ),
    "named": (
        tools_pb2.TOOL_CHOICE_MODE_NAMED,
        "get_time",
        {"type": "function", "function": {"name": "get_time"}},
        {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True},
    ),
}


@pytest.mark.parametrize("choice", list(CHOICES))
async def test_tool_choice_and_parallel_calls_reach_the_provider(
    stub: Stub, upstream: FakeUpstream, choice: str
) -> None:
    mode, name, openai_choice, anthropic_choice = CHOICES[choice]
    await load(stub, upstream)
    request = chat(
        user("Time?"),
        tools=(WEATHER, CLOCK),
        tool_choice=tools_pb2.ToolChoice(mode=mode, name=name),
        parallel_tool_calls=False,
    )
    await stream(stub.Generate(request))

    body = posts(upstream)[-1]
    if isinstance(upstream, FakeOpenAI):
        assert body["tool_choice"] == openai_choice
        assert body["parallel_tool_calls"] is False
    else:
        assert body["tool_choice"] == anthropic_choice
        assert "parallel_tool_calls" not in body


async def test_only_the_allowed_tools_reach_the_provider(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    choice = tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_REQUIRED, allowed_tools=[CLOCK.name])
    await stream(stub.Generate(chat(user("Time?"), tools=(WEATHER, CLOCK), tool_choice=choice)))

    (tool,) = posts(upstream)[-1]["tools"]
    assert tool.get("function", tool)["name"] == CLOCK.name
    assert posts(upstream)[-1]["tool_choice"] in ("required", {"type": "any"})


async def test_strict_tool_use_reaches_the_provider_only_for_the_tools_that_ask(
    stub: Stub, upstream: FakeUpstream
) -> None:
    await load(stub, upstream)
    strict_weather = tools_pb2.Tool()
    strict_weather.CopyFrom(WEATHER)
    strict_weather.strict = True
    await stream(stub.Generate(chat(user("Weather?"), tools=(strict_weather, CLOCK))))

    weather, clock = posts(upstream)[-1]["tools"]
    if isinstance(upstream, FakeOpenAI):
        weather, clock = weather["function"], clock["function"]
    assert weather["strict"] is True
    assert "strict" not in clock  # a compatible server that does not know the field is not sent it


async def test_a_forced_call_that_ends_as_stop_finishes_with_tool_calls(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    """OpenAI reports finish_reason "stop" after a call forced by a named tool choice."""
    await load(stub, openai_upstream)
    events, _ = script_steps(openai_upstream, [Call(0, "call_1", "get_time")])
    openai_upstream.script = Script(events=events, finish_reason="stop")
    streamed = await stream(stub.Generate(chat(user("Time?"), tools=(CLOCK,))))
    assert streamed.result is not None
    assert streamed.result.finish_reason == pb.FINISH_REASON_TOOL_CALLS


async def test_a_call_cut_short_by_max_tokens_is_left_out(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    steps: list[Step] = [Call(0, "call_1", "get_weather"), Args(0, '{"city": "Zü')]
    events, _ = script_steps(upstream, steps)
    upstream.script = Script(
        events=events, finish_reason="length" if isinstance(upstream, FakeOpenAI) else "max_tokens"
    )
    streamed = await stream(stub.Generate(chat(user("Weather?"))))
    assert streamed.result is not None
    assert streamed.result.finish_reason == pb.FINISH_REASON_LENGTH
    assert list(streamed.result.tool_calls) == []
    assert streamed.arguments(0) == '{"city": "Zü'


async def test_a_call_cut_by_max_tokens_but_reported_as_finished_is_left_out(
    stub: Stub, upstream: FakeUpstream
) -> None:
    """A compatible server that calls the end of a call cut by the limit a natural one (LiteLLM's Anthropic route,
    tester T2): its whole max_tokens spent, the generation ended for its length, not as the upstream's failure."""
    await load(stub, upstream)
    use(upstream, [Call(0, "call_1", "get_weather"), Args(0, "{")], completion_tokens=25)
    options = pb.GenerationOptions(max_tokens=25)
    streamed = await stream(stub.Generate(chat(user("Weather?"), options=options)))
    assert streamed.result is not None
    assert streamed.result.finish_reason == pb.FINISH_REASON_LENGTH
    assert list(streamed.result.tool_calls) == []
    # One token short of the limit, the same broken call is still the upstream's failure.
    use(upstream, [Call(0, "call_1", "get_weather"), Args(0, "{")], completion_tokens=24)
    _, error = await failed_stream(stub.Generate(chat(user("Weather?"), options=options)))
    assert rich_details(error)[0].reason == "UPSTREAM_MALFORMED_TOOL_CALL"


@pytest.mark.parametrize(
    "arguments", ['{"city": ', '{"city": NaN}', '{"city": "\\ud800"}', '{"city":' + "[" * 100 + "]" * 100 + "}"]
)
async def test_a_finished_call_whose_arguments_do_not_parse_is_the_upstreams_failure(
    stub: Stub, upstream: FakeUpstream, arguments: str
) -> None:
    """Arguments are read as a request's are: a tester's finding passed on NaN and half a surrogate pair, which the
    caller's next turn, sending the call back, was refused for."""
    await load(stub, upstream)
    use(upstream, [Call(0, "call_1", "get_weather"), Args(0, arguments)])
    frames, error = await failed_stream(stub.Generate(chat(user("Weather?"))))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(error)[0].reason == "UPSTREAM_MALFORMED_TOOL_CALL"
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_ERROR


def _schema_format(**fields: Any) -> pb.GenerationOptions:
    return pb.GenerationOptions(response_format=tools_pb2.ResponseFormat(**fields))


ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer", "maximum": 5}},
    "required": ["n"],
    "additionalProperties": False,
}


async def test_json_schema_output_reaches_the_provider(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    upstream.script = Script(chunks=['{"n": ', "4}"])
    options = _schema_format(
        type=tools_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        name="answer",
        schema_json=json.dumps(ANSWER_SCHEMA),
        strict=True,
    )
    streamed = await stream(stub.Generate(chat(user("A number?"), tools=(), options=options)))

    assert json.loads(streamed.text) == {"n": 4}
    body = posts(upstream)[-1]
    if isinstance(upstream, FakeOpenAI):
        sent = body["response_format"]
        assert sent == {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True},
        }
        schema = sent["json_schema"]["schema"]
    else:
        assert body["output_config"] == {"format": {"type": "json_schema", "schema": ANSWER_SCHEMA}}
        schema = body["output_config"]["format"]["schema"]
    assert type(schema["properties"]["n"]["maximum"]) is int
    assert "tools" not in body


async def test_json_object_output(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    options = _schema_format(type=tools_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
    call = stub.Generate(chat(user("JSON please"), tools=(), options=options))
    if isinstance(upstream, FakeOpenAI):
        await stream(call)
        assert posts(upstream)[-1]["response_format"] == {"type": "json_object"}
    else:  # the Messages API has JSON Schema output only
        _, error = await failed_stream(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert rich_details(error)[1] == ["options.response_format"]
        assert posts(upstream) == []


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


async def test_usage_details(stub: Stub, upstream: FakeUpstream) -> None:
    await load(stub, upstream)
    details: dict[str, Any]
    if isinstance(upstream, FakeOpenAI):
        details = {"prompt_tokens_details": {"cached_tokens": 7}, "completion_tokens_details": {"reasoning_tokens": 2}}
        expected = pb.Usage(prompt_tokens=11, completion_tokens=3, cached_prompt_tokens=7, reasoning_tokens=2)
    else:
        details = {
            "cache_read_input_tokens": 5,
            "cache_creation_input_tokens": 4,
            "output_tokens_details": {"thinking_tokens": 2},
        }
        expected = pb.Usage(
            prompt_tokens=11 + 5 + 4,
            completion_tokens=3,
            cached_prompt_tokens=5,
            cache_creation_tokens=4,
            reasoning_tokens=2,
        )
    upstream.script = Script(usage_details=details)
    streamed = await stream(stub.Generate(chat(user("hi"), tools=())))
    assert streamed.result is not None
    assert streamed.result.usage == expected


async def test_openai_switches_to_max_completion_tokens_on_the_first_refusal(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    await load(stub, openai_upstream, model="gpt-4o")
    openai_upstream.script = Script(refuse_max_tokens=True)
    for _ in range(2):
        streamed = await stream(stub.Generate(chat(user("hi"), tools=(), options=pb.GenerationOptions(max_tokens=99))))
        assert streamed.text == "Hello, world"
    sent = [(body.get("max_tokens"), body.get("max_completion_tokens")) for body in posts(openai_upstream)]
    assert sent == [(99, None), (None, 99), (None, 99)]  # refused once, then the model's own field


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


async def test_openai_calls_in_one_chunk_and_calls_numbered_by_id_only(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    """Two calls may start in one chunk; some compatible servers leave out `index` and number calls by their id."""
    await load(stub, openai_upstream)
    both: list[dict[str, Any]] = [
        {"index": 0, "id": "a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": '}},
        {"index": 1, "id": "b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
    ]
    no_index: list[dict[str, Any]] = [
        {"id": "c", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        {"id": "d", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": '}},
    ]
    events: list[dict[str, Any]] = [
        {"tool_calls": both},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]},
    ]
    openai_upstream.script = Script(events=events, finish_reason="tool_calls")
    streamed = await stream(stub.Generate(chat(user("?"), tools=(WEATHER, CLOCK))))
    assert streamed.result is not None
    assert [(c.id, c.name, c.arguments) for c in streamed.result.tool_calls] == [
        ("a", "get_weather", '{"city": "Oslo"}'),
        ("b", "get_time", "{}"),
    ]

    events = [
        {"tool_calls": no_index[:1]},
        {"tool_calls": no_index[1:]},
        {"tool_calls": [{"function": {"arguments": '"Rome"}'}}]},
    ]
    openai_upstream.script = Script(events=events, finish_reason="tool_calls")
    streamed = await stream(stub.Generate(chat(user("?"), tools=(WEATHER, CLOCK))))
    assert [delta.index for delta in streamed.calls] == [0, 1, 1]
    assert streamed.result is not None
    assert [(c.id, c.arguments) for c in streamed.result.tool_calls] == [("c", "{}"), ("d", '{"city": "Rome"}')]


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

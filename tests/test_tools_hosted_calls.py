"""Tool calls through the OpenAI and Anthropic backends: the real SDKs against loopback servers that speak each wire
protocol, and the request bodies those servers received: parallel and interleaved calls, the tool loop, calls cut by
max_tokens or whose arguments do not parse."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.conftest import failed_stream, rich_details
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load, posts, use
from tests.tool_wire import CLOCK, WEATHER, WEATHER_SCHEMA, Args, Call, Step, Text, chat, script_steps, stream, user
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


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


async def test_a_call_of_a_tool_the_request_did_not_declare_is_the_upstreams_failure(
    stub: Stub, upstream: FakeUpstream
) -> None:
    """A tester's upstream called `rm_rf` beside the declared get_weather: passed on as a complete call, a client
    that dispatches calls by name was handed one it never offered."""
    await load(stub, upstream)
    use(upstream, [Call(0, "call_1", "get_weather"), Args(0, '{"city": "Paris"}'), Call(1, "call_2", "rm_rf")])
    frames, error = await failed_stream(stub.Generate(chat(user("Weather?"))))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(error)[0].reason == "UPSTREAM_MALFORMED_TOOL_CALL"
    assert "tool call 1" in str(error.details())
    assert "'rm_rf', which the request did not declare" in str(error.details())
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_ERROR


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

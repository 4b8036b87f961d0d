"""On a llama.cpp model, stop sequences are looked for in the answer's text alone, never in what the grammar writes: a
tool call (its `<tool_call>` marker included) and a response format's JSON value come whole, and end as they would
without the stop sequences; text before a call is cut by them as any text is."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tests.http_door import async_anthropic_client, async_openai_client
from tests.test_repeated_calls import gemma_doors  # noqa: F401 - the fixture: both doors, Gemma loaded as "gemma"
from tests.test_same_answer import gemma_path  # noqa: F401 - the fixture gemma_doors uses
from tests.tool_wire import stream, user
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from warpcore.server.doors import Doors
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

# An outside tester's request: Gemma calls get {"city": "Paris"}, whose JSON holds "city", a stop sequence.
PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris"]}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOL = {"type": "function", "function": {"name": "get", "parameters": PARAMETERS}}
GRPC_TOOL = tools_pb2.Tool(name="get", parameters_json=json.dumps(PARAMETERS))
CALL = [("get", {"city": "Paris"})]
IN_THE_CALL = ["city", '"', "\n", "<tool_call>"]
"""Each occurs in the call Gemma writes: `<tool_call>`, `{"name": "get", "arguments": {"city": "Paris"}}` and
`</tool_call>` lines."""
BUDGET = 60


def ask(question: str, mode: tools_pb2.ToolChoiceMode.ValueType, *stops: str) -> pb.GenerateRequest:
    """A Generate request of `question` to Gemma, with the tool, greedy."""
    options = pb.GenerationOptions(max_tokens=BUDGET, temperature=0, stop_sequences=stops)
    choice = tools_pb2.ToolChoice(mode=mode)
    return pb.GenerateRequest(
        model_id="gemma", messages=[user(question)], tools=[GRPC_TOOL], tool_choice=choice, options=options
    )


async def chat_answer(openai: AsyncOpenAI, **request: Any) -> tuple[str | None, list[tuple[str, Any]], str, int]:
    """The answer's text, calls (arguments parsed), finish reason and completion tokens, whole and streamed alike."""
    whole = await openai.chat.completions.create(**request)
    (choice,) = whole.choices
    calls = [(call.function.name, json.loads(call.function.arguments)) for call in choice.message.tool_calls or []]
    assert whole.usage is not None
    answer = (choice.message.content, calls, choice.finish_reason, whole.usage.completion_tokens)
    text, arguments, names, finishes = "", "", "", []
    async for chunk in await openai.chat.completions.create(stream=True, **request):
        for part in chunk.choices:
            text += part.delta.content or ""
            finishes += [part.finish_reason] if part.finish_reason else []
            for call in part.delta.tool_calls or []:
                assert call.index == 0, "one call"
                names += call.function.name or "" if call.function else ""
                arguments += call.function.arguments or "" if call.function else ""
    streamed_calls = [(names, json.loads(arguments))] if names else []
    assert (text or None, streamed_calls, finishes) == (choice.message.content, calls, [choice.finish_reason])
    return answer


async def test_a_stop_sequence_inside_a_forced_call_leaves_the_call_whole(gemma_doors: tuple[Doors, Stub]) -> None:  # noqa: F811 - the imported fixture
    """An outside tester's finding: stop ["city"] gave the call `{"` and finish `stop` (gRPC: STOP_SEQUENCE with no
    call, its deltas sent; Messages: stop_sequence with an empty input)."""
    doors, stub = gemma_doors
    chat: dict[str, Any] = {"model": "gemma", "messages": [{"role": "user", "content": "Weather in Tokyo?"}]}
    chat |= {"tools": [TOOL], "tool_choice": "required", "max_tokens": BUDGET, "temperature": 0}
    async with async_openai_client(doors) as openai, async_anthropic_client(doors) as anthropic:
        plain = await chat_answer(openai, **chat)
        assert plain[1:3] == (CALL, "tool_calls")
        for stop in IN_THE_CALL:
            assert await chat_answer(openai, stop=[stop], **chat) == plain, stop
        assert await chat_answer(openai, stop=IN_THE_CALL, **chat) == plain
        message = await anthropic.messages.create(
            model="gemma",
            max_tokens=BUDGET,
            messages=[{"role": "user", "content": "Weather in Tokyo?"}],
            tools=[{"name": "get", "input_schema": PARAMETERS}],
            tool_choice={"type": "any"},
            stop_sequences=["city", "<tool_call>"],
            extra_body={"temperature": 0},
        )
        assert (message.stop_reason, message.stop_sequence) == ("tool_use", None)
        assert [(block.type, getattr(block, "input", None)) for block in message.content] == [("tool_use", CALL[0][1])]
    without = await stream(stub.Generate(ask("Weather in Tokyo?", tools_pb2.TOOL_CHOICE_MODE_REQUIRED)))
    streamed = await stream(stub.Generate(ask("Weather in Tokyo?", tools_pb2.TOOL_CHOICE_MODE_REQUIRED, *IN_THE_CALL)))
    for answer in (without, streamed):
        assert answer.result is not None
        assert (answer.result.finish_reason, answer.result.stop_sequence) == (pb.FINISH_REASON_TOOL_CALLS, "")
        assert [(call.name, json.loads(call.arguments)) for call in answer.result.tool_calls] == CALL
        assert json.loads(answer.arguments(0)) == CALL[0][1]
    assert streamed.result is not None
    assert without.result is not None
    assert streamed.result.usage.completion_tokens == without.result.usage.completion_tokens


async def test_under_auto_a_stop_sequence_cuts_the_text_before_a_call_not_the_call(
    gemma_doors: tuple[Doors, Stub],  # noqa: F811 - the imported fixture
) -> None:
    """Under auto, Gemma writes "To call one of these tools, write " and then its call: a stop sequence in that text
    ends the answer there, with no call; one that occurs only in the call (or on the line its marker ends) leaves
    the text and the call as they were."""
    doors, stub = gemma_doors
    chat: dict[str, Any] = {"model": "gemma", "messages": [{"role": "user", "content": "Say hello."}]}
    chat |= {"tools": [TOOL], "max_tokens": BUDGET, "temperature": 0}
    async with async_openai_client(doors) as openai:
        plain = await chat_answer(openai, **chat)
        assert plain[:3] == ("To call one of these tools, write ", CALL, "tool_calls")
        assert await chat_answer(openai, stop=IN_THE_CALL, **chat) == plain
        text, calls, finish, _ = await chat_answer(openai, stop=["city", "tools"], **chat)
        assert (text, calls, finish) == ("To call one of these ", [], "stop")
    whole = await stream(stub.Generate(ask("Say hello.", tools_pb2.TOOL_CHOICE_MODE_AUTO, *IN_THE_CALL)))
    assert whole.result is not None
    assert (whole.text, whole.result.finish_reason) == (plain[0], pb.FINISH_REASON_TOOL_CALLS)
    assert [(call.name, json.loads(call.arguments)) for call in whole.result.tool_calls] == CALL
    cut = await stream(stub.Generate(ask("Say hello.", tools_pb2.TOOL_CHOICE_MODE_AUTO, *IN_THE_CALL, "tools")))
    assert cut.result is not None
    assert (cut.text, cut.calls, list(cut.result.tool_calls)) == ("To call one of these ", [], [])
    assert (cut.result.finish_reason, cut.result.stop_sequence) == (pb.FINISH_REASON_STOP_SEQUENCE, "tools")


CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


async def test_a_stop_sequence_inside_a_response_formats_json_leaves_it_whole(gemma_doors: tuple[Doors, Stub]) -> None:  # noqa: F811 - the imported fixture
    """A JSON value the grammar writes is the answer whole, as a call is: a stop sequence in it cut it invalid."""
    doors, stub = gemma_doors
    chat: dict[str, Any] = {"model": "gemma", "messages": [{"role": "user", "content": "Give me a city."}]}
    chat |= {"max_tokens": BUDGET, "temperature": 0}
    chat["response_format"] = {"type": "json_schema", "json_schema": {"name": "place", "schema": CITY_SCHEMA}}
    async with async_openai_client(doors) as openai:
        plain = await chat_answer(openai, **chat)
        assert plain[2] == "stop"
        assert set(json.loads(plain[0] or "")) == {"city"}
        assert await chat_answer(openai, stop=IN_THE_CALL[:3], **chat) == plain
    response_format = tools_pb2.ResponseFormat(
        type=tools_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name="place", schema_json=json.dumps(CITY_SCHEMA)
    )
    grpc_request = pb.GenerateRequest(
        model_id="gemma",
        messages=[user("Give me a city.")],
        options=pb.GenerationOptions(
            max_tokens=BUDGET, temperature=0, stop_sequences=IN_THE_CALL[:3], response_format=response_format
        ),
    )
    streamed = await stream(stub.Generate(grpc_request))
    assert streamed.result is not None
    assert (streamed.text, streamed.result.finish_reason) == (plain[0], pb.FINISH_REASON_STOP)

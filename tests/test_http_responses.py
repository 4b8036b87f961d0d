"""OpenAI's Responses API on the HTTP door, through the real openai SDK (sync and async, `create` and the `stream`
helper's accumulator): the chat route's answers on the tiny llama.cpp model, tool loops on llama.cpp and through a
fake Anthropic upstream, structured output, the max_output_tokens cut, and refusals named by this dialect's paths."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from openai.types.responses import Response, ResponseFunctionToolCall

from tests.conftest import TINY_MODEL, serving_doors
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import posts, use
from tests.http_door import async_openai_client, load_hosted, openai_client
from tests.test_local_tools import HERMES_TEMPLATE, WEATHER
from tests.test_tools_hosted_reasoning import THINKING_EVENTS
from tests.tiny_model import write_tiny_model
from tests.tool_wire import Args, Call
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors

FUNCTION = {"type": "function", "name": WEATHER.name, "parameters": WEATHER.parameters, "strict": False}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "boolean"}, "mood": {"enum": ["calm", "busy"]}},
    "required": ["answer", "mood"],
    "additionalProperties": False,
}
"""An answer the grammar ends by itself: the response completes, without a max_output_tokens cut."""
JSON_FORMAT: Any = {"format": {"type": "json_schema", "name": "reply", "schema": ANSWER_SCHEMA, "strict": True}}


@pytest.fixture
async def tiny_door(doors: Doors) -> Doors:
    await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    return doors


@pytest.fixture
async def hermes_door(tmp_path: Path) -> AsyncIterator[Doors]:
    """A tiny model whose chat template renders tools and calls, whose grammar forces a call when one is required."""
    write_tiny_model(tmp_path / "hermes.gguf", chat_template=HERMES_TEMPLATE)
    async with serving_doors({"MODELS_PATH": str(tmp_path)}) as doors:
        await doors.engine.load(LoadSpec("hermes", BackendKind.LLAMA_CPP, "hermes.gguf", None, None))
        yield doors


SDK_ADDITIONS = ("parsed", "parsed_arguments")
"""What the SDK's stream helper adds to the output items it returns."""


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: plain(member) for key, member in value.items() if key not in SDK_ADDITIONS}
    return [plain(member) for member in value] if isinstance(value, list) else value


def without_ids(response: Response) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """A response's output and usage, less the item ids, which name one response only."""
    output = [plain(item.model_dump(exclude={"id"})) for item in response.output]
    return output, None if response.usage is None else response.usage.model_dump()


async def test_text_equals_the_chat_answer_whole_and_streamed_cut_by_max_output_tokens(tiny_door: Doors) -> None:
    async with async_openai_client(tiny_door) as client:
        chat = await client.chat.completions.create(
            model="tiny",
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
            max_tokens=10,
            temperature=0,
        )
        options: dict[str, Any] = {
            "model": "tiny",
            "instructions": "be brief",
            "input": "hello",
            "max_output_tokens": 10,
            "temperature": 0,
        }
        whole = await client.responses.create(**options)
        events = [event async for event in await client.responses.create(stream=True, **options)]
    assert chat.choices[0].message.content
    assert whole.output_text == chat.choices[0].message.content
    assert whole.status == "incomplete"
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    assert whole.usage is not None
    assert (whole.usage.output_tokens, whole.usage.input_tokens) == (10, chat.usage and chat.usage.prompt_tokens)
    assert whole.id.startswith("resp_")
    assert (whole.max_output_tokens, whole.instructions, whole.store) == (10, "be brief", False)
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert [events[0].type, events[1].type, events[-1].type] == [
        "response.created",
        "response.in_progress",
        "response.incomplete",
    ]
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas == whole.output_text
    last = events[-1]
    assert last.type == "response.incomplete"
    assert without_ids(last.response) == without_ids(whole)
    [done] = [event.item for event in events if event.type == "response.output_item.done"]
    assert done == last.response.output[0]


async def test_logprobs_are_the_chat_routes_whole_and_streamed(tiny_door: Doors) -> None:
    asked: dict[str, Any] = {"include": ["message.output_text.logprobs"], "top_logprobs": 2}
    options: dict[str, Any] = {"model": "tiny", "input": "hello", "max_output_tokens": 12, "temperature": 0}
    async with async_openai_client(tiny_door) as client:
        chat = await client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=12,
            temperature=0,
            logprobs=True,
            top_logprobs=2,
        )
        whole = await client.responses.create(**options, **asked)
        plain_text = await client.responses.create(**options)
        async with client.responses.stream(**options, **asked) as stream:
            events = [event async for event in stream]
    assert events[-1].type == "response.incomplete"  # cut by max_output_tokens, as the whole answer is
    streamed = events[-1].response
    assert chat.choices[0].logprobs is not None
    assert chat.choices[0].logprobs.content is not None
    expected = [token.model_dump() for token in chat.choices[0].logprobs.content]
    assert len(expected) == 12
    assert all(len(token["top_logprobs"]) == 2 for token in expected)
    [message] = whole.output
    assert message.type == "message"
    assert message.content[0].type == "output_text"
    assert [token.model_dump() for token in message.content[0].logprobs or []] == expected
    assert without_ids(streamed) == without_ids(whole)
    in_deltas = [token for event in events if event.type == "response.output_text.delta" for token in event.logprobs]
    assert [token.model_dump() for token in in_deltas] == expected
    [plain_message] = plain_text.output
    assert plain_message.type == "message"
    assert plain_message.content[0].logprobs == []
    # The request's top_logprobs repeated, as its other settings are.
    created = events[0]
    assert created.type == "response.created"
    assert (whole.top_logprobs, created.response.top_logprobs, streamed.top_logprobs) == (2, 2, 2)
    assert plain_text.top_logprobs is None


async def test_json_schema_whole_and_streamed_sync_and_async_give_one_valid_answer(tiny_door: Doors) -> None:
    options: dict[str, Any] = {"model": "tiny", "input": "How are you?", "max_output_tokens": 60, "temperature": 0}

    def sync_calls() -> tuple[Response, Response]:
        with openai_client(tiny_door) as client:
            whole = client.responses.create(text=JSON_FORMAT, **options)
            with client.responses.stream(text=JSON_FORMAT, **options) as stream:
                streamed = stream.get_final_response()
        return whole, streamed

    whole, streamed = await asyncio.to_thread(sync_calls)
    async with async_openai_client(tiny_door) as client:
        async_whole = await client.responses.create(text=JSON_FORMAT, **options)
        async with client.responses.stream(text=JSON_FORMAT, **options) as stream:
            async_streamed = await stream.get_final_response()
        chat = await client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "How are you?"}],
            max_tokens=60,
            temperature=0,
            response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": ANSWER_SCHEMA}},
        )
    assert whole.status == "completed"
    jsonschema.validate(json.loads(whole.output_text), ANSWER_SCHEMA)
    assert whole.output_text == chat.choices[0].message.content
    assert without_ids(whole) == without_ids(streamed) == without_ids(async_whole) == without_ids(async_streamed)
    assert whole.text is not None
    assert whole.text.format is not None
    assert whole.text.format.type == "json_schema"


async def function_loop(doors: Doors, model: str, choice: Any) -> tuple[ResponseFunctionToolCall, str, Response]:
    """Ask, stream the call (checking its argument deltas add up), send its output back, and return the call, the
    deltas and the answer."""
    question: Any = {"role": "user", "content": "Weather in Zürich?"}
    options: dict[str, Any] = {"model": model, "tools": [FUNCTION], "max_output_tokens": 200, "temperature": 0}
    async with async_openai_client(doors) as client:
        async with client.responses.stream(input=[question], tool_choice=choice, **options) as stream:
            deltas = "".join(
                [event.delta async for event in stream if event.type == "response.function_call_arguments.delta"]
            )
            first = await stream.get_final_response()
        [call] = [item for item in first.output if isinstance(item, ResponseFunctionToolCall)]
        handed_back = [item.model_dump(exclude_none=True) for item in first.output]
        result: Any = {"type": "function_call_output", "call_id": call.call_id, "output": "18 °C, sunny"}
        second = await client.responses.create(  # type: ignore[call-overload]
            input=[question, *handed_back, result], tool_choice="none", **options
        )
    assert first.status == "completed"
    assert (call.status, call.name) == ("completed", WEATHER.name)
    assert not any(isinstance(item, ResponseFunctionToolCall) for item in second.output)
    return call, deltas, second


@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": WEATHER.name}])
async def test_a_forced_function_loop_on_llama_cpp(hermes_door: Doors, choice: Any) -> None:
    call, deltas, answer = await function_loop(hermes_door, "hermes", choice)
    jsonschema.validate(json.loads(call.arguments), WEATHER.parameters)
    assert json.loads(deltas) == json.loads(call.arguments)
    assert call.call_id.startswith("call_")
    assert answer.output_text


async def test_a_function_loop_through_an_anthropic_upstream(doors: Doors) -> None:
    async with FakeAnthropic(models=["claude-test"]) as upstream:
        await load_hosted(doors, upstream)
        arguments = {"city": "Zürich", "days": 2}
        text = json.dumps(arguments, ensure_ascii=False)
        use(upstream, [Call(0, "toolu_1", WEATHER.name), Args(0, text[:9]), Args(0, text[9:])])
        calling, answering = upstream.script, Script(chunks=["It is ", "18 °C."])
        upstream.respond = lambda body: answering if len(body["messages"]) > 1 else calling

        call, deltas, answer = await function_loop(doors, "m", "auto")

        first, second = posts(upstream)
    assert (call.call_id, json.loads(call.arguments), json.loads(deltas)) == ("toolu_1", arguments, arguments)
    assert answer.output_text == "It is 18 °C."
    assert [tool["name"] for tool in first["tools"]] == [WEATHER.name]
    question, assistant, user = second["messages"]
    assert question == {"role": "user", "content": "Weather in Zürich?"}
    [tool_use] = [block for block in assistant["content"] if block["type"] == "tool_use"]
    assert (tool_use["id"], tool_use["name"], tool_use["input"]) == ("toolu_1", WEATHER.name, arguments)
    assert user["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 °C, sunny"}]
    assert second["tool_choice"]["type"] == "none"


async def test_a_failure_mid_stream_ends_the_response_failed(doors: Doors) -> None:
    async with FakeOpenAI() as upstream:
        await load_hosted(doors, upstream)
        upstream.script = Script(chunks=["a", "b", "c", "d"], cut_after=2)
        async with async_openai_client(doors) as client:
            events = [event async for event in await client.responses.create(model="m", input="hi", stream=True)]
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas == "ab"
    error, failed = events[-2:]
    assert error.type == "error"
    assert error.message
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error is not None
    assert failed.response.error.code == "server_error"
    [item] = failed.response.output  # what was sent stays, incomplete
    assert item.type == "message"
    assert item.status == "incomplete"
    assert [part.text for part in item.content if part.type == "output_text"] == ["ab"]
    completed = await client_create(doors, model="m", input="hi")
    assert completed.status == "completed"
    assert completed.completed_at is not None
    assert completed.completed_at >= completed.created_at


async def client_create(doors: Doors, **options: Any) -> Response:
    """A whole response of model "m", loaded again on a fresh upstream."""
    async with FakeOpenAI() as upstream:
        await doors.engine.unload("m")
        await load_hosted(doors, upstream)
        async with async_openai_client(doors) as client:
            response: Response = await client.responses.create(**options)
    return response


async def refusal(doors: Doors, **options: Any) -> openai.APIStatusError:
    async with async_openai_client(doors) as client:
        with pytest.raises(openai.APIStatusError) as failure:
            await client.responses.create(**{"model": "tiny", "input": "hi", **options})
    return failure.value


async def test_unknown_model_is_404(doors: Doors) -> None:
    failure = await refusal(doors, model="nope")
    assert (failure.status_code, failure.code, failure.param) == (404, "model_not_found", "model")


PNG_NOT_BASE64 = "data:image/png;base64,@@@"
CALL = {"type": "function_call", "call_id": "zzz", "name": WEATHER.name, "arguments": "{}"}
RESULT = {"type": "function_call_output", "call_id": "zzz", "output": "x"}
REASONING = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "thought"}]}


@pytest.mark.parametrize(
    ("options", "param", "code", "says"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id", "unsupported_field", "whole conversation"),
        ({"conversation": "conv_1"}, "conversation", "unsupported_field", "whole conversation"),
        ({"extra_body": {"temprature": 0}}, "temprature", "unknown_field", "not a field"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "unsupported_field", "'web_search'"),
        ({"truncation": "auto"}, "truncation", "unsupported_field", 'truncation="auto"'),
        ({"input": [{"role": "user", "content": "hi"}, {"type": "web_search_call"}]}, "input[1].type", None, ""),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type", None, "send the item"),
        ({"input": [{"role": "tool", "content": "hi"}]}, "input[0].role", "invalid_field", "unknown role"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": PNG_NOT_BASE64}]}]},
            "input[0].content[0].image_url",
            "invalid_field",
            "base64",
        ),
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": []}}}, "text.format.schema", None, ""),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice.type", "unsupported_field", "file_search"),
        ({"max_output_tokens": 0}, "max_output_tokens", None, "max_output_tokens must be between"),
        ({"input": 5}, "input", "invalid_field", "input: must be a string or an array of items"),
        ({"top_logprobs": 21}, "top_logprobs", None, "top_logprobs must be between 0 and 20"),
        ({"include": ["bogus"]}, "include[0]", "invalid_field", "unknown value 'bogus'"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt", "unsupported_field", "a stored prompt"),
        ({"input": [{"role": "user", "content": "q"}, RESULT]}, "input[1].call_id", None, "'zzz'"),
        ({"input": [RESULT, CALL]}, "input[0].call_id", None, "no call with id 'zzz'"),
        (
            {"input": [{"role": "user", "content": "q"}, CALL], "tools": [FUNCTION]},
            "input[1]",
            None,
            "call 'zzz' of input[1] has no tool result",
        ),
        ({"input": [REASONING]}, "input[0]", None, "no assistant message or function_call after it"),
        ({"input": [REASONING, {"role": "user", "content": "q"}]}, "input[0]", None, "hand reasoning back"),
        (
            {"input": [{"role": "user", "content": "q"}, CALL, REASONING, {**RESULT, "call_id": "zzz"}]},
            "input[2]",
            None,
            "no assistant message or function_call after it",
        ),
        (
            {"input": [{"role": "user", "content": "q"}, {**CALL, "name": "nope"}], "tools": [FUNCTION]},
            "input[1].name",
            None,
            "no tool named",
        ),
    ],
)
async def test_refusals_name_the_field_by_its_path_here(
    tiny_door: Doors, options: dict[str, Any], param: str, code: str | None, says: str
) -> None:
    failure = await refusal(tiny_door, **options)
    assert (failure.status_code, failure.param) == (400, param)
    assert code is None or failure.code == code
    assert says in failure.message


async def test_logprobs_an_anthropic_model_cannot_give_are_refused_naming_the_member_that_asked(doors: Doors) -> None:
    """The tester's finding: asked by top_logprobs alone, the refusal named include, which the request did not hold."""
    async with FakeAnthropic(models=["claude-test"]) as upstream:
        await load_hosted(doors, upstream)
        async with async_openai_client(doors) as client:
            refusals = []
            for asked in ({"top_logprobs": 2}, {"include": ["message.output_text.logprobs"]}):
                with pytest.raises(openai.BadRequestError) as refused:
                    await client.responses.create(model="m", input="hi", **asked)
                refusals.append(refused.value)
    top_logprobs, include = refusals
    assert (top_logprobs.param, include.param) == ("top_logprobs", "include")
    assert "leave top_logprobs unset" in top_logprobs.message
    assert not posts(upstream)  # refused before anything went upstream


async def test_reasoning_items_carry_anthropic_thinking_there_and_back(doors: Doors) -> None:
    async with FakeAnthropic(models=["claude-test"]) as upstream:
        await load_hosted(doors, upstream)
        upstream.script = Script(events=THINKING_EVENTS, finish_reason="tool_use")
        question: Any = {"role": "user", "content": "Weather in Zürich?"}
        options: dict[str, Any] = {"model": "m", "tools": [FUNCTION], "max_output_tokens": 4096}
        async with async_openai_client(doors) as client:
            whole = await client.responses.create(input=[question], reasoning={"effort": "low"}, **options)
            async with client.responses.stream(input=[question], reasoning={"effort": "low"}, **options) as stream:
                summary = "".join(
                    [event.delta async for event in stream if event.type == "response.reasoning_summary_text.delta"]
                )
                streamed = await stream.get_final_response()
            upstream.script = Script(chunks=["Sunny."])
            result: Any = {"type": "function_call_output", "call_id": "toolu_1", "output": "18 °C"}
            handed_back = [item.model_dump(exclude_none=True) for item in whole.output]
            await client.responses.create(input=[question, *handed_back, result], **options)
        turn = posts(upstream)[-1]["messages"][1]
    assert without_ids(whole) == without_ids(streamed)
    assert [item.type for item in whole.output] == ["reasoning", "reasoning", "message", "function_call"]
    thinking, redacted = whole.output[:2]
    assert thinking.type == redacted.type == "reasoning"
    assert [part.text for part in thinking.summary] == [summary] == ["Zürich is in Switzerland."]
    assert (thinking.encrypted_content, redacted.encrypted_content, redacted.summary) == (
        "EqQBCgIYAhIM+sig==",
        "ENCRYPTED/x==",
        [],
    )
    assert whole.output_text == "Checking."
    assert turn["role"] == "assistant"
    assert turn["content"] == [
        {"type": "thinking", "thinking": "Zürich is in Switzerland.", "signature": "EqQBCgIYAhIM+sig=="},
        {"type": "redacted_thinking", "data": "ENCRYPTED/x=="},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": WEATHER.name, "input": {"city": "Zürich"}},
    ]

"""OpenAI's Responses API on the HTTP door, through the real openai SDK (sync and async, `create` and the `stream`
helper's accumulator): the chat route's answers on the tiny llama.cpp model, logprobs, structured output, the
max_output_tokens cut, a failure mid-stream, and refusals named by this dialect's paths."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import openai
import pytest
from openai.types.responses import Response

from tests.conftest import TINY_MODEL
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import posts
from tests.http_door import async_openai_client, load_hosted, openai_client
from tests.http_responses_support import FUNCTION, without_ids
from tests.local_tools import WEATHER
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors

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
    # In the deltas, without the bytes their type has no member for.
    without_bytes = [
        {
            "token": t["token"],
            "logprob": t["logprob"],
            "top_logprobs": [{"token": top["token"], "logprob": top["logprob"]} for top in t["top_logprobs"]],
        }
        for t in expected
    ]
    assert [token.model_dump() for token in in_deltas] == without_bytes
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
    """The testers' findings: asked by top_logprobs alone, the refusal named include, which the request did not hold;
    asked by include, its message told the caller to leave logprobs unset."""
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
    assert all("does not return log-probabilities" in refusal.message for refusal in refusals)
    assert "logprobs" not in include.message  # a member the request did not hold
    assert not posts(upstream)  # refused before anything went upstream

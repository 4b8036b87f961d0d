"""The members of the objects nested in a request (messages, content parts and blocks, tools, options) are checked as
the request's own are: a misspelt one is a 400 naming its path, before anything goes upstream, in every dialect; the
members the vendors' SDKs send are taken; a message's `name`, which no backend here gets, is refused; a chat message's
`content` is required as OpenAI's API requires it; a refusal names its field as the client wrote it (a schema by its
path in each dialect, embeddings' `input`), the rest of its message left as it was."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from openai.types.chat import ChatCompletion

from tests.conftest import TINY_MODEL
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.http_door import async_openai_client, base_url, load_hosted
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors

SCHEMA: dict[str, Any] = {"type": "object", "properties": {"n": {"type": "integer"}}}
ANTHROPIC_TOOL = {"name": "f", "description": "looks f up", "input_schema": SCHEMA}
CALLED = {"role": "assistant", "content": [{"type": "tool_use", "id": "tu1", "name": "f", "input": {}}]}
RESULT = {"type": "tool_result", "tool_use_id": "tu1", "content": "boom", "is_error": True}
CACHED = {"type": "text", "text": "and?", "cache_control": {"type": "ephemeral"}}
FUNCTION: dict[str, Any] = {"name": "f", "description": "looks f up", "parameters": SCHEMA}
CHAT_TOOL = {"type": "function", "function": FUNCTION}
SPEC: dict[str, Any] = {"name": "n", "schema": SCHEMA}
CHAT_FORMAT = {"type": "json_schema", "json_schema": SPEC}
FUNCTION_TOOL = {"type": "function", "name": "f", "description": "looks f up", "parameters": SCHEMA}


@pytest.fixture
async def both(doors: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic) -> Doors:
    await load_hosted(doors, openai_upstream, "gpt")
    await load_hosted(doors, anthropic_upstream, "claude")
    return doors


async def post(doors: Doors, path: str, body: dict[str, Any]) -> httpx2.Response:
    async with httpx2.AsyncClient(base_url=base_url(doors)) as client:
        return await client.post(path, json=body)


def posts(upstream: FakeOpenAI | FakeAnthropic) -> list[dict[str, Any] | None]:
    """The bodies the upstream was sent (loading a model lists the upstream's models first)."""
    return [request.body for request in upstream.requests if request.method == "POST"]


def messages_body(*turns: dict[str, Any], **options: Any) -> dict[str, Any]:
    """A call of tool f answered (its result an error, then a cached text block), or `turns` in place of the answer."""
    last = turns or ({"role": "user", "content": [RESULT, CACHED]},)
    turns = ({"role": "user", "content": "hi"}, CALLED, *last)
    return {"model": "claude", "max_tokens": 10, "messages": list(turns), "tools": [ANTHROPIC_TOOL], **options}


def misspelt(value: dict[str, Any], right: str, wrong: str) -> dict[str, Any]:
    return {(wrong if name == right else name): member for name, member in value.items()}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (
            messages_body({"role": "user", "content": [misspelt(RESULT, "is_error", "is_eror"), CACHED]}),
            "messages[2].content[0].is_eror",
        ),
        (
            messages_body({"role": "user", "content": [RESULT, misspelt(CACHED, "cache_control", "cache_contrl")]}),
            "messages[2].content[1].cache_contrl",
        ),
        (messages_body(tools=[misspelt(ANTHROPIC_TOOL, "description", "descripton")]), "tools[0].descripton"),
        (messages_body(tool_choice={"type": "tool", "nme": "f"}), "tool_choice.nme"),
        (messages_body(thinking={"type": "enabled", "budget_tokens": 5, "budgte": 1}), "thinking.budgte"),
        (messages_body(output_config={"format": {"type": "json_schema", "schema": SCHEMA, "strct": True}}), None),
        (messages_body(system=[{"type": "text", "text": "be brief", "cache_contrl": {}}]), "system[0].cache_contrl"),
        (
            messages_body(
                {"role": "user", "content": [RESULT, {**CACHED, "cache_control": {"type": "ephemeral", "tl": "1h"}}]}
            ),
            "messages[2].content[1].cache_control.tl",
        ),
        (messages_body({"role": "user", "content": [RESULT], "nmae": "x"}), "messages[2].nmae"),
    ],
)
async def test_a_misspelt_nested_member_of_a_message_request_is_a_400_naming_its_path(
    both: Doors, anthropic_upstream: FakeAnthropic, body: dict[str, Any], path: str | None
) -> None:
    path = path or "output_config.format.strct"
    refused = await post(both, "/v1/messages", body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["message"].startswith(f"{path}: not a field of this request")
    assert posts(anthropic_upstream) == []


async def test_the_testers_misspellings_are_refused_and_spelt_right_reach_an_anthropic_upstream(
    both: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    turn = {
        "role": "user",
        "content": [misspelt(RESULT, "is_error", "is_eror"), misspelt(CACHED, "cache_control", "cache_contrl")],
    }
    tools = [misspelt(ANTHROPIC_TOOL, "description", "descripton")]
    refused = await post(both, "/v1/messages", messages_body(turn, tools=tools))
    assert refused.status_code == 400, refused.text
    # What the anthropic SDK sends beside them (a text block's citations, a tool's eager streaming) is taken.
    cited = {**CACHED, "citations": [{"type": "char_location", "cited_text": "a", "start_char_index": 0}]}
    tool = {**ANTHROPIC_TOOL, "eager_input_streaming": True, "allowed_callers": ["direct"], "defer_loading": False}
    answered = await post(
        both, "/v1/messages", messages_body({"role": "user", "content": [RESULT, cited]}, tools=[tool])
    )
    assert answered.status_code == 200, answered.text
    [sent] = posts(anthropic_upstream)
    assert sent is not None
    result, text = sent["messages"][-1]["content"]
    assert (result["is_error"], text["cache_control"]["type"]) == (True, "ephemeral")
    assert sent["tools"][0]["description"] == "looks f up"


def chat_body(**options: Any) -> dict[str, Any]:
    return {"model": "gpt", "messages": [{"role": "user", "content": "a"}], **options}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat_body(messages=[{"role": "user", "content": "a", "foo": 1}]), "messages[0].foo"),
        (
            chat_body(messages=[{"role": "user", "content": [{"type": "text", "text": "a", "foo": 1}]}]),
            "messages[0].content[0].foo",
        ),
        (
            chat_body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"ur": "x"}}]}]),
            "messages[0].content[0].image_url.ur",
        ),
        (
            chat_body(
                messages=[
                    {"role": "user", "content": "a"},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "argument": "{}"}}],
                    },
                ]
            ),
            "messages[1].tool_calls[0].function.argument",
        ),
        (
            chat_body(tools=[{"type": "function", "function": {**FUNCTION, "descripton": "x"}}]),
            "tools[0].function.descripton",
        ),
        (chat_body(tools=[CHAT_TOOL], tool_choice={"type": "function", "function": {"name": "f", "x": 1}}), None),
        (
            chat_body(response_format={**CHAT_FORMAT, "json_schema": {**SPEC, "strickt": True}}),
            "response_format.json_schema.strickt",
        ),
        (chat_body(response_format={"type": "json_object", "strict": True}), "response_format.strict"),
        (
            chat_body(stream=True, stream_options={"include_usage": True, "include_usge": True}),
            "stream_options.include_usge",
        ),
    ],
)
async def test_a_misspelt_nested_member_of_a_chat_request_is_a_400_naming_its_path(
    both: Doors, openai_upstream: FakeOpenAI, body: dict[str, Any], param: str | None
) -> None:
    refused = await post(both, "/v1/chat/completions", body)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["param"], error["code"]) == (param or "tool_choice.function.x", "unknown_field")
    assert posts(openai_upstream) == []


def responses_body(**options: Any) -> dict[str, Any]:
    return {"model": "gpt", "input": [{"role": "user", "content": "a"}], **options}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (responses_body(input=[{"role": "user", "content": "a", "foo": 1}]), "input[0].foo"),
        (
            responses_body(input=[{"role": "user", "content": [{"type": "input_text", "text": "a", "foo": 1}]}]),
            "input[0].content[0].foo",
        ),
        (
            responses_body(
                input=[
                    {"role": "user", "content": "a"},
                    {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c", "outptu": "ok", "output": "ok"},
                ],
                tools=[FUNCTION_TOOL],
            ),
            "input[2].outptu",
        ),
        (responses_body(tools=[{**FUNCTION_TOOL, "descripton": "x"}]), "tools[0].descripton"),
        (responses_body(text={"format": {"type": "json_schema", "name": "n", "schema": SCHEMA, "x": 1}}), None),
        (responses_body(reasoning={"effort": "low", "sumary": "auto"}), "reasoning.sumary"),
    ],
)
async def test_a_misspelt_nested_member_of_a_responses_request_is_a_400_naming_its_path(
    both: Doors, openai_upstream: FakeOpenAI, body: dict[str, Any], param: str | None
) -> None:
    refused = await post(both, "/v1/responses", body)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["param"], error["code"]) == (param or "text.format.x", "unknown_field")
    assert posts(openai_upstream) == []


@pytest.mark.parametrize("role", ["system", "developer", "user", "assistant"])
async def test_a_messages_name_is_refused_as_no_backend_gets_it(both: Doors, role: str) -> None:
    turns = [{"role": "user", "content": "a"}, {"role": role, "content": "b", "name": "alice"}]
    refused = await post(both, "/v1/chat/completions", chat_body(messages=turns))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert (error["param"], error["code"]) == ("messages[1].name", "unsupported_field")
    assert "not supported" in error["message"]


@pytest.mark.parametrize(
    "turn",
    [
        {"role": "user", "content": None},
        {"role": "system", "content": None},
        {"role": "developer"},
        {"role": "assistant", "content": None},
    ],
)
async def test_a_message_without_content_is_a_400_naming_it(
    both: Doors, openai_upstream: FakeOpenAI, turn: dict[str, Any]
) -> None:
    refused = await post(both, "/v1/chat/completions", chat_body(messages=[{"role": "user", "content": "a"}, turn]))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "messages[1].content"
    assert posts(openai_upstream) == []


async def test_a_tool_result_without_content_is_a_400_naming_it(both: Doors) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    turns = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c"},
    ]
    refused = await post(both, "/v1/chat/completions", chat_body(messages=turns, tools=[CHAT_TOOL]))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "messages[2].content"


async def test_a_schema_a_local_model_cannot_follow_is_named_where_the_request_gives_it(doors: Doors) -> None:
    await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, 64))
    schema = {"oneOf": [{"type": "integer"}, {"type": "string"}]}
    chat_format = {**CHAT_FORMAT, "json_schema": {"name": "n", "schema": schema}}
    chat = await post(doors, "/v1/chat/completions", chat_body(model="tiny", response_format=chat_format))
    text_format = {"format": {"type": "json_schema", "name": "n", "schema": schema}}
    responses = await post(doors, "/v1/responses", responses_body(model="tiny", text=text_format))
    output_config = {"format": {"type": "json_schema", "schema": schema}}
    asked = {"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "a"}]}
    messages = await post(doors, "/v1/messages", {**asked, "output_config": output_config})
    for refused, field in [
        (chat, "response_format.json_schema.schema"),
        (responses, "text.format.schema"),
        (messages, "output_config.format.schema"),
    ]:
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        named = f"{field}:" if "param" not in error else field  # an Anthropic message names it with a colon
        assert error["message"].startswith(f"{named} at #: oneOf"), error
        assert error.get("param", field) == field


async def test_embeddings_of_no_input_say_so_in_words(both: Doors) -> None:
    refused = await post(both, "/v1/embeddings", {"model": "gpt", "input": []})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == "input"
    assert error["message"] == "give between 1 and 2048 inputs"


async def test_an_answer_from_litellm_handed_back_as_the_openai_sdk_gave_it_is_taken(
    both: Doors, openai_upstream: FakeOpenAI
) -> None:
    """An outside tester's finding: LiteLLM's answers carry `provider_specific_fields` in their message, which the
    usual tool loop (`messages.append(answer.choices[0].message)`) sends back; it was a 400 unknown_field. It changes
    no answer, and goes to no upstream."""
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"n":1}'}}
    message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call], "function_call": None}
    message["provider_specific_fields"] = {"refusal": None}
    choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
    answer = ChatCompletion.model_validate(
        {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt", "choices": [choice]}
    )
    messages: list[Any] = [{"role": "user", "content": "a"}, answer.choices[0].message]
    messages.append({"role": "tool", "tool_call_id": "c", "content": "2"})
    tools: list[Any] = [CHAT_TOOL]
    async with async_openai_client(both) as client:
        await client.chat.completions.create(model="gpt", messages=messages, tools=tools)
    (sent,) = posts(openai_upstream)
    assert sent is not None
    assert sent["messages"][1] == {"role": "assistant", "content": None, "tool_calls": [call]}

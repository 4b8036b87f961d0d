"""Which request fields the HTTP door refuses: an unknown one is a 400 naming it, and each refusal names the field as
the client wrote it (token limits, billing fields and features not served, tools, schemas, effort and message
content)."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import TINY_MODEL
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.http_door import async_anthropic_client, async_openai_client
from tests.http_fields_support import ANTHROPIC_MESSAGES, OPENAI_MESSAGES, SCHEMA, both, last_body, message_of
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors

__all__ = ["both"]  # the fixture, used by name


async def test_an_unknown_field_is_a_400_naming_it_in_each_dialect(
    both: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    sent = len(openai_upstream.requests) + len(anthropic_upstream.requests)
    async with async_openai_client(both) as client:
        with pytest.raises(openai.BadRequestError) as chat:
            await client.chat.completions.create(
                model="claude", messages=OPENAI_MESSAGES, extra_body={"reasoning": {"effort": "low"}}
            )
        with pytest.raises(openai.BadRequestError) as embeddings:
            await client.embeddings.create(model="gpt", input="hi", extra_body={"truncate": True})
    async with async_anthropic_client(both) as client:
        with pytest.raises(anthropic.BadRequestError) as messages:
            await client.messages.create(
                model="gpt", messages=ANTHROPIC_MESSAGES, max_tokens=5, extra_body={"reasoning_effort": "low"}
            )
    assert (chat.value.param, chat.value.code) == ("reasoning", "unknown_field")  # the Responses API's
    assert (embeddings.value.param, embeddings.value.code) == ("truncate", "unknown_field")
    assert message_of(messages.value).startswith("reasoning_effort: not a field of this request")
    assert len(openai_upstream.requests) + len(anthropic_upstream.requests) == sent  # nothing went upstream


@pytest.mark.parametrize("field", ["messages", "max_tokens", "response_format", "logprobs"])
async def test_a_chat_field_sent_to_the_responses_route_is_named_as_sent(both: Doors, field: str) -> None:
    """A domain field's name in the Responses API (input, max_output_tokens...) named the unknown field: the client
    was told the member it should use was the one refused."""
    async with async_openai_client(both) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.responses.create(model="gpt", input="hi", extra_body={field: OPENAI_MESSAGES})
    assert (refused.value.param, refused.value.code) == (field, "unknown_field")
    assert f"- {field}: not a field of this request" in refused.value.message  # the SDK prefixes the status


async def test_an_anthropic_error_names_the_field_as_the_client_wrote_it(both: Doors) -> None:
    async with async_anthropic_client(both) as client:
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.create(
                model="gpt",
                messages=ANTHROPIC_MESSAGES,
                max_tokens=2048,
                thinking={"type": "enabled", "budget_tokens": 1024},
            )
    assert message_of(refused.value).startswith("thinking.budget_tokens: the OpenAI API takes a reasoning effort")


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
async def test_an_openai_error_names_the_token_limit_as_the_client_wrote_it(both: Doors, limit: str) -> None:
    """The chat route takes either name; a refusal named max_tokens for a request that had only the other."""
    async with async_openai_client(both) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model="gpt", messages=OPENAI_MESSAGES, **{limit: -5})  # type: ignore[call-overload]
    assert refused.value.param == limit
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["message"].startswith(f"{limit} must be between 1 and")


async def test_both_token_limits_at_once_are_refused_as_the_api_refuses_them(
    both: Doors, openai_upstream: FakeOpenAI
) -> None:
    """max_completion_tokens won, unsaid, and the loser was checked still (an outside fuzzer's finding)."""
    async with async_openai_client(both) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="gpt", messages=OPENAI_MESSAGES, max_completion_tokens=5, max_tokens=9
            )
        sent = len(openai_upstream.requests)
        await client.chat.completions.create(
            model="gpt", messages=OPENAI_MESSAGES, max_completion_tokens=5, max_tokens=None
        )
    assert refused.value.param == "max_tokens"
    assert "give max_completion_tokens alone" in refused.value.message
    assert len(openai_upstream.requests) == sent + 1
    assert last_body(openai_upstream)["max_tokens"] == 5  # the adapter's name for the limit, whatever the caller's


async def test_billing_fields_and_nulls_are_accepted_and_features_not_served_are_refused_as_such(both: Doors) -> None:
    async with async_anthropic_client(both) as client:
        await client.messages.create(
            model="claude",
            messages=ANTHROPIC_MESSAGES,
            max_tokens=5,
            extra_body={"billing_policy": {"type": "billing_policy", "bill_to": "self"}, "fallbacks": None},
        )
        await client.messages.count_tokens(model="claude", messages=ANTHROPIC_MESSAGES, extra_body={"compaction": {}})
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.create(
                model="claude", messages=ANTHROPIC_MESSAGES, max_tokens=5, extra_body={"compaction": {"enabled": True}}
            )
    assert message_of(refused.value) == "compaction: not supported"  # its name said once
    async with async_openai_client(both) as openai_client:
        await openai_client.chat.completions.create(
            model="gpt", messages=OPENAI_MESSAGES, max_tokens=5, prediction={"type": "content", "content": "Hello"}
        )
        with pytest.raises(openai.BadRequestError) as custom:
            await openai_client.chat.completions.create(
                model="gpt",
                messages=OPENAI_MESSAGES,
                max_tokens=5,
                tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                tool_choice={"type": "custom", "custom": {"name": "f"}},
            )
    assert custom.value.param == "tool_choice.type"


async def test_a_chat_requests_tool_is_named_by_its_function_members(both: Doors) -> None:
    """A chat request's tools hold their members in `function`: the refusals named `tools[1].name`."""

    def function(name: str, parameters: object) -> Any:
        return {"type": "function", "function": {"name": name, "parameters": parameters}}

    refusals = {}
    async with async_openai_client(both) as client:
        for member, tools in (
            ("name", [function("ok", SCHEMA), function("ok", SCHEMA)]),  # two tools of one name
            ("parameters", [function("ok", SCHEMA), function("other", {"type": "object", "properties": 5})]),
        ):
            with pytest.raises(openai.BadRequestError) as refused:
                await client.chat.completions.create(model="gpt", messages=OPENAI_MESSAGES, tools=tools)
            refusals[member] = refused.value
    for member, refusal in refusals.items():
        assert refusal.param == f"tools[1].function.{member}"
        assert isinstance(refusal.body, dict)
        assert f"tools[1].{member}" not in refusal.body["message"]


async def test_an_anthropic_requests_tool_schema_and_effort_are_named_as_sent(both: Doors) -> None:
    """The refusals named `tools[0].parameters` (the domain's) and `thinking` for a request that had only
    `output_config.effort`."""
    tool: Any = {"name": "ok", "input_schema": {"type": "object", "properties": 5}}
    await both.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    async with async_anthropic_client(both) as client:
        with pytest.raises(anthropic.BadRequestError) as schema:
            await client.messages.create(model="claude", messages=ANTHROPIC_MESSAGES, max_tokens=20, tools=[tool])
        with pytest.raises(anthropic.BadRequestError) as effort:
            await client.messages.create(
                model="tiny",
                messages=ANTHROPIC_MESSAGES,
                max_tokens=20,
                extra_body={"output_config": {"effort": "low"}},
            )
    assert message_of(schema.value).startswith("tools[0].input_schema")
    assert message_of(effort.value).startswith("output_config.effort")


async def test_message_content_of_another_type_is_named_as_a_string_or_parts(both: Doors) -> None:
    wrong: Any = [{"role": "user", "content": 5}]
    async with async_openai_client(both) as openai_client, async_anthropic_client(both) as anthropic_client:
        with pytest.raises(openai.BadRequestError) as from_openai:
            await openai_client.chat.completions.create(model="gpt", messages=wrong)
        with pytest.raises(anthropic.BadRequestError) as from_anthropic:
            await anthropic_client.messages.create(model="claude", messages=wrong, max_tokens=16)
    assert from_openai.value.param == "messages[0].content"
    assert isinstance(from_openai.value.body, dict)
    assert from_openai.value.body["message"] == "messages[0].content: must be a string or an array of content parts"
    assert message_of(from_anthropic.value) == "messages[0].content: must be a string or an array of content blocks"


@pytest.mark.parametrize("stop", [5, True, {"a": "b"}, [5], ["a", None]])
async def test_a_stop_of_another_type_is_named_as_a_string_or_strings(both: Doors, stop: Any) -> None:
    """A scalar was refused as `must be an array`, though a string is valid too. Anthropic's stop_sequences takes
    only an array."""
    async with async_openai_client(both) as openai_client, async_anthropic_client(both) as anthropic_client:
        with pytest.raises(openai.BadRequestError) as chat:
            await openai_client.chat.completions.create(
                model="gpt", messages=OPENAI_MESSAGES, extra_body={"stop": stop}
            )
        with pytest.raises(openai.BadRequestError) as completion:
            await openai_client.completions.create(model="gpt", prompt="hi", extra_body={"stop": stop})
        with pytest.raises(anthropic.BadRequestError) as messages:
            await anthropic_client.messages.create(
                model="claude", messages=ANTHROPIC_MESSAGES, max_tokens=16, extra_body={"stop_sequences": stop}
            )
    for refused in (chat.value, completion.value):
        assert refused.param == "stop"
        assert isinstance(refused.body, dict)
        assert refused.body["message"] == "stop: must be a string or an array of strings"
    assert message_of(messages.value) == "stop_sequences: must be an array of strings"


async def test_stream_options_without_a_stream_are_refused_as_the_api_refuses_them(both: Doors) -> None:
    """A tester's finding: they were taken, and said nothing."""
    async with async_openai_client(both) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="gpt", messages=OPENAI_MESSAGES, stream_options={"include_usage": True}
            )
        streamed = await client.chat.completions.create(
            model="gpt", messages=OPENAI_MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in streamed]
    assert refused.value.param == "stream_options"
    assert "only allowed when stream is true" in refused.value.message
    assert chunks[-1].usage is not None


async def test_a_value_not_supported_is_refused_in_a_whole_sentence_naming_those_that_are(both: Doors) -> None:
    """A tester's finding: "effort 'minimal' (low, medium, high, xhigh, max are) is not supported"; every refusal
    that says what is supported instead was built the same way."""
    minimal: Any = {"effort": "minimal"}  # OpenAI's, not Anthropic's
    async with async_anthropic_client(both) as anthropic_client, async_openai_client(both) as openai_client:
        with pytest.raises(anthropic.BadRequestError) as effort:
            await anthropic_client.messages.create(
                model="gpt", messages=ANTHROPIC_MESSAGES, max_tokens=5, output_config=minimal
            )
        with pytest.raises(openai.BadRequestError) as tool:
            await openai_client.responses.create(model="gpt", input="hi", tools=[{"type": "web_search"}])
    assert message_of(effort.value) == (
        "output_config.effort: the effort 'minimal' is not supported "
        "(the efforts of Anthropic's API are low, medium, high, xhigh and max)"
    )
    assert isinstance(tool.value.body, dict)
    assert tool.value.body["message"] == (
        "tools[0].type: a tool of type 'web_search' is not supported (function tools are)"
    )

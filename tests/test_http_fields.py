"""Which request fields the door takes: an unknown one is a 400 naming it, as both vendors' APIs answer; the fields that
change no answer are accepted; the extensions other servers take (`top_k`, the beta's `output_format`) and Anthropic's
adaptive thinking reach the backend; an Anthropic error names its field in its message."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import TINY_MODEL
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.http_door import (
    anthropic_messages,
    async_anthropic_client,
    async_openai_client,
    load_hosted,
    openai_messages,
)
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors

OPENAI_MESSAGES = openai_messages("Say hello")
ANTHROPIC_MESSAGES = anthropic_messages("Say hello")
SCHEMA: dict[str, Any] = {"type": "object", "properties": {"n": {"type": "integer"}}}


@pytest.fixture
async def both(doors: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic) -> Doors:
    await load_hosted(doors, openai_upstream, "gpt")
    await load_hosted(doors, anthropic_upstream, "claude")
    return doors


def message_of(error: anthropic.APIStatusError) -> str:
    """The error body's message (the SDK's own `message` prefixes the status and the whole body)."""
    assert isinstance(error.body, dict)
    message: str = error.body["error"]["message"]
    return message


def last_body(upstream: FakeOpenAI | FakeAnthropic) -> dict[str, Any]:
    body = upstream.requests[-1].body
    assert body is not None
    return body


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


async def test_fields_that_change_no_answer_are_accepted(both: Doors) -> None:
    async with async_openai_client(both) as client:
        await client.chat.completions.create(
            model="gpt",
            messages=OPENAI_MESSAGES,
            max_tokens=5,
            user="u",
            store=False,
            safety_identifier="s",
            prompt_cache_key="k",
            extra_body={"prompt_cache_options": {"mode": "implicit"}},
        )
    async with async_anthropic_client(both) as client:
        await client.messages.create(
            model="claude",
            messages=ANTHROPIC_MESSAGES,
            max_tokens=5,
            metadata={"user_id": "u"},
            service_tier="auto",
            extra_body={"diagnostics": {}},
        )


async def test_top_k_from_an_openai_client_reaches_a_claude_model_and_a_compatible_server(
    both: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    # The OpenAI fake stands for a compatible server (llama.cpp's, vLLM's); OpenAI's own API is refused top_k.
    async with async_openai_client(both) as client:
        for model in ("claude", "gpt"):
            await client.chat.completions.create(
                model=model, messages=OPENAI_MESSAGES, max_tokens=5, extra_body={"top_k": 5}
            )
    assert (last_body(anthropic_upstream)["top_k"], last_body(openai_upstream)["top_k"]) == (5, 5)


async def test_seed_penalties_and_logit_bias_from_an_anthropic_client_reach_a_backend_that_takes_them(
    both: Doors, openai_upstream: FakeOpenAI
) -> None:
    # Its API has none of them (nor its SDK's arguments): an unknown field was a 400, so seeded sampling of a local
    # model could not be asked for through this dialect. A Claude model refuses them, naming the field.
    controls = {"seed": 7, "presence_penalty": 0.5, "frequency_penalty": 0.25, "logit_bias": {"42": -100}}
    async with async_anthropic_client(both) as client:
        await client.messages.create(model="gpt", messages=ANTHROPIC_MESSAGES, max_tokens=5, extra_body=controls)
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.create(
                model="claude", messages=ANTHROPIC_MESSAGES, max_tokens=5, extra_body={"seed": 7}
            )
    assert {key: last_body(openai_upstream)[key] for key in controls} == controls
    assert message_of(refused.value).startswith("seed"), message_of(refused.value)


async def test_the_betas_output_format_is_output_config_format(
    both: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    output_format: dict[str, Any] = {"type": "json_schema", "schema": SCHEMA}
    async with async_anthropic_client(both) as client:
        await client.messages.create(
            model="claude", messages=ANTHROPIC_MESSAGES, max_tokens=5, extra_body={"output_format": output_format}
        )
        await client.messages.create(
            model="gpt", messages=ANTHROPIC_MESSAGES, max_tokens=5, extra_body={"output_format": output_format}
        )
        with pytest.raises(anthropic.BadRequestError, match=r"output_config\.format or output_format, not both"):
            await client.messages.create(
                model="claude",
                messages=ANTHROPIC_MESSAGES,
                max_tokens=5,
                output_config={"format": {"type": "json_schema", "schema": SCHEMA}},
                extra_body={"output_format": output_format},
            )
    assert last_body(anthropic_upstream)["output_config"] == {"format": output_format}
    assert last_body(openai_upstream)["response_format"]["json_schema"]["schema"] == SCHEMA


async def test_adaptive_thinking_reaches_a_claude_model(both: Doors, anthropic_upstream: FakeAnthropic) -> None:
    async with async_anthropic_client(both) as client:
        await client.messages.create(
            model="claude",
            messages=ANTHROPIC_MESSAGES,
            max_tokens=5,
            thinking={"type": "adaptive"},
            output_config={"effort": "low"},
        )
        assert last_body(anthropic_upstream)["thinking"] == {"type": "adaptive"}
        assert last_body(anthropic_upstream)["output_config"] == {"effort": "low"}
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.messages.create(
                model="claude",
                messages=ANTHROPIC_MESSAGES,
                max_tokens=5,
                thinking={"type": "adaptive"},
                extra_body={"top_k": 3},
            )
    assert message_of(refused.value).startswith("top_k: ")


async def test_thinking_from_an_openai_client_asks_a_claude_model_to_think(
    both: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    """A tester's finding: reasoning_effort sent only output_config.effort, and Claude thinks only when asked, so an
    OpenAI client could never have it think. Anthropic's `thinking`, which OpenAI-compatible gateways take, asks."""
    enabled = {"type": "enabled", "budget_tokens": 1024}
    async with async_openai_client(both) as client:

        async def asking(model: str, max_tokens: int, thinking: dict[str, Any], **options: Any) -> None:
            body = {"thinking": thinking}
            await client.chat.completions.create(
                model=model, messages=OPENAI_MESSAGES, max_tokens=max_tokens, extra_body=body, **options
            )

        await asking("claude", 2048, enabled, reasoning_effort="high")
        assert last_body(anthropic_upstream)["thinking"] == enabled
        assert last_body(anthropic_upstream)["output_config"] == {"effort": "high"}
        await asking("claude", 5, {"type": "adaptive"})
        assert last_body(anthropic_upstream)["thinking"] == {"type": "adaptive"}
        with pytest.raises(openai.BadRequestError) as small:
            await asking("claude", 100, {"type": "enabled", "budget_tokens": 100})
        with pytest.raises(openai.BadRequestError) as elsewhere:
            await asking("gpt", 2048, enabled)
    assert small.value.param == elsewhere.value.param == "thinking.budget_tokens"


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


async def test_with_both_token_limits_max_completion_tokens_wins_and_both_are_checked(
    both: Doors, openai_upstream: FakeOpenAI
) -> None:
    async with async_openai_client(both) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="gpt", messages=OPENAI_MESSAGES, max_completion_tokens=5, extra_body={"max_tokens": "many"}
            )
        assert refused.value.param == "max_tokens"
        await client.chat.completions.create(
            model="gpt", messages=OPENAI_MESSAGES, max_completion_tokens=5, max_tokens=9
        )
    assert last_body(openai_upstream)["max_tokens"] == 5  # the adapter's name for the limit, whatever the caller's


async def test_unsigned_reasoning_is_not_sent_to_a_claude_model(both: Doors, anthropic_upstream: FakeAnthropic) -> None:
    """Reasoning an OpenAI-compatible model gave (reasoning_content, no signed thinking_blocks) would be refused by the
    Anthropic API as a thinking block it did not sign."""
    history: Any = [
        *OPENAI_MESSAGES,
        {"role": "assistant", "content": "4", "reasoning_content": "2 and 2 make 4"},
        {"role": "user", "content": "And 3 and 3?"},
    ]
    async with async_openai_client(both) as client:
        await client.chat.completions.create(model="claude", messages=history, max_tokens=5)
    answer = {"role": "assistant", "content": [{"type": "text", "text": "4"}]}
    assert last_body(anthropic_upstream)["messages"][1] == answer


async def test_system_blocks_are_joined_by_blank_lines_as_system_turns_are(
    both: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    blocks: Any = [{"type": "text", "text": "sys A"}, {"type": "text", "text": "sys B"}]
    async with async_anthropic_client(both) as client:
        for model in ("claude", "gpt"):
            await client.messages.create(model=model, system=blocks, messages=ANTHROPIC_MESSAGES, max_tokens=5)
    assert last_body(anthropic_upstream)["system"] == "sys A\n\nsys B"
    assert last_body(openai_upstream)["messages"][0] == {"role": "system", "content": "sys A\n\nsys B"}


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
    assert message_of(refused.value) == "compaction: compaction is not supported"
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


async def test_anthropic_betas_reach_a_claude_model_and_other_backends_leave_them_aside(
    both: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    betas = ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"]
    beta_messages: Any = ANTHROPIC_MESSAGES  # the beta namespace's own type of the same messages
    async with async_anthropic_client(both) as client:
        await client.beta.messages.create(model="claude", messages=beta_messages, max_tokens=5, betas=betas)
        assert anthropic_upstream.requests[-1].headers["anthropic-beta"] == ",".join(betas)
        await client.beta.messages.count_tokens(model="claude", messages=beta_messages, betas=betas)
        # The SDK adds its own token-counting beta there: all of them go on.
        assert set(betas) < set(anthropic_upstream.requests[-1].headers["anthropic-beta"].split(","))
        await client.messages.create(model="claude", messages=ANTHROPIC_MESSAGES, max_tokens=5)
        assert "anthropic-beta" not in anthropic_upstream.requests[-1].headers
        await client.beta.messages.create(model="gpt", messages=beta_messages, max_tokens=5, betas=betas)
        assert "anthropic-beta" not in openai_upstream.requests[-1].headers
        with pytest.raises(anthropic.BadRequestError) as refused:
            await client.beta.messages.create(
                model="claude", messages=beta_messages, max_tokens=5, betas=["not a beta; x=1"]
            )
    assert message_of(refused.value).startswith("anthropic-beta: a beta's name is 1 to 64 characters")


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

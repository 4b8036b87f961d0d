"""Which request fields the HTTP door takes and what reaches the backend: fields that change no answer, top_k, seed,
penalties and logit bias, the betas' output format, thinking and reasoning, system blocks, and Anthropic's betas."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.http_door import async_anthropic_client, async_openai_client
from tests.http_fields_support import ANTHROPIC_MESSAGES, OPENAI_MESSAGES, SCHEMA, both, last_body, message_of
from warpcore.server.doors import Doors

__all__ = ["both"]  # the fixture, used by name


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


async def test_a_tool_without_a_description_reaches_an_openai_model_without_one(
    both: Doors, openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: the upstream's tool got `"description": ""`, which the caller never gave."""
    async with async_openai_client(both) as client:
        await client.chat.completions.create(
            model="gpt",
            messages=OPENAI_MESSAGES,
            max_tokens=5,
            tools=[{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}],
        )
        from_chat = last_body(openai_upstream)["tools"][0]["function"]
        await client.responses.create(
            model="gpt",
            input="Say hello",
            max_output_tokens=5,
            tools=[{"type": "function", "name": "f", "parameters": SCHEMA, "strict": False}],
        )
        from_responses = last_body(openai_upstream)["tools"][0]["function"]
    for function in (from_chat, from_responses):
        assert function["name"] == "f"
        assert "description" not in function

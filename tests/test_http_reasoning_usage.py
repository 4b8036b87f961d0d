"""Reasoning tokens in the OpenAI dialect's usage: counted where the backend counts them apart, and left out (not a 0
that reads as a count) where it does not, as for a Claude answer that thought."""

from __future__ import annotations

from openai.types.chat import ChatCompletionFunctionToolParam

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.http_door import async_openai_client, load_hosted, openai_messages
from tests.test_tools_hosted_reasoning import THINKING_EVENTS
from warpcore.server.doors import Doors

THINK = {"thinking": {"type": "enabled", "budget_tokens": 1024}}


async def test_a_claude_answer_that_thought_has_no_reasoning_count(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(doors, anthropic_upstream)
    anthropic_upstream.script = Script(events=THINKING_EVENTS, finish_reason="tool_use")
    tools: list[ChatCompletionFunctionToolParam] = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    async with async_openai_client(doors) as client:
        whole = await client.chat.completions.create(
            model="m", messages=openai_messages(), max_tokens=4096, tools=tools, extra_body=THINK
        )
        async with client.chat.completions.stream(
            model="m",
            messages=openai_messages(),
            max_tokens=4096,
            tools=tools,
            extra_body=THINK,
            stream_options={"include_usage": True},
        ) as stream:
            streamed = await stream.get_final_completion()
    for completion in (whole, streamed):
        assert completion.choices[0].finish_reason == "tool_calls"
        assert completion.usage is not None
        assert completion.usage.prompt_tokens == anthropic_upstream.script.prompt_tokens
        assert completion.usage.completion_tokens_details is None


async def test_an_openai_reasoning_count_is_passed_on(doors: Doors, openai_upstream: FakeOpenAI) -> None:
    await load_hosted(doors, openai_upstream)
    for counted in (5, 0):  # a 0 OpenAI reports is a count
        openai_upstream.script = Script(usage_details={"completion_tokens_details": {"reasoning_tokens": counted}})
        async with async_openai_client(doors) as client:
            whole = await client.chat.completions.create(model="m", messages=openai_messages(), max_tokens=20)
        assert whole.usage is not None
        assert whole.usage.completion_tokens_details is not None
        assert whole.usage.completion_tokens_details.reasoning_tokens == counted

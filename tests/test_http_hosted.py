"""The HTTP door in front of the hosted backends (the loopback fakes): each SDK calling each provider, streamed and
whole, the upstream's failures in the caller's dialect, cancellation, shutdown and admission."""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import serving_doors
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import key_of
from tests.http_door import (
    anthropic_client,
    anthropic_messages,
    async_anthropic_client,
    async_openai_client,
    load_hosted,
    openai_client,
    openai_messages,
    text_of,
)
from warpcore.server.core.limits import Limits
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import ServingOptions

OPENAI_MESSAGES = openai_messages("Say hello")
ANTHROPIC_MESSAGES = anthropic_messages("Say hello")


@pytest.fixture
async def hosted(doors: Doors, upstream: FakeUpstream) -> Doors:
    await load_hosted(doors, upstream)
    return doors


async def test_openai_client_gets_each_provider_whole_and_streamed(hosted: Doors, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=["One", " two", " three"], prompt_tokens=9)
    async with async_openai_client(hosted) as client:
        whole = await client.chat.completions.create(model="m", messages=OPENAI_MESSAGES, max_tokens=20)
        async with client.chat.completions.stream(
            model="m",
            messages=OPENAI_MESSAGES,
            max_tokens=20,
            stream_options={"include_usage": True},
        ) as stream:
            streamed = await stream.get_final_completion()
    for completion in (whole, streamed):
        assert completion.choices[0].message.content == "One two three"
        assert completion.choices[0].finish_reason == "stop"
        assert completion.usage is not None
        assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (9, 3)


async def test_anthropic_client_gets_each_provider_whole_and_streamed(hosted: Doors, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=["One", " two", " three"], prompt_tokens=9)
    async with async_anthropic_client(hosted) as client:
        whole = await client.messages.create(model="m", messages=ANTHROPIC_MESSAGES, max_tokens=20)
        async with client.messages.stream(model="m", messages=ANTHROPIC_MESSAGES, max_tokens=20) as stream:
            events = [event.type async for event in stream]
            streamed = await stream.get_final_message()
    for message in (whole, streamed):
        assert [block.type for block in message.content] == ["text"]
        assert message.content[0].text == "One two three"  # type: ignore[union-attr]
        assert message.stop_reason == "end_turn"
        assert (message.usage.input_tokens, message.usage.output_tokens) == (9, 3)
    raw = [name for name in events if name not in ("text",)]
    assert raw[0] == "message_start"
    assert raw[-1] == "message_stop"
    assert raw.count("content_block_start") == raw.count("content_block_stop") == 1


async def test_a_burst_reaches_each_sdk_whole_in_order_in_fewer_events(hosted: Doors, upstream: FakeUpstream) -> None:
    # An upstream that sends every token at once: one event per token would make the caller's SDK, not the
    # upstream, the limit of a stream's speed.
    burst = [f" t{index}" for index in range(2000)]
    upstream.script = Script(chunks=burst)
    async with async_openai_client(hosted) as client:
        chunks = await client.chat.completions.create(
            model="m", messages=OPENAI_MESSAGES, max_tokens=len(burst), stream=True
        )
        openai_texts = [choice.delta.content async for chunk in chunks for choice in chunk.choices]
    async with async_anthropic_client(hosted) as client:
        events = await client.messages.create(
            model="m", messages=ANTHROPIC_MESSAGES, max_tokens=len(burst), stream=True
        )
        anthropic_texts = [
            event.delta.text
            async for event in events
            if event.type == "content_block_delta" and event.delta.type == "text_delta"
        ]
    for texts in ([text for text in openai_texts if text], anthropic_texts):
        assert "".join(texts) == "".join(burst)
        assert texts[0] == burst[0]  # the first token still goes out alone, at once
        assert len(texts) < len(burst) // 4


async def test_the_request_reaches_the_upstream_translated(hosted: Doors, upstream: FakeUpstream) -> None:
    async with async_anthropic_client(hosted) as client:
        await client.messages.create(
            model="m",
            system="be brief",
            messages=[
                *ANTHROPIC_MESSAGES,
                {"role": "assistant", "content": "Hi"},
                {"role": "user", "content": "again"},
            ],
            max_tokens=20,
            stop_sequences=["END"],
        )
    sent = upstream.requests[-1].body
    assert sent is not None
    if isinstance(upstream, FakeOpenAI):
        assert sent["messages"][0] == {"role": "system", "content": "be brief"}
        assert [message["role"] for message in sent["messages"][1:]] == ["user", "assistant", "user"]
        assert sent["stop"] == ["END"]
    else:
        assert sent["system"] == "be brief"
        assert sent["stop_sequences"] == ["END"]
    assert sent["model"] == upstream.models[0]  # the loaded model's upstream name, not its id
    assert key_of(upstream) not in str(sent)  # the provider key travels only in headers


@pytest.mark.parametrize("route", ["chat", "completions"])
async def test_a_disconnect_mid_stream_closes_the_upstream(hosted: Doors, upstream: FakeUpstream, route: str) -> None:
    upstream.script = Script(chunks=["a", "b", "c"], stall_after=1)
    async with async_openai_client(hosted) as client:
        stream: openai.AsyncStream[Any]
        if route == "chat":
            stream = await client.chat.completions.create(
                model="m", messages=OPENAI_MESSAGES, max_tokens=20, stream=True
            )
        else:  # the legacy Completions
            stream = await client.completions.create(model="m", prompt="Say hello", max_tokens=20, stream=True)
        await anext(aiter(stream))  # out with the first text, which the upstream sent before it stalled
        await stream.close()
    await asyncio.wait_for(upstream.disconnected.wait(), 5)


async def test_shutdown_refuses_new_requests_and_ends_running_streams_with_an_event(
    server_env: dict[str, str], anthropic_upstream: FakeAnthropic
) -> None:
    # 1000 chunks 10 ms apart: far longer than the grace, so that only the drain can end the stream.
    anthropic_upstream.script = Script(chunks=["tick"] * 1000, delay=0.01)
    async with serving_doors(server_env) as doors:
        await load_hosted(doors, anthropic_upstream)
        async with async_anthropic_client(doors) as client, async_openai_client(doors) as openai_sdk:
            async with client.messages.stream(model="m", messages=ANTHROPIC_MESSAGES, max_tokens=2000) as stream:
                events = aiter(stream)
                assert (await anext(events)).type == "message_start"
                completion = await openai_sdk.completions.create(model="m", prompt="hi", max_tokens=2000, stream=True)
                chunks = aiter(completion)
                assert (await anext(chunks)).choices[0].text == "tick"
                stopping = asyncio.ensure_future(doors.stop(1.0))
                with pytest.raises(openai.APIStatusError) as refused:
                    await openai_sdk.chat.completions.create(model="m", messages=OPENAI_MESSAGES)
                with pytest.raises(openai.APIStatusError) as refused_completion:
                    await openai_sdk.completions.create(model="m", prompt="hi")
                with pytest.raises(anthropic.APIStatusError) as ended:
                    async for _ in events:
                        pass
                with pytest.raises(openai.APIError) as ended_completion:  # the legacy Completions' stream too
                    async for _ in chunks:
                        pass
            await stopping
    assert refused_completion.value.status_code == 503
    assert "shutting down" in ended_completion.value.message
    assert refused.value.status_code == 503
    assert refused.value.response.headers["retry-after"] == "1"
    assert ended.value.type == "api_error"
    assert "shutting down" in ended.value.message


async def test_a_full_queue_is_429_with_retry_after(server_env: dict[str, str], openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script = Script(chunks=["a", "b"], stall_after=1)
    limits = Limits(max_streams_per_api_model=1, max_queue_per_api_model=0)
    async with serving_doors(server_env, ServingOptions(limits=limits)) as doors:
        await load_hosted(doors, openai_upstream)
        async with async_openai_client(doors) as client, async_anthropic_client(doors) as anthropic_sdk:
            running = await client.chat.completions.create(model="m", messages=OPENAI_MESSAGES, stream=True)
            await anext(aiter(running))
            with pytest.raises(openai.RateLimitError) as busy:
                await client.chat.completions.create(model="m", messages=OPENAI_MESSAGES)
            with pytest.raises(anthropic.RateLimitError) as busy_anthropic:
                await anthropic_sdk.messages.create(model="m", messages=ANTHROPIC_MESSAGES, max_tokens=5)
            await running.close()
    assert busy.value.response.headers["retry-after"] == "1"
    assert busy.value.code == "model_busy"
    assert busy_anthropic.value.type == "rate_limit_error"
    assert busy_anthropic.value.response.headers["retry-after"] == "1"


async def test_sync_clients_of_both_sdks_whole_and_streamed(hosted: Doors, upstream: FakeUpstream) -> None:
    # Sync clients block: run them off the event loop that serves the door (the test's own, here).
    upstream.script = Script(chunks=["One", " two"], prompt_tokens=4)

    def calls() -> list[str | None]:
        with openai_client(hosted) as openai_sdk, anthropic_client(hosted) as anthropic_sdk:
            whole = openai_sdk.chat.completions.create(model="m", messages=OPENAI_MESSAGES)
            with openai_sdk.chat.completions.stream(model="m", messages=OPENAI_MESSAGES) as stream:
                streamed = stream.get_final_completion()
            message = anthropic_sdk.messages.create(model="m", messages=ANTHROPIC_MESSAGES, max_tokens=9)
            with anthropic_sdk.messages.stream(model="m", messages=ANTHROPIC_MESSAGES, max_tokens=9) as events:
                final = events.get_final_message()
        return [whole.choices[0].message.content, streamed.choices[0].message.content, text_of(message), text_of(final)]

    assert await asyncio.to_thread(calls) == ["One two"] * 4


async def test_openai_verbosity_reaches_an_openai_model_and_a_wrong_one_is_refused(
    doors: Doors, openai_upstream: FakeOpenAI
) -> None:
    await load_hosted(doors, openai_upstream)
    async with async_openai_client(doors) as client:
        await client.chat.completions.create(model="m", messages=OPENAI_MESSAGES, max_tokens=5, verbosity="high")
        assert openai_upstream.requests[-1].body is not None
        assert openai_upstream.requests[-1].body["verbosity"] == "high"
        sent = len(openai_upstream.requests)
        with pytest.raises(openai.BadRequestError, match="verbosity must be one of low, medium, high"):
            await client.chat.completions.create(
                model="m", messages=OPENAI_MESSAGES, max_tokens=5, extra_body={"verbosity": "loud"}
            )
    assert len(openai_upstream.requests) == sent


async def test_the_newest_reasoning_efforts_cross_dialects(
    doors: Doors, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(doors, openai_upstream, "gpt")
    await load_hosted(doors, anthropic_upstream, "claude")
    async with async_openai_client(doors) as client:
        await client.chat.completions.create(
            model="claude", messages=OPENAI_MESSAGES, max_tokens=5, reasoning_effort="xhigh"
        )
    async with async_anthropic_client(doors) as client:
        await client.messages.create(
            model="gpt", messages=ANTHROPIC_MESSAGES, max_tokens=5, output_config={"effort": "max"}
        )
    assert anthropic_upstream.requests[-1].body is not None
    assert anthropic_upstream.requests[-1].body["output_config"] == {"effort": "xhigh"}
    assert openai_upstream.requests[-1].body is not None
    assert openai_upstream.requests[-1].body["reasoning_effort"] == "max"


async def test_a_json_schemas_description_reaches_a_claude_model_inside_the_schema(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    await load_hosted(doors, anthropic_upstream)
    anthropic_upstream.script = Script(chunks=['{"n": 1}'])
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    described: Any = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "description": "A count"}}
    async with async_openai_client(doors) as client:
        await client.chat.completions.create(
            model="m", messages=OPENAI_MESSAGES, max_tokens=5, response_format=described
        )
        assert anthropic_upstream.requests[-1].body is not None
        sent = anthropic_upstream.requests[-1].body["output_config"]["format"]["schema"]
        assert sent == {**schema, "description": "A count"}
        described["json_schema"]["schema"] = {**schema, "description": "Another"}
        with pytest.raises(openai.BadRequestError, match=r"response_format\.json_schema\.description"):
            await client.chat.completions.create(
                model="m", messages=OPENAI_MESSAGES, max_tokens=5, response_format=described
            )

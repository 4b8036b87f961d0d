"""A backend that reports no usage is said to have reported none, never a count of 0: llama-cpp-python's server sends
no usage chunk though stream_options.include_usage asks for one, and its zeros read as counts billed and measured.
gRPC leaves GenerateResult.usage unset, the SDK's usage is None, the OpenAI dialect's `usage` null (and a stream has
no usage chunk), the Responses API's too; the Anthropic dialect, whose SDK requires integers, says 0; the access line
leaves the counts out. A usage that counts the completion but not the prompt (or the other way) is given, with 0 for
the count not reported (a usage has no place to say so), and the access line has the count reported alone."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tests.cli import warpcore
from tests.conftest import AccessLines, collect
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load, prompt
from tests.http_door import (
    anthropic_messages,
    async_anthropic_client,
    async_openai_client,
    load_hosted,
    openai_messages,
)
from warpcore.client import AsyncClient
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.server.doors import Doors
    from warpcore.server.rpc.server import WarpcoreServer
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


def unreported() -> Script:
    """An OpenAI-compatible server that never sends a usage chunk."""
    return Script(chunks=["a", "b"], usage_chunk=False)


def usage_fields(access_lines: AccessLines) -> dict[str, object]:
    fields = access_lines.records[-1].__dict__
    return {name: fields[name] for name in ("finish_reason", "prompt_tokens", "completion_tokens") if name in fields}


async def test_grpc_leaves_the_usage_unset_and_the_access_line_without_counts(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI, access_lines: AccessLines
) -> None:
    openai_upstream.script = unreported()
    await load(stub, openai_upstream)
    assert await access_lines.next() == ("LoadModel", "m", "OK")
    text, result = await collect(stub.Generate(prompt()))
    assert (text, result.finish_reason) == ("ab", pb.FINISH_REASON_STOP)
    assert not result.HasField("usage")
    assert result.usage.prompt_tokens == result.usage.completion_tokens == 0  # what a client unaware of it reads
    assert await access_lines.next() == ("Generate", "m", "OK")
    assert usage_fields(access_lines) == {"finish_reason": "stop"}
    count = server.engine.metrics.registry.get_sample_value
    assert not count("warpcore_tokens_per_second_count", {"backend": "openai", "model": "m"})


async def test_a_usage_without_the_prompts_count_is_logged_with_the_count_reported_alone(
    stub: Stub, openai_upstream: FakeOpenAI, access_lines: AccessLines
) -> None:
    openai_upstream.script = Script(chunks=["a", "b"], usage_details={"prompt_tokens": None})
    await load(stub, openai_upstream)
    assert await access_lines.next() == ("LoadModel", "m", "OK")
    _, result = await collect(stub.Generate(prompt()))
    assert result.HasField("usage")
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (0, 2)
    assert await access_lines.next() == ("Generate", "m", "OK")
    assert usage_fields(access_lines) == {"finish_reason": "stop", "completion_tokens": 2}


async def test_a_reported_usage_is_unchanged(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script = Script(chunks=["a", "b"], prompt_tokens=0)
    await load(stub, openai_upstream)
    _, result = await collect(stub.Generate(prompt()))
    assert result.HasField("usage")  # a count of 0 the upstream reported is a count
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (0, 2)


async def test_the_sdk_gives_no_usage(server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script = unreported()
    await load(stub, openai_upstream)
    async with AsyncClient(f"127.0.0.1:{server.port}", timeout=30) as client:
        whole = await client.generate("m", prompt="hi")
        stream = await client.generate("m", prompt="hi", stream=True)
        final = await stream.get_final_response()
    assert (whole.text, whole.usage, final.text, final.usage) == ("ab", None, "ab", None)


async def test_the_command_says_the_usage_was_not_reported(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script = unreported()
    await load(stub, openai_upstream)
    run = await warpcore(f"127.0.0.1:{server.port}", "generate", "--model", "m", "hi")
    assert (run.code, run.stdout) == (0, "ab\n")
    assert re.fullmatch(r"\[usage not reported, first token [\d.]+ s, finish: stop\]\n", run.stderr), run.stderr


async def test_the_openai_dialect_says_usage_null(
    doors: Doors, openai_upstream: FakeOpenAI, access_lines: AccessLines
) -> None:
    openai_upstream.script = unreported()
    await load_hosted(doors, openai_upstream)
    async with async_openai_client(doors) as client:
        whole = await client.chat.completions.create(model="m", messages=openai_messages())
        stream = await client.chat.completions.create(
            model="m", messages=openai_messages(), stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        response = await client.responses.create(model="m", input="hi")
        async with client.responses.stream(model="m", input="hi") as events:
            streamed = await events.get_final_response()
    assert (whole.choices[0].message.content, whole.usage) == ("ab", None)
    # No usage chunk, which the API always sends with a usage: code reads it from the chunk with empty `choices`.
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert (response.output_text, response.status, response.usage) == ("ab", "completed", None)
    assert (streamed.output_text, streamed.usage) == ("ab", None)
    await access_lines.next()
    assert usage_fields(access_lines) == {"finish_reason": "stop"}


async def test_the_anthropic_dialect_says_0(doors: Doors, openai_upstream: FakeOpenAI) -> None:
    """Its SDK requires integers: 0, as the README says."""
    openai_upstream.script = unreported()
    await load_hosted(doors, openai_upstream)
    async with async_anthropic_client(doors) as client:
        whole = await client.messages.create(model="m", messages=anthropic_messages(), max_tokens=16)
        async with client.messages.stream(model="m", messages=anthropic_messages(), max_tokens=16) as stream:
            final = await stream.get_final_message()
    for message in (whole, final):
        assert (message.usage.input_tokens, message.usage.output_tokens) == (0, 0)
        assert message.stop_reason == "end_turn"

"""The token counters and the generation-duration histogram add up what the clients were told, whichever door and
backend: each usage a result reported (cached prompt tokens apart too), the prompt a local model told a client that
then went, and an embedding's input; each generation that ended with its result times one duration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import AccessLines, collect, failed_stream, greedy, load_tiny
from tests.embeddings import embed, load_tiny_embedder
from tests.fakes.script import Script
from tests.hosted import load, prompt
from tests.http_door import async_anthropic_client, async_openai_client, openai_messages
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from tests.fakes.anthropic_api import FakeAnthropic
    from tests.fakes.openai_api import FakeOpenAI
    from warpcore.server.doors import Doors
    from warpcore.server.rpc.server import WarpcoreServer
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

COUNTERS = ("warpcore_prompt_tokens_total", "warpcore_cached_prompt_tokens_total", "warpcore_completion_tokens_total")
SERIES = (*COUNTERS, "warpcore_request_duration_seconds_count")
LOCAL, HOSTED = {"backend": "llama_cpp", "model": "tiny"}, {"backend": "openai", "model": "m"}
CACHED = 4  # the prompt tokens the fake upstream says its cache served


@pytest.fixture
async def door_stub(doors: Doors) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        yield inference_pb2_grpc.InferenceServiceStub(channel)


def totals(doors: Doors, labels: dict[str, str]) -> list[float | None]:
    sample = doors.engine.metrics.registry.get_sample_value
    return [sample(name, labels) for name in SERIES]


def told(prompt_tokens: int, cached: int, completion_tokens: int) -> list[int]:
    """A usage as the counters add it up, and one generation that ended with its result."""
    return [prompt_tokens, cached, completion_tokens, 1]


def added(*usages: list[int]) -> list[int]:
    return [sum(column) for column in zip(*usages, strict=True)]


async def test_the_counters_add_up_the_usage_each_client_got_through_either_door(
    doors: Doors, door_stub: Stub, openai_upstream: FakeOpenAI, access_lines: AccessLines
) -> None:
    """An outside tester's finding: /metrics had no token counters and no request-duration histogram, where vLLM and
    LiteLLM have them; tokens were in the access log alone."""
    await load_tiny(door_stub)
    await load(door_stub, openai_upstream)
    openai_upstream.script = Script(usage_details={"prompt_tokens_details": {"cached_tokens": CACHED}})
    assert totals(doors, LOCAL) == totals(doors, HOSTED) == [0, 0, 0, 0]
    local, hosted = [], []
    for request in (greedy("the world", 5), greedy("the world", 7)):  # the second one's prompt cached, in part
        _, result = await collect(door_stub.Generate(request))
        local.append(
            told(result.usage.prompt_tokens, result.usage.cached_prompt_tokens, result.usage.completion_tokens)
        )
    _, result = await collect(door_stub.Generate(prompt()))
    hosted.append(told(result.usage.prompt_tokens, result.usage.cached_prompt_tokens, result.usage.completion_tokens))

    openai = async_openai_client(doors)
    chat = await openai.chat.completions.create(
        model="tiny", messages=openai_messages("people say"), max_tokens=6, temperature=0
    )
    assert chat.usage is not None
    assert chat.usage.prompt_tokens_details is not None
    cached = chat.usage.prompt_tokens_details.cached_tokens or 0
    local.append(told(chat.usage.prompt_tokens, cached, chat.usage.completion_tokens))
    stream = await openai.chat.completions.create(
        model="m", messages=openai_messages(), stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    cached = usage.prompt_tokens_details.cached_tokens or 0
    hosted.append(told(usage.prompt_tokens, cached, usage.completion_tokens))
    response = await openai.responses.create(model="m", input="Say hello")
    assert response.usage is not None
    cached = response.usage.input_tokens_details.cached_tokens
    hosted.append(told(response.usage.input_tokens, cached, response.usage.output_tokens))
    message = await async_anthropic_client(doors).messages.create(
        model="tiny", max_tokens=4, messages=[{"role": "user", "content": "hello"}]
    )
    read, written = message.usage.cache_read_input_tokens or 0, message.usage.cache_creation_input_tokens or 0
    local.append(told(message.usage.input_tokens + read + written, read, message.usage.output_tokens))

    # A client that goes after its first frame had the prompt's usage in it: counted, with no result to time.
    call = door_stub.Generate(greedy("the world", 2000))
    first = await anext(aiter(call))
    call.cancel()
    lines = [await access_lines.next() for _ in range(2 + 8)]  # the loads, then each call's, written as it ends
    assert ("Generate", "tiny", "CANCELLED") in lines
    gone = [first.prompt_usage.prompt_tokens, first.prompt_usage.cached_prompt_tokens, 0, 0]

    assert first.prompt_usage.prompt_tokens > 0
    assert hosted[0][1] == CACHED
    assert totals(doors, LOCAL) == added(*local, gone)
    assert totals(doors, HOSTED) == added(*hosted)
    # The access log's counts, which operators summed until now, add up to the same.
    logged = [line.__dict__ for line in access_lines.records if line.__dict__["method"] != "LoadModel"]
    sample = doors.engine.metrics.registry.get_sample_value
    for name in ("prompt_tokens", "completion_tokens"):
        in_metrics = sum(sample(f"warpcore_{name}_total", labels) or 0 for labels in (LOCAL, HOSTED))
        assert sum(line.get(name, 0) for line in logged) == in_metrics


async def test_an_embedding_models_input_tokens_are_its_prompt_tokens(
    doors: Doors, door_stub: Stub, access_lines: AccessLines
) -> None:
    """An embedding model has a prompt-token series alone, from its load until it is freed: it generates nothing to
    count or time. Each embedding's access-log line has its prompt_tokens, through either door, as a generation's
    has (an outside tester's finding: the counter counted them, the lines had none)."""
    sample = doors.engine.metrics.registry.get_sample_value
    labels = {"backend": "llama_cpp", "model": "tiny-embed"}
    await load_tiny_embedder(door_stub)
    assert [sample(name, labels) for name in SERIES] == [0, None, None, None]
    response = await embed(door_stub, ["the world", "people say hello"])
    assert response.prompt_tokens > 0
    assert sample("warpcore_prompt_tokens_total", labels) == response.prompt_tokens
    async with async_openai_client(doors) as client:
        http = await client.embeddings.create(model="tiny-embed", input="the world")
    assert sample("warpcore_prompt_tokens_total", labels) == response.prompt_tokens + http.usage.prompt_tokens
    lines = [await access_lines.next() for _ in range(3)]
    assert lines[1:] == [("Embed", "tiny-embed", "OK"), ("/v1/embeddings", "tiny-embed", "OK")]
    logged = [record.__dict__.get("prompt_tokens") for record in access_lines.records[1:]]
    assert logged == [response.prompt_tokens, http.usage.prompt_tokens]
    await door_stub.UnloadModel(pb.UnloadModelRequest(model_id="tiny-embed"))
    assert sample("warpcore_prompt_tokens_total", labels) is None


async def test_a_generation_that_fails_after_its_text_counts_what_its_result_reported(
    server: WarpcoreServer, stub: Stub, anthropic_upstream: FakeAnthropic
) -> None:
    """Anthropic tells the prompt's tokens as its stream opens: an upstream failing mid-stream still billed them, and
    the result frame before the error reports them."""
    anthropic_upstream.script = Script(chunks=["a", "b", "c"], error_event_after=2, prompt_tokens=9)
    await load(stub, anthropic_upstream)
    frames, _ = await failed_stream(stub.Generate(prompt()))
    usage = frames[-1].result.usage
    labels = {"backend": "anthropic", "model": "m"}
    sample = server.metrics.registry.get_sample_value
    assert usage.prompt_tokens == 9
    assert [sample(name, labels) for name in SERIES] == told(9, usage.cached_prompt_tokens, usage.completion_tokens)

"""OpenAI's legacy Completions (`POST /v1/completions`) through the HTTP door, with the openai SDK's
`completions.create`, sync and async, whole and streamed, on the llama.cpp backend (the tiny model): the text the gRPC
Generate gives the same prompt, the usage chunk, and `logprobs` in the legacy shape with the gRPC door's values (the
access log's line: tests/test_http_door_sdks.py)."""

from __future__ import annotations

import asyncio
import json

import grpc
import httpx2
from openai.types import Completion

from tests.conftest import collect
from tests.http_door import async_openai_client, base_url, openai_client
from tests.test_http_door_sdks import tiny_door
from tests.test_logprobs import Scored, scored_stream
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

__all__ = ["tiny_door"]  # the fixture, used by name
PROMPT = "Once upon a time"
TOKENS = 10
TOP = 2


async def grpc_generate(doors: Doors, **options: object) -> tuple[str, Scored, pb.GenerateResult]:
    """The same greedy prompt through the gRPC door: what every HTTP answer must equal."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        generation = pb.GenerationOptions(max_tokens=TOKENS, temperature=0, **options)  # type: ignore[arg-type]
        request = pb.GenerateRequest(model_id="tiny", prompt=PROMPT, options=generation)
        if "logprobs" not in options:
            text, result = await collect(stub.Generate(request))
            return text, [], result
        return await scored_stream(stub.Generate(request))


def streamed_text(chunks: list[Completion]) -> str:
    return "".join(choice.text for chunk in chunks for choice in chunk.choices)


async def test_sdk_sync_and_async_whole_and_streamed_give_the_grpc_text(tiny_door: Doors) -> None:
    expected, _, result = await grpc_generate(tiny_door)
    assert expected
    options = {"model": "tiny", "prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0}

    def sync_calls() -> tuple[Completion, list[Completion]]:
        with openai_client(tiny_door) as client:
            whole = client.completions.create(**options)  # type: ignore[call-overload]
            chunks = list(client.completions.create(**options, stream=True))  # type: ignore[call-overload]
        return whole, chunks

    whole, chunks = await asyncio.to_thread(sync_calls)
    async with async_openai_client(tiny_door) as client:
        async_whole = await client.completions.create(**options)  # type: ignore[call-overload]
        stream = await client.completions.create(  # type: ignore[call-overload]
            **options, stream=True, stream_options={"include_usage": True}
        )
        async_chunks = [chunk async for chunk in stream]
        listed = await client.completions.create(**{**options, "prompt": [PROMPT]})  # type: ignore[call-overload]
    for answer in (whole, async_whole, listed):
        assert answer.object == "text_completion"
        assert answer.id.startswith("cmpl-")
        assert answer.model == "tiny"
        assert [(choice.index, choice.text, choice.finish_reason) for choice in answer.choices] == [
            (0, expected, "length")
        ]
        assert answer.choices[0].logprobs is None
        assert answer.usage is not None
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (
            result.usage.prompt_tokens,
            result.usage.completion_tokens,
        )
    assert streamed_text(chunks) == streamed_text(async_chunks) == expected
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(chunk.usage is None for chunk in chunks)
    # Asked for, the usage comes in a last chunk with empty choices, after the finish reason.
    assert async_chunks[-1].choices == []
    assert async_chunks[-1].usage is not None
    assert async_chunks[-1].usage.completion_tokens == TOKENS
    assert async_chunks[-2].choices[0].finish_reason == "length"
    assert all(chunk.usage is None and chunk.object == "text_completion" for chunk in async_chunks[:-1])


async def test_the_wire_ends_with_done_and_usage_null_only_when_asked(tiny_door: Doors) -> None:
    async with httpx2.AsyncClient(base_url=base_url(tiny_door)) as raw:
        for asked in (True, False):
            body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 4, "stream": True}
            response = await raw.post("/v1/completions", json={**body, "stream_options": {"include_usage": asked}})
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = [line for line in response.text.split("\n") if line]
            assert lines[-1] == "data: [DONE]"
            sent = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
            assert {str(chunk.get("usage", "absent")) for chunk in sent[:-1]} == {"None" if asked else "absent"}
            assert ("usage" in sent[-1]) is asked


async def test_logprobs_in_the_legacy_shape_with_the_grpc_values(tiny_door: Doors) -> None:
    expected, scored, _ = await grpc_generate(tiny_door, logprobs=True, top_logprobs=TOP)
    options = {"model": "tiny", "prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0, "logprobs": TOP}
    async with async_openai_client(tiny_door) as client:
        whole = await client.completions.create(**options)  # type: ignore[call-overload]
        chunks = [chunk async for chunk in await client.completions.create(**options, stream=True)]  # type: ignore[call-overload]
        chosen_only = await client.completions.create(**{**options, "logprobs": 0})  # type: ignore[call-overload]
    streamed: dict[str, list[object]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for chunk in chunks:
        logprobs = chunk.choices[0].logprobs
        if logprobs is not None:
            for name, values in streamed.items():
                values += getattr(logprobs, name)
    logprobs = whole.choices[0].logprobs
    assert logprobs is not None
    assert whole.choices[0].text == expected
    assert logprobs.tokens == [token.decode("utf-8", errors="replace") for token, _, _ in scored]
    assert logprobs.token_logprobs == [logprob for _, logprob, _ in scored]
    assert logprobs.top_logprobs == [
        {top.decode("utf-8", errors="replace"): value for top, value in reversed(tops)} for _, _, tops in scored
    ]
    assert all(len(tops) == TOP for tops in logprobs.top_logprobs or ())
    # Each token's offset in the text: where its characters begin.
    offsets = logprobs.text_offset or []
    assert offsets[0] == 0
    assert [expected[start:end] for start, end in zip(offsets, [*offsets[1:], len(expected)], strict=True)] == (
        logprobs.tokens
    )
    assert streamed == {name: getattr(logprobs, name) for name in streamed}
    chosen = chosen_only.choices[0].logprobs
    assert chosen is not None
    assert chosen.token_logprobs == logprobs.token_logprobs
    assert chosen.top_logprobs == [{} for _ in scored]

"""OpenAI's legacy Completions (`POST /v1/completions`) in front of the hosted backends (the loopback fakes), which
take a prompt as gRPC's Generate gives it them: one user message; and the members the route refuses, each a 400
naming it as the client wrote it, before anything goes upstream."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import openai
import pytest

from tests.conftest import collect
from tests.fakes.base import FakeUpstream
from tests.fakes.script import Script
from tests.http_door import async_openai_client, openai_client
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

PROMPT = "Say hello"


async def test_each_provider_gets_the_prompt_as_grpc_sends_it(hosted: Doors, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=["One", " two", " three"], prompt_tokens=9)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hosted.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        options = pb.GenerationOptions(max_tokens=20, temperature=0, stop_sequences=["END"])
        text, _ = await collect(stub.Generate(pb.GenerateRequest(model_id="m", prompt=PROMPT, options=options)))
    from_grpc = upstream.requests[-1].body
    create = {"model": "m", "prompt": PROMPT, "max_tokens": 20, "temperature": 0, "stop": "END"}

    def sync_calls() -> tuple[str, str]:
        with openai_client(hosted) as client:
            whole = client.completions.create(**create)  # type: ignore[call-overload]
            chunks = list(client.completions.create(**create, stream=True))  # type: ignore[call-overload]
        return whole.choices[0].text, "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)

    assert await asyncio.to_thread(sync_calls) == (text, text) == ("One two three", "One two three")
    assert upstream.requests[-1].body == upstream.requests[-2].body == from_grpc
    assert from_grpc is not None
    assert [(message["role"], str(message["content"])) for message in from_grpc["messages"]] in (
        [("user", PROMPT)],
        [("user", str([{"type": "text", "text": PROMPT}]))],
    )
    async with async_openai_client(hosted) as client:
        whole = await client.completions.create(**create)  # type: ignore[call-overload]
        chunks = [
            chunk
            async for chunk in await client.completions.create(  # type: ignore[call-overload]
                **create, stream=True, stream_options={"include_usage": True}
            )
        ]
    assert whole.choices[0].finish_reason == chunks[-2].choices[0].finish_reason == "stop"
    for usage in (whole.usage, chunks[-1].usage):
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (9, 3)


@pytest.mark.parametrize(
    ("member", "value", "code"),
    [
        ("prompt", [1, 2, 3], "invalid_field"),
        ("prompt", [[1, 2]], "invalid_field"),
        ("prompt", ["one", "two"], "invalid_field"),
        ("prompt", [], "invalid_field"),
        ("prompt", "", "invalid_field"),
        ("prompt", 7, "invalid_field"),
        ("n", 2, "unsupported_field"),
        ("best_of", 3, "unsupported_field"),
        ("echo", True, "unsupported_field"),
        ("suffix", "tail", "unsupported_field"),
        ("logprobs", 6, "invalid_field"),
        ("logprobs", True, "invalid_field"),
        ("temperature", "warm", "invalid_field"),
        ("stop", [3], "invalid_field"),
        ("stream_options", {"include_usage": True}, "invalid_field"),
        ("messages", [{"role": "user", "content": "hi"}], "unknown_field"),
    ],
)
async def test_a_refused_member_is_a_400_naming_it(
    hosted: Doors, upstream: FakeUpstream, member: str, value: Any, code: str
) -> None:
    sent = len(upstream.requests)
    body = {"prompt": PROMPT, member: value}
    async with async_openai_client(hosted) as client:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.completions.create(model="m", prompt=PROMPT, extra_body=body)
    assert (refused.value.param, refused.value.code) == (member, code)
    assert len(upstream.requests) == sent  # nothing went upstream


async def test_the_defaults_of_refused_members_are_taken(hosted: Doors, upstream: FakeUpstream) -> None:
    upstream.script = Script(chunks=["ok"])
    defaults: dict[str, Any] = {"n": 1, "best_of": 1, "echo": False, "suffix": None, "user": "u", "logprobs": None}
    async with async_openai_client(hosted) as client:
        answer = await client.completions.create(model="m", prompt=PROMPT, **defaults)
    assert answer.choices[0].text == "ok"

"""A generation whose client went is logged as such: `finish_reason` cancelled and the prompt's size the backend
told before the cancel, through either door and however the door learnt of it; never a completion count that the
backend, cut off before its end, did not give."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import TINY_MODEL, AccessLines, greedy, load_tiny
from tests.fakes.script import Script
from tests.hosted import load, prompt
from warpcore.server.core.access import recording_usage
from warpcore.server.core.domain import BackendKind, FinishReason, GenerationParams, LoadSpec
from warpcore.server.core.engine import GenerationResult
from warpcore.server.core.errors import DeadlineExceededError
from warpcore.server.core.tokens import PromptUsage
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from tests.fakes.base import FakeUpstream
    from warpcore.server.core.engine import Engine
    from warpcore.server.doors import Doors
    from warpcore.server.rpc.server import WarpcoreServer
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

LONG = 2000  # tokens: far more than any of these clients waits for


def usage_of(access_lines: AccessLines) -> dict[str, object]:
    """The usage fields of the last access line."""
    fields = access_lines.records[-1].__dict__
    return {name: fields[name] for name in ("finish_reason", "prompt_tokens", "completion_tokens") if name in fields}


async def test_a_grpc_stream_its_client_cancels_is_logged_cancelled_with_its_prompt(
    stub: Stub, access_lines: AccessLines
) -> None:
    await load_tiny(stub)
    assert await access_lines.next() == ("LoadModel", "tiny", "OK")
    call = stub.Generate(greedy("the world", LONG))
    frames = aiter(call)
    first = await anext(frames)
    for _ in range(3):
        await anext(frames)
    call.cancel()
    assert await access_lines.next() == ("Generate", "tiny", "CANCELLED")
    assert first.prompt_usage.prompt_tokens > 0
    assert usage_of(access_lines) == {"finish_reason": "cancelled", "prompt_tokens": first.prompt_usage.prompt_tokens}


async def test_an_http_stream_whose_client_hangs_up_is_logged_cancelled_with_its_prompt(
    doors: Doors, access_lines: AccessLines
) -> None:
    """The door learns of the client's going as it writes, or from the closed connection: either way the same."""
    await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    assert doors.http is not None
    body = json.dumps(
        {
            "model": "tiny",
            "messages": [{"role": "user", "content": "the world"}],
            "max_tokens": LONG,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", doors.http.port)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    for _ in range(3):  # events: the generation is under way
        await asyncio.wait_for(reader.readuntil(b"\n\n"), 10)
    writer.close()
    assert await access_lines.next() == ("/v1/chat/completions", "tiny", "CANCELLED")
    usage = usage_of(access_lines)
    assert usage["finish_reason"] == "cancelled"
    assert isinstance(usage["prompt_tokens"], int)
    assert usage["prompt_tokens"] > 0
    assert "completion_tokens" not in usage


async def test_a_grpc_stream_whose_deadline_passes_is_logged_cancelled_under_its_code(
    stub: Stub, access_lines: AccessLines
) -> None:
    await load_tiny(stub)
    assert await access_lines.next() == ("LoadModel", "tiny", "OK")
    call = stub.Generate(greedy("the world", LONG), timeout=0.3)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        async for _ in call:
            pass
    assert failure.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert await access_lines.next() == ("Generate", "tiny", "DEADLINE_EXCEEDED")
    assert usage_of(access_lines)["finish_reason"] == "cancelled"


async def test_a_grpc_stream_whose_deadline_passes_as_a_frame_is_written_is_logged_cancelled(
    server: WarpcoreServer, access_lines: AccessLines
) -> None:
    """A client that stops reading: with its flow-control window small, the server is writing a frame when the
    deadline passes, and grpc abandons the stream there, to be closed later in a context of its own. The deadline
    leaves time for the first frame on a loaded machine: the window fills within a few frames whatever it is."""
    options = [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=options) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_tiny(stub)
        assert await access_lines.next() == ("LoadModel", "tiny", "OK")
        call = stub.Generate(greedy("the world", LONG), timeout=3.0)
        first = await call.read()
        assert isinstance(first, pb.GenerateResponse)
        assert await call.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert await access_lines.next() == ("Generate", "tiny", "DEADLINE_EXCEEDED")
        prompt_tokens = first.prompt_usage.prompt_tokens
        assert usage_of(access_lines) == {"finish_reason": "cancelled", "prompt_tokens": prompt_tokens}


async def test_a_hosted_stream_its_client_cancels_is_logged_with_the_upstreams_request_id(
    stub: Stub, upstream: FakeUpstream, access_lines: AccessLines
) -> None:
    """The id a provider's support asks for about a request it billed, though no Finish came to carry it."""
    upstream.script = Script(chunks=["a", "b"], stall_after=1)
    await load(stub, upstream)
    assert await access_lines.next() == ("LoadModel", "m", "OK")
    call = stub.Generate(prompt())
    await anext(aiter(call))
    call.cancel()
    await asyncio.wait_for(upstream.disconnected.wait(), 5)
    assert await access_lines.next() == ("Generate", "m", "CANCELLED")
    assert access_lines.records[-1].__dict__["upstream_request_id"] == upstream.script.request_id
    assert usage_of(access_lines)["finish_reason"] == "cancelled"


async def _tiny_engine(doors: Doors) -> Engine:
    await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    return doors.engine


LONG_GREEDY = GenerationParams(prompt="the world", messages=(), max_tokens=LONG, temperature=0.0)


async def test_a_generation_closed_by_its_door_notes_cancelled_with_its_prompt(doors: Doors) -> None:
    """The door closes the engine's stream (its client went while it wrote): the engine learns of it at a yield."""
    engine = await _tiny_engine(doors)
    with recording_usage() as usage:
        outputs = engine.generate("tiny", LONG_GREEDY)
        prompt = await anext(outputs)
        for _ in range(3):
            await anext(outputs)
        await outputs.aclose()
    assert isinstance(prompt, PromptUsage)
    assert usage == {"finish_reason": "cancelled", "prompt_tokens": prompt.prompt_tokens}


async def test_a_generation_whose_task_is_cancelled_notes_cancelled_with_its_prompt(doors: Doors) -> None:
    """The door's task is cancelled (its client went while it waited for the backend): the engine learns of it at
    an await."""
    engine = await _tiny_engine(doors)
    seen: list[object] = []
    under_way = asyncio.Event()
    usage: dict[str, int | str] = {}

    async def read() -> None:
        with recording_usage() as recorded:
            try:
                async for output in engine.generate("tiny", LONG_GREEDY):
                    seen.append(output)
                    if len(seen) == 4:
                        under_way.set()
            finally:
                usage.update(recorded)

    reader = asyncio.create_task(read())
    await under_way.wait()
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert isinstance(seen[0], PromptUsage)
    assert usage == {"finish_reason": "cancelled", "prompt_tokens": seen[0].prompt_tokens}


async def test_a_hosted_stream_whose_upstream_timeout_is_its_deadline_ends_cancelled(
    hosted: Doors, upstream: FakeUpstream
) -> None:
    """A tester's finding: the upstream's timeout, cut to the caller's deadline, fired before the deadline did (the
    server had been paused), and the line said the generation failed, finish_reason error; the caller's deadline
    ended it, as it ends one cancelled by grpc's deadline."""
    upstream.script = Script(chunks=["a", "b"], stall_after=1)
    params = GenerationParams(prompt="hi", messages=(), max_tokens=10, timeout=0.5)
    seen: list[object] = []

    async def read() -> None:
        async for output in hosted.engine.generate("m", params):
            seen.append(output)

    with pytest.raises(DeadlineExceededError):
        await read()
    result = seen[-1]  # what either door logs the generation's end by
    assert isinstance(result, GenerationResult)
    assert result.finish.reason is FinishReason.CANCELLED


async def test_a_hosted_stream_whose_upstream_timeout_is_its_deadline_before_any_text_is_noted_cancelled(
    hosted: Doors, upstream: FakeUpstream
) -> None:
    """With no text there is no result to carry how it ended: the access line still says cancelled, whether the
    upstream's timeout or grpc's deadline comes first (an outside tester's finding, with the deadline passing while
    the call waited; the line had no finish_reason)."""
    upstream.script = Script(chunks=["a"], stall_after=0)
    params = GenerationParams(prompt="hi", messages=(), max_tokens=10, timeout=0.5)
    outputs: list[object] = []

    async def read() -> None:
        async for output in hosted.engine.generate("m", params):
            outputs.append(output)

    with recording_usage() as usage, pytest.raises(DeadlineExceededError):
        await read()
    assert all(isinstance(output, PromptUsage) for output in outputs)  # Anthropic's message_start tells it
    assert usage["finish_reason"] == "cancelled"

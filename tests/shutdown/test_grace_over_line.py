"""The line the drain logs as the grace ends counts every generation it stops, local and hosted, through either door,
whether the grace ran out or a second signal cut it short."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import grpc
import openai
import pytest

from tests.conftest import greedy, serving_doors
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.http_door import async_openai_client, load_hosted, openai_messages
from tests.shutdown import WAIT_SECONDS
from tests.test_http_model_list import STREAM_CONTEXT, tiny
from tests.test_operations import rest
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


async def to_the_end(stream: Any) -> None:
    """An SDK's stream read to its end, the error the shutdown ends it with included."""
    with contextlib.suppress(openai.APIError):
        async for _ in stream:
            pass


@pytest.mark.parametrize("cut_short", [False, True], ids=["grace over", "second signal"])
async def test_the_grace_over_line_counts_every_generation_stopped(
    server_env: dict[str, str],
    openai_upstream: FakeOpenAI,
    anthropic_upstream: FakeAnthropic,
    caplog: pytest.LogCaptureFixture,
    cut_short: bool,
) -> None:
    """An outside tester's finding: after a second SIGTERM, with a local stream and four hosted ones (two through each
    door) in flight, the line said `0 local generations ...; 2 hosted generations`: it counted what was still running
    after the stopped generations' short wait, which leaves out a local one that ended at its decode step and hosted
    ones whose upstream sent an event to stop at. Here the ticking upstream's streams end by themselves once stopped,
    the stalled one's are cancelled."""
    caplog.set_level("INFO", logger="warpcore.server")
    openai_upstream.script = Script(chunks=["tick"] * 1000, delay=0.01)  # far longer than any grace here
    anthropic_upstream.script = Script(chunks=["a", "b"], stall_after=1)  # silent after its first chunk
    async with serving_doors(server_env) as doors:
        await doors.engine.load(tiny("tiny", STREAM_CONTEXT))
        await load_hosted(doors, openai_upstream, "ticking")
        await load_hosted(doors, anthropic_upstream, "stalled")
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel,
            async_openai_client(doors) as openai_sdk,
        ):
            stub: Stub = inference_pb2_grpc.InferenceServiceStub(channel)
            calls = [stub.Generate(greedy("the", 32000, model_id=model)) for model in ("tiny", "ticking", "stalled")]
            for call in calls:
                first = await call.read()
                assert isinstance(first, pb.GenerateResponse)
                assert first.HasField("delta")
            chat = await openai_sdk.chat.completions.create(
                model="ticking", messages=openai_messages(), max_tokens=2000, stream=True
            )
            while not (await anext(aiter(chat))).choices[0].delta.content:
                pass
            completion = await openai_sdk.completions.create(model="stalled", prompt="hi", max_tokens=2000, stream=True)
            assert (await anext(aiter(completion))).choices[0].text == "a"
            stopping = asyncio.ensure_future(doors.stop(120 if cut_short else 1.0))
            if cut_short:
                doors.engine.streams.end_now()
            ended = asyncio.gather(asyncio.gather(*map(rest, calls)), to_the_end(chat), to_the_end(completion))
            streamed, *_ = await asyncio.wait_for(ended, WAIT_SECONDS)
            await asyncio.wait_for(stopping, WAIT_SECONDS)
    assert all(frames[-1].result.finish_reason == pb.FINISH_REASON_CANCELLED for frames in streamed)
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("grace over")]
    assert lines == [
        "grace over: 1 local generations end at their current decode step; 4 hosted generations and 0 other calls"
        " are cancelled"
    ]

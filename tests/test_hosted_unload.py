"""UnloadModel of a hosted model lets the streams running on it finish, as a local model's does: its backend (the
SDK's client, whose close would cut them) is closed only once they have ended."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from tests.conftest import collect, failed_stream, rich_details
from tests.fakes.base import FakeUpstream
from tests.fakes.script import Script
from tests.hosted import load, prompt
from tests.residency import listed, server_and_stub
from warpcore.server.core.residency import ResidencyPolicy
from warpcore.v1 import inference_pb2 as pb

WAIT_SECONDS = 10  # a timeout turns a hang into a failure
TICKS = 40


async def test_an_unloaded_hosted_model_s_running_stream_finishes_before_its_client_closes(
    server_env: Mapping[str, str], upstream: FakeUpstream
) -> None:
    """The stream was cut at the upstream and never ended for its caller (no result frame, no error)."""
    upstream.script = Script(chunks=["tick"] * TICKS, delay=0.01)
    async for _server, stub, events in server_and_stub(server_env, ResidencyPolicy()):
        await load(stub, upstream)
        running = stub.Generate(prompt())
        frames = aiter(running)
        first = await anext(frames)
        unload = asyncio.ensure_future(stub.UnloadModel(pb.UnloadModelRequest(model_id="m")))
        await events.wait_for("m", False)  # the unload has begun: new calls are refused, the running one goes on
        assert (await listed(stub))["m"].state == pb.MODEL_STATE_UNLOADING
        _, refused = await failed_stream(stub.Generate(prompt()))
        assert rich_details(refused)[0].reason == "MODEL_UNLOADING"
        text, result = await asyncio.wait_for(collect(running), WAIT_SECONDS)
        assert first.delta.text + text == "tick" * TICKS
        assert result.finish_reason == pb.FINISH_REASON_STOP
        assert (await asyncio.wait_for(unload, WAIT_SECONDS)).model.id == "m"
        assert "m" not in await listed(stub)

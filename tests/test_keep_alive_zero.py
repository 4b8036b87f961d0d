"""A keep_alive of 0 s: the model unloads as soon as its last generation ends, and the next Generate naming it loads
it again and runs; the generation that woke it (and any others admitted meanwhile) is never cut off by that
unload."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tests.conftest import collect, greedy
from tests.residency import idle, listed, load_request, server_and_stub
from warpcore.server.core.residency import ResidencyPolicy
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

ROUNDS = 3


async def generate_twice(stub: Stub, model_id: str) -> None:
    """Two Generates at once on the dormant model: one wakes it, the other is admitted while it loads."""
    answers = await asyncio.gather(*(collect(stub.Generate(greedy("the", 2, model_id=model_id))) for _ in range(2)))
    assert [result.usage.completion_tokens for _, result in answers] == [2, 2]


async def test_a_zero_keep_alive_model_loads_for_each_generate_and_runs_it(server_env: Mapping[str, str]) -> None:
    async for _, stub, events in server_and_stub(server_env, ResidencyPolicy()):
        await stub.LoadModel(load_request("t3", keep_alive=idle(0), context_size=256))
        # Idle from the start, it goes at once: each round wakes it from dormant.
        await events.wait_for("t3", loaded=False)
        for round_number in range(1, ROUNDS + 1):
            _, result = await collect(stub.Generate(greedy("Hi", 2, model_id="t3")))
            assert result.usage.completion_tokens == 2
            await events.wait_for_count("t3", loaded=False, count=round_number + 1)
            await generate_twice(stub, "t3")
            await events.wait_for_count("t3", loaded=False, count=round_number + 1)
        assert events.loads("t3") == 1 + 2 * ROUNDS
        assert (await listed(stub))["t3"].state == pb.MODEL_STATE_AVAILABLE


async def test_keep_alive_zero_set_on_a_loaded_model_unloads_it_and_the_next_generate_runs(
    server_env: Mapping[str, str],
) -> None:
    async for _, stub, events in server_and_stub(server_env, ResidencyPolicy()):
        await stub.LoadModel(load_request("t3", context_size=256))
        await collect(stub.Generate(greedy("Hi", 2, model_id="t3")))
        touched = (await stub.LoadModel(load_request("t3", keep_alive=idle(0), context_size=256))).model
        assert touched.residency.keep_alive.ToNanoseconds() == 0
        await events.wait_for("t3", loaded=False)
        for round_number in range(2, ROUNDS + 2):
            _, result = await collect(stub.Generate(greedy("Hi", 2, model_id="t3")))
            assert result.usage.completion_tokens == 2
            await events.wait_for_count("t3", loaded=False, count=round_number)
        assert events.loads("t3") == ROUNDS + 1

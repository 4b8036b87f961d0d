"""Models that manage their own residency: idle unload after keep_alive, its expiry as ListModels reports it, a load
that changes it, keep_alive checked at load, and no unload while a model streams."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import collect, greedy, rich_details
from tests.residency import idle, listed, load_request, server_and_stub
from warpcore.server.core.residency import ResidencyPolicy
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import models_pb2


async def test_an_idle_model_unloads_after_its_keep_alive_and_loads_again_on_use(server_env: Mapping[str, str]) -> None:
    async for server, stub, events in server_and_stub(server_env, ResidencyPolicy()):
        await stub.LoadModel(load_request("brief"))
        await collect(stub.Generate(greedy("the", 3, model_id="brief")))
        # A LoadModel of the loaded model sets its keep_alive; the clock starts now.
        loaded = (await stub.LoadModel(load_request("brief", keep_alive=idle(0.3)))).model
        assert loaded.residency.keep_alive.ToNanoseconds() == 300_000_000
        assert loaded.residency.HasField("expires_at")
        await events.wait_for("brief", loaded=False)
        models = await listed(stub)
        assert models["brief"].state == pb.MODEL_STATE_AVAILABLE
        assert not models["brief"].HasField("residency")
        # Loaded with the model's own context size, unsaid in its request: still the size it will have again.
        assert models["brief"].context_size == loaded.context_size > 0
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="model:brief"))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        # The next Generate naming it loads it again, with the keep_alive it had: so it goes again once idle.
        _, result = await collect(stub.Generate(greedy("the", 3, model_id="brief")))
        assert result.usage.completion_tokens == 3
        assert events.loads("brief") == 2
        await events.wait_for_count("brief", loaded=False, count=2)


async def test_a_model_kept_forever_reports_no_expiry_and_a_load_can_change_keep_alive(
    server_env: Mapping[str, str],
) -> None:
    async for _, stub, events in server_and_stub(server_env, ResidencyPolicy(keep_alive=3600)):
        first = (await stub.LoadModel(load_request("kept"))).model
        assert first.residency.keep_alive.ToSeconds() == 3600  # the server's default
        assert first.residency.memory_bytes > 0
        assert (first.residency.slots_busy, first.residency.slots_total, first.residency.queue_depth) == (0, 1, 0)
        assert first.residency.last_used.ToSeconds() > 0
        forever = (await stub.LoadModel(load_request("kept", keep_alive=models_pb2.KeepAlive(forever=True)))).model
        assert not forever.residency.HasField("keep_alive")
        assert not forever.residency.HasField("expires_at")
        shorter = (await stub.LoadModel(load_request("kept", keep_alive=idle(0)))).model
        assert shorter.residency.keep_alive.ToNanoseconds() == 0
        await events.wait_for("kept", loaded=False)
        assert events.loads("kept") == 1


async def test_a_load_naming_the_defaults_a_model_got_changes_its_keep_alive(server_env: Mapping[str, str]) -> None:
    """A LoadModel that names outright the context size the model got by default asks for the loaded model (the
    retry rule), so its keep_alive applies: it used to answer with the model and leave its keep_alive as it was."""
    async for _, stub, events in server_and_stub(server_env, ResidencyPolicy(keep_alive=3600)):
        first = (await stub.LoadModel(load_request("kept"))).model
        named = load_request("kept", keep_alive=idle(1234), context_size=first.context_size)
        answered = (await stub.LoadModel(named)).model
        assert answered.residency.keep_alive.ToSeconds() == 1234
        (listed,) = (await stub.ListModels(pb.ListModelsRequest())).models
        assert listed.residency.keep_alive.ToSeconds() == 1234
        assert events.loads("kept") == 1


async def test_a_busy_model_reports_its_slots_and_has_no_expiry(server_env: Mapping[str, str]) -> None:
    async for _, stub, _ in server_and_stub(server_env, ResidencyPolicy(keep_alive=60)):
        await stub.LoadModel(load_request("busy"))
        endless = stub.Generate(greedy("the", 32768, model_id="busy"))
        assert isinstance(first := await endless.read(), pb.GenerateResponse)
        assert first.HasField("delta")
        residency = (await listed(stub))["busy"].residency
        assert (residency.slots_busy, residency.slots_total) == (1, 1)
        assert not residency.HasField("expires_at")
        endless.cancel()


async def test_keep_alive_is_checked_at_load(server_env: Mapping[str, str]) -> None:
    async for _, stub, _ in server_and_stub(server_env, ResidencyPolicy()):
        with pytest.raises(grpc.aio.AioRpcError) as too_long:
            await stub.LoadModel(load_request("x", keep_alive=idle(365 * 86400)))
        assert too_long.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert rich_details(too_long.value)[1] == ["model_config.keep_alive"]
        hosted = pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_OPENAI, model="gpt-test", model_config=pb.ModelConfig(keep_alive=idle(60))
        )
        with pytest.raises(grpc.aio.AioRpcError) as not_local:
            await stub.LoadModel(hosted)
        assert not_local.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert rich_details(not_local.value)[1] == ["model_config.keep_alive"]
        assert "local models only" in (not_local.value.details() or "")


async def test_keep_alive_never_unloads_a_model_while_it_streams(server_env: Mapping[str, str]) -> None:
    async for _, stub, events in server_and_stub(server_env, ResidencyPolicy()):
        await stub.LoadModel(load_request("streaming"))
        endless = stub.Generate(greedy("the", 32768, model_id="streaming"))
        assert isinstance(await endless.read(), pb.GenerateResponse)
        # Nothing left to wait for once idle: a 0 s keep_alive would unload it at the loop's next turn.
        touched = (await stub.LoadModel(load_request("streaming", keep_alive=idle(0)))).model
        assert not touched.residency.HasField("expires_at")
        for _ in range(20):  # many turns of the server's loop
            assert isinstance(await endless.read(), pb.GenerateResponse)
        assert ("streaming", False) not in events.seen
        endless.cancel()
        await events.wait_for("streaming", loaded=False)
        assert events.loads("streaming") == 1

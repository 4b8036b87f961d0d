"""A model between states: being loaded (listed LOADING, a Generate waits for it, an UnloadModel takes effect after
it), being unloaded (listed UNLOADING and still counted in the metrics and the budget until its running stream ends,
a new Generate refused at once)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import pytest
from aiohttp import web

from tests.conftest import failed_stream, greedy, rich_details
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import OPENAI_KEY
from tests.residency import ModelEvents, idle, listed, load_request, server_and_stub
from warpcore.client import AsyncClient
from warpcore.server.core.bounds import DEFAULT_MAX_TOKENS
from warpcore.server.core.domain import ApiSettings, BackendKind, FinishReason, LoadSpec, TextChunk
from warpcore.server.core.engine import GenerationResult
from warpcore.server.core.errors import NotFoundError
from warpcore.server.core.registry import LoadedModel
from warpcore.server.core.residency import ResidencyPolicy
from warpcore.server.rpc import translate
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from collections.abc import Mapping

    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

WAIT_SECONDS = 10  # turns a hang into a failure
ENDLESS = 32768  # tokens: a stream that runs until the test cancels it
T = TypeVar("T")
Call = grpc.aio.UnaryStreamCall[pb.GenerateRequest, pb.GenerateResponse]


async def started(call: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """An engine call as a task, run up to where it first waits: calls started one after another are in the server
    in that order."""
    task = asyncio.ensure_future(call)
    await asyncio.sleep(0)
    return task


async def generated(server: WarpcoreServer, model_id: str) -> tuple[str, FinishReason]:
    """A Generate straight on the engine (so that `started` runs it up to where it waits for its model)."""
    params = translate.generation_params(
        pb.GenerateRequest(model_id=model_id, prompt="Hi"), WAIT_SECONDS, DEFAULT_MAX_TOKENS
    )
    text, reason = [], None
    async for output in server.engine.generate(model_id, params):
        if isinstance(output, TextChunk):
            text.append(output.text)
        elif isinstance(output, GenerationResult):
            reason = output.finish.reason
    assert reason is not None
    return "".join(text), reason


async def endless_stream(
    stub: Stub, model_id: str
) -> grpc.aio.UnaryStreamCall[pb.GenerateRequest, pb.GenerateResponse]:
    """A stream decoding on `model_id` (one delta read) until cancelled: the model is busy."""
    stream = stub.Generate(greedy("the", ENDLESS, model_id=model_id))
    first = await stream.read()
    assert isinstance(first, pb.GenerateResponse)
    assert first.HasField("delta")
    return stream


async def refusal(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    return refused.value.code(), rich_details(refused.value)[0].reason


class HeldModelList(FakeOpenAI):
    """An OpenAI API whose model list, which a load of one of its models reads, answers only once the test lets it:
    the load stays under way meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()
        self.lists = 0

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        self.lists += 1
        self.asked.set()
        await self.answer.wait()
        return await super()._list_models(request)


@pytest.fixture
async def held() -> AsyncIterator[HeldModelList]:
    async with HeldModelList() as upstream:
        yield upstream


async def test_a_loading_model_is_listed_a_generate_waits_for_it_and_the_last_call_decides(
    server: WarpcoreServer, held: HeldModelList
) -> None:
    events = ModelEvents(server)
    spec = LoadSpec(
        "m", BackendKind.OPENAI, "gpt-4o-mini", ApiSettings(api_key=OPENAI_KEY, base_url=held.base_url), None
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        first_load = await started(server.engine.load(spec, from_operator=True))
        await asyncio.wait_for(held.asked.wait(), WAIT_SECONDS)
        loading = (await listed(stub))["m"]
        assert (loading.state, loading.name, loading.HasField("residency")) == (
            pb.MODEL_STATE_LOADING,
            "gpt-4o-mini",
            False,
        )
        generation = await started(generated(server, "m"))  # waits for the load
        unload = await started(server.engine.unload("m"))
        last_load = await started(server.engine.load(spec, from_operator=True))
        assert not generation.done()
        assert not unload.done()
        held.answer.set()
        assert (await asyncio.wait_for(first_load, WAIT_SECONDS)).id == "m"
        text, reason = await asyncio.wait_for(generation, WAIT_SECONDS)
        assert text
        assert reason is FinishReason.STOP
        unloaded = await asyncio.wait_for(unload, WAIT_SECONDS)
        assert isinstance(unloaded, LoadedModel)
        assert unloaded.id == "m"
        assert (await asyncio.wait_for(last_load, WAIT_SECONDS)).id == "m"
        # Loaded, unloaded, loaded again: in the order asked, whatever each waited for.
        assert [seen for seen in events.seen if seen[0] == "m"] == [("m", True), ("m", False), ("m", True)]
        assert (await listed(stub))["m"].state == pb.MODEL_STATE_READY


async def test_a_load_whose_caller_went_away_goes_on_for_a_retry_to_find(
    server: WarpcoreServer, held: HeldModelList
) -> None:
    events = ModelEvents(server)
    request = pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_OPENAI,
        model="gpt-4o-mini",
        model_id="m",
        backend_config=pb.BackendConfig(api=pb.ApiConfig(api_key=OPENAI_KEY, base_url=held.base_url)),
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        call = stub.LoadModel(request, timeout=WAIT_SECONDS)
        await asyncio.wait_for(held.asked.wait(), WAIT_SECONDS)  # the load is under way
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        held.answer.set()
        retried = await stub.LoadModel(request, timeout=WAIT_SECONDS)
        assert (retried.model.id, retried.model.state) == ("m", pb.MODEL_STATE_READY)
        assert (await listed(stub))["m"].state == pb.MODEL_STATE_READY
    assert [seen for seen in events.seen if seen[0] == "m"] == [("m", True)]
    assert held.lists == 1  # the first call's load, which the retry found, not one of its own


async def test_an_unloading_model_stays_listed_and_counted_until_its_stream_ends(
    server_env: Mapping[str, str],
) -> None:
    async for server, stub, events in server_and_stub(server_env, ResidencyPolicy(max_models=1)):
        await stub.LoadModel(load_request("a"))
        stream = await endless_stream(stub, "a")
        unload = asyncio.ensure_future(stub.UnloadModel(pb.UnloadModelRequest(model_id="a")))
        await events.wait_for("a", False)  # the unload has begun; it waits for the stream
        model = (await listed(stub))["a"]
        assert model.state == pb.MODEL_STATE_UNLOADING
        assert model.residency.memory_bytes > 0
        assert model.residency.slots_busy == 1
        assert not model.residency.HasField("expires_at")
        async with AsyncClient(f"127.0.0.1:{server.port}", timeout=WAIT_SECONDS) as client:
            assert [m.state for m in await client.list_models() if m.id == "a"] == ["unloading"]
        sample = server.metrics.registry.get_sample_value
        assert sample("warpcore_models_loaded", {"backend": "llama_cpp"}) == 1
        assert (
            sample("warpcore_model_memory_bytes", {"model": "a", "backend": "llama_cpp"})
            == model.residency.memory_bytes
        )
        assert sample("warpcore_num_requests_running") == 1
        # A new Generate is refused at once, not held until the unload ends.
        _, error = await failed_stream(stub.Generate(greedy("the", 2, model_id="a"), timeout=WAIT_SECONDS))
        assert (error.code(), rich_details(error)[0].reason) == (grpc.StatusCode.UNAVAILABLE, "MODEL_UNLOADING")
        # It still takes the one place of the budget.
        assert await refusal(stub.LoadModel(load_request("b"))) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "MODEL_BUDGET_FULL",
        )
        # In the server before the stream ends: it waits for the unload, not refused for the id the model holds.
        reload = await started(server.engine.load(translate.load_spec(load_request("a"))))
        assert not reload.done()
        assert not unload.done()
        stream.cancel()
        assert (await asyncio.wait_for(unload, WAIT_SECONDS)).model.id == "a"
        assert (await asyncio.wait_for(reload, WAIT_SECONDS)).id == "a"
        assert (await listed(stub))["a"].state == pb.MODEL_STATE_READY
        assert events.loads("a") == 2


async def test_an_unloadmodel_asked_while_an_idle_model_leaves_is_not_undone_by_a_generate_waiting_for_it(
    server_env: Mapping[str, str],
) -> None:
    """A Generate waiting for a model unloaded for idleness loads it again once gone, unless an UnloadModel,
    asked before that load, forgot the model meanwhile: it is NOT_FOUND then, and the model stays unloaded."""
    leaving, gone = asyncio.Event(), asyncio.Event()

    async def hold_release(model_id: str, loaded: bool) -> None:
        """A registry listener: the unload of "a" goes on (its id and memory held) once the test lets it."""
        if (model_id, loaded) == ("a", False):
            leaving.set()
            await gone.wait()

    async for server, stub, _ in server_and_stub(server_env, ResidencyPolicy()):
        server.engine.registry.listeners.append(hold_release)
        await stub.LoadModel(load_request("a", keep_alive=idle(0)))
        await asyncio.wait_for(leaving.wait(), WAIT_SECONDS)  # unloaded for idleness, dormant, not yet gone
        generation = await started(generated(server, "a"))
        unload = await started(server.engine.unload("a"))
        gone.set()
        assert isinstance(await asyncio.wait_for(unload, WAIT_SECONDS), LoadSpec)
        with pytest.raises(NotFoundError):
            await asyncio.wait_for(generation, WAIT_SECONDS)
        assert "a" not in await listed(stub)

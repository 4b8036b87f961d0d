"""The door's model list, read by the official SDKs, holds every id a request may name: loaded models, models being
loaded and dormant ones (evicted, idle or lazy: a request loads them), not one UnloadModel is unloading; retrieving
one agrees with the list."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import anthropic
import grpc
import openai
import pytest

from tests.conftest import TINY_MODEL, serving_doors
from tests.hosted import OPENAI_KEY
from tests.http_door import async_anthropic_client, async_openai_client, openai_messages
from tests.residency import ModelEvents
from tests.test_model_lifecycle import WAIT_SECONDS, HeldModelList, endless_stream, started
from warpcore.server.core.domain import ApiSettings, BackendKind, LoadSpec
from warpcore.server.core.residency import ResidencyPolicy
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2_grpc


async def listed_ids(doors: Doors) -> tuple[list[str], list[str]]:
    """The ids each SDK's `models.list()` walks."""
    async with async_openai_client(doors) as openai_sdk, async_anthropic_client(doors) as anthropic_sdk:
        return (
            [model.id async for model in openai_sdk.models.list()],
            [model.id async for model in anthropic_sdk.models.list()],
        )


def tiny(model_id: str, context_size: int = 64) -> LoadSpec:
    return LoadSpec(model_id, BackendKind.LLAMA_CPP, TINY_MODEL, None, context_size)


STREAM_CONTEXT = 16384  # tokens: room for a stream to run until the test cancels it


async def test_dormant_models_are_listed_and_retrieved_and_a_request_naming_one_loads_it(
    server_env: Mapping[str, str],
) -> None:
    async with serving_doors(server_env, ServingOptions(residency=ResidencyPolicy(max_models=1))) as doors:
        await doors.engine.load(tiny("evicted"))
        await doors.engine.load(tiny("loaded"))  # evicts the idle one, which stays dormant
        doors.engine.declare(tiny("lazy"))
        assert [model.id for model in doors.engine.loaded()] == ["loaded"]
        assert await listed_ids(doors) == (["loaded", "evicted", "lazy"], ["loaded", "evicted", "lazy"])
        async with async_openai_client(doors) as openai_sdk, async_anthropic_client(doors) as anthropic_sdk:
            lazy = await openai_sdk.models.retrieve("lazy")
            evicted = await anthropic_sdk.models.retrieve("evicted")
            answer = await openai_sdk.chat.completions.create(model="lazy", messages=openai_messages(), max_tokens=2)
        assert (lazy.id, lazy.owned_by) == ("lazy", "llama_cpp")
        assert (evicted.id, evicted.display_name) == ("evicted", TINY_MODEL)
        assert answer.model == "lazy"
        assert [model.id for model in doors.engine.loaded()] == ["lazy"]
        assert await listed_ids(doors) == (["lazy", "evicted", "loaded"], ["lazy", "evicted", "loaded"])


async def test_a_model_being_loaded_is_listed_and_retrieved(doors: Doors) -> None:
    async with HeldModelList() as upstream:
        spec = LoadSpec(
            "m", BackendKind.OPENAI, "gpt-4o-mini", ApiSettings(api_key=OPENAI_KEY, base_url=upstream.base_url), None
        )
        load = await started(doors.engine.load(spec, from_operator=True))
        await asyncio.wait_for(upstream.asked.wait(), WAIT_SECONDS)
        assert await listed_ids(doors) == (["m"], ["m"])
        async with async_openai_client(doors) as openai_sdk, async_anthropic_client(doors) as anthropic_sdk:
            one = await openai_sdk.models.retrieve("m")
            same = await anthropic_sdk.models.retrieve("m")
        assert (one.id, one.owned_by, same.display_name) == ("m", "openai", "gpt-4o-mini")
        assert not load.done()
        upstream.answer.set()
        assert (await asyncio.wait_for(load, WAIT_SECONDS)).id == "m"
        assert await listed_ids(doors) == (["m"], ["m"])


async def test_a_model_unloadmodel_is_unloading_is_neither_listed_nor_retrieved(doors: Doors) -> None:
    events = ModelEvents(doors.grpc)
    await doors.engine.load(tiny("going", STREAM_CONTEXT))
    await doors.engine.load(tiny("staying"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        stream = await endless_stream(inference_pb2_grpc.InferenceServiceStub(channel), "going")
        unload = asyncio.ensure_future(doors.engine.unload("going"))
        await events.wait_for("going", False)  # under way: it waits for the stream
        assert await listed_ids(doors) == (["staying"], ["staying"])
        async with async_openai_client(doors) as openai_sdk, async_anthropic_client(doors) as anthropic_sdk:
            with pytest.raises(openai.NotFoundError):
                await openai_sdk.models.retrieve("going")
            with pytest.raises(anthropic.NotFoundError):
                await anthropic_sdk.models.retrieve("going")
            with pytest.raises(openai.APIStatusError) as refused:
                await openai_sdk.chat.completions.create(model="going", messages=openai_messages(), max_tokens=2)
        assert refused.value.status_code == 503
        assert not unload.done()
        stream.cancel()
        await asyncio.wait_for(unload, WAIT_SECONDS)
    assert await listed_ids(doors) == (["staying"], ["staying"])

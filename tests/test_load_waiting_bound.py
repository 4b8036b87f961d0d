"""Calls waiting for their model's load take the model's admission bound as calls waiting at its gate do: past its
max_streams + max_queue, a call is refused at once (RESOURCE_EXHAUSTED, MODEL_BUSY, RetryInfo; HTTP 429 with
Retry-After), not after the whole load only to be refused then. An outside tester's finding: a lazy hosted model of
max_streams 1 and max_queue 1 had 12 calls waiting for its 4 s load, and 10 of them were refused once it ended."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, TypeVar

import grpc
import openai

from tests.api_backends_support import details
from tests.conftest import TINY_MODEL, collect, greedy
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import OPENAI_KEY
from tests.http_door import async_openai_client, openai_messages
from tests.test_load_waiting_signals import gauges_until
from warpcore.server.core.domain import Admission, ApiSettings, BackendKind, LoadSpec, LocalSettings
from warpcore.server.core.engine import Engine

if TYPE_CHECKING:
    from warpcore.server.doors import Doors
    from warpcore.server.rpc.server import WarpcoreServer
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

WAIT_SECONDS = 10  # a timeout only turns a hang into a failure
CALLS = 5
ADMITTED = 2  # max_streams 1, max_queue 1
T = TypeVar("T")


def declare(engine: Engine, upstream: FakeOpenAI, *, lazy: bool = True) -> LoadSpec:
    """The operator's hosted model of one stream and one queue place, as a --config table declares it."""
    settings = ApiSettings(api_key=OPENAI_KEY, base_url=upstream.base_url)
    admission = Admission(max_streams=1, max_queue=1)
    spec = LoadSpec("slowlazy", BackendKind.OPENAI, "gpt-4o-mini", settings, None, admission=admission, lazy=lazy)
    engine.declare(spec, loads_at_start=not lazy)
    return spec


async def first_done(calls: Sequence[asyncio.Future[T]], count: int) -> list[T]:
    """The outcomes of the first `count` calls to end, in the order they ended."""
    return [await ending for ending in itertools.islice(asyncio.as_completed(calls, timeout=WAIT_SECONDS), count)]


async def answered(calls: Sequence[asyncio.Future[str | T]], admitted: int = ADMITTED) -> None:
    """The calls within the bound are answered once the load ends, the others having been refused."""
    texts = [outcome for outcome in await asyncio.gather(*calls) if isinstance(outcome, str)]
    assert len(texts) == admitted
    assert all(texts)


def generate_calls(stub: Stub, model_id: str) -> list[asyncio.Future[str | grpc.aio.AioRpcError]]:
    """CALLS Generate calls naming the model at once, each to its text or its error."""
    return [
        asyncio.ensure_future(grpc_outcome(collect(stub.Generate(greedy("the", 4, model_id=model_id)))))
        for _ in range(CALLS)
    ]


async def grpc_outcome(call: Awaitable[tuple[str, object]]) -> str | grpc.aio.AioRpcError:
    try:
        text, _ = await call
    except grpc.aio.AioRpcError as error:
        return error
    return text


def assert_busy_while_loading(error: object) -> None:
    assert isinstance(error, grpc.aio.AioRpcError), error
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    assert error.details() == "model 'slowlazy' is busy loading: generations running 0, waiting 2; retry later"
    found = details(error)
    assert (found["reason"], found["metadata"], found["retry_after"]) == ("MODEL_BUSY", {"model_id": "slowlazy"}, 1.0)


async def test_generate_calls_past_a_lazy_models_bound_are_refused_while_it_loads(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.listing_held = asyncio.Event()  # the load asks for the provider's list: held until set
    declare(server.engine, openai_upstream)
    calls = generate_calls(stub, "slowlazy")
    for refused in await first_done(calls, CALLS - ADMITTED):  # the load still held
        assert_busy_while_loading(refused)
    assert not openai_upstream.listing_held.is_set()
    assert await gauges_until(server, "slowlazy", (ADMITTED, ADMITTED, 0)) == (ADMITTED, ADMITTED, 0)
    openai_upstream.listing_held.set()
    await answered(calls)
    assert await gauges_until(server, "slowlazy", (0, 0, 0)) == (0, 0, 0)


async def test_calls_past_a_startup_models_bound_are_refused_before_its_load_ends(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    """A --config model loaded at start, not loaded yet: its calls wait for that load, within its bound."""
    openai_upstream.listing_held = asyncio.Event()
    spec = declare(server.engine, openai_upstream, lazy=False)
    calls = generate_calls(stub, "slowlazy")
    for refused in await first_done(calls, CALLS - ADMITTED):
        assert_busy_while_loading(refused)
    loading = asyncio.ensure_future(server.engine.load(spec, from_operator=True))  # the start's load, held
    assert await gauges_until(server, "slowlazy", (ADMITTED, ADMITTED, 0)) == (ADMITTED, ADMITTED, 0)
    openai_upstream.listing_held.set()
    await loading
    await answered(calls)
    assert await gauges_until(server, "slowlazy", (0, 0, 0)) == (0, 0, 0)


async def test_a_lazy_local_models_bound_counts_its_parallel_slots_while_it_loads(
    server: WarpcoreServer, stub: Stub
) -> None:
    """A local model decoding 2 generations together runs 2 whatever its max_streams: with one queue place, 3 calls
    wait for its load (held here once the model is in memory), and the next ones are refused."""
    release = asyncio.Event()

    async def hold_load(model_id: str, is_loaded: bool) -> None:
        if (model_id, is_loaded) == ("lazyg", True):
            await release.wait()

    server.engine.registry.listeners.append(hold_load)
    settings, admission = LocalSettings(parallel=2), Admission(max_streams=1, max_queue=1)
    spec = LoadSpec("lazyg", BackendKind.LLAMA_CPP, TINY_MODEL, settings, None, admission=admission, lazy=True)
    server.engine.declare(spec)
    calls = generate_calls(stub, "lazyg")
    for refused in await first_done(calls, CALLS - 3):
        assert isinstance(refused, grpc.aio.AioRpcError), refused
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refused.details()
        assert refused.details() == "model 'lazyg' is busy loading: generations running 0, waiting 3; retry later"
    assert not release.is_set()
    assert await gauges_until(server, "lazyg", (3, 3, 0)) == (3, 3, 0)
    release.set()
    await answered(calls, 3)
    assert await gauges_until(server, "lazyg", (0, 0, 0)) == (0, 0, 0)


async def chat(client: openai.AsyncOpenAI) -> str | openai.APIStatusError:
    try:
        answer = await client.chat.completions.create(
            model="slowlazy", messages=openai_messages("hi"), max_tokens=4, temperature=0
        )
    except openai.APIStatusError as error:
        return error
    return answer.choices[0].message.content or ""


async def test_chat_completions_past_a_lazy_models_bound_are_429_while_it_loads(
    doors: Doors, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.listing_held = asyncio.Event()
    declare(doors.engine, openai_upstream)
    client = async_openai_client(doors)
    calls = [asyncio.ensure_future(chat(client)) for _ in range(CALLS)]
    for refused in await first_done(calls, CALLS - ADMITTED):
        assert isinstance(refused, openai.RateLimitError), refused
        assert refused.response.headers["retry-after"] == "1"
        assert "model 'slowlazy' is busy loading" in refused.message
    assert not openai_upstream.listing_held.is_set()
    assert await gauges_until(doors.grpc, "slowlazy", (ADMITTED, ADMITTED, 0)) == (ADMITTED, ADMITTED, 0)
    openai_upstream.listing_held.set()
    await answered(calls)
    assert await gauges_until(doors.grpc, "slowlazy", (0, 0, 0)) == (0, 0, 0)
    await client.close()

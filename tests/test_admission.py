"""Admission limits per backend: hosted-API models take many streams at once, local models a few, and the
operator may set either per model in the preload file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from aiohttp import web

from tests.conftest import TINY_MODEL, collect, failed_stream, greedy, load_tiny, serving
from tests.fakes.base import StreamPlan
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load
from tests.hosted import prompt as hosted_prompt
from warpcore.server.core.domain import Admission, BackendKind
from warpcore.server.core.limits import Limits
from warpcore.server.preload import ConfigError, read_preload
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.server.rpc.server import WarpcoreServer
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

    Call = grpc.aio.UnaryStreamCall[pb.GenerateRequest, pb.GenerateResponse]

OPENAI_KEY = "sk-test-openai-0123456789abcdef"
CONCURRENT = 100


class HeldOpenAI(FakeOpenAI):
    """Holds every streamed answer until `hold_until` streams have started, so that they all run at once."""

    def __init__(self, hold_until: int) -> None:
        super().__init__()
        self.hold_until = hold_until
        self.started = 0
        self.all_started = asyncio.Event()
        self.arrived = asyncio.Condition()

    async def stream(self, request: web.Request, plan: StreamPlan) -> web.StreamResponse:
        async with self.arrived:
            self.started += 1
            self.arrived.notify_all()
        if self.started >= self.hold_until:
            self.all_started.set()
        await self.all_started.wait()
        return await super().stream(request, plan)

    async def wait_for_streams(self, count: int) -> None:
        async with self.arrived:
            await self.arrived.wait_for(lambda: self.started >= count)


def prompt(model_id: str) -> pb.GenerateRequest:
    return pb.GenerateRequest(model_id=model_id, prompt="Say hello", options=pb.GenerationOptions(max_tokens=16))


async def test_100_concurrent_streams_to_one_openai_model_all_run_under_the_default_limits(
    server_env: dict[str, str],
) -> None:
    options = ServingOptions()  # the limits a default server has
    async with (
        HeldOpenAI(hold_until=CONCURRENT) as upstream,
        serving(server_env, options) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        config = pb.BackendConfig(api=pb.ApiConfig(api_key=OPENAI_KEY, base_url=upstream.base_url))
        await stub.LoadModel(
            pb.LoadModelRequest(
                backend=pb.BACKEND_TYPE_OPENAI, model="gpt-4o-mini", model_id="gpt", backend_config=config
            )
        )

        async def one() -> str:
            try:
                text, _ = await collect(stub.Generate(prompt("gpt")))
            except grpc.aio.AioRpcError:
                upstream.all_started.set()  # a refused stream never reaches the upstream: let the others finish
                raise
            return text

        async with asyncio.timeout(120):
            outcomes = await asyncio.gather(*(one() for _ in range(CONCURRENT)), return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert not refused, f"{len(refused)} of {CONCURRENT} refused, e.g. {refused[0].code()}: {refused[0].details()}"
        assert outcomes == ["Hello, world"] * CONCURRENT
        assert upstream.started == CONCURRENT
        gate = options.limits.gates["gpt"]
        assert (gate.max_active, gate.max_waiting) == (256, 1024)


async def test_a_llama_cpp_model_keeps_the_tight_defaults(server_env: dict[str, str]) -> None:
    options = ServingOptions()
    async with serving(server_env, options) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub: Stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_tiny(stub)
        await collect(stub.Generate(pb.GenerateRequest(model_id="tiny", prompt="the")))
        gate = options.limits.gates["tiny"]
        assert (gate.max_active, gate.max_waiting) == (4, 64)


def test_limits_are_chosen_per_backend_and_a_model_may_override_them() -> None:
    limits = Limits(max_streams_per_model=2, max_queue_per_model=3, max_streams_per_api_model=5)
    assert limits.defaults(BackendKind.LLAMA_CPP) == (2, 3)
    assert limits.defaults(BackendKind.OPENAI) == limits.defaults(BackendKind.ANTHROPIC) == (5, 1024)
    own = limits.gate("a", BackendKind.ANTHROPIC, own=Admission(max_queue=0))
    assert (own.max_active, own.max_waiting) == (5, 0)
    local = limits.gate("b", BackendKind.LLAMA_CPP, parallel=8, own=Admission(max_streams=1))
    assert (local.max_active, local.max_waiting) == (8, 3)  # a batch of 8 runs 8, whatever the limit


PRELOAD = """
[[models]]
id = "gpt"
backend = "openai"
model = "gpt-4o-mini"
max_streams = 2
max_queue = 0

[models.api]
base_url = "{base_url}"
api_key_env = "WARPCORE_TEST_OPENAI_KEY"
"""


@pytest.fixture
async def held_upstream() -> AsyncIterator[HeldOpenAI]:
    async with HeldOpenAI(hold_until=1) as upstream:
        yield upstream


async def test_a_per_model_limit_from_the_preload_file_is_honoured(
    models_path: Path, tmp_path: Path, held_upstream: HeldOpenAI
) -> None:
    held_upstream.script = Script(stall_after=0)  # every stream stays open until its client goes away
    config = tmp_path / "warpcore.toml"
    config.write_text(PRELOAD.format(base_url=held_upstream.base_url))
    socket = tmp_path / "warpcore.sock"
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "warpcore.server", "--no-default-model", "--listen", f"unix://{socket}"),
        *("--config", str(config), "--grace", "0"),
        env={**os.environ, "MODELS_PATH": str(models_path), "WARPCORE_TEST_OPENAI_KEY": OPENAI_KEY},
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        async with asyncio.timeout(60):
            while b"serving on" not in (line := await process.stderr.readline()):
                assert line, "the server exited before serving"
        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            running = [stub.Generate(prompt("gpt")) for _ in range(2)]
            async with asyncio.timeout(30):
                await held_upstream.wait_for_streams(2)
            # Two run, none may wait: the third is refused, where the API defaults would have run it.
            frames, error = await failed_stream(stub.Generate(prompt("gpt")))
            assert (frames, error.code()) == ([], grpc.StatusCode.RESOURCE_EXHAUSTED)
            assert "generations running 2, waiting 0" in (error.details() or "")
            for call in running:
                call.cancel()
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


def test_the_preload_file_checks_admission_limits(tmp_path: Path) -> None:
    config = tmp_path / "warpcore.toml"
    entry = f'[[models]]\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\n'
    config.write_text(entry + "max_streams = 3\n")
    (spec,) = read_preload(config, {})
    assert spec.admission == Admission(max_streams=3)
    config.write_text(entry)
    (plain,) = read_preload(config, {})
    assert plain.admission is None
    # The limits are the operator's, not part of the model: a LoadModel of the same model finds the preloaded one.
    assert plain == spec
    for bad in ("max_streams = 0", "max_queue = -1", "max_queue = true", 'max_streams = "8"'):
        config.write_text(f"{entry}{bad}\n")
        with pytest.raises(ConfigError, match=r"models\[0\]\.max_(streams|queue) must be an integer of at least"):
            read_preload(config, {})


async def test_a_call_still_queued_at_shutdown_is_refused_at_once_to_retry_elsewhere(
    server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script = Script(chunks=["a", "b"], stall_after=1)  # the running call holds the one slot
    grace = 30.0
    options = ServingOptions(limits=Limits(max_streams_per_api_model=1))
    async with serving(server_env, options) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub: Stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load(stub, openai_upstream)
        running = aiter(stub.Generate(hosted_prompt()))
        await anext(running)
        queued = stub.Generate(hosted_prompt())
        while options.limits.gates["m"].waiting == 0:  # noqa: ASYNC110 - no event tells that a call has queued
            await asyncio.sleep(0)  # a turn of the loop at a time, until the second call waits for the slot
        started = asyncio.get_running_loop().time()
        stopping = asyncio.ensure_future(server.stop(grace))
        frames, error = await failed_stream(queued)
        refused_after = asyncio.get_running_loop().time() - started
        server.streams.end_now()  # the running call's grace is not this test's
        await stopping
    assert (frames, error.code()) == ([], grpc.StatusCode.UNAVAILABLE)
    assert "shutting down" in (error.details() or "")
    assert refused_after < grace / 2


@contextlib.asynccontextmanager
async def two_waiting_for_a_slot(
    env: dict[str, str],
) -> AsyncIterator[tuple[WarpcoreServer, Stub, Call, list[Call]]]:
    """A server whose tiny model has one decode slot, one call running on it and two waiting for it (the gate admits
    four: they wait inside the model for its slot, not at the gate)."""
    async with serving(env) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub: Stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_tiny(stub, context_size=2048, parallel=1)
        running = stub.Generate(greedy("life is", 2000))
        await anext(aiter(running))
        queued = [stub.Generate(greedy("the world", 8)) for _ in range(2)]
        occupancy = server.engine.loaded()[0].info.occupancy
        assert occupancy is not None
        while occupancy.waiting < 2:  # noqa: ASYNC110 - no event tells that a call waits for the slot
            await asyncio.sleep(0)
        yield server, stub, running, queued


async def test_calls_waiting_for_a_local_models_slot_are_refused_at_shutdown(server_env: dict[str, str]) -> None:
    async with two_waiting_for_a_slot(server_env) as (server, _, running, queued):
        stopping = asyncio.ensure_future(server.stop(30.0))
        refused = await asyncio.gather(*(failed_stream(call) for call in queued))
        assert not running.done()  # the running call keeps its grace
        server.streams.end_now()
        await stopping
    for frames, error in refused:
        assert (frames, error.code()) == ([], grpc.StatusCode.UNAVAILABLE)
        assert "shutting down" in (error.details() or "")


REFUSED_WITHIN = 30.0
"""Seconds a refusal due at once may take on a loaded machine; before the fix, the call waited for the running one."""


async def test_a_call_queued_at_the_gate_when_its_model_is_unloaded_is_refused_at_once(
    server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: calls waiting their turn on a model when UnloadModel came ran once the running ones
    ended, though the proto says new generations are refused while it unloads; they are refused at once, as at
    shutdown, and the running one finishes."""
    openai_upstream.script = Script(chunks=["a", "b"], stall_after=1)  # the running call holds the one slot
    options = ServingOptions(limits=Limits(max_streams_per_api_model=1))
    async with serving(server_env, options) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub: Stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load(stub, openai_upstream)
        running = stub.Generate(hosted_prompt())
        await anext(aiter(running))
        queued = stub.Generate(hosted_prompt())
        while options.limits.gates["m"].waiting == 0:  # noqa: ASYNC110 - no event tells that a call has queued
            await asyncio.sleep(0)
        unloading = asyncio.ensure_future(stub.UnloadModel(pb.UnloadModelRequest(model_id="m")))
        frames, error = await asyncio.wait_for(failed_stream(queued), REFUSED_WITHIN)
        assert not unloading.done()  # the running call goes on
        running.cancel()
        await unloading
    assert (frames, error.code()) == ([], grpc.StatusCode.UNAVAILABLE)
    assert "is being unloaded (UnloadModel)" in (error.details() or "")
    assert len(openai_upstream.requests) == 2  # the load's model list and the running call: the queued one never went


async def test_calls_waiting_for_a_local_models_slot_when_it_is_unloaded_are_refused_at_once(
    server_env: dict[str, str],
) -> None:
    async with two_waiting_for_a_slot(server_env) as (_, stub, running, queued):
        unloading = asyncio.ensure_future(stub.UnloadModel(pb.UnloadModelRequest(model_id="tiny")))
        refused = await asyncio.wait_for(asyncio.gather(*(failed_stream(call) for call in queued)), REFUSED_WITHIN)
        assert not unloading.done()  # the running call goes on
        running.cancel()
        await unloading
    for frames, error in refused:
        assert (frames, error.code()) == ([], grpc.StatusCode.UNAVAILABLE)
        assert "is being unloaded (UnloadModel)" in (error.details() or "")

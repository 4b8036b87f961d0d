"""Models that manage their own residency: idle unload after keep_alive, a budget of loaded local models with
least-recently-used eviction of idle ones, lazy models loaded by their first Generate, and what ListModels and
health say about each."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import math
import os
import re
import socket
import urllib.request
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TINY_MODEL, collect, failed_stream, greedy, rich_details, serving
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import OPENAI_KEY
from warpcore.server.core.domain import Admission, ApiSettings, BackendKind, LoadSpec
from warpcore.server.core.residency import ResidencyPolicy
from warpcore.server.preload import ConfigError, read_preload
from warpcore.server.rpc.server import ServingOptions, WarpcoreServer
from warpcore.server.settings import SettingsError, parse_settings
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc, models_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

# The tiny model's KV cache takes 512 bytes a cell: the largest context makes its memory plain to see in RSS.
BIG_CONTEXT = 131072
WAIT_SECONDS = 10  # for an unload that the test's own steps cause; a timeout only turns a hang into a failure


class ModelEvents:
    """Every load and unload the registry reports, and a way to wait for one."""

    def __init__(self, server: WarpcoreServer) -> None:
        self.seen: list[tuple[str, bool]] = []
        self._changed = asyncio.Condition()
        server.engine.registry.listeners.append(self._record)

    async def _record(self, model_id: str, loaded: bool) -> None:
        async with self._changed:
            self.seen.append((model_id, loaded))
            self._changed.notify_all()

    async def wait_for(self, model_id: str, loaded: bool) -> None:
        await self.wait_for_count(model_id, loaded, 1)

    async def wait_for_count(self, model_id: str, loaded: bool, count: int) -> None:
        async with self._changed:
            seen = self._changed.wait_for(lambda: self.seen.count((model_id, loaded)) >= count)
            await asyncio.wait_for(seen, WAIT_SECONDS)

    def loads(self, model_id: str) -> int:
        return self.seen.count((model_id, True))


async def server_and_stub(
    env: Mapping[str, str], policy: ResidencyPolicy
) -> AsyncIterator[tuple[WarpcoreServer, Stub, ModelEvents]]:
    async with (
        serving(env, ServingOptions(residency=policy)) as started,
        grpc.aio.insecure_channel(f"127.0.0.1:{started.port}") as channel,
    ):
        yield started, inference_pb2_grpc.InferenceServiceStub(channel), ModelEvents(started)


@pytest.fixture
async def one_model_budget(
    server_env: Mapping[str, str],
) -> AsyncIterator[tuple[WarpcoreServer, Stub, ModelEvents]]:
    async for running in server_and_stub(server_env, ResidencyPolicy(max_models=1)):
        yield running


def load_request(
    model_id: str, keep_alive: models_pb2.KeepAlive | None = None, context_size: int | None = None
) -> pb.LoadModelRequest:
    return pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP,
        model=TINY_MODEL,
        model_id=model_id,
        model_config=pb.ModelConfig(context_size=context_size, keep_alive=keep_alive),
    )


def idle(seconds: float) -> models_pb2.KeepAlive:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return models_pb2.KeepAlive(idle=duration)


async def listed(stub: Stub) -> dict[str, pb.Model]:
    return {model.id: model for model in (await stub.ListModels(pb.ListModelsRequest())).models}


def rss_bytes() -> int:
    """This process's resident memory (the server runs in it), after handing the allocator's free pages back, so
    that what tests before this one freed does not count."""
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


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


async def test_a_one_model_budget_evicts_the_idle_model_and_its_memory_returns(
    one_model_budget: tuple[WarpcoreServer, Stub, ModelEvents],
) -> None:
    server, stub, events = one_model_budget
    before = rss_bytes()
    big = (await stub.LoadModel(load_request("big", context_size=BIG_CONTEXT))).model
    await collect(stub.Generate(greedy("the", 3, model_id="big")))
    with_big = rss_bytes()
    kv_bytes = BIG_CONTEXT * 512
    assert big.residency.memory_bytes >= kv_bytes
    assert with_big - before > kv_bytes // 2, "the KV cache should show in resident memory"
    await stub.LoadModel(load_request("small", context_size=256))
    assert ("big", False) in events.seen  # unloaded to make room, before the load answered
    with_small = rss_bytes()
    assert with_big - with_small > kv_bytes // 2, (before, with_big, with_small)
    models = await listed(stub)
    assert models["big"].state == pb.MODEL_STATE_AVAILABLE
    assert models["small"].state == pb.MODEL_STATE_READY
    # The next Generate on the evicted model loads it again, and the now idle small one makes room.
    _, result = await collect(stub.Generate(greedy("the", 3, model_id="big")))
    assert result.usage.completion_tokens == 3
    assert events.loads("big") == 2
    models = await listed(stub)
    assert (models["big"].state, models["small"].state) == (pb.MODEL_STATE_READY, pb.MODEL_STATE_AVAILABLE)
    # Every load is timed, the reload that a Generate asked for too.
    loads = server.metrics.registry.get_sample_value("warpcore_model_load_seconds_count", {"backend": "llama_cpp"})
    assert loads == 3


def scrape(port: int) -> dict[tuple[str, str], float]:
    """/metrics as Prometheus reads it: (sample name, "label=value,..." in label order) -> value."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=WAIT_SECONDS).read().decode()
    families = text_string_to_metric_families(body)
    return {
        (s.name, ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))): s.value
        for family in families
        for s in family.samples
    }


async def test_the_metrics_say_which_models_are_loaded_and_why_each_left(
    one_model_budget: tuple[WarpcoreServer, Stub, ModelEvents],
) -> None:
    server, stub, events = one_model_budget
    http = server.metrics.serve("127.0.0.1", 0)
    try:

        async def metrics() -> dict[tuple[str, str], float]:
            return await asyncio.to_thread(scrape, http.server_port)

        def unloads(samples: dict[tuple[str, str], float]) -> dict[str, float]:
            reasons = ("idle", "room", "requested")
            return {reason: samples["warpcore_model_unloads_total", f"reason={reason}"] for reason in reasons}

        assert unloads(await metrics()) == {"idle": 0, "room": 0, "requested": 0}
        first = (await stub.LoadModel(load_request("first"))).model
        samples = await metrics()
        assert samples["warpcore_models_loaded", "backend=llama_cpp"] == 1
        assert samples["warpcore_models_loaded", "backend=openai"] == 0
        assert (
            samples["warpcore_model_memory_bytes", "backend=llama_cpp,model=first"] == first.residency.memory_bytes > 0
        )
        await stub.LoadModel(load_request("second"))  # the budget of one model evicts the first
        samples = await metrics()
        assert ("warpcore_model_memory_bytes", "backend=llama_cpp,model=first") not in samples
        assert ("warpcore_model_memory_bytes", "backend=llama_cpp,model=second") in samples
        assert unloads(samples) == {"idle": 0, "room": 1, "requested": 0}
        await stub.LoadModel(load_request("second", keep_alive=idle(0)))
        await events.wait_for("second", False)
        assert unloads(await metrics()) == {"idle": 1, "room": 1, "requested": 0}
        await stub.LoadModel(load_request("third"))
        await stub.UnloadModel(pb.UnloadModelRequest(model_id="third"))
        samples = await metrics()
        assert unloads(samples) == {"idle": 1, "room": 1, "requested": 1}
        assert samples["warpcore_models_loaded", "backend=llama_cpp"] == 0
    finally:
        http.shutdown()


async def test_a_model_with_a_running_stream_is_never_evicted(
    one_model_budget: tuple[WarpcoreServer, Stub, ModelEvents],
) -> None:
    server, stub, events = one_model_budget
    # One stream at a time, so that the stream after the endless one starts only once that one has let go.
    await server.engine.load(LoadSpec("busy", BackendKind.LLAMA_CPP, TINY_MODEL, None, None, Admission(1, 4)))
    endless = stub.Generate(greedy("the", 32768, model_id="busy"))
    assert isinstance(first := await endless.read(), pb.GenerateResponse)
    assert first.HasField("delta")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.LoadModel(load_request("other"))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rich_details(refused.value)[0].reason == "MODEL_BUDGET_FULL"
    assert ("busy", False) not in events.seen
    endless.cancel()
    # Once its streams have ended it is idle, and makes room.
    await collect(stub.Generate(greedy("the", 2, model_id="busy")))
    await stub.LoadModel(load_request("other"))
    assert ("busy", False) in events.seen


async def test_a_lazy_model_is_listed_and_concurrent_first_calls_share_one_load(server: WarpcoreServer) -> None:
    events = ModelEvents(server)
    server.engine.declare(LoadSpec("lazy", BackendKind.LLAMA_CPP, TINY_MODEL, None, None, lazy=True))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        model = (await listed(stub))["lazy"]
        assert (model.state, model.name, model.backend) == (
            pb.MODEL_STATE_AVAILABLE,
            TINY_MODEL,
            pb.BACKEND_TYPE_LLAMA_CPP,
        )
        assert events.loads("lazy") == 0
        answers = await asyncio.gather(*(collect(stub.Generate(greedy("the", 4, model_id="lazy"))) for _ in range(4)))
        assert answers[0][0]
        assert {text for text, _ in answers} == {answers[0][0]}
        assert events.loads("lazy") == 1
        assert (await listed(stub))["lazy"].state == pb.MODEL_STATE_READY


async def test_a_lazy_model_that_cannot_load_is_refused_naming_the_callers_field(server: WarpcoreServer) -> None:
    server.engine.declare(LoadSpec("gone", BackendKind.LLAMA_CPP, "nowhere/gone.gguf", None, None, lazy=True))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        _, error = await failed_stream(stub.Generate(greedy("the", 4, model_id="gone")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert rich_details(error)[1] == ["model_id"]  # GenerateRequest's field, not LoadModelRequest's
    assert "model 'gone' could not be loaded for this call" in (error.details() or "")


async def test_a_lazy_hosted_model_whose_provider_cannot_answer_fails_its_calls_until_it_can(
    server: WarpcoreServer, openai_upstream: FakeOpenAI
) -> None:
    """The sidecar's hosted models are lazy, so that a provider out of reach fails their calls, not the start: a
    call made then is refused, and a later one loads the model and is answered."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
    unreachable = ApiSettings(api_key=OPENAI_KEY, base_url=f"http://127.0.0.1:{closed.getsockname()[1]}/v1")
    offered = ApiSettings(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
    server.engine.declare(LoadSpec("away", BackendKind.OPENAI, "gpt-4o-mini", unreachable, None, lazy=True))
    server.engine.declare(LoadSpec("later", BackendKind.OPENAI, "gpt-later", offered, None, lazy=True))
    openai_upstream.script = Script(chunks=["answered"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        _, away = await failed_stream(stub.Generate(greedy("hi", 4, model_id="away")))
        _, not_yet = await failed_stream(stub.Generate(greedy("hi", 4, model_id="later")))
        openai_upstream.models.append("gpt-later")  # the provider offers it now
        answered, _ = await collect(stub.Generate(greedy("hi", 4, model_id="later")))
    closed.close()
    assert away.code() == grpc.StatusCode.UNAVAILABLE, away.details()
    assert not_yet.code() == grpc.StatusCode.NOT_FOUND, not_yet.details()
    assert answered == "answered"


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


def test_the_preload_file_declares_lazy_models_and_keep_alive(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        f'[[models]]\nid = "lazy"\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\nlazy = true\nkeep_alive = "5m"\n'
        f'[[models]]\nid = "kept"\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\nkeep_alive = "forever"\n'
        f'[[models]]\nid = "plain"\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\nkeep_alive = 90\n'
    )
    lazy, kept, plain = read_preload(config, {})
    assert (lazy.lazy, lazy.keep_alive) == (True, 300)
    assert (kept.lazy, kept.keep_alive) == (False, math.inf)
    assert plain.keep_alive == 90
    config.write_text(f'[[models]]\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\nkeep_alive = "soon"\n')
    with pytest.raises(ConfigError, match=r"models\[0\]\.keep_alive must be seconds \(90\)"):
        read_preload(config, {})
    config.write_text(f'[[models]]\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\nlazy = "yes"\n')
    with pytest.raises(ConfigError, match=r"models\[0\]\.lazy must be true or false"):
        read_preload(config, {})


def test_residency_settings_come_from_flags_and_environment() -> None:
    settings = parse_settings(
        ["--keep-alive", "5m", "--max-loaded-models", "2"], {"WARPCORE_MAX_LOADED_MEMORY": "1.5GiB"}
    )
    assert (settings.keep_alive, settings.max_loaded_models, settings.max_loaded_bytes) == (300, 2, 3 * 2**29)
    defaults = parse_settings([], {})
    assert (defaults.keep_alive, defaults.max_loaded_models, defaults.max_loaded_bytes) == (math.inf, None, None)
    assert not defaults.allow_pull
    assert parse_settings(["--allow-pull"], {}).allow_pull
    assert parse_settings([], {"WARPCORE_ALLOW_PULL": "1"}).allow_pull
    with pytest.raises(SettingsError, match=r"--keep-alive must be seconds \(90\)"):
        parse_settings(["--keep-alive", "later"], {})
    with pytest.raises(SettingsError, match="--max-loaded-memory must be a size"):
        parse_settings(["--max-loaded-memory", "lots"], {})


def test_the_readme_lazy_entry_is_a_valid_preload_file(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = next(block for block in re.findall(r"```toml\n(.*?)```", readme, re.DOTALL) if "lazy = true" in block)
    config = tmp_path / "models.toml"
    config.write_text(block)
    (spec,) = read_preload(config, {})
    assert (spec.lazy, spec.keep_alive) == (True, 600)


async def test_a_dormant_model_keeps_its_id_until_unloaded_which_forgets_it(server: WarpcoreServer) -> None:
    """A model known but not loaded (declared, or unloaded while idle) holds its id: another model under it is
    ALREADY_EXISTS; UnloadModel forgets it (returning it), after which a Generate naming it is NOT_FOUND. The id of
    one the operator declared stays its own (a tester's finding: a client unloaded it and loaded its own model under
    it, without the operator's limits): a LoadModel that leaves its settings unset gets it as declared."""
    server.engine.declare(LoadSpec("later", BackendKind.LLAMA_CPP, TINY_MODEL, None, 64, lazy=True))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        listed_before = (await listed(stub))["later"]
        assert (listed_before.state, listed_before.context_size) == (pb.MODEL_STATE_AVAILABLE, 64)
        assert listed_before.loads_on_demand  # told apart from a file the backend offers
        with pytest.raises(grpc.aio.AioRpcError) as taken:
            await stub.LoadModel(load_request("later", context_size=128))
        assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert rich_details(taken.value)[0].reason == "MODEL_ID_TAKEN"
        forgotten = (await stub.UnloadModel(pb.UnloadModelRequest(model_id="later"))).model
        assert (forgotten.id, forgotten.state, forgotten.name) == ("later", pb.MODEL_STATE_AVAILABLE, TINY_MODEL)
        assert not forgotten.loads_on_demand
        assert "later" not in await listed(stub)
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await collect(stub.Generate(greedy("the", 2, model_id="later")))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await stub.UnloadModel(pb.UnloadModelRequest(model_id="later"))
        assert again.value.code() == grpc.StatusCode.NOT_FOUND
        # The operator's id: not another model's, and the operator's model again for a load that leaves it so.
        with pytest.raises(grpc.aio.AioRpcError) as still_taken:
            await stub.LoadModel(load_request("later", context_size=128))
        assert still_taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert (await stub.LoadModel(load_request("later"))).model.context_size == 64


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

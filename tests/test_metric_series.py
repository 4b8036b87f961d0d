"""Per-model series last from a model's load until its memory is freed, whichever gauge or histogram they are of;
load times have buckets up to the minutes a large local model takes."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TINY_MODEL, collect
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import api_config, load, prompt
from warpcore.server.core.domain import BackendKind
from warpcore.server.core.limits import Limits
from warpcore.server.core.metrics import Metrics
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


async def test_a_models_queue_depth_is_there_from_its_load_until_it_is_freed(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: it came only with the model's first generation, where the router gauges come at load."""
    sample = server.metrics.registry.get_sample_value
    await load(stub, openai_upstream)
    assert (
        sample("warpcore_queue_depth", {"model": "m"}),
        sample("warpcore_model_num_requests_waiting", {"model": "m"}),
    ) == (0, 0)
    await stub.UnloadModel(pb.UnloadModelRequest(model_id="m"))
    assert sample("warpcore_queue_depth", {"model": "m"}) is None


async def test_a_hosted_model_has_no_kv_cache_series(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    """An outside tester's finding: a hosted model had warpcore_model_kv_cache_usage_perc at 0, where the docs say
    hosted models have none; the whole server's series, which a router reads, stays (over the local models' cells)."""
    sample = server.metrics.registry.get_sample_value
    await load(stub, openai_upstream)
    assert sample("warpcore_model_num_requests_running", {"model": "m"}) == 0
    assert sample("warpcore_model_kv_cache_usage_perc", {"model": "m"}) is None
    assert sample("warpcore_kv_cache_usage_perc") == 0


async def test_a_local_models_prompt_cache_series_are_there_at_0_when_its_cache_is_off(
    server: WarpcoreServer, stub: Stub
) -> None:
    """A tester's finding: with prompt_cache_tokens 0 the model had no warpcore_prompt_cache_* series at all."""
    sample = server.metrics.registry.get_sample_value
    local = pb.LocalBackendConfig(prompt_cache_tokens=0)
    await stub.LoadModel(
        pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_LLAMA_CPP,
            model=TINY_MODEL,
            model_id="off",
            model_config=pb.ModelConfig(context_size=256),
            backend_config=pb.BackendConfig(local=local),
        )
    )
    series = (
        ("warpcore_prompt_cache_capacity_tokens", {"model": "off"}),
        ("warpcore_prompt_cache_tokens", {"model": "off"}),
        ("warpcore_prompt_cache_lookups_total", {"model": "off", "result": "hit"}),
        ("warpcore_prompt_cache_lookups_total", {"model": "off", "result": "miss"}),
    )
    assert [sample(name, labels) for name, labels in series] == [0, 0, 0, 0]
    await stub.UnloadModel(pb.UnloadModelRequest(model_id="off"))
    assert [sample(name, labels) for name, labels in series] == [None] * 4


GENERATION_HISTOGRAMS = (
    "warpcore_time_to_first_token_seconds",
    "warpcore_tokens_per_second",
    "warpcore_request_duration_seconds",
)
TOKEN_COUNTERS = ("warpcore_prompt_tokens", "warpcore_cached_prompt_tokens", "warpcore_completion_tokens")
SAMPLES = {
    **{name: f"{name}_count" for name in GENERATION_HISTOGRAMS},
    **{name: f"{name}_total" for name in TOKEN_COUNTERS},
}
"""The sample read of each family: a histogram's count of observations, a counter's total."""


def generation_counts(port: int) -> dict[str, float]:
    """Model "m"'s observations in each generation histogram, and its tokens in each token counter, that has a
    series for it, as /metrics shows them."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {
        family.name: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if SAMPLES.get(family.name) == sample.name and sample.labels == {"backend": "openai", "model": "m"}
    }


async def test_a_models_generation_histograms_are_there_at_0_from_its_load_until_it_is_freed(
    server: WarpcoreServer, stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    """An outside tester's finding: they came only as the model's first generation ended, after each load, and
    Prometheus' increase() and rate() missed that generation. The token counters and the duration histogram have
    the same life. An embedding model, which generates nothing, has its prompt tokens' counter alone."""
    http = server.metrics.serve("127.0.0.1", 0)
    try:

        async def counts() -> dict[str, float]:
            return await asyncio.to_thread(generation_counts, http.server_port)

        none = dict.fromkeys((*GENERATION_HISTOGRAMS, *TOKEN_COUNTERS), 0)
        await load(stub, openai_upstream)
        assert await counts() == none
        _, result = await collect(stub.Generate(prompt()))
        usage = result.usage
        tokens = (usage.prompt_tokens, usage.cached_prompt_tokens, usage.completion_tokens)
        assert await counts() == {
            **dict.fromkeys(GENERATION_HISTOGRAMS, 1),
            **dict(zip(TOKEN_COUNTERS, tokens, strict=True)),
        }
        await stub.UnloadModel(pb.UnloadModelRequest(model_id="m"))
        assert await counts() == {}
        await load(stub, openai_upstream)
        assert await counts() == none
        await stub.UnloadModel(pb.UnloadModelRequest(model_id="m"))
        embedding = pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_OPENAI,
            model=openai_upstream.models[0],
            model_id="m",
            model_type=pb.MODEL_TYPE_TEXT_TO_EMBEDDING,
            backend_config=api_config(openai_upstream),
        )
        await stub.LoadModel(embedding)
        assert await counts() == {"warpcore_prompt_tokens": 0}
    finally:
        http.shutdown()


def test_a_load_of_minutes_falls_in_a_bucket_of_its_own() -> None:
    """A tester's finding: the load histogram had the latency buckets, whose last is 30 s: every multi-GB load was
    in +Inf alone."""
    metrics = Metrics(Limits())
    metrics.observe_load(BackendKind.LLAMA_CPP, 400)
    sample = metrics.registry.get_sample_value
    buckets = {
        le: sample("warpcore_model_load_seconds_bucket", {"backend": "llama_cpp", "le": le})
        for le in ("300.0", "600.0")
    }
    assert buckets == {"300.0": 0, "600.0": 1}

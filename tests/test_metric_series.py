"""Per-model series last from a model's load until its memory is freed, whichever gauge they are of; load times have
buckets up to the minutes a large local model takes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.conftest import TINY_MODEL
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import load
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

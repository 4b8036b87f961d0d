"""ListModels says what each loaded model can do, as each backend serves it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.conftest import TINY_MODEL, load_tiny
from tests.embeddings import load_tiny_embedder
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import api_config
from warpcore.v1 import capabilities_pb2 as capb
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


async def listed(stub: Stub, backend: pb.BackendType.ValueType = pb.BACKEND_TYPE_UNSPECIFIED) -> dict[str, pb.Model]:
    return {model.id: model for model in (await stub.ListModels(pb.ListModelsRequest(backend=backend))).models}


async def test_local_models_generate_or_embed(stub: Stub) -> None:
    loaded = await load_tiny(stub)
    assert loaded.capabilities == capb.ModelCapabilities(generate=True, count_tokens=True, logprobs=True, tools=True)
    await load_tiny_embedder(stub)
    models = await listed(stub)
    assert models["tiny"].capabilities == loaded.capabilities
    assert models["tiny-embed"].capabilities == capb.ModelCapabilities(embed=True)
    available = (await listed(stub, pb.BACKEND_TYPE_LLAMA_CPP))[TINY_MODEL]
    assert available.state == pb.MODEL_STATE_AVAILABLE
    assert not available.HasField("capabilities")  # known once loaded


async def test_hosted_models(stub: Stub, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic) -> None:
    openai_upstream.models.append("text-embedding-3-small")
    for model_id, upstream, name in (
        ("chat", openai_upstream, "gpt-4o-mini"),
        ("vectors", openai_upstream, "text-embedding-3-small"),
        ("claude", anthropic_upstream, anthropic_upstream.models[0]),
    ):
        backend = pb.BACKEND_TYPE_OPENAI if upstream is openai_upstream else pb.BACKEND_TYPE_ANTHROPIC
        request = pb.LoadModelRequest(
            backend=backend, model=name, model_id=model_id, backend_config=api_config(upstream)
        )
        await stub.LoadModel(request)
    models = await listed(stub)
    assert models["chat"].capabilities == capb.ModelCapabilities(
        generate=True, images=True, logprobs=True, tools=True, documents=True
    )
    assert models["vectors"].capabilities == capb.ModelCapabilities(embed=True)
    assert models["claude"].capabilities == capb.ModelCapabilities(
        generate=True, count_tokens=True, images=True, tools=True, documents=True
    )

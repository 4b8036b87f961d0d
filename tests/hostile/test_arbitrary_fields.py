"""Properties: every RPC given arbitrary field values answers with a documented status, and the server stays healthy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hypothesis import assume, event, example, given, settings
from hypothesis import strategies as st

from tests.conftest import TINY_MODEL, assert_healthy, failed_stream
from tests.fakes.base import FakeUpstream
from tests.hostile import (
    ANTHROPIC_ID,
    CALL_TIMEOUT,
    CONTEXT_SIZE,
    HEALTH_ID,
    HYPOTHESIS,
    MAX_MESSAGE_BYTES,
    ONE_MEGABYTE,
    OPENAI_ID,
    Code,
)
from tests.hostile.checks import api_allowed, api_request_config, check_failure, generate_outcome, unary_outcome
from tests.hostile.strategies import generate_requests, list_requests, load_requests
from tests.hostile.values import IDS
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


@settings(HYPOTHESIS, max_examples=150)
@given(request=generate_requests())
@example(request=pb.GenerateRequest(model_id=HEALTH_ID, prompt="x" * ONE_MEGABYTE))
@example(
    request=pb.GenerateRequest(model_id=HEALTH_ID, prompt="the", options=pb.GenerationOptions(max_tokens=2**32 - 1))
)
@example(
    request=pb.GenerateRequest(
        model_id=HEALTH_ID, prompt="x", options=pb.GenerationOptions(stop_sequences=[str(n) for n in range(5000)])
    )
)
async def test_generate_with_arbitrary_fields(
    stub: Stub, health_model: str, upstreams: dict[int, FakeUpstream], request: pb.GenerateRequest
) -> None:
    error = await generate_outcome(stub, request)
    if request.ByteSize() > MAX_MESSAGE_BYTES:  # refused by gRPC itself, before any of our code
        assert error is not None
        assert error.code() == Code.RESOURCE_EXHAUSTED, error.details()
        event("status RESOURCE_EXHAUSTED (message over 4 MiB)")
    elif error is not None:
        # NOT_FOUND: no model has that id. RESOURCE_EXHAUSTED: the model's queue is full (MODEL_BUSY).
        check_failure(error, {Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.RESOURCE_EXHAUSTED})
    await assert_healthy(stub, HEALTH_ID, CALL_TIMEOUT)


@settings(HYPOTHESIS, max_examples=100)
@given(request=load_requests())
@example(request=pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, model_id=HEALTH_ID))
@example(
    request=pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP,
        model=TINY_MODEL,
        model_id=HEALTH_ID,
        model_config=pb.ModelConfig(context_size=CONTEXT_SIZE),
    )
)
@example(
    request=pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="hf:a/b", backend_config=pb.BackendConfig())
)
async def test_load_model_with_arbitrary_fields(
    stub: Stub, health_model: str, upstreams: dict[int, FakeUpstream], request: pb.LoadModelRequest
) -> None:
    api_request_config(request.backend_config, request.backend, upstreams)
    # ALREADY_EXISTS: the id is taken. NOT_FOUND: no such file, or the provider does not offer the model.
    # FAILED_PRECONDITION: a file that is not a servable model (a link out of MODELS_PATH, not a GGUF), no API key.
    allowed = {Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.ALREADY_EXISTS, Code.FAILED_PRECONDITION}
    error = await unary_outcome(stub.LoadModel(request, timeout=CALL_TIMEOUT))
    loaded = request.model_id or request.model
    if error is None and loaded not in (HEALTH_ID, OPENAI_ID, ANTHROPIC_ID):
        await stub.UnloadModel(pb.UnloadModelRequest(model_id=loaded), timeout=CALL_TIMEOUT)
    elif error is None:  # the very request that loaded a fixture's model: LoadModel is idempotent
        event("status OK (the same model again)")
    else:
        check_failure(error, allowed | api_allowed(request.backend_config))
    await assert_healthy(stub, HEALTH_ID, CALL_TIMEOUT)


@settings(HYPOTHESIS, max_examples=60)
@given(model_id=st.one_of(IDS, st.sampled_from([OPENAI_ID, ANTHROPIC_ID])))
async def test_unload_model_with_arbitrary_ids(
    stub: Stub, health_model: str, upstreams: dict[int, FakeUpstream], model_id: str
) -> None:
    assume(model_id != HEALTH_ID)
    error = await unary_outcome(stub.UnloadModel(pb.UnloadModelRequest(model_id=model_id), timeout=CALL_TIMEOUT))
    if error is None:  # one of the fakes' models: load it again for the next examples
        backend = pb.BACKEND_TYPE_OPENAI if model_id == OPENAI_ID else pb.BACKEND_TYPE_ANTHROPIC
        request = pb.LoadModelRequest(backend=backend, model=upstreams[backend].models[0], model_id=model_id)
        await stub.LoadModel(request, timeout=CALL_TIMEOUT)
    else:
        check_failure(error, {Code.INVALID_ARGUMENT, Code.NOT_FOUND})  # NOT_FOUND: no model has that id
    await assert_healthy(stub, HEALTH_ID, CALL_TIMEOUT)


@settings(HYPOTHESIS, max_examples=60)
@given(request=list_requests())
async def test_list_models_with_arbitrary_fields(
    stub: Stub, health_model: str, upstreams: dict[int, FakeUpstream], request: pb.ListModelsRequest
) -> None:
    api_request_config(request.backend_config, request.backend, upstreams)
    error = await unary_outcome(stub.ListModels(request, timeout=CALL_TIMEOUT))
    if error is not None:
        # FAILED_PRECONDITION: no API key anywhere. NOT_FOUND: an upstream that has no model list.
        allowed = {Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION, Code.NOT_FOUND}
        check_failure(error, allowed | api_allowed(request.backend_config))
    await assert_healthy(stub, HEALTH_ID, CALL_TIMEOUT)


async def test_request_over_the_message_limit_is_resource_exhausted(stub: Stub, health_model: str) -> None:
    """Above --max-message-bytes (4 MiB) gRPC itself refuses the call, before any of our code runs."""
    request = pb.GenerateRequest(model_id=HEALTH_ID, prompt="x" * MAX_MESSAGE_BYTES)
    frames, error = await failed_stream(stub.Generate(request, timeout=CALL_TIMEOUT))
    assert frames == []
    assert error.code() == Code.RESOURCE_EXHAUSTED
    assert "larger than max" in (error.details() or "")
    await assert_healthy(stub, HEALTH_ID, CALL_TIMEOUT)

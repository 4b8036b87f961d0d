"""The llama.cpp backend end to end: real server, real channel, a real (tiny) GGUF model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import TINY_MODEL, collect, failed_stream, greedy, load_tiny, rich_details, serving
from tests.tiny_model import write_tiny_model
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


async def test_load_list_generate_unload_round_trip(stub: Stub) -> None:
    model = await load_tiny(stub, model_id="tiny")
    assert (model.id, model.name, model.backend) == ("tiny", TINY_MODEL, pb.BACKEND_TYPE_LLAMA_CPP)
    assert model.state == pb.MODEL_STATE_READY
    assert model.context_size == 2048  # the model's trained context, below the 4096 default cap

    listed = (await stub.ListModels(pb.ListModelsRequest())).models
    assert [m.id for m in listed] == ["tiny"]

    text, result = await collect(stub.Generate(greedy("the world", 12)))
    assert text.strip()
    assert result.finish_reason == pb.FINISH_REASON_LENGTH
    assert result.usage.completion_tokens == 12
    assert result.usage.prompt_tokens > 1
    assert result.timings.total.ToNanoseconds() >= result.timings.time_to_first_token.ToNanoseconds() > 0

    unloaded = (await stub.UnloadModel(pb.UnloadModelRequest(model_id="tiny"))).model
    assert unloaded.id == "tiny"
    assert (await stub.ListModels(pb.ListModelsRequest())).models == []
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(stub.Generate(greedy("the world", 4)))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_models_for_a_backend_lists_files_under_models_path(stub: Stub, tiny: str) -> None:
    """A file is AVAILABLE for a LoadModel, not loaded on demand (a tester's finding: the state alone said a Generate
    would load it, as it does a dormant model)."""
    models = (await stub.ListModels(pb.ListModelsRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP))).models
    assert [(m.id, m.state, m.loads_on_demand) for m in models] == [
        (tiny, pb.MODEL_STATE_READY, False),
        (TINY_MODEL, pb.MODEL_STATE_AVAILABLE, False),
    ]


async def test_stream_sends_deltas_in_order_and_the_result_last(stub: Stub, tiny: str) -> None:
    frames = [frame async for frame in stub.Generate(greedy("people", 20))]
    kinds = [frame.WhichOneof("frame") for frame in frames]
    assert kinds == ["delta"] * (len(frames) - 1) + ["result"]
    assert len(frames) > 2  # streamed piece by piece, not buffered
    streamed = "".join(frame.delta.text for frame in frames[:-1])
    again, _ = await collect(stub.Generate(greedy("people", 20)))
    assert streamed == again  # greedy decoding is deterministic


async def test_stop_sequence_ends_generation_before_it(stub: Stub, tiny: str) -> None:
    reference, _ = await collect(stub.Generate(greedy("the state", 24)))
    words = reference.split(" ")
    stop = " " + words[4]  # a word well inside the reference text
    expected = reference[: reference.index(stop)]
    text, result = await collect(stub.Generate(greedy("the state", 24, stop_sequences=[stop])))
    assert text == expected
    assert result.finish_reason == pb.FINISH_REASON_STOP_SEQUENCE
    assert result.usage.completion_tokens < 24


async def test_same_seed_same_text_and_sampling_varies_without_it(stub: Stub, tiny: str) -> None:
    def sampled(seed: int) -> pb.GenerateRequest:
        options = pb.GenerationOptions(max_tokens=24, temperature=1.5, seed=seed)
        return pb.GenerateRequest(model_id=tiny, prompt="life", options=options)

    first, _ = await collect(stub.Generate(sampled(1)))
    assert (await collect(stub.Generate(sampled(1))))[0] == first
    others = {(await collect(stub.Generate(sampled(seed))))[0] for seed in (2, 3, 4)}
    assert others - {first}
    # The largest seed too, which llama.cpp itself would read as "pick a random seed".
    largest = {(await collect(stub.Generate(sampled(2**32 - 1))))[0] for _ in range(4)}
    assert len(largest) == 1


async def test_chat_messages_use_the_gguf_chat_template(stub: Stub, tiny: str) -> None:
    messages = [pb.ChatMessage(role=pb.ROLE_USER, content="hello")]
    chat = pb.GenerateRequest(
        model_id=tiny, messages=messages, options=pb.GenerationOptions(max_tokens=8, temperature=0)
    )
    text, result = await collect(stub.Generate(chat))
    # The tiny model's template renders "<s><user>hello\n<assistant>": a plain prompt plus BOS.
    same_as_prompt, _ = await collect(stub.Generate(greedy("<user>hello\n<assistant>", 8)))
    assert text == same_as_prompt
    assert result.usage.completion_tokens == 8


async def test_concurrent_generations_on_one_model_all_complete_correctly(stub: Stub, tiny: str) -> None:
    prompts = ["the", "people work", "three years", "a good day", "world"]
    expected = [(await collect(stub.Generate(greedy(prompt, 16))))[0] for prompt in prompts]
    results = await asyncio.gather(*(collect(stub.Generate(greedy(prompt, 16))) for prompt in prompts))
    assert [text for text, _ in results] == expected
    assert all(result.usage.completion_tokens == 16 for _, result in results)


async def test_cancelled_stream_stops_decoding(stub: Stub) -> None:
    # With a 32k context a full generation takes many seconds; a follow-up call on the same
    # model (whose requests are served one at a time) only finishes quickly if decoding stopped.
    await load_tiny(stub, model_id="long", context_size=32768)
    endless = stub.Generate(greedy("the", 32768, model_id="long"))
    async for frame in endless:
        assert frame.HasField("delta")
        break
    endless.cancel()
    text, result = await collect(stub.Generate(greedy("the", 4, model_id="long"), timeout=5))
    assert result.usage.completion_tokens == 4
    assert text


async def test_deadline_stops_decoding(stub: Stub) -> None:
    await load_tiny(stub, model_id="long", context_size=32768)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(stub.Generate(greedy("the", 32768, model_id="long"), timeout=0.5))
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Decoding the 32,768 tokens on for nobody would take the model's slot for several times this bound, which
    # leaves a busy machine's slow steps room.
    _, result = await collect(stub.Generate(greedy("the", 4, model_id="long"), timeout=10))
    assert result.usage.completion_tokens == 4


async def test_unload_lets_the_running_generation_finish(stub: Stub, tiny: str) -> None:
    call = stub.Generate(greedy("the", 200))
    first = await call.read()
    assert isinstance(first, pb.GenerateResponse)
    assert first.HasField("delta")
    await stub.UnloadModel(pb.UnloadModelRequest(model_id=tiny))
    frames = [first]
    while (frame := await call.read()) is not grpc.aio.EOF:
        assert isinstance(frame, pb.GenerateResponse)
        frames.append(frame)
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_LENGTH
    assert frames[-1].result.usage.completion_tokens == 200


@pytest.mark.parametrize(
    ("template", "code", "reason"),
    [
        # A template's own refusal of the conversation is the caller's to fix.
        ("{{ raise_exception('roles must alternate') }}", grpc.StatusCode.INVALID_ARGUMENT, "CHAT_TEMPLATE_REJECTED"),
        # A template that cannot render at all is the model's fault: it needs another chat format.
        ("{{ bos_token }}{{ 1 / 0 }}", grpc.StatusCode.FAILED_PRECONDITION, "CHAT_TEMPLATE_FAILED"),
    ],
)
async def test_a_chat_template_that_fails_says_whose_fault_it_is(
    tmp_path: Path, template: str, code: grpc.StatusCode, reason: str
) -> None:
    write_tiny_model(tmp_path / "templated.gguf", chat_template=template)
    async with (
        serving({"MODELS_PATH": str(tmp_path)}) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        await check_template_failure(inference_pb2_grpc.InferenceServiceStub(channel), code, reason)


async def check_template_failure(stub: Stub, code: grpc.StatusCode, reason: str) -> None:
    await stub.LoadModel(
        pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="templated.gguf", model_id="templated")
    )
    chat = pb.GenerateRequest(model_id="templated", messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hello")])
    _, error = await failed_stream(stub.Generate(chat))
    assert error.code() == code
    info, _ = rich_details(error)
    assert info.reason == reason
    assert "chat template" in (error.details() or "")
    if code is grpc.StatusCode.FAILED_PRECONDITION:
        assert "ZeroDivisionError" in (error.details() or "")
        assert "chat_format" in (error.details() or "")
    # The same model still serves plain prompts.
    _, result = await collect(stub.Generate(greedy("the world", 4, "templated")))
    assert result.usage.completion_tokens == 4

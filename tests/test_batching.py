"""Continuous batching: generations decoded together on one model give the text they give alone."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import TINY_MODEL, collect, greedy, load_tiny
from warpcore.server.adapters.llama import scheduler
from warpcore.server.adapters.llama.adapter import LlamaCppAdapter
from warpcore.server.adapters.llama.context import NativeContext
from warpcore.server.core.domain import GenerationParams, LocalSettings, TextChunk
from warpcore.server.embedded import install_embedded_model
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

PROMPTS = ["the world", "people say", "life is", "when they", "my little", "good work"]
TOKENS = 48


async def load_batched(stub: Stub, parallel: int, model_id: str = "batched", context_size: int = 256) -> pb.Model:
    return await load_tiny(stub, model_id, context_size, parallel)


async def run_alone(stub: Stub, requests: list[pb.GenerateRequest]) -> list[tuple[str, pb.GenerateResult]]:
    return [await collect(stub.Generate(request)) for request in requests]


async def run_together(stub: Stub, requests: list[pb.GenerateRequest]) -> list[tuple[str, pb.GenerateResult]]:
    return list(await asyncio.gather(*(collect(stub.Generate(request)) for request in requests)))


async def test_greedy_streams_decoded_together_match_their_solo_runs(stub: Stub) -> None:
    model = await load_batched(stub, parallel=4)
    assert model.context_size == 256  # each slot has the whole context
    requests = [greedy(prompt, TOKENS, model.id) for prompt in PROMPTS]
    alone = await run_alone(stub, requests)
    together = await run_together(stub, requests)  # six streams on four slots: two wait, then join
    assert [text for text, _ in together] == [text for text, _ in alone]
    assert len({text for text, _ in alone}) == len(PROMPTS)  # distinct answers: a mix-up would show
    for _, result in together:
        assert result.finish_reason == pb.FINISH_REASON_LENGTH
        assert result.usage.completion_tokens == TOKENS


async def test_seeded_sampling_is_reproducible_per_request(stub: Stub) -> None:
    model = await load_batched(stub, parallel=3)

    def seeded(prompt: str, seed: int) -> pb.GenerateRequest:
        options = pb.GenerationOptions(max_tokens=TOKENS, temperature=1.5, top_k=50, top_p=0.98, seed=seed)
        return pb.GenerateRequest(model_id=model.id, prompt=prompt, options=options)

    requests = [seeded("the world", 7), seeded("the world", 8), seeded("life is", 7)]
    alone = await run_alone(stub, requests)
    together = await run_together(stub, requests)
    assert [text for text, _ in together] == [text for text, _ in alone]
    assert alone[0][0] != alone[1][0]  # the seed matters, so the match above is not sampling collapsing to greedy


async def test_stop_sequences_and_budgets_are_per_stream(stub: Stub) -> None:
    model = await load_batched(stub, parallel=2)
    free_text, _ = await collect(stub.Generate(greedy("the world", TOKENS, model.id)))
    stop = free_text[len(free_text) // 2 : len(free_text) // 2 + 3]
    assert stop.strip(), free_text
    requests = [greedy("the world", TOKENS, model.id, stop_sequences=[stop]), greedy("the world", 5, model.id)]
    (stopped, stopped_result), (short, short_result) = await run_together(stub, requests)
    assert stopped == free_text[: free_text.index(stop)]
    assert stopped_result.finish_reason == pb.FINISH_REASON_STOP_SEQUENCE
    assert short_result.usage.completion_tokens == 5
    assert free_text.startswith(short)


async def test_a_cancelled_stream_frees_its_slot_at_once(stub: Stub) -> None:
    model = await load_batched(stub, parallel=1 + 1, context_size=4096)
    long_request = greedy("the world", 3000, model.id)
    running = stub.Generate(long_request)
    await anext(aiter(running))  # decoding on slot one
    cancelled = stub.Generate(long_request)
    await anext(aiter(cancelled))  # decoding on slot two: both slots busy
    cancelled.cancel()
    # A third stream gets the freed slot and finishes while the first one is still far from done.
    _, result = await asyncio.wait_for(collect(stub.Generate(greedy("life is", 8, model.id))), timeout=30)
    assert result.usage.completion_tokens == 8
    assert not running.done()
    running.cancel()


async def test_queued_streams_beyond_the_slots_wait_their_turn_and_all_finish(stub: Stub) -> None:
    model = await load_batched(stub, parallel=2)
    requests = [greedy(PROMPTS[n % 3], 16, model.id) for n in range(9)]
    results = await run_together(stub, requests)
    alone = {prompt: text for prompt, (text, _) in zip(PROMPTS[:3], await run_alone(stub, requests[:3]), strict=True)}
    assert [text for text, _ in results] == [alone[PROMPTS[n % 3]] for n in range(9)]


async def test_a_prompt_too_long_for_a_slot_is_refused_and_the_others_run(stub: Stub) -> None:
    model = await load_batched(stub, parallel=2, context_size=32)
    good = stub.Generate(greedy("life is", 8, model.id))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await collect(stub.Generate(greedy("word " * 200, 8, model.id)))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "maximum context length is 32 tokens" in (refused.value.details() or "")
    _, result = await collect(good)
    assert result.usage.completion_tokens == 8


async def test_unloading_lets_running_streams_finish(stub: Stub) -> None:
    model = await load_batched(stub, parallel=2)
    streams = [stub.Generate(greedy(prompt, TOKENS, model.id)) for prompt in PROMPTS[:2]]
    for stream in streams:
        await anext(aiter(stream))
    await stub.UnloadModel(pb.UnloadModelRequest(model_id=model.id))
    for stream in streams:
        async for frame in stream:
            if frame.HasField("result"):
                assert frame.result.finish_reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_CANCELLED)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await collect(stub.Generate(greedy("life is", 4, model.id)))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


GEMMA_PROMPTS = [
    "The history of Rome in brief:",
    "Ten facts about cats:",
    "How to bake bread:",
    "A poem about the sea:",
    "The best way to learn Python is",
]


async def test_gemma_streams_decoded_together_match_their_solo_runs(tmp_path: Path) -> None:
    # Gemma's repacked weights change their last bits with the number of rows per call; the scheduler measures
    # how many rows it may decode together, and this checks the outcome on real text.
    adapter = LlamaCppAdapter(LocalSettings(parallel=4, threads=2), {"MODELS_PATH": str(tmp_path)})
    info = await adapter.load(install_embedded_model(tmp_path), 512)
    assert info.parallel == 4

    async def text(prompt: str) -> str:
        params = GenerationParams(prompt=prompt, messages=(), max_tokens=32, temperature=0.0)
        events = adapter.generate(params, threading.Event())
        return "".join([event.text async for event in events if isinstance(event, TextChunk)])

    try:
        alone = [await text(prompt) for prompt in GEMMA_PROMPTS]
        together = await asyncio.gather(*(text(prompt) for prompt in GEMMA_PROMPTS))
    finally:
        await adapter.close()
    assert together == alone
    assert len(set(alone)) == len(GEMMA_PROMPTS)


async def test_every_decode_call_holds_its_generations_in_rising_slot_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # llama.cpp decodes a call's rows in one pass only while their slots rise one by one; in any other order it
    # makes a pass per slot. Generations that ended shortest first must not come back in the reverse order.
    calls: list[list[int]] = []
    decode = NativeContext.decode

    def recording(native: NativeContext) -> bool:
        calls.append([native.batch.seq_id[row][0] for row in range(native.batch.n_tokens)])
        return decode(native)

    monkeypatch.setattr(NativeContext, "decode", recording)
    adapter = LlamaCppAdapter(LocalSettings(parallel=4, threads=2), {"MODELS_PATH": str(tmp_path)})
    await adapter.load(install_embedded_model(tmp_path), 256)

    async def finish(prompt: str, tokens: int) -> None:
        params = GenerationParams(prompt=prompt, messages=(), max_tokens=tokens, temperature=0.0)
        async for _ in adapter.generate(params, threading.Event()):
            pass

    try:
        for _ in range(2):
            await asyncio.gather(*(finish(prompt, 4 * (n + 1)) for n, prompt in enumerate(GEMMA_PROMPTS[:4])))
    finally:
        await adapter.close()
    together = [slots for slots in calls if len(set(slots)) > 1]
    assert len(together) > 8  # Gemma's generations did share calls, in both rounds
    for slots in together:
        assert slots == list(range(slots[0], slots[0] + len(slots))), slots


async def test_generations_that_come_as_the_batching_thread_ends_all_finish_alike(
    models_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A model's batching thread ends after scheduler.IDLE_SECONDS without work; a generation submitted just then
    # must find a thread (the old one or a new one), and unloading must free the context whichever ran last.
    monkeypatch.setattr(scheduler, "IDLE_SECONDS", 0.002)
    adapter = LlamaCppAdapter(LocalSettings(parallel=2, threads=2), {"MODELS_PATH": str(models_path)})
    await adapter.load(TINY_MODEL, 256)

    async def text() -> str:
        params = GenerationParams(prompt="the world", messages=(), max_tokens=6, temperature=0.0)
        events = adapter.generate(params, threading.Event())
        return "".join([event.text async for event in events if isinstance(event, TextChunk)])

    try:
        first = await text()
        for round_index in range(200):
            together = round_index % 3 + 1
            # A bound that catches a generation lost at the thread's end, not a busy machine's slow round.
            texts = await asyncio.wait_for(asyncio.gather(*(text() for _ in range(together))), 120)
            assert texts == [first] * together
            await asyncio.sleep((round_index % 5) * 0.001)  # around the idle limit: before, at and after it
    finally:
        await asyncio.wait_for(adapter.close(), 10)
    assert not [thread for thread in threading.enumerate() if thread.name == "llama-cpp-batch"]

"""A slot keeps the cells of the prompt it ran last (prompt_reuse.py): the next turn of a conversation starts from
the end of the turn before, but for a short last piece, where a beginning restored from the cache would end at a
whole piece on Gemma; the text and every log-probability stay those without any cache."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import collect, greedy
from tests.prompt_cache_support import (
    LONG_SYSTEM,
    TURNS,
    gemma,  # noqa: F401 - a fixture
    load,
    nothing_decoded_ahead,  # noqa: F401 - a fixture
    scored,
)
from tests.test_same_answer import gemma_path, gemma_stub  # noqa: F401 - the Gemma fixtures
from warpcore.server.adapters.llama import prompt_reuse
from warpcore.server.adapters.llama.adapter import LlamaCppAdapter
from warpcore.server.adapters.llama.context import MIN_CALL_ROWS, PREFILL_PIECE
from warpcore.server.adapters.llama.prefill import PIECES, PrefillCalls
from warpcore.server.core.domain import Finish, GenerationParams, LocalSettings, TextChunk
from warpcore.server.embedded import install_embedded_model
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

FREE = PrefillCalls(free=True)


def test_a_prompt_keeps_the_cells_any_other_decoding_gives() -> None:
    assert FREE.canonical(100) == 96  # 4 tokens from 96 on: a short last piece, a call of its own
    assert FREE.canonical(96 + MIN_CALL_ROWS) == 96 + MIN_CALL_ROWS
    assert FREE.canonical(96) == 96
    assert PIECES.canonical(100) == 96
    assert PIECES.canonical(127) == 96  # in pieces, the last one is whole or nothing


async def prompt_length(stub: Stub, prompt: str, model_id: str) -> int:
    counted = await stub.CountTokens(pb.CountTokensRequest(request=greedy(prompt, 1, model_id)))
    return counted.count.prompt_tokens


async def question_ending_at(stub: Stub, before: str, question: str, model_id: str, residue: int) -> str:
    """`before` and the question, padded until the prompt's length is `residue` past a whole piece."""
    padding = ""
    while (await prompt_length(stub, f"{before}\nQ: {question}{padding}\nA:", model_id)) % PREFILL_PIECE != residue:
        padding += " ok"
    return f"{before}\nQ: {question}{padding}\nA:"


@pytest.fixture
async def plain_and_cached(gemma: tuple[Stub, str]) -> Stub:  # noqa: F811 - the imported fixture
    """Gemma with one slot twice: "plain" without a prompt cache, "cached" with its default one."""
    stub, name = gemma
    await load(stub, name, "plain", parallel=1, cache_tokens=0)
    await load(stub, name, "cached", parallel=1, cache_tokens=None)
    return stub


@pytest.mark.usefixtures("nothing_decoded_ahead")  # decoded ahead: a test below
async def test_gemma_conversation_continues_from_the_end_of_the_turn_before(plain_and_cached: Stub) -> None:
    stub = plain_and_cached
    # Past a whole piece by more than a short piece, then by a short one: the turn after starts from the end
    # of the one before, then from the end of its last whole piece.
    residues = (PREFILL_PIECE // 2, PREFILL_PIECE // 2, MIN_CALL_ROWS - 3, PREFILL_PIECE // 2)
    text, previous = LONG_SYSTEM, 0
    for turn, residue in enumerate(residues):
        prompt = await question_ending_at(stub, text, TURNS[turn % len(TURNS)], "cached", residue)
        without, plain_scores, plain = await scored(stub, greedy(prompt, 12, "plain", logprobs=True))
        with_cache, scores, result = await scored(stub, greedy(prompt, 12, "cached", logprobs=True))
        assert (with_cache, scores) == (without, plain_scores), f"turn {turn}"
        assert result.usage.prompt_tokens == plain.usage.prompt_tokens
        if turn == 1:  # the first turn decoded more than Gemma's window and was not kept: restored from the cache
            assert result.usage.cached_prompt_tokens == previous // PREFILL_PIECE * PREFILL_PIECE
        elif turn:
            assert result.usage.cached_prompt_tokens == FREE.canonical(previous), f"turn {turn}"
        previous = result.usage.prompt_tokens
        text = prompt + without
    # Another prompt takes the slot: the beginnings the conversation left waiting there go into the cache, and
    # the conversation, back, finds its last whole piece there.
    await collect(stub.Generate(greedy("Another topic altogether. " + LONG_SYSTEM, 4, "cached")))
    back = f"{text}\nQ: {TURNS[0]}\nA:"
    without, plain_scores, _ = await scored(stub, greedy(back, 12, "plain", logprobs=True))
    with_cache, scores, result = await scored(stub, greedy(back, 12, "cached", logprobs=True))
    assert (with_cache, scores) == (without, plain_scores)
    assert result.usage.cached_prompt_tokens == previous // PREFILL_PIECE * PREFILL_PIECE


@pytest.mark.usefixtures("nothing_decoded_ahead")
async def test_gemma_prompt_kept_after_a_restore_is_not_cut_short_of_it(plain_and_cached: Stub) -> None:
    # A prompt longer than Gemma's window, asked again: its beginning is restored from the cache, a short last
    # piece decoded, and the prompt kept in its slot. The local layers of a restored stream hold only the window's
    # cells before where it was restored: a prompt that parts from it earlier must not start from it in place.
    stub = plain_and_cached
    asked = await question_ending_at(stub, LONG_SYSTEM, TURNS[0], "cached", 2)
    _, first = await collect(stub.Generate(greedy(asked, 4, "cached")))
    _, again = await collect(stub.Generate(greedy(asked, 4, "cached")))
    assert again.usage.cached_prompt_tokens == first.usage.prompt_tokens - 2
    for question in TURNS[1:]:
        other = greedy(f"{LONG_SYSTEM}\nQ: {question}\nA:", 12, "cached", logprobs=True)
        with_cache, scores, result = await scored(stub, other)
        assert 0 < result.usage.cached_prompt_tokens < again.usage.cached_prompt_tokens
        other.model_id = "plain"
        assert (with_cache, scores) == (await scored(stub, other))[:2], question


async def test_a_beginning_others_may_share_is_in_the_cache_while_its_generation_runs(
    gemma: tuple[Stub, str],  # noqa: F811 - the imported fixture
) -> None:
    stub, name = gemma
    await load(stub, name, "shared", parallel=2, cache_tokens=None)
    await load(stub, name, "plain", parallel=1, cache_tokens=0)
    long_answer = stub.Generate(greedy(f"{LONG_SYSTEM}\nQ: {TURNS[0]}\nA:", 1000, "shared"))
    async for frame in long_answer:
        if frame.HasField("delta") and frame.delta.text:
            break  # its prompt is decoded
    later = greedy(f"{LONG_SYSTEM}\nQ: {TURNS[1]}\nA:", 8, "shared", logprobs=True)
    text, scores, result = await scored(stub, later)
    assert not long_answer.done()
    # The first prompt's checkpoints went into the cache as its prefill passed them.
    assert result.usage.cached_prompt_tokens >= PREFILL_PIECE * 16
    later.model_id = "plain"
    assert (text, scores) == (await scored(stub, later))[:2]
    long_answer.cancel()


async def test_a_prompt_kept_out_of_the_cache_is_not_kept_in_its_slot(
    gemma: tuple[Stub, str],  # noqa: F811 - the imported fixture
) -> None:
    stub, name = gemma
    await load(stub, name, "cached", parallel=1, cache_tokens=None)
    secret = LONG_SYSTEM + "\nQ: What is the password?\nA:"
    _, private = await collect(stub.Generate(greedy(secret, 4, "cached", no_prompt_cache=True)))
    _, public = await collect(stub.Generate(greedy(secret + " It is", 4, "cached")))
    assert private.usage.cached_prompt_tokens == public.usage.cached_prompt_tokens == 0
    # A public prompt that continues it is kept in its slot; a private one that continues that starts from
    # nothing, neither its slot nor the cache.
    _, kept = await collect(stub.Generate(greedy(secret + " It is red", 4, "cached")))
    assert kept.usage.cached_prompt_tokens > 0
    _, again = await collect(stub.Generate(greedy(secret + " It is red and", 4, "cached", no_prompt_cache=True)))
    assert again.usage.cached_prompt_tokens == 0


async def test_gemma_answer_decoded_ahead_gives_the_next_turn_its_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the model has nothing to do, a conversation's answer is decoded into its slot ahead of the next turn,
    in calls whose cells are those the next prompt's own prefill gives: the next turn starts after the answer, with
    the text and log-probabilities it gets without any cache."""
    monkeypatch.setattr(prompt_reuse, "AHEAD_AFTER_SECONDS", 0.0)
    model = install_embedded_model(tmp_path)
    env = {"MODELS_PATH": str(tmp_path)}
    cached = LlamaCppAdapter(LocalSettings(threads=2, parallel=1), env)
    plain = LlamaCppAdapter(LocalSettings(threads=2, parallel=1, prompt_cache_tokens=0), env)
    for adapter in (cached, plain):
        await adapter.load(model, 2048)

    async def generated(adapter: LlamaCppAdapter, prompt: str) -> tuple[list[TextChunk], Finish]:
        params = GenerationParams(prompt=prompt, messages=(), max_tokens=12, temperature=0.0, logprobs=True)
        events = [event async for event in adapter.generate(params, threading.Event())]
        (finish,) = [event for event in events if isinstance(event, Finish)]
        return [event for event in events if isinstance(event, TextChunk)], finish

    async def decoded_ahead() -> None:
        scheduler = cached._scheduler
        assert scheduler is not None
        assert scheduler.prompts is not None
        for _ in range(1000):  # the batching thread decodes ahead on its own; nothing else runs meanwhile
            if scheduler.prompts.ahead_in() is None:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the answer was not decoded ahead")

    try:
        text, previous = LONG_SYSTEM, 0
        for turn in range(3):
            text += f"\nQ: {TURNS[turn]}\nA:"
            (chunks, finish), (plain_chunks, _) = await generated(cached, text), await generated(plain, text)
            assert chunks == plain_chunks, f"turn {turn}"
            if turn == 2:  # the turn before began from the cache, and so was decoded ahead with its answer
                assert finish.cached_prompt_tokens > previous
            assert finish.prompt_tokens is not None
            previous = finish.prompt_tokens
            text += "".join(chunk.text for chunk in chunks)
            await decoded_ahead()
    finally:
        await cached.close()
        await plain.close()

"""The prompt cache: a prompt that begins like an earlier one decodes only the rest, and greedy text is the same
with and without the cache, alone or beside others, with `parallel` 1 and 4."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import TINY_MODEL, collect, greedy, rich_details, serving
from tests.prompt_cache_support import (
    LONG_SYSTEM,
    LONGER_SYSTEM,
    SYSTEM,
    TURNS,
    cached_tokens,
    gemma,  # noqa: F401 - a fixture
    load,
    lookups,
    nothing_decoded_ahead,  # noqa: F401 - a fixture
    scored,
    system_text,
)
from tests.test_same_answer import gemma_path, gemma_stub  # noqa: F401 - the Gemma fixtures
from warpcore.server.adapters.llama.context import PREFILL_PIECE
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


def conversation(turns: int, answers: list[str], system: str = SYSTEM) -> str:
    """The prompt of turn `turns` (1-based): the system text, then every earlier question and answer."""
    parts = [system]
    for question, answer in zip(TURNS[:turns], [*answers, ""], strict=False):
        parts.append(f"\nQ: {question}\nA:{answer}")
    return "".join(parts)


async def answer(stub: Stub, prompt: str, model_id: str, tokens: int = 12, **options: object) -> str:
    text, _ = await collect(stub.Generate(greedy(prompt, tokens, model_id, **options)))
    return text


@pytest.fixture
async def served(models_path: Path) -> AsyncIterator[tuple[WarpcoreServer, Stub]]:
    async with (
        serving({"MODELS_PATH": str(models_path)}) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        yield server, inference_pb2_grpc.InferenceServiceStub(channel)


async def a_conversation_is_the_same_with_and_without_the_cache(
    server: WarpcoreServer, stub: Stub, model: str, parallel: int, system: str = SYSTEM
) -> None:
    await load(stub, model, "plain", parallel=parallel, cache_tokens=0)
    await load(stub, model, "cached", parallel=parallel, cache_tokens=None)
    answers: list[str] = []
    previous_prompt_tokens = 0
    for turn in range(1, len(TURNS) + 1):
        prompt = conversation(turn, answers, system)
        without, plain_scores, plain_result = await scored(stub, greedy(prompt, 12, "plain", logprobs=True))
        with_cache, scores, result = await scored(stub, greedy(prompt, 12, "cached", logprobs=True))
        assert with_cache == without, f"turn {turn}"
        assert scores == plain_scores, f"turn {turn}"  # every log-probability, bit for bit
        assert result.usage.prompt_tokens == plain_result.usage.prompt_tokens
        assert plain_result.usage.cached_prompt_tokens == 0
        # The usage says how much of the prompt came from the cache: the whole turn before on the tiny model;
        # Gemma's sliding window keeps a turn only up to a whole piece (prefix_cache.py), unless the slot still
        # holds it (prompt_reuse.py).
        cached = result.usage.cached_prompt_tokens
        if model == TINY_MODEL:
            assert cached == previous_prompt_tokens
        else:
            assert turn == 1 or previous_prompt_tokens - PREFILL_PIECE < cached <= previous_prompt_tokens
        previous_prompt_tokens = result.usage.prompt_tokens
        answers.append(without)
    # Every turn after the first began with the turn before it, and found it in the cache.
    assert lookups(server, "cached", "hit") == len(TURNS) - 1
    assert lookups(server, "cached", "miss") == 1
    assert lookups(server, "plain", "hit") == lookups(server, "plain", "miss") == 0
    # Beside each other, four callers sharing the cached system text get what each gets alone without it.
    questions = [f"{system}\nQ: Who is number {n}?\nA:" for n in range(4)]
    alone = [await answer(stub, question, "plain") for question in questions]
    together = await asyncio.gather(*(answer(stub, question, "cached") for question in questions))
    assert list(together) == alone
    assert lookups(server, "cached", "hit") == len(TURNS) - 1 + 4


@pytest.mark.parametrize("parallel", [1, 4])
@pytest.mark.usefixtures("nothing_decoded_ahead")
async def test_tiny_model_conversation_same_with_and_without_cache(
    served: tuple[WarpcoreServer, Stub], parallel: int
) -> None:
    await a_conversation_is_the_same_with_and_without_the_cache(*served, TINY_MODEL, parallel)


@pytest.mark.parametrize("parallel", [1, 4])
@pytest.mark.usefixtures("nothing_decoded_ahead")
async def test_gemma_conversation_same_with_and_without_cache(
    gemma_path: tuple[Path, str],  # noqa: F811 - the imported fixture
    parallel: int,
) -> None:
    root, name = gemma_path
    async with (
        serving({"MODELS_PATH": str(root), "LLAMA_THREADS": "2"}) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await a_conversation_is_the_same_with_and_without_the_cache(server, stub, name, parallel, LONG_SYSTEM)


async def test_the_cache_keeps_to_its_cap_and_drops_the_least_recently_used(
    served: tuple[WarpcoreServer, Stub],
) -> None:
    server, stub = served
    await load(stub, TINY_MODEL, "plain", parallel=1, cache_tokens=0)
    await load(stub, TINY_MODEL, "small", parallel=1, cache_tokens=512)
    topics = [f"Topic {n}. " + SYSTEM for n in range(3)]  # distinct from their first token on
    for topic in topics:
        assert await answer(stub, topic, "small") == await answer(stub, topic, "plain")
        assert cached_tokens(server, "small") <= 512
    # A prompt longer than the cap waits in its slot, and its beginning is saved when the next prompt takes the slot.
    assert 0 < cached_tokens(server, "small") <= 512
    # Only the latest fits: the first topic misses again, and still gets the same text.
    misses = lookups(server, "small", "miss")
    assert await answer(stub, topics[0], "small") == await answer(stub, topics[0], "plain")
    assert lookups(server, "small", "miss") == misses + 1
    assert await answer(stub, topics[0], "small") == await answer(stub, topics[0], "plain")
    assert lookups(server, "small", "hit") == 1


async def test_a_caller_can_keep_its_prompt_out_of_the_cache(served: tuple[WarpcoreServer, Stub]) -> None:
    server, stub = served
    await load(stub, TINY_MODEL, "cached", parallel=1, cache_tokens=None)
    private = answer(stub, SYSTEM + " A secret.", "cached", no_prompt_cache=True)
    assert await private == await answer(stub, SYSTEM + " A secret.", "cached", no_prompt_cache=True)
    assert cached_tokens(server, "cached") == 0
    assert lookups(server, "cached", "hit") == lookups(server, "cached", "miss") == 0
    _, result = await collect(stub.Generate(greedy(SYSTEM, 12, "cached")))
    assert cached_tokens(server, "cached") > 0
    # What a hosted API says it wrote to its cache; a local model's cache takes a prompt in when its generation
    # ends, or later (prompt_reuse.py), and no count of it belongs to one request (inference.proto).
    assert result.usage.cache_creation_tokens == 0


async def test_a_generation_cancelled_after_its_prompt_still_leaves_it_in_the_cache(
    served: tuple[WarpcoreServer, Stub],
) -> None:
    server, stub = served
    await load(stub, TINY_MODEL, "cached", parallel=1, cache_tokens=None)
    call = stub.Generate(greedy(SYSTEM, 1000, "cached"))
    async for frame in call:  # its first text: the prompt is decoded
        assert frame.HasField("delta")
        break
    call.cancel()
    # Saved as the slot is freed, on the batching thread, before the next generation starts there.
    _, result = await collect(stub.Generate(greedy(SYSTEM + " And more.", 4, "cached")))
    assert result.usage.cached_prompt_tokens == len(await prompt_tokens(stub, SYSTEM))
    assert cached_tokens(server, "cached") > 0


async def prompt_tokens(stub: Stub, prompt: str) -> list[int]:
    counted = await stub.CountTokens(pb.CountTokensRequest(request=greedy(prompt, 1, "cached"), include_tokens=True))
    return [token.id for token in counted.count.tokens]


async def test_prompt_cache_size_is_validated(served: tuple[WarpcoreServer, Stub]) -> None:
    _, stub = served
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await load(stub, TINY_MODEL, "huge", parallel=1, cache_tokens=2_000_000)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(raised.value)[1] == ["backend_config.local.prompt_cache_tokens"]


async def test_gemma_callers_sharing_a_system_prompt_find_all_of_it_after_the_second(
    gemma: tuple[Stub, str],  # noqa: F811 - the imported fixture
) -> None:
    """Gemma's sliding window lets a saved beginning serve only prompts that begin with all of it: callers after a
    first one start from a checkpoint every `window` tokens, and save where they part from it as their prefill
    passes it, for those after them;
    their own long prompts, saved last, do not push that out of a full cache, and in a second round, with the cache
    full of the first one's, neither do the first caller's beginnings push out each other."""
    stub, name = gemma
    await load(stub, name, "plain", parallel=1, cache_tokens=0)
    await load(stub, name, "cached", parallel=4, cache_tokens=4096)
    # Each question runs a few pieces long, so that the callers part before the first one's last whole piece.
    details = " Please answer in full sentences, naming every family and every field you know of." * 4

    async def cached(prompt: str) -> tuple[str, int]:
        text, result = await collect(stub.Generate(greedy(prompt, 4, "cached")))
        return text, result.usage.cached_prompt_tokens

    # A second round with another system prompt finds the cache full of the first one's beginnings.
    for system in (LONGER_SYSTEM, "Again. " + LONGER_SYSTEM):
        callers = [f"{system}\nQ: Question {n}: {TURNS[n % 3]}{details}\nA:" for n in range(6)]
        alone = [await collect(stub.Generate(greedy(prompt, 4, "plain"))) for prompt in callers]
        first = await cached(callers[0])
        together = await asyncio.gather(*(cached(prompt) for prompt in callers[1:5]))
        later = await cached(callers[5])
        assert [text for text, _ in [first, *together, later]] == [text for text, _ in alone]
        assert first[1] == 0
        # Together from a checkpoint, or from where they part once another one's prefill has passed it; the later
        # one from where they part.
        starts = sorted(tokens for _, tokens in together)
        assert 0 < starts[0] < later[1]
        assert set(starts) <= {starts[0], later[1]}
        shared = len(system) // 4  # Gemma takes about four characters a token here
        assert later[1] > shared * 0.8
        assert alone[5][1].usage.prompt_tokens - later[1] < 4 * PREFILL_PIECE


async def test_gemma_a_prompt_that_begins_a_longer_one_saved_before_finds_a_checkpoint(
    gemma: tuple[Stub, str],  # noqa: F811 - the imported fixture
) -> None:
    """With the cache at its default cap (the context), a prompt and its checkpoints did not fit together, so only
    the whole prompt was kept: the system prompt alone after it found nothing (a saved beginning serves, under
    Gemma's sliding window, only prompts that begin with all of it)."""
    stub, name = gemma
    await load(stub, name, "plain", parallel=1, cache_tokens=0)
    await load(stub, name, "cached", parallel=1, cache_tokens=None)
    system = system_text(70)  # over two of Gemma's sliding windows, more than half the cap
    await answer(stub, f"{system}\nQ: {TURNS[0]}\nA:", "cached", tokens=2)
    text, result = await collect(stub.Generate(greedy(system, 4, "cached")))
    assert result.usage.prompt_tokens > 1024
    assert result.usage.cached_prompt_tokens >= 512
    assert text == await answer(stub, system, "plain", tokens=4)


async def prompt_of(stub: Stub, tokens: int, model_id: str) -> str:
    """A prompt of exactly `tokens` tokens on the model: the shortest beginning of SYSTEM that has as many."""
    for length in range(1, len(SYSTEM)):
        counted = await stub.CountTokens(pb.CountTokensRequest(request=greedy(SYSTEM[:length], 1, model_id)))
        if counted.count.prompt_tokens == tokens:
            return SYSTEM[:length]
    raise AssertionError(f"no beginning of SYSTEM is {tokens} tokens long")


async def test_a_prompt_only_one_piece_long_is_no_lookup(served: tuple[WarpcoreServer, Stub]) -> None:
    """A tester's finding: a prompt of exactly one piece counted a miss every time, though nothing could ever serve
    it (its last token is always decoded, and the cache keeps whole pieces): not a lookup at all. One token more can
    start from the piece, and is counted."""
    server, stub = served
    await load(stub, TINY_MODEL, "cached", parallel=1, cache_tokens=None)
    one_piece = await prompt_of(stub, PREFILL_PIECE, "cached")
    for _ in range(2):
        await answer(stub, one_piece, "cached", tokens=2)
    assert (lookups(server, "cached", "hit"), lookups(server, "cached", "miss")) == (0, 0)
    longer = await prompt_of(stub, PREFILL_PIECE + 1, "cached")
    for _ in range(2):
        await answer(stub, longer, "cached", tokens=2)
    assert lookups(server, "cached", "hit") + lookups(server, "cached", "miss") == 2
    assert lookups(server, "cached", "hit") >= 1

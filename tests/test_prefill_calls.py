"""How prompts are cut into llama.cpp calls: freely where the load-time probe allows, in large calls when nothing
else waits, and with the same text and log-probabilities however they were cut."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from warpcore.server.adapters.llama import adapter as adapter_module
from warpcore.server.adapters.llama.adapter import LlamaCppAdapter
from warpcore.server.adapters.llama.context import LONE_PREFILL_PIECE, MIN_CALL_ROWS, PREFILL_PIECE, NativeContext
from warpcore.server.adapters.llama.prefill import PIECES, PrefillCalls
from warpcore.server.core.domain import Finish, GenerationParams, LocalSettings, TextChunk
from warpcore.server.embedded import install_embedded_model

FREE = PrefillCalls(free=True)


def test_calls_in_pieces_keep_to_the_grid() -> None:
    assert PIECES.end(0, 100, alone=True) == PREFILL_PIECE
    assert PIECES.end(96, 100, alone=False) == 100
    assert PIECES.usable(90, 100) == 64
    assert PIECES.usable(1000, 96) == 96 - PREFILL_PIECE  # a beginning leaves at least the last token


def test_calls_cut_freely_grow_when_alone_and_never_leave_a_short_last_call() -> None:
    assert FREE.end(0, 1000, alone=True) == LONE_PREFILL_PIECE
    assert FREE.end(0, 1000, alone=False) == PREFILL_PIECE
    assert FREE.end(10, 15, alone=False) == 15  # a short prompt is one call
    assert FREE.end(10, 45, alone=False) == 45 - MIN_CALL_ROWS  # the last call keeps its rows
    assert FREE.usable(1000, 150) == 150 - MIN_CALL_ROWS
    assert FREE.usable(145, 150) == 150 - MIN_CALL_ROWS
    assert FREE.usable(100, 150) == 100
    assert FREE.usable(140, 150) == 140  # the rest, ten tokens, is one call


def test_a_short_last_piece_is_decoded_alone_as_in_pieces() -> None:
    # 100 tokens: pieces end with 4 tokens from 96 on, which stay a call of their own.
    assert FREE.end(0, 100, alone=True) == 96
    assert FREE.end(96, 100, alone=True) == 100
    assert FREE.usable(1000, 100) == 96
    assert FREE.usable(93, 100) == 96 - MIN_CALL_ROWS  # never a call of fewer rows before that piece
    assert FREE.usable(80, 100) == 80


async def test_gemma_prompt_cut_alone_or_beside_a_stream_gives_the_same_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alone, a long prompt goes in calls of LONE_PREFILL_PIECE rows; beside a running stream, in pieces. The text
    and the log-probabilities are the same."""
    calls: list[int] = []
    decode = NativeContext.decode

    def recording(native: NativeContext) -> bool:
        calls.append(int(native.batch.n_tokens))
        return decode(native)

    monkeypatch.setattr(NativeContext, "decode", recording)
    adapter = LlamaCppAdapter(
        LocalSettings(parallel=2, threads=2, prompt_cache_tokens=0), {"MODELS_PATH": str(tmp_path)}
    )
    await adapter.load(install_embedded_model(tmp_path), 1024)
    prompt = " ".join(f"Line {n}: the ferry leaves the harbour at {n + 6} o'clock." for n in range(30)) + " Summary:"
    params = GenerationParams(prompt=prompt, messages=(), max_tokens=16, temperature=0.0, logprobs=True)

    async def generated() -> list[TextChunk]:
        return [event async for event in adapter.generate(params, threading.Event()) if isinstance(event, TextChunk)]

    try:
        calls.clear()
        alone = await generated()
        assert max(calls) == LONE_PREFILL_PIECE
        neighbour = adapter.generate(
            GenerationParams(prompt="Once upon a time", messages=(), max_tokens=2000, temperature=0.0),
            stop := threading.Event(),
        )
        try:
            async for event in neighbour:  # the neighbour is generating: the prompt goes in pieces beside it
                if isinstance(event, TextChunk):
                    break
            calls.clear()
            beside = await generated()
        finally:
            stop.set()
            await neighbour.aclose()
    finally:
        await adapter.close()
    assert max(calls) == PREFILL_PIECE
    assert beside == alone
    assert "".join(chunk.text for chunk in alone)


async def test_gemma_prompts_cut_freely_get_the_answers_pieces_gave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every prompt used to go in pieces, as it still does on a model that fails the probe: cut freely, a request
    gets the same text and log-probabilities, whether its last piece is short or not."""
    model = install_embedded_model(tmp_path)
    env = {"MODELS_PATH": str(tmp_path)}
    free = LlamaCppAdapter(LocalSettings(threads=2, prompt_cache_tokens=0), env)
    await free.load(model, 1024)
    monkeypatch.setattr(adapter_module, "splits_freely", lambda native, context_size: False)
    pieces = LlamaCppAdapter(LocalSettings(threads=2, prompt_cache_tokens=0), env)
    await pieces.load(model, 1024)

    async def generated(adapter: LlamaCppAdapter, prompt: str) -> tuple[list[TextChunk], int]:
        params = GenerationParams(prompt=prompt, messages=(), max_tokens=8, temperature=0.0, logprobs=True)
        events = [event async for event in adapter.generate(params, threading.Event())]
        (finish,) = [event for event in events if isinstance(event, Finish)]
        assert finish.prompt_tokens is not None
        return [event for event in events if isinstance(event, TextChunk)], finish.prompt_tokens

    lengths = set()
    try:
        for words in range(40, 120, 7):
            prompt = " ".join(f"ferry{n % 9}" for n in range(words)) + " Timetable:"
            (cut_freely, length), in_pieces = await generated(free, prompt), await generated(pieces, prompt)
            assert cut_freely == in_pieces[0], length
            lengths.add(0 < length % PREFILL_PIECE < MIN_CALL_ROWS)
    finally:
        await free.close()
        await pieces.close()
    assert lengths == {True, False}  # both kinds of last piece were tried


async def test_gemmas_memory_estimate_counts_each_slots_kv_cache_as_measured(tmp_path: Path) -> None:
    """Gemma's heads are wider (256) than its embedding over its head count (640 / 4): the estimate reads the GGUF's
    key and value widths, and one more slot of 4,096 cells costs the 72 MiB measured (README, Memory)."""
    name = install_embedded_model(tmp_path)
    estimates = []
    for parallel in (1, 2):
        adapter = LlamaCppAdapter(
            LocalSettings(parallel=parallel, threads=1, prompt_cache_tokens=0), {"MODELS_PATH": str(tmp_path)}
        )
        estimates.append((await adapter.load(name, 4096)).memory_bytes)
        await adapter.close()
    assert estimates[1] - estimates[0] == 4096 * 18 * (256 + 256) * 2 == 72 * 2**20

"""How prompts are cut into llama.cpp calls: freely where the load-time probe allows, in large calls when nothing
else waits, and with the same text and log-probabilities however they were cut."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from warpcore.server.adapters.llama.adapter import LlamaCppAdapter
from warpcore.server.adapters.llama.context import LONE_PREFILL_PIECE, MIN_CALL_ROWS, PREFILL_PIECE, NativeContext
from warpcore.server.adapters.llama.prefill import PrefillCalls
from warpcore.server.core.domain import GenerationParams, LocalSettings, TextChunk
from warpcore.server.embedded import install_embedded_model

FREE, GRID = PrefillCalls(free=True), PrefillCalls(free=False)


def test_calls_cut_in_pieces_keep_to_the_grid() -> None:
    assert GRID.end(0, 100, alone=True) == PREFILL_PIECE
    assert GRID.end(96, 100, alone=False) == 100
    assert GRID.least_rest == 1


def test_calls_cut_freely_grow_when_alone_and_never_leave_a_short_last_call() -> None:
    assert FREE.end(0, 1000, alone=True) == LONE_PREFILL_PIECE
    assert FREE.end(0, 1000, alone=False) == PREFILL_PIECE
    assert FREE.end(10, 15, alone=False) == 15  # a short prompt is one call
    assert FREE.end(0, PREFILL_PIECE + 3, alone=False) == PREFILL_PIECE + 3 - MIN_CALL_ROWS
    assert FREE.least_rest == MIN_CALL_ROWS


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

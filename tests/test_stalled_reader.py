"""A local generation whose caller stops reading waits for it, its slot kept, and goes on the same once it reads."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from tests.conftest import TINY_MODEL
from warpcore.server.adapters.llama.adapter import LlamaCppAdapter
from warpcore.server.adapters.llama.job import MAX_UNREAD
from warpcore.server.core.domain import Finish, GenerationParams, LocalSettings, TextChunk
from warpcore.server.core.occupancy import Occupancy

MAX_TOKENS = 1500
"""Far more than a caller may leave unread: a generation that went on for nobody would reach it."""


async def settled_cells(occupancy: Occupancy, quiet: float = 0.2, limit: float = 10.0) -> int:
    """The KV cells the running generations hold, once that count has not changed for `quiet` seconds."""
    deadline = time.monotonic() + limit
    last, since = occupancy.cells_used, time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        if occupancy.cells_used != last:
            last, since = occupancy.cells_used, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


async def test_a_generation_waits_for_a_caller_that_stops_reading_and_then_goes_on_the_same(
    models_path: Path,
) -> None:
    # It decoded on for nobody up to max_tokens, a core busy and the model's slot held, while its client (a full
    # connection) read nothing.
    adapter = LlamaCppAdapter(LocalSettings(parallel=2, threads=2), {"MODELS_PATH": str(models_path)})
    occupancy = (await adapter.load(TINY_MODEL, 2048)).occupancy
    assert occupancy is not None
    params = GenerationParams(prompt="the world", messages=(), max_tokens=MAX_TOKENS, temperature=0.0)
    try:
        alone = [event async for event in adapter.generate(params, threading.Event())]
        assert isinstance(alone[-1], Finish)
        assert alone[-1].completion_tokens == MAX_TOKENS

        events = adapter.generate(params, threading.Event())
        taken = [await anext(events) for _ in range(4)]
        held = await settled_cells(occupancy)  # nothing more is read meanwhile
        assert 0 < held < alone[-1].prompt_tokens + len(taken) + 2 * MAX_UNREAD
        taken += [event async for event in events]
    finally:
        await adapter.close()
    text = "".join(event.text for event in taken if isinstance(event, TextChunk))
    assert text == "".join(event.text for event in alone if isinstance(event, TextChunk))
    assert taken[-1] == alone[-1]

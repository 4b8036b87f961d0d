"""Fewer, larger writes when a backend streams faster than its caller reads."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncGenerator

from warpcore.server.core.domain import Finish, GenerationEvent, ReasoningChunk, TextChunk, ToolCallDelta
from warpcore.server.core.tokens import PromptUsage

Delta = PromptUsage | TextChunk | ReasoningChunk | ToolCallDelta

JOIN_BACKLOG = 8
"""Deltas waiting to be written beyond which they are joined into one frame."""
READ_SLICE = 16
"""Deltas read ahead, while a frame is being written, between two looks at whether it is done."""


async def coalesced(events: AsyncGenerator[GenerationEvent, None]) -> AsyncGenerator[GenerationEvent, None]:
    """`events`, read ahead by a task while the caller writes the previous one. Deltas go out one per frame, as
    the backend cut them, while the writer keeps up; once more than JOIN_BACKLOG wait, they all go joined in one
    frame, so that a fast upstream costs one message per write rather than one per token.

    Text that finds the writer idle goes out at once (the first always does); order is kept, and the `Finish`
    or the failure comes after the last text. A `PromptUsage` goes out as it comes, ahead of the first delta,
    never joined. Closing this generator stops the reading and closes `events`.

    Nothing after the first delta is read until it is written: reading a burst already buffered keeps this
    process busy for many milliseconds, and on a host with few cores the caller, woken by the first frame, would
    wait behind it (and behind the upstream sending the burst) before it sees its first token.
    """
    texts: collections.deque[Delta] = collections.deque()
    ending: list[Finish | Exception] = []
    ready = asyncio.Event()
    first_written = asyncio.Event()
    waiting = finished = False

    async def read_ahead() -> None:
        nonlocal finished
        try:
            async for event in events:
                if isinstance(event, Finish):
                    ending.append(event)
                    continue
                texts.append(event)
                if waiting:  # the writer is idle: it takes this text now, before the buffered events are read
                    ready.set()
                    if first_written.is_set() or type(event) is PromptUsage:
                        await asyncio.sleep(0)
                    else:  # the first frame goes out alone, before the rest of a burst is read
                        await first_written.wait()
                elif len(texts) % READ_SLICE == 0:
                    # Reading an upstream whose bytes are already buffered never yields to the loop: let it see
                    # whether the frame being written is done, so that the text read meanwhile goes out.
                    await asyncio.sleep(0)
        except Exception as error:  # noqa: BLE001 - handed to the writer, which raises it after the text before it
            ending.append(error)
        finally:
            finished = True
            ready.set()

    reader = asyncio.ensure_future(read_ahead())
    try:
        while True:
            if not texts and not finished:
                waiting = True
                ready.clear()
                await ready.wait()
                waiting = False
            if len(texts) > JOIN_BACKLOG:
                backlog = list(texts)
                texts.clear()
                for joined in _joined(backlog):
                    yield joined
            elif texts:
                delta = texts.popleft()
                yield delta
                if type(delta) is not PromptUsage:  # the first delta still goes out alone
                    first_written.set()
            elif finished:
                break
        for end in ending:
            if isinstance(end, Exception):
                raise end
            yield end
    finally:
        if not reader.done():
            reader.cancel()
            await asyncio.wait([reader])
        await events.aclose()


def _joined(deltas: list[Delta]) -> list[Delta]:
    """`deltas` with each run of text chunks made one chunk, their tokens' logprobs joined as their text is; other
    deltas keep their place."""
    out: list[Delta] = []
    for delta in deltas:
        previous = out[-1] if out else None
        if isinstance(delta, TextChunk) and isinstance(previous, TextChunk):
            out[-1] = TextChunk(previous.text + delta.text, previous.logprobs + delta.logprobs)
        else:
            out.append(delta)
    return out

"""Fewer, larger writes when a backend streams faster than its caller reads."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncGenerator

from warpcore.server.core.domain import (
    Finish,
    GenerationEvent,
    ReasoningChunk,
    TextChunk,
    ToolCallDelta,
    UpstreamOpened,
)
from warpcore.server.core.tokens import PromptUsage

Delta = UpstreamOpened | PromptUsage | TextChunk | ReasoningChunk | ToolCallDelta

JOIN_BACKLOG = 8
"""Deltas waiting to be written beyond which they are joined into one frame."""
READ_SLICE = 16
"""Deltas read without waiting, between two turns given to the writer."""
READ_AHEAD = 256
"""Deltas read at most ahead of the writer: a caller that stops reading stops the reading of its backend (an
upstream's socket fills and its sender waits; a local model's deltas wait in its queue, at most max_tokens of them)
rather than this process holding all a backend sends."""
FIRST_FRAME_HEADSTART = 0.001
"""Seconds the caller gets, once the first frame is written, before the rest of a stream is read: about a scheduler
time slice, long enough for the kernel to run the woken caller (and its transport's threads) on a busy core, short
beside the time between two tokens of any model that is not already done."""


async def coalesced(events: AsyncGenerator[GenerationEvent, None]) -> AsyncGenerator[GenerationEvent, None]:
    """`events`, read ahead by a task while the caller writes the previous one. Deltas go out one per frame, as
    the backend cut them, while the writer keeps up; once more than JOIN_BACKLOG wait, they all go joined in one
    frame, so that a fast upstream costs one message per write rather than one per token.

    The reader hands text to an idle writer when it has to wait for the next event, or after READ_SLICE events
    read without waiting: an upstream whose events are already buffered is read a slice at a time, whose deltas go
    out joined. A writer that never waits (an HTTP response's write returns at once until the socket's buffers are
    full) would otherwise take each delta alone, and the caller's SDK would parse one event per token. The first
    delta always goes out at once, alone; order is kept, and the `Finish` or the failure comes after the last text.
    An `UpstreamOpened` and a `PromptUsage` go out as they come, ahead of the first delta, never joined. No more
    than READ_AHEAD deltas are read ahead of the writer. Closing this generator stops the reading and closes
    `events`.

    Until the first delta, nothing is read ahead: the prompt's usage and the first delta are read in the caller's
    task and handed on at once, as a reader task's hand-over would cost each a turn of the event loop. Nothing
    after the first delta is read until it is written, and FIRST_FRAME_HEADSTART after that: reading a burst
    already buffered keeps this process busy for many milliseconds, and on a host with few cores the caller, woken
    by the first frame, would wait behind it (and behind the upstream sending the burst) before it sees its first
    token. Writing returns when the frame is handed to the transport, before the caller has run: the pause leaves
    the core to it.
    """
    texts: collections.deque[Delta] = collections.deque()
    ending: list[Finish | Exception] = []
    ready = asyncio.Event()
    taken = asyncio.Event()  # the writer took what was read ahead
    waiting = finished = False

    async def read_ahead() -> None:
        nonlocal finished
        try:
            await asyncio.sleep(FIRST_FRAME_HEADSTART)
            async for event in events:
                if isinstance(event, Finish):
                    ending.append(event)
                    continue
                texts.append(event)
                if waiting:
                    ready.set()
                if len(texts) >= READ_AHEAD:
                    taken.clear()
                    await taken.wait()
                elif len(texts) % READ_SLICE == 0:
                    # Reading an upstream whose bytes are already buffered never yields to the loop: give the
                    # writer a turn, so that the text read meanwhile goes out.
                    await asyncio.sleep(0)
        except Exception as error:  # noqa: BLE001 - handed to the writer, which raises it after the text before it
            ending.append(error)
        finally:
            finished = True
            ready.set()

    reader: asyncio.Future[None] | None = None
    try:
        async for event in events:
            yield event
            if not isinstance(event, UpstreamOpened | PromptUsage | Finish):
                break
        else:
            return
        reader = asyncio.ensure_future(read_ahead())
        while True:
            if not texts and not finished:
                waiting = True
                ready.clear()
                await ready.wait()
                waiting = False
            if len(texts) > JOIN_BACKLOG:
                backlog = list(texts)
                texts.clear()
                taken.set()
                for joined in _joined(backlog):
                    yield joined
            elif texts:
                yield texts.popleft()  # a reader held at READ_AHEAD is woken by a join: more than JOIN_BACKLOG wait
            elif finished:
                break
        for end in ending:
            if isinstance(end, Exception):
                raise end
            yield end
    finally:
        if reader is not None and not reader.done():
            reader.cancel()
            await asyncio.wait([reader])
        await events.aclose()


def _joined(deltas: list[Delta]) -> list[Delta]:
    """`deltas` with each run of text chunks made one chunk (a refusal's apart from an answer's), their tokens'
    logprobs joined as their text is; other deltas keep their place. Each run is joined once, at its end: a backlog
    of a fast stream's thousands of deltas costs their length, not its square."""
    out: list[Delta] = []
    run: list[TextChunk] = []

    def end_run() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            logprobs = tuple(logprob for chunk in run for logprob in chunk.logprobs)
            out.append(TextChunk("".join(chunk.text for chunk in run), logprobs, run[0].refusal))
        run.clear()

    for delta in deltas:
        if isinstance(delta, TextChunk) and (not run or delta.refusal == run[0].refusal):
            run.append(delta)
            continue
        end_run()
        if isinstance(delta, TextChunk):
            run.append(delta)
        else:
            out.append(delta)
    end_run()
    return out

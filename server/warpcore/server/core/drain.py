"""Shutdown of the generations in flight: wait for them, then stop them so that each ends with a final result."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

FINAL_FRAME_MARGIN = 0.5
"""Seconds kept at the end of the grace for the final results, before the front door cancels what is left."""
STOPPED_WAIT = 0.25
"""Seconds stopped generations get to end at their next step with their CANCELLED result."""
CANCELLED_WAIT = 5.0
"""Seconds cancelled calls (a stalled upstream, a queue) get to unwind."""


class ActiveStreams:
    """The generations in flight, each with the flag that stops it."""

    def __init__(self) -> None:
        self._stops: dict[asyncio.Task[object], threading.Event] = {}
        self._ended_by_shutdown: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._now = asyncio.Event()

    @contextlib.contextmanager
    def track(self, stop: threading.Event) -> Iterator[None]:
        """Track the running call; `stop` is its generation's flag, which `drain` sets once the grace is over."""
        task = asyncio.current_task()
        assert task is not None
        self._stops[task] = stop
        self._idle.clear()
        try:
            yield
        finally:
            del self._stops[task]
            self._ended_by_shutdown.discard(task)
            if not self._stops:
                self._idle.set()

    def ended_by_shutdown(self) -> bool:
        """Whether the running call was cancelled by `drain`, rather than by its caller."""
        return asyncio.current_task() in self._ended_by_shutdown

    def end_now(self) -> None:
        """Cut the shutdown's grace short (an operator's second interrupt): the calls in flight are stopped at once,
        each generation still ending with its final result."""
        self._now.set()

    async def ended_now(self) -> None:
        """Until `end_now`."""
        await self._now.wait()

    async def drain(self, grace: float) -> None:
        """Give the calls `grace` seconds (less the margin for final results) to finish, unless `end_now` cuts it
        short; then stop their generations, which end at their next step with a CANCELLED result counting what they
        used, and a moment later cancel those that could not end so."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle_or_now(), max(grace - FINAL_FRAME_MARGIN, 0.0))
        for stop in self._stops.values():
            stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), STOPPED_WAIT)
        for task in list(self._stops):
            self._ended_by_shutdown.add(task)
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), CANCELLED_WAIT)

    async def _idle_or_now(self) -> None:
        waits = [asyncio.ensure_future(self._idle.wait()), asyncio.ensure_future(self.ended_now())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

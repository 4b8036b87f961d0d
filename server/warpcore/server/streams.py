"""The Generate calls in flight, so that shutdown can wait for them and then end them with a final frame."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class ActiveStreams:
    def __init__(self) -> None:
        self._stops: dict[asyncio.Task[object], threading.Event] = {}
        self._ended_by_shutdown: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

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
        """Whether the running call was cancelled by `drain`, rather than by its client."""
        return asyncio.current_task() in self._ended_by_shutdown

    async def drain(self, grace: float) -> None:
        """Wait up to `grace` seconds for the calls to finish; then stop their generations, which end at their next
        step with a CANCELLED result that counts what they used, and cancel those that could not end so (a stalled
        upstream, a queue) a moment later."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        for stop in self._stops.values():
            stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), 0.25)
        for task in list(self._stops):
            self._ended_by_shutdown.add(task)
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), 5)

"""The Generate calls in flight, so that shutdown can wait for them and then end them with a final frame."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class ActiveStreams:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self._ended_by_shutdown: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.stopping = False
        """Set when the grace period is over: streams end at their next event, with a CANCELLED frame."""

    def __len__(self) -> int:
        return len(self._tasks)

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._idle.clear()
        try:
            yield
        finally:
            self._tasks.discard(task)
            self._ended_by_shutdown.discard(task)
            if not self._tasks:
                self._idle.set()

    def ended_by_shutdown(self) -> bool:
        """Whether the running call was cancelled by `drain`, rather than by its client."""
        return asyncio.current_task() in self._ended_by_shutdown

    async def drain(self, grace: float) -> None:
        """Wait up to `grace` seconds for the calls to finish; then ask them to end at their next event, and
        cancel those still waiting for one (a stalled upstream, a queue) a moment later."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        self.stopping = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), 0.25)
        for task in list(self._tasks):
            self._ended_by_shutdown.add(task)
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), 5)

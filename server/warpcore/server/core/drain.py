"""Shutdown of the calls in flight: wait for them, then end each with an answer of ours (a generation with its final
result, any other call with UNAVAILABLE, reason SHUTTING_DOWN)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from warpcore.server.core.limits import shutting_down

_log = logging.getLogger("warpcore.server")

FINAL_FRAME_MARGIN = 0.5
"""Seconds kept at the end of the grace for the final results."""
STOPPED_WAIT = 0.25
"""Seconds a stopped generation that checks its flag only as its upstream sends (a hosted API's) gets to end with its
CANCELLED result, before it is cancelled."""
CANCELLED_WAIT = 5.0
"""Seconds cancelled calls (a stalled upstream, a load, a pull) get to unwind."""
STEP_WAIT = 5.0
"""Seconds stopped local generations get to end their decode step and write their result: one whose result cannot be
written (its client stopped reading, its connection full) is cancelled then, or the process would wait for it."""


@dataclass(frozen=True)
class _Call:
    stop: threading.Event | None
    ends_when_stopped: bool


class ActiveStreams:
    """The engine's calls in flight, through either door: generations, each with the flag that stops it, and the
    other calls (loads, unloads, pulls, counts, waits for a model to load), which the shutdown cancels."""

    def __init__(self) -> None:
        self._calls: dict[asyncio.Task[object], _Call] = {}
        self._ended_by_shutdown: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._now = asyncio.Event()

    @contextlib.contextmanager
    def track(self, stop: threading.Event | None = None, *, ends_when_stopped: bool = False) -> Iterator[None]:
        """Track the running call. `stop` is its generation's flag, which `drain` sets once the grace is over; with
        `ends_when_stopped` the generation then ends by itself with its exact usage (a local model's, at its next
        decode step, however long that takes), else it is cancelled soon after. A call cancelled by `drain` and not
        ended otherwise (a load, a pull) raises UNAVAILABLE, reason SHUTTING_DOWN, for its caller to retry
        elsewhere. Tracked again inside (a call from its start, then, once admitted, as a generation with its flag),
        the call is what the inner tracking says until that ends."""
        task = asyncio.current_task()
        assert task is not None
        outer = self._calls.get(task)
        self._calls[task] = _Call(stop, ends_when_stopped)
        self._idle.clear()
        try:
            yield
        except asyncio.CancelledError:
            if task in self._ended_by_shutdown:
                raise shutting_down() from None
            raise
        finally:
            if outer is not None:
                self._calls[task] = outer
            else:
                del self._calls[task]
                self._ended_by_shutdown.discard(task)
                if not self._calls:
                    self._idle.set()

    def ended_by_shutdown(self) -> bool:
        """Whether the running call was cancelled by `drain`, rather than by its caller."""
        return asyncio.current_task() in self._ended_by_shutdown

    def end_now(self) -> None:
        """Cut the shutdown's grace short (an operator's second interrupt): the calls in flight are ended at once,
        each generation still ending with its final result."""
        self._now.set()

    async def drain(self, grace: float) -> None:
        """Give the calls `grace` seconds (less the margin for final results) to finish, unless `end_now` cuts it
        short; then stop the generations, which end with a CANCELLED result counting what they used, and cancel the
        calls that cannot end so. A local generation ends at the end of its current decode step: waited for, so
        that its usage is exact, even when that step outlasts the grace, for STEP_WAIT at most."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle_or_now(), max(grace - FINAL_FRAME_MARGIN, 0.0))
        stopped: dict[asyncio.Task[object], bool] = {}  # each generation stopped: whether it is a local one
        for task, call in self._calls.items():
            if call.stop is not None:
                call.stop.set()
                stopped[task] = call.ends_when_stopped
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), STOPPED_WAIT)
        stepping = [task for task, call in self._calls.items() if call.ends_when_stopped]
        cancelled = [task for task in self._calls if task not in stepping]
        # Counted as stopped, not as still running after the wait: a generation that ended in it (a local one at its
        # step, a hosted one at its upstream's next event) was cut all the same, and each ends with a CANCELLED result.
        local = sum(stopped.values())
        others = sum(task not in stopped for task in cancelled)  # one still writing a stopped generation's end is not
        if stopped or others:
            _log.info(
                "grace over: %d local generations end at their current decode step; %d hosted generations and %d"
                " other calls are cancelled",
                local,
                len(stopped) - local,
                others,
            )
        for task in cancelled:
            self._ended_by_shutdown.add(task)
            task.cancel()
        if cancelled:
            await asyncio.wait(cancelled, timeout=CANCELLED_WAIT)
        # Waited for to the end of their step, STEP_WAIT at most. None joins them meanwhile: a model's gate refuses
        # every call from the shutdown's start (Limits.close), one that waited for its model's load too.
        if stepping:
            await asyncio.wait(stepping, timeout=STEP_WAIT)
        stepping = [task for task, call in self._calls.items() if call.ends_when_stopped]
        for task in stepping:
            self._ended_by_shutdown.add(task)
            task.cancel()
        if stepping:
            _log.info("%d local generations did not end within %g s of their stop: cancelled", len(stepping), STEP_WAIT)
            await asyncio.wait(stepping, timeout=CANCELLED_WAIT)

    async def _idle_or_now(self) -> None:
        waits = [asyncio.ensure_future(self._idle.wait()), asyncio.ensure_future(self._now.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

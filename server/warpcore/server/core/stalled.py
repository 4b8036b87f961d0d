"""A caller that stops reading its stream keeps what its generation holds (a model's slot, a local model's cells,
an upstream's connection) only for so long: a client that never reads again, and never closes its connection,
would otherwise hold them until the process ends, and the callers queued behind it would wait as long."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable

from warpcore.server.core.access import current_request_id, record_stalled
from warpcore.server.core.errors import DeadlineExceededError, WarpcoreError

_log = logging.getLogger("warpcore.server")

CHECKS = 4
"""Looks at a generation per timeout: a caller is cut after reading nothing for between the timeout and a quarter
more, for four timer callbacks a timeout rather than a clock read per token."""

StalledHandler = Callable[[WarpcoreError], None]
"""How a front door tells a caller it cut, once that caller reads again (gRPC: a status behind the frames already
written); HTTP has no such way, and its connection is closed."""
_stalled_handler: contextvars.ContextVar[StalledHandler | None] = contextvars.ContextVar(
    "stalled_handler", default=None
)


def on_stalled(handler: StalledHandler) -> None:
    """Set, in the task of a call, how its caller learns that it was cut for reading nothing."""
    _stalled_handler.set(handler)


def stalled_error(timeout: float) -> WarpcoreError:
    return DeadlineExceededError(
        f"this stream's caller read nothing of it for {timeout:g} s; the server stopped its generation (the server's"
        " --stalled-reader-timeout): read a stream as it comes, or cancel it",
        reason="STALLED_READER",
        metadata={"stalled_reader_timeout_seconds": f"{timeout:g}"},
    )


class StalledReader:
    """Counts the outputs a generation hands out (`given`) and its caller takes (`taken`: the generation was asked
    for the next one); cancels the caller's task once an output has waited `timeout` seconds untaken. The caller's
    front door meets the cancellation where it waits to write, and unwinds as for a client gone; the generation
    ends cancelled. No timeout (None) watches nothing."""

    __slots__ = ("_handle", "_idle", "_seen", "_task", "_timeout", "given", "taken")

    def __init__(self, timeout: float | None) -> None:
        self.given = 0
        self.taken = 0
        self._timeout = timeout
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None
        self._seen = -1
        self._idle = 0

    def start(self) -> None:
        """Watch the task running now: the caller's, which drives the generation."""
        if self._timeout is not None and self._handle is None:
            self._task = asyncio.current_task()
            self._arm(self._timeout)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, timeout: float) -> None:
        self._handle = asyncio.get_running_loop().call_later(timeout / CHECKS, self._check, timeout)

    def _check(self, timeout: float) -> None:
        held = self.given > self.taken
        self._idle = self._idle + 1 if held and self.taken == self._seen else 0
        self._seen = self.taken
        if self._idle < CHECKS or self._task is None:
            self._arm(timeout)
            return
        self._handle = None
        _log.warning(
            "a caller read nothing of its stream for %g s: its generation is stopped and what it held is freed",
            timeout,
            extra={"request_id": current_request_id()},
        )
        record_stalled()
        self._task.cancel()
        handler = _stalled_handler.get()
        if handler is not None:
            handler(stalled_error(timeout))

"""Operations on one model id (loads and unloads) take turns, in the order they were asked for, so that the last one
asked decides whether the model stays loaded, whatever each one waits for meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


class Turns:
    def __init__(self) -> None:
        self._last: dict[str, asyncio.Future[None]] = {}
        """Per key, the end of the last operation asked for: the next one starts after it."""

    def busy(self, key: str) -> bool:
        """Whether an operation on `key` is running or waiting its turn."""
        return key in self._last

    async def take(self, key: str, work: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
        """`work()` once every operation asked for before on `key` has ended. Once started it completes even if its
        caller goes away (the operations behind it count on where it leaves the model); a caller that goes away
        before its turn drops its operation."""
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        before = self._last.get(key)
        self._last[key] = ended
        ended.add_done_callback(lambda _: self._forget(key, ended))
        if before is not None:
            try:
                await asyncio.wait([before])
            except asyncio.CancelledError:
                before.add_done_callback(lambda _: ended.set_result(None))  # those behind still wait for `before`
                raise

        def finished(task: asyncio.Task[_T]) -> None:
            if not task.cancelled():
                task.exception()  # retrieved here, since its caller may have gone
            ended.set_result(None)

        task = asyncio.ensure_future(work())
        task.add_done_callback(finished)
        return await asyncio.shield(task)

    def _forget(self, key: str, ended: asyncio.Future[None]) -> None:
        if self._last.get(key) is ended:
            del self._last[key]

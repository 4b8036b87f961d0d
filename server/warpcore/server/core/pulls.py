"""Pulls of model files onto this server's disk: one download per file however many callers ask for it, its progress
shared among them at a bounded rate, and stopped once the last caller has gone (the partial file stays, and the
next pull resumes it)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from warpcore.server.core.errors import FailedPreconditionError

_log = logging.getLogger("warpcore.server")
PULL_PROGRESS_INTERVAL = 0.25
"""Seconds between progress frames of one pull: a few a second move a progress bar smoothly at any speed."""
PULLS_AT_ONCE = 8
"""Files downloading at once; a pull beyond them waits for one to end. They have threads of their own: a slow hub
never holds up the work other calls hand to threads (a load, a grammar)."""


@dataclass(frozen=True)
class PullProgress:
    """How far a pull has come: bytes on disk, of `total` (None until the hub says)."""

    done: int
    total: int | None


@dataclass(frozen=True)
class PulledFile:
    """A pulled model file, now under MODELS_PATH where its id resolves."""

    model: str
    size: int
    sha256: str | None
    """The SHA-256 it was checked against; None when the file was already there (nothing was downloaded)."""
    already_present: bool


class PullStoppedError(Exception):
    """Raised inside a download once every caller has gone."""


PullProgressCallback = Callable[[int, int | None], None]
"""Told (bytes done, bytes in all) as bytes arrive, on the download's thread."""
Download = Callable[[str, str | None, PullProgressCallback, threading.Event], PulledFile]
"""Blocking: (model, revision, progress, stop) -> the file; raises PullStoppedError soon after `stop` is set."""


class _Job:
    def __init__(self, model: str, revision: str | None) -> None:
        self.model, self.revision = model, revision
        self.progress = PullProgress(0, None)
        self.version = 0
        self.changed = asyncio.Condition()
        self.callers = 0
        self.stop = threading.Event()
        self.outcome: asyncio.Future[PulledFile] | None = None
        self.runner: asyncio.Task[None] | None = None

    async def publish(self, progress: PullProgress | None = None) -> None:
        async with self.changed:
            if progress is not None:
                self.progress = progress
            self.version += 1
            self.changed.notify_all()

    async def past(self, version: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.version != version)


class Pulls:
    def __init__(self, download: Download, interval: float = PULL_PROGRESS_INTERVAL) -> None:
        self._download = download
        self._interval = interval
        self._jobs: dict[str, _Job] = {}
        self._threads = ThreadPoolExecutor(max_workers=PULLS_AT_ONCE, thread_name_prefix="warpcore-pull")

    async def pull(self, model: str, revision: str | None) -> AsyncGenerator[PullProgress | PulledFile, None]:
        """Progress while the file arrives, then the file. Leaving early stops the download if nobody else waits."""
        job = self._jobs.get(model)
        if job is not None and job.stop.is_set() and job.runner is not None:
            # Stopped, its thread still finishing: the new download must not write the partial file beside it.
            await asyncio.wait([job.runner])
            job = self._jobs.get(model)
        if job is None:
            job = self._start(model, revision)
        elif (job.revision or "main") != (revision or "main"):  # none asked for is the hub's main
            raise FailedPreconditionError(
                f"{model!r} is being pulled at revision {job.revision or 'main'}; wait for that pull to end",
                reason="PULL_IN_PROGRESS",
            )
        job.callers += 1
        try:
            seen = 0  # nothing before the download's first progress: a name the hub refuses gets no frame at all
            sent: PullProgress | None = None
            while job.outcome is None:
                if job.version != seen:
                    seen, sent = job.version, job.progress
                    yield sent
                await job.past(seen)
            pulled = job.outcome.result()
            if sent != (whole := PullProgress(pulled.size, pulled.size)):
                yield whole
            yield pulled
        finally:
            job.callers -= 1
            if not job.callers and job.outcome is None:
                job.stop.set()
                _log.info("stopping the pull of %s: no caller is left (the next pull resumes it)", model)

    def check_not_pulling(self, model: str) -> None:
        """Refuses to use `model`'s file while it is on its way: not there yet, it will be once the pull ends."""
        job = self._jobs.get(model)
        if job is not None and not job.stop.is_set():
            raise FailedPreconditionError(
                f"model file {model!r} is being pulled now; wait for that pull to end, then load it",
                field="model",
                reason="PULL_IN_PROGRESS",
            )

    def _start(self, model: str, revision: str | None) -> _Job:
        job = _Job(model, revision)
        loop = asyncio.get_running_loop()
        last = 0.0

        def progress(done: int, total: int | None) -> None:  # on the download's thread
            nonlocal last
            now = time.monotonic()
            if now - last >= self._interval or done == total or not done:
                last = now if done else last  # the size alone, before any byte, delays no frame of bytes
                loop.call_soon_threadsafe(_spawn, job.publish(PullProgress(done, total)))

        async def run() -> None:
            outcome: asyncio.Future[PulledFile] = loop.create_future()
            try:
                pulled = await loop.run_in_executor(self._threads, self._download, model, revision, progress, job.stop)
                outcome.set_result(pulled)
            except BaseException as error:  # noqa: BLE001 - handed to every caller
                outcome.set_exception(error)
                outcome.add_done_callback(lambda done: done.exception())  # consumed even with no caller left
            finally:
                self._jobs.pop(model, None)
                job.outcome = outcome
                await job.publish()

        self._jobs[model] = job
        job.runner = asyncio.ensure_future(run())
        return job


_background: set[asyncio.Task[None]] = set()


def _spawn(coroutine: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)

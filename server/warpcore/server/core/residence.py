"""What the residency of local models is made of: the server's policy, each loaded model's use, what ListModels
reports of it, a model known but not loaded, a startup model whose load has not ended, and why a model was unloaded
(residency.py applies them)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import functools
import math
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from warpcore.server.core.domain import LoadSpec
from warpcore.server.core.errors import WarpcoreError
from warpcore.server.core.limits import Activity

UnloadReason = Literal["idle", "room", "requested"]
Arriving = Callable[[str], None]
"""Told a local model's name when its file is missing: refuses its load otherwise (a pull of it still running)."""
UNLOAD_REASONS: tuple[UnloadReason, ...] = ("idle", "room", "requested")
"""Why a model was unloaded: idle past its keep_alive, evicted to make room for a load within the budget, or asked
for (UnloadModel)."""


@dataclass(frozen=True)
class ResidencyPolicy:
    """The server's rules for local models: the keep_alive of a model that names none (math.inf: until unloaded),
    and the most models and estimated bytes loaded at once (None: no limit)."""

    keep_alive: float = math.inf
    max_models: int | None = None
    max_bytes: int | None = None


@dataclass
class Residence:
    """One loaded model's use: what ListModels reports and what eviction reads."""

    keep_alive: float
    last_used: float
    """Wall-clock time (seconds since the epoch) of the last load or generation end."""
    timer: asyncio.TimerHandle | None = None

    def expires_at(self, in_use: bool) -> float | None:
        """When the model will be unloaded if nothing uses it meanwhile; None: not while in use, or never."""
        if in_use or math.isinf(self.keep_alive):
            return None
        return self.last_used + self.keep_alive

    def stop_clock(self) -> None:
        """Cancel the idle unload, if its clock runs."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


@dataclass(frozen=True)
class ResidencyReport:
    """What ListModels says of a loaded model's cost, use and expiry."""

    memory_bytes: int
    slots_busy: int
    slots_total: int
    queue_depth: int
    last_used: float
    expires_at: float | None
    keep_alive: float

    @classmethod
    def of(cls, residence: Residence, now: Activity, memory_bytes: int, held: bool) -> ResidencyReport:
        """The report of a model `now` doing what it does, `held` by calls (or its unload)."""
        expires_at, keep_alive = residence.expires_at(held), residence.keep_alive
        return cls(memory_bytes, now.running, now.slots, now.waiting, residence.last_used, expires_at, keep_alive)


class Dormant(NamedTuple):
    """A model known but not loaded: its spec, memory estimate and context size when last loaded (0: never was)."""

    spec: LoadSpec
    memory_bytes: int = 0
    context_size: int = 0


@dataclass
class Loading:
    """A model whose load has begun and not ended (or, Expected's, that the start will load): what ListModels shows
    of it, and what a Generate naming it waits for; with how its load failed, for an Expected one."""

    spec: LoadSpec
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    failure: WarpcoreError | None = None


def for_this_call(model_id: str, error: WarpcoreError) -> WarpcoreError:
    """The failure of the load of an operator's model, as told to a call that named the model by its id alone."""
    error.message = f"model {model_id!r} could not be loaded for this call: {error.message}"
    error.field = "model_id" if error.field is not None else None
    return error


async def waited(loading: Loading | None) -> bool:
    """Whether there was a load to wait for, once it has ended; its failure raised, if it has one (an Expected's)."""
    if loading is None:
        return False
    await loading.ended.wait()
    if loading.failure is not None:
        raise copy.copy(loading.failure)  # each call its own: the doors write their answers from it
    return True


class SharedLoads:
    """The loads of dormant models that calls start: one per model at a time, which every call naming the model
    meanwhile waits for, in the order the calls came (the one that started it first), so that they reach the model's
    gate in that order; its failure is each one's, and a call that comes once it has ended starts another."""

    def __init__(self) -> None:
        self._loads: dict[str, asyncio.Future[object]] = {}

    def start(self, model_id: str, load: Callable[[], Awaitable[object]]) -> None:
        started = self._loads[model_id] = asyncio.ensure_future(load())
        started.add_done_callback(functools.partial(self._ended, model_id))  # first: gone before a waiter wakes

    async def joined(self, model_id: str) -> bool:
        """Whether there was such a load to wait for, once it has ended; its failure raised, as `waited` does."""
        load = self._loads.get(model_id)
        if load is None:
            return False
        try:
            await asyncio.shield(load)  # a call that goes away leaves the load to the others
        except WarpcoreError as error:
            raise for_this_call(model_id, copy.copy(error)) from None  # each call its own, as in `waited`
        return True

    def _ended(self, model_id: str, load: asyncio.Future[object]) -> None:
        if self._loads.get(model_id) is load:
            del self._loads[model_id]
        if not load.cancelled():
            load.exception()  # retrieved here, since every call waiting for it may have gone


class Expected:
    """The startup models (the operator's, loaded one after another before the server reports SERVING) whose load has
    not ended: known from the start, listed as loading, and a call naming one waits for its load, however many loads
    come before it, and gets its failure if it fails."""

    def __init__(self) -> None:
        self.loads: dict[str, Loading] = {}

    def expect(self, spec: LoadSpec) -> None:
        self.loads[spec.model_id] = Loading(spec)

    @contextlib.contextmanager
    def fulfilling(self, model_id: str) -> Iterator[None]:
        """The start's load of the model: its calls are told how it ended (a stopped start's load too, which they
        then wait for, if it goes on, as for any load)."""
        try:
            yield
        except WarpcoreError as error:
            self._end(model_id, for_this_call(model_id, copy.copy(error)))
            raise
        finally:
            self._end(model_id, None)

    def refuse(self, failure: Callable[[], WarpcoreError]) -> None:
        """The server stops before these loads begin: their calls get `failure`."""
        for model_id in list(self.loads):
            self._end(model_id, failure())

    def _end(self, model_id: str, failure: WarpcoreError | None) -> None:
        loading = self.loads.pop(model_id, None)
        if loading is not None:
            loading.failure = failure
            loading.ended.set()


class Holders:
    """The calls running on each model (past their wait for it): its unload waits for them, so that those running
    when it began end as they would have, whatever the backend."""

    def __init__(self) -> None:
        self._counts: collections.Counter[str] = collections.Counter()
        self._unheld: dict[str, asyncio.Event] = {}

    @contextlib.contextmanager
    def holding(self, model_id: str) -> Iterator[None]:
        self._counts[model_id] += 1
        try:
            yield
        finally:
            self._counts[model_id] -= 1
            if not self._counts[model_id]:
                del self._counts[model_id]
                unheld = self._unheld.pop(model_id, None)
                if unheld is not None:
                    unheld.set()

    async def until_unheld(self, model_id: str) -> None:
        if self._counts[model_id]:
            await self._unheld.setdefault(model_id, asyncio.Event()).wait()

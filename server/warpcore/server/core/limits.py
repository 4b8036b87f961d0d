"""Per-model admission: a bounded number of running generations, and a bounded queue behind them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from warpcore.server.core.bounds import DEFAULT_MAX_TOKENS, MAX_TOKENS_LIMIT
from warpcore.server.core.domain import Admission, BackendKind, LoadSpec, LocalSettings, ModelInfo
from warpcore.server.core.errors import ResourceExhaustedError, UnavailableError, WarpcoreError

BUSY_RETRY_AFTER = 1.0  # seconds suggested to a caller turned away by a full queue
STALLED_READER_TIMEOUT = 60.0
"""Seconds a stream's next output waits for a caller that reads nothing before its generation is stopped (stalled.py):
as long as a web server gives a send (nginx's send_timeout), far beyond any pause of a client that reads."""


def shutting_down() -> UnavailableError:
    return UnavailableError("the server is shutting down; retry on another replica", reason="SHUTTING_DOWN")


def model_unloading(model_id: str) -> UnavailableError:
    return UnavailableError(
        f"model {model_id!r} is being unloaded (UnloadModel): the generations already running on it finish, new ones"
        " are refused; load it again with LoadModel, which waits for the unload to end",
        reason="MODEL_UNLOADING",
        metadata={"model_id": model_id},
    )


def check_room(model_id: str, running: int, waiting: int, room: int, *, loading: bool = False) -> None:
    """The one rule of a model's admission: `room` generations running or waiting at most, the next one refused for
    its caller to retry later (`loading`: those waiting for the model's load, which will take the same room)."""
    # In all, not each apart: between a slot's release and its waiter's wake-up `active` is one short while
    # `waiting` still counts that waiter, and a burst arriving then would queue past the bound.
    if running + waiting >= room:
        raise ResourceExhaustedError(
            f"model {model_id!r} is busy{' loading' if loading else ''}: generations running {running}, waiting"
            f" {waiting}; retry later",
            reason="MODEL_BUSY",
            retry_after=BUSY_RETRY_AFTER,
            metadata={"model_id": model_id},
        )


Refusal = Callable[[], WarpcoreError]
"""Makes the error a call gets that waited its turn on a model and will not run: shutting_down or model_unloading."""


class StreamGate:
    """Admits at most `max_active` generations on one model; up to `max_waiting` more wait their turn."""

    def __init__(self, model_id: str, max_active: int, max_waiting: int) -> None:
        self._model_id = model_id
        self._slots = asyncio.Semaphore(max_active)
        self._max_active = max_active
        self._max_waiting = max_waiting
        self.active = 0
        self.waiting = 0
        self._closed = asyncio.Event()
        self._refusal: Refusal = shutting_down

    @property
    def max_active(self) -> int:
        return self._max_active

    @property
    def max_waiting(self) -> int:
        return self._max_waiting

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._closed.is_set():  # one that waited for its model's load, say, as the server began to shut down
            raise self._refusal()
        check_room(self._model_id, self.active, self.waiting, self._max_active + self._max_waiting)
        self.waiting += 1
        try:
            if self._slots.locked():
                await self._queued()
            else:
                await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self._slots.release()

    async def _queued(self) -> None:
        """Wait for a slot, unless the server shuts down (or the model is unloaded) first: a call that never started
        is refused at once, for its caller to retry elsewhere, rather than kept to the end of the grace only to be
        cut (or run on a model its caller was told is leaving)."""
        acquired = asyncio.ensure_future(self._slots.acquire())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait((acquired, closed), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._abandon(acquired)  # its caller went (cancelled, or its deadline passed), perhaps as its slot came
            raise
        finally:
            closed.cancel()
        if not acquired.done():  # the gate closed first
            self._abandon(acquired)
            raise self._refusal()

    def _abandon(self, acquired: asyncio.Task[Literal[True]]) -> None:
        """Give up a wait for a slot: a slot it got already, or still gets before its cancel lands, goes back."""
        acquired.add_done_callback(self._give_back)
        acquired.cancel()

    def _give_back(self, acquired: asyncio.Task[Literal[True]]) -> None:
        if not acquired.cancelled() and acquired.exception() is None:
            self._slots.release()

    def close(self, refusal: Refusal = shutting_down) -> None:
        """Refuse the calls waiting for a slot, and any later one, with `refusal`."""
        self._refusal = refusal
        self._closed.set()


# A local model computes every generation on this machine's cores, so a few at a time is all it can run well.
LOCAL_MAX_STREAMS = 4
LOCAL_MAX_QUEUE = 64
# A hosted model computes elsewhere, on an upstream built for concurrency that enforces its own rate limits (a 429
# reaches the caller as RESOURCE_EXHAUSTED). Here each of its streams costs a socket, a few KiB and some CPU per
# relayed message: 256 streams at the 50-100 tokens/s of a hosted model are tens of thousands of messages a second,
# the order of what one Python gRPC process can relay, so more running would only slow every stream. The queue takes
# a burst of four times that before turning callers away, and stays bounded so that a flood cannot grow memory.
API_MAX_STREAMS = 256
API_MAX_QUEUE = 1024
# A hosted model holds no memory to evict it for, yet each costs an SDK client with its connection pool, an admission
# gate and some forty /metrics lines of series under its id; a client naming a new id at each LoadModel would grow them
# without end. A deployment routes to a handful of provider models (a few per tenant), and a gateway in front of a
# catalogue to a few hundred: 256 takes those (a --config of more stopped an upgraded server), and keeps the per-model
# series of hosted models to some ten thousand lines at worst.
API_MAX_MODELS = 256


@dataclass
class Limits:
    """The limits that protect the process, and the gates of the models loaded now."""

    max_streams_per_model: int = LOCAL_MAX_STREAMS
    max_queue_per_model: int = LOCAL_MAX_QUEUE
    max_tokens: int = MAX_TOKENS_LIMIT
    max_streams_per_api_model: int = API_MAX_STREAMS
    max_queue_per_api_model: int = API_MAX_QUEUE
    max_api_models: int | None = API_MAX_MODELS
    """Hosted models held at once (loaded, or being unloaded); None: no limit."""
    stalled_reader_timeout: float | None = STALLED_READER_TIMEOUT

    def __post_init__(self) -> None:
        self.gates: dict[str, StreamGate] = {}
        self.awaiting_load: dict[str, int] = {}
        """Generations waiting for their model itself (its load, or the end of its unload before a reload), by model
        id: not yet at its gate, which a model not loaded has not, yet waiting all the same (read by metrics scrapes,
        on their thread: a plain dict, copied whole)."""
        self._closed = False

    @property
    def default_max_tokens(self) -> int:
        """The max_tokens of a request that names none: DEFAULT_MAX_TOKENS, or the server's limit when lower (a
        request that sent no max_tokens was refused for it)."""
        return min(DEFAULT_MAX_TOKENS, self.max_tokens)

    def defaults(self, backend: BackendKind) -> tuple[int, int]:
        """Running and waiting generations a model of `backend` gets unless its own Admission says otherwise: the
        one place that tells hosted models from local ones."""
        if backend.hosted:
            return self.max_streams_per_api_model, self.max_queue_per_api_model
        return self.max_streams_per_model, self.max_queue_per_model

    def admission(self, backend: BackendKind, parallel: int = 1, own: Admission | None = None) -> tuple[int, int]:
        """Running and waiting generations a model admits: its own Admission's, else the defaults of its backend; a
        model that decodes `parallel` generations together runs at least that many."""
        running, waiting = self.defaults(backend)
        if own is not None:
            running = running if own.max_streams is None else own.max_streams
            waiting = waiting if own.max_queue is None else own.max_queue
        return max(running, parallel), waiting

    def gate(self, model_id: str, backend: BackendKind, parallel: int = 1, own: Admission | None = None) -> StreamGate:
        """The model's gate, admitting as `admission` says."""
        if model_id not in self.gates:
            self.gates[model_id] = StreamGate(model_id, *self.admission(backend, parallel, own))
            if self._closed:  # a model loaded during the shutdown: none of its calls starts
                self.gates[model_id].close()
        return self.gates[model_id]

    @contextlib.contextmanager
    def awaiting(self, model_id: str, loads: LoadSpec | None = None) -> Iterator[None]:
        """Counted in `awaiting_load` within, however the wait ends (the model ready, a cancel, a deadline, a failed
        load): a router must not see a replica loading a model for a burst as idle. `loads`, the model as its load
        will load it: a call past the admission it will have is refused now, as its gate would refuse it once
        loaded, rather than after the whole load; those within it wait, and then all find a place at the gate (whose
        room is the same, or more: `parallel` from LLAMA_PARALLEL is known to the load alone)."""
        if loads is not None:
            parallel = loads.settings.parallel if isinstance(loads.settings, LocalSettings) else None
            room = sum(self.admission(loads.backend, parallel or 1, loads.admission))
            check_room(model_id, 0, self.awaiting_load.get(model_id, 0), room, loading=True)
        self.awaiting_load[model_id] = self.awaiting_load.get(model_id, 0) + 1
        try:
            yield
        finally:
            if left := self.awaiting_load[model_id] - 1:
                self.awaiting_load[model_id] = left
            else:
                del self.awaiting_load[model_id]

    def close(self) -> None:
        """The server is shutting down: the calls waiting in every model's queue are refused, as is every call that
        reaches a gate from now on."""
        self._closed = True
        for gate in self.gates.values():
            gate.close()

    def refuse_waiting(self, model_id: str, refusal: Refusal) -> None:
        """The model is being unloaded: the calls waiting in its queue are refused."""
        if (gate := self.gates.get(model_id)) is not None:
            gate.close(refusal)

    def forget(self, model_id: str) -> None:
        """Drop an unloaded model's gate; generations still holding it finish normally."""
        self.gates.pop(model_id, None)


@dataclass(frozen=True)
class Activity:
    """Generations running and waiting on one model, and how many it runs at once."""

    running: int
    waiting: int
    slots: int


def activity(limits: Limits, model_id: str, info: ModelInfo, backend: BackendKind, own: Admission | None) -> Activity:
    """A local model decodes in its own `parallel` slots, and what its gate admitted beyond them waits for one; a
    hosted model runs what its gate admits; generations waiting for the model itself wait too. Reads only (metrics
    scrapes call it from their own thread)."""
    gate = limits.gates.get(model_id)
    running, waiting = (gate.active, gate.waiting) if gate is not None else (0, 0)
    waiting += limits.awaiting_load.get(model_id, 0)
    occupancy = info.occupancy
    if occupancy is not None:
        # Admitted but not yet with the model (its prompt still being tokenized, say): waiting too, lest a router
        # see an idle replica while a burst is in. The model's own count, kept once a step, may lag the gate's.
        queued = max(occupancy.waiting, running - occupancy.running)
        return Activity(occupancy.running, waiting + queued, info.parallel)
    if gate is not None:
        return Activity(running, waiting, gate.max_active)
    return Activity(running, waiting, limits.admission(backend, info.parallel, own)[0])

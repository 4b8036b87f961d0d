"""Per-model admission: a bounded number of running generations, and a bounded queue behind them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from warpcore.server.errors import ResourceExhaustedError

BUSY_RETRY_AFTER = 1.0  # seconds suggested to a caller turned away by a full queue


class StreamGate:
    """Admits at most `max_active` generations on one model; up to `max_waiting` more wait their turn."""

    def __init__(self, model_id: str, max_active: int, max_waiting: int) -> None:
        self._model_id = model_id
        self._slots = asyncio.Semaphore(max_active)
        self._max_active = max_active
        self._max_waiting = max_waiting
        self.active = 0
        self.waiting = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.active >= self._max_active and self.waiting >= self._max_waiting:
            raise ResourceExhaustedError(
                f"model {self._model_id!r} is busy: {self.active} generations running and {self.waiting} waiting;"
                " retry later",
                reason="MODEL_BUSY",
                retry_after=BUSY_RETRY_AFTER,
                metadata={"model_id": self._model_id},
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self._slots.release()


@dataclass
class Limits:
    """The limits that protect the process, and the gates of the models loaded now."""

    max_streams_per_model: int = 4
    max_queue_per_model: int = 64
    max_tokens: int = 32768

    def __post_init__(self) -> None:
        self.gates: dict[str, StreamGate] = {}

    def gate(self, model_id: str, parallel: int = 1) -> StreamGate:
        """The model's gate; a model that decodes `parallel` generations together runs at least that many."""
        if model_id not in self.gates:
            running = max(self.max_streams_per_model, parallel)
            self.gates[model_id] = StreamGate(model_id, running, self.max_queue_per_model)
        return self.gates[model_id]

    def forget(self, model_id: str) -> None:
        """Drop an unloaded model's gate; generations still holding it finish normally."""
        self.gates.pop(model_id, None)

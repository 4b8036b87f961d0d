"""What the residency of local models is made of: the server's policy, each loaded model's use, what ListModels
reports of it, a model known but not loaded, and why a model was unloaded (residency.py applies them)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from warpcore.server.core.domain import LoadSpec

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


class Dormant(NamedTuple):
    """A model known but not loaded: its spec, memory estimate and context size when last loaded (0: never was)."""

    spec: LoadSpec
    memory_bytes: int = 0
    context_size: int = 0


@dataclass(frozen=True)
class Loading:
    """A model whose load has begun and not ended: what ListModels shows of it, and what a Generate naming it
    waits for."""

    spec: LoadSpec
    ended: asyncio.Event = field(default_factory=asyncio.Event)


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

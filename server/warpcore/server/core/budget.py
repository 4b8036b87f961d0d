"""The server's budget of local models, how many and their estimated bytes: a load makes room by unloading the least
recently used idle models, waits for models already leaving that nothing runs on any more, and is refused when the
ones it would have to unload are busy. A model counts from before its load (its last known size, else its
backend's estimate) until its memory is freed, unloading included. Hosted models are counted apart, by number alone:
a load past Limits.max_api_models is refused, as none is ever unloaded to make room."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping

from warpcore.server.core.domain import LoadSpec
from warpcore.server.core.errors import ResourceExhaustedError
from warpcore.server.core.limits import BUSY_RETRY_AFTER, Limits
from warpcore.server.core.registry import LoadedModel, ModelRegistry
from warpcore.server.core.residence import ResidencyPolicy


class Budget:
    def __init__(
        self,
        registry: ModelRegistry,
        limits: Limits,
        policy: ResidencyPolicy,
        *,
        leaving: Mapping[str, asyncio.Future[LoadedModel]],
        idle: Callable[[], list[tuple[float, str]]],
        evict: Callable[[str, str], Awaitable[None]],
        refuse: Callable[[str], Awaitable[object]],
    ) -> None:
        """`leaving`: models being unloaded, until freed; `idle()`: (last use, id) of the loaded models nothing
        holds; `evict(victim, model_id)` unloads a victim for room; `refuse(model_id)` unloads a model that was
        found over the budget only once loaded."""
        self._registry = registry
        self._limits = limits
        self._policy = policy
        self._leaving = leaving
        self._idle = idle
        self._evict = evict
        self._refuse = refuse
        # Local loads make room and load one at a time, so that two cannot both count the same free place.
        self._room = asyncio.Lock()
        self._hosted_loading = 0  # hosted loads under way (of other ids: one id loads in its turn), counted as held

    async def load_hosted(self, spec: LoadSpec) -> LoadedModel:
        """Load a hosted model, unless the server holds its most of them already (those being loaded or unloaded
        counted): no memory to evict one for, but an SDK client, a gate and the metric series of its id each, which
        a client naming a new id at every load would otherwise grow without end."""
        limit, resident = self._limits.max_api_models, self._registry.resident()
        taken = any(model.id == spec.model_id for model in resident)  # the registry answers ALREADY_EXISTS
        held = sum(model.backend.hosted for model in resident) + self._hosted_loading
        if limit is not None and not taken and held >= limit:
            raise ResourceExhaustedError(
                f"no room to load {spec.model_id!r}: the server holds its most hosted-API models ({held} of {limit}"
                " loaded, --max-api-models); unload one with UnloadModel (ListModels lists them), or have the"
                " server's operator raise --max-api-models (WARPCORE_MAX_API_MODELS)",
                reason="API_MODELS_FULL",
                metadata={"model_id": spec.model_id},
            )
        self._hosted_loading += 1
        try:
            return await self._registry.load(spec)
        finally:
            self._hosted_loading -= 1

    async def load_within(self, spec: LoadSpec, known_bytes: int) -> LoadedModel:
        """Load a local model once there is room for it, by its last known size (0: never loaded, so its
        backend's estimate), and check again with the size it reports once loaded. Room is made only once the
        backend's estimate has found the model's file fit to load (there, inside MODELS_PATH, readable, not being
        pulled): a load refused for its file unloads nothing."""
        async with self._room:
            limited = self._policy.max_models is not None or self._policy.max_bytes is not None
            admit = functools.partial(self._admit, spec.model_id, known_bytes) if limited else None
            loaded = await self._registry.load(spec, admit)
            try:
                await self._make_room(loaded.id, 0, 0)
            except ResourceExhaustedError:
                await self._refuse(loaded.id)
                raise
        return loaded

    async def _admit(self, model_id: str, known_bytes: int, estimate: int) -> None:
        await self._make_room(model_id, 1, known_bytes or estimate)

    async def _make_room(self, model_id: str, models: int, nbytes: int) -> None:
        """Unload idle local models, least recently used first, until `models` more models and `nbytes` more
        bytes fit the budget; RESOURCE_EXHAUSTED, before unloading any, if they would not fit once every idle one
        had gone and the ones leaving were freed."""
        while exceeded := self._exceeded(models, nbytes):
            if all(model.id == model_id for model in self._local()):
                return  # a model larger than the whole budget still loads, alone
            idle = [entry for entry in self._idle() if entry[1] != model_id]
            freeing = {
                leaving_id: leaving for leaving_id, leaving in self._leaving.items() if not self._running(leaving_id)
            }
            releasable = {victim for _, victim in idle} | freeing.keys()
            kept = [model for model in self._local() if model.id not in releasable]
            if self._exceeded(models, nbytes, kept) and not all(model.id == model_id for model in kept):
                raise ResourceExhaustedError(
                    f"no room to load {model_id!r}: the server's budget of local models is full"
                    f" ({'; '.join(exceeded)}), and unloading its idle ones would not make enough: the others are in"
                    " use, or being unloaded once their running generations end; retry later",
                    reason="MODEL_BUDGET_FULL",
                    retry_after=BUSY_RETRY_AFTER,
                    metadata={"model_id": model_id},
                )
            if idle:
                await self._evict(min(idle)[1], model_id)
            else:  # the generations of those leaving have ended: their memory is being freed now
                await asyncio.wait(freeing.values(), return_when=asyncio.FIRST_COMPLETED)

    def _exceeded(self, models: int, nbytes: int, resident: list[LoadedModel] | None = None) -> list[str]:
        """The limits of the budget that `models` more models and `nbytes` more bytes go over beside `resident` (by
        default, every local model holding memory), each in words; none when they fit."""
        resident = self._local() if resident is None else resident
        exceeded = []
        if self._policy.max_models is not None and len(resident) + models > self._policy.max_models:
            exceeded.append(f"{len(resident)} of {self._policy.max_models} models loaded")
        used = sum(model.info.memory_bytes for model in resident)
        if self._policy.max_bytes is not None and used + nbytes > self._policy.max_bytes:
            exceeded.append(f"{used} of {self._policy.max_bytes} bytes estimated in use, {nbytes} more needed")
        return exceeded

    def _local(self) -> list[LoadedModel]:
        """The local models holding memory, those being unloaded too."""
        return [model for model in self._registry.resident() if not model.backend.hosted]

    def _running(self, model_id: str) -> bool:
        gate = self._limits.gates.get(model_id)
        return gate is not None and gate.active + gate.waiting > 0

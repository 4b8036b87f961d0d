"""Which local models stay loaded: each leaves after its keep_alive of idleness, and a server-wide budget (models
and estimated bytes) makes room for a load by unloading the least recently used idle ones. A model with generations
running or waiting is never unloaded by either. Models unloaded this way, and models the operator declared lazy,
stay known ("dormant") and are loaded again by the first Generate that names them. Loads and unloads of one model id
take turns in the order asked (turns.py); a model being unloaded holds its id, memory and gate until it is freed."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import math
import time
from collections.abc import AsyncIterator

from warpcore.server.core.bounds import MAX_DORMANT_MODELS
from warpcore.server.core.budget import Budget
from warpcore.server.core.domain import LoadSpec
from warpcore.server.core.errors import NotFoundError, WarpcoreError
from warpcore.server.core.limits import Limits, activity, model_unloading
from warpcore.server.core.registry import LoadedModel, ModelRegistry, as_known, same_model
from warpcore.server.core.residence import (
    UNLOAD_REASONS,
    Arriving,
    Dormant,
    Expected,
    Holders,
    Loading,
    Residence,
    ResidencyPolicy,
    ResidencyReport,
    SharedLoads,
    UnloadReason,
    waited,
)
from warpcore.server.core.turns import Turns

__all__ = ["Dormant", "Loading", "Residency", "ResidencyPolicy", "ResidencyReport"]

_log = logging.getLogger("warpcore.server")


class Residency:
    def __init__(self, registry: ModelRegistry, limits: Limits, policy: ResidencyPolicy, arriving: Arriving) -> None:
        self._registry = registry
        self._arriving = arriving
        self._limits = limits
        self.policy = policy
        self.residences: dict[str, Residence] = {}
        """One per model loaded or unloading, from its load until its memory is freed."""
        self.dormant: collections.OrderedDict[str, Dormant] = collections.OrderedDict()
        self.declared: dict[str, LoadSpec] = {}
        """The operator's models (the preload file), by id: an id stays its model's, unloaded or not (as_known)."""
        self.loading: dict[str, Loading] = {}
        """Models whose load has its turn and has not ended (waiting for room counts)."""
        self.expected = Expected()
        # Generations running or waiting, by model id rather than on the residence: one waiting for its model to
        # load (or to finish leaving) must hold that model from the moment it is loaded, before it can start.
        self._in_use: collections.Counter[str] = collections.Counter()
        self._holders = Holders()
        self._turns = Turns()
        self._waking = SharedLoads()
        self._leaving: dict[str, asyncio.Future[LoadedModel]] = {}
        refuse = functools.partial(self._unload, reason=None)  # a load refused after the fact: not counted
        self._budget = Budget(
            registry, limits, policy, leaving=self._leaving, idle=self._idle, evict=self._evict, refuse=refuse
        )
        self._expiring: set[asyncio.Task[None]] = set()
        self.unloads: collections.Counter[str] = collections.Counter(dict.fromkeys(UNLOAD_REASONS, 0))
        """Models unloaded so far, by why (a model unloaded as the server stops is not counted: its metrics end too)."""
        registry.listeners.insert(0, self._changed)

    def declare(self, spec: LoadSpec, *, loads_at_start: bool = False) -> None:
        """Know the operator's model unloaded: the first Generate naming it loads it, or waits for the start's load."""
        self.declared[spec.model_id] = spec
        if loads_at_start:
            self.expected.expect(spec)
        elif self._registry.find(spec.model_id) is None:
            self.dormant[spec.model_id] = Dormant(spec)

    def knows(self, model_id: str) -> bool:
        """Whether `model_id` is taken: loaded, loading or leaving, the operator's, or unloaded while idle."""
        held = (self.declared, self.dormant, self.loading, self._leaving)
        return self._registry.find(model_id) is not None or any(model_id in ids for ids in held)

    async def load(self, spec: LoadSpec, *, operator: bool = False) -> LoadedModel:
        if operator:
            self.declared[spec.model_id] = spec
        with self.expected.fulfilling(spec.model_id) if operator else contextlib.nullcontext():
            return await self._turns.take(spec.model_id, lambda: self._load_in_turn(spec))

    async def _load_in_turn(self, spec: LoadSpec) -> LoadedModel:
        loading = self.loading[spec.model_id] = Loading(spec)
        try:
            while (leaving := self._leaving.get(spec.model_id)) is not None:
                await asyncio.wait([leaving])  # unloaded for idleness or room a moment ago: its id is free once gone
            existing = self._registry.find(spec.model_id)
            if existing is not None and same_model(existing, spec):
                self._touch(existing.id, spec)
                return existing
            known = self.dormant.get(spec.model_id)
            declared = known.spec if known is not None else self.declared.get(spec.model_id)
            if existing is None and declared is not None:
                spec = as_known(declared, spec)
            if spec.backend.hosted:
                return await self._budget.load_hosted(spec)
            try:
                return await self._budget.load_within(spec, known.memory_bytes if known is not None else 0)
            except NotFoundError as missing:
                if missing.field == "model":  # a LoadModel's, or a Generate's of a lazy model, alike
                    self._arriving(spec.name)
                raise
        finally:
            del self.loading[spec.model_id]
            loading.ended.set()

    async def unload(self, model_id: str) -> LoadedModel | LoadSpec:
        """Unload for good (UnloadModel), once the loads and unloads asked before it have ended: a later Generate
        does not load it again. A dormant model is forgotten (its spec returned); NOT_FOUND for an unknown id."""
        leaving, loading = self._leaving.get(model_id), self.loading.get(model_id)
        if leaving is None and model_id not in self.dormant and not self._turns.busy(model_id):
            self._registry.get(model_id)  # NOT_FOUND at once
        return await self._turns.take(model_id, lambda: self._unload_in_turn(model_id, leaving, loading))

    async def _unload_in_turn(
        self, model_id: str, leaving: asyncio.Future[LoadedModel] | None, loading: Loading | None
    ) -> LoadedModel | LoadSpec:
        while (still := self._leaving.get(model_id)) is not None:
            await asyncio.wait([still])
        dormant = self.dormant.pop(model_id, None)
        if self._registry.find(model_id) is not None:
            return await self._unload(model_id, "requested")
        if dormant is not None:
            return dormant.spec
        # Gone meanwhile, by the unload it was asked during, or by the failure of the load it was asked during.
        if leaving is not None and not leaving.cancelled() and leaving.exception() is None:
            return leaving.result()
        if loading is not None:
            return loading.spec
        return self._registry.get(model_id)  # NOT_FOUND

    @contextlib.asynccontextmanager
    async def using(self, model_id: str, *, queued: bool = False) -> AsyncIterator[LoadedModel]:
        """The model, loaded first if dormant, counted in use (so never unloaded but by UnloadModel) from the call,
        while it waits for the model (`queued`, a generation: counted waiting then too), until the block ends."""
        self._in_use[model_id] += 1
        try:
            with self._limits.awaiting(model_id, self._awaited(model_id)) if queued else contextlib.nullcontext():
                model = await self._ready(model_id)
            self.residences[model_id].stop_clock()
            with self._holders.holding(model_id):
                yield model
        finally:
            self._in_use[model_id] -= 1
            if not self._in_use[model_id]:
                del self._in_use[model_id]
            residence = self.residences.get(model_id)
            if residence is not None:
                residence.last_used = time.time()
                self._schedule(model_id, residence)

    def _awaited(self, model_id: str) -> LoadSpec | None:
        """The model as it will be loaded, while a call waits for its load (loading, at start, or dormant): None once
        loaded (its gate admits), or not known."""
        known: Loading | Dormant | None = self.loading.get(model_id) or self.expected.loads.get(model_id)
        if known is None and self._registry.find(model_id) is None:
            known = self.dormant.get(model_id)
        return None if known is None else self.declared.get(model_id, known.spec)

    async def _ready(self, model_id: str) -> LoadedModel:
        while True:
            if await self._waking.joined(model_id) or await waited(self.loading.get(model_id)):
                continue
            leaving = self._leaving.get(model_id)
            if leaving is not None:
                if model_id not in self.dormant:
                    raise model_unloading(model_id)
                await asyncio.wait([leaving])  # unloaded for idleness or room: loaded again once gone
                continue
            model = self._registry.find(model_id)
            if model is not None:
                return model
            if await waited(self.expected.loads.get(model_id)):
                continue
            dormant = self.dormant.get(model_id)
            if dormant is None:
                self._registry.get(model_id)  # raises NOT_FOUND, saying how to load it
            else:
                _log.info("loading model %s for a Generate that names it", model_id)
                self._waking.start(model_id, lambda: self._turns.take(model_id, lambda: self._load_dormant(model_id)))

    async def _load_dormant(self, model_id: str) -> LoadedModel:
        """A Generate's load of a dormant model, in its turn: an UnloadModel asked before may have forgotten it."""
        dormant = self.dormant.get(model_id)  # else loaded meanwhile, or NOT_FOUND:
        return self._registry.get(model_id) if dormant is None else await self._load_in_turn(dormant.spec)

    def report(self, model: LoadedModel) -> ResidencyReport:
        now = activity(self._limits, model.id, model.info, model.backend, model.spec.admission)
        held = model.id in self._in_use or model.id in self._leaving
        return ResidencyReport.of(self.residences[model.id], now, model.info.memory_bytes, held)

    async def _changed(self, model_id: str, loaded: bool) -> None:
        """The registry's listener, first of all: no await, so a model and its residence come and go together."""
        if not loaded:
            residence = self.residences.get(model_id)
            if residence is not None:
                residence.stop_clock()
            return
        model = self._registry.get(model_id)
        self.dormant.pop(model_id, None)
        keep_alive = model.spec.keep_alive
        if keep_alive is None:
            keep_alive = math.inf if model.backend.hosted else self.policy.keep_alive
        residence = Residence(keep_alive, time.time())
        self.residences[model_id] = residence
        self._schedule(model_id, residence)

    def _touch(self, model_id: str, spec: LoadSpec) -> None:
        """A LoadModel of a loaded model counts as a use, and sets a new keep_alive if it names one."""
        residence = self.residences[model_id]
        residence.last_used = time.time()
        if spec.keep_alive is not None:
            residence.keep_alive = spec.keep_alive
        self._schedule(model_id, residence)

    def _schedule(self, model_id: str, residence: Residence) -> None:
        """Start the idle clock, unless a generation holds the model (the last one to end starts it) or it leaves."""
        residence.stop_clock()
        if model_id not in self._in_use and model_id not in self._leaving and not math.isinf(residence.keep_alive):
            loop = asyncio.get_running_loop()
            residence.timer = loop.call_later(residence.keep_alive, self._expire, model_id, residence)

    def _expire(self, model_id: str, residence: Residence) -> None:
        residence.timer = None
        task = asyncio.ensure_future(self._retire_idle(model_id, residence))
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)

    async def _retire_idle(self, model_id: str, residence: Residence) -> None:
        # Checked now, not when the timer fired (a Generate may have come since); nothing awaits until _leaving has it.
        if model_id in self._in_use or self.residences.get(model_id) is not residence:
            return
        _log.info("unloading model %s: idle for %gs", model_id, residence.keep_alive)
        try:
            await self._retire(model_id, "idle")
        except WarpcoreError as error:  # unloaded meanwhile by another way: nothing left to do
            _log.info("model %s was not unloaded for idleness: %s", model_id, error.message)

    async def _evict(self, victim: str, model_id: str) -> None:
        _log.info("unloading model %s to make room for %s", victim, model_id)
        await self._retire(victim, "room")

    def _idle(self) -> list[tuple[float, str]]:
        """Loaded local models nothing holds, with when each was last used: what the budget may unload."""
        return [
            (self.residences[model.id].last_used, model.id)
            for model in self._registry.loaded()
            if not model.backend.hosted and model.id not in self._in_use and model.id not in self._leaving
        ]

    async def _retire(self, model_id: str, reason: UnloadReason) -> None:
        """Unload, remembering the model so that a Generate naming it loads it again."""
        model = self._registry.find(model_id)
        if model is None or model_id in self._leaving:
            return
        residence = self.residences.get(model_id)
        # Loaded again with the keep_alive it had last, which a LoadModel may have changed since its first load.
        spec = model.spec if residence is None else dataclasses.replace(model.spec, keep_alive=residence.keep_alive)
        self.dormant[model_id] = Dormant(spec, model.info.memory_bytes, model.info.context_size)
        while len(self.dormant) > MAX_DORMANT_MODELS:
            self.dormant.popitem(last=False)
        await self._unload(model_id, reason)

    async def _unload(self, model_id: str, reason: UnloadReason | None) -> LoadedModel:
        """Release the model, counted by `reason` (None: not counted, a load refused after the fact); its
        residence and gate stay until its memory is freed."""
        already = self._leaving.get(model_id)
        if already is not None:  # an idle unload and an eviction of one model: one unload
            return await asyncio.shield(already)
        unheld = functools.partial(self._holders.until_unheld, model_id)
        refusal = None  # an idle model (unloaded for idleness or room) has no calls waiting their turn on it
        if reason == "requested":  # those waiting on a model UnloadModel unloads will not run: refused at once
            refusal = functools.partial(model_unloading, model_id)
            self._limits.refuse_waiting(model_id, refusal)
        leaving = asyncio.ensure_future(self._registry.unload(model_id, unheld, refusal))
        self._leaving[model_id] = leaving
        residence = self.residences.get(model_id)
        leaving.add_done_callback(lambda _: self._left(model_id, residence))
        if reason is not None:
            self.unloads[reason] += 1  # counted before the registry says the model has gone
        return await asyncio.shield(leaving)

    def _left(self, model_id: str, residence: Residence | None) -> None:
        del self._leaving[model_id]
        if self.residences.get(model_id) is residence:
            self.residences.pop(model_id, None)
        self._limits.forget(model_id)

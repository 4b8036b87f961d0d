"""The models loaded on this server: a plain dict from model id to its adapter."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from warpcore.server.adapters.base import Adapter, EstimatesMemory, QueuesGenerations
from warpcore.server.adapters.factory import AdapterFactory, adapter_type, create_adapter
from warpcore.server.adapters.llama.model_paths import check_hides_no_file
from warpcore.server.core.domain import ApiSettings, BackendKind, BackendSettings, LoadSpec, LocalSettings, ModelInfo
from warpcore.server.core.errors import AlreadyExistsError, NotFoundError
from warpcore.server.core.limits import Refusal

_log = logging.getLogger("warpcore.server")


@dataclass(frozen=True)
class LoadedModel:
    id: str
    backend: BackendKind
    name: str
    info: ModelInfo
    adapter: Adapter
    spec: LoadSpec


def _filled(asked: LoadSpec, has: LoadSpec) -> LoadSpec:
    """`asked`, with what it leaves unset (its context size, each setting that is None) as `has` has it: a request
    that leaves them to the server asks for the model as the server has it (a preloaded one with its key from the
    environment, say)."""
    settings = asked.settings
    if settings is None:
        settings = has.settings
    elif type(settings) is type(has.settings):
        fields = dataclasses.fields(settings)
        unset = {f.name: getattr(has.settings, f.name) for f in fields if getattr(settings, f.name) is None}
        settings = dataclasses.replace(settings, **unset)
    return dataclasses.replace(asked, context_size=asked.context_size or has.context_size, settings=settings)


def _gives_key_for_servers(asked: LoadSpec, has: LoadSpec) -> bool:
    """Whether `asked`, a request's, gives an api_key for a model whose key is the server's: it asks for another model
    whatever the key, so that the answer never tells a caller whether it guessed the server's key."""
    gives_key = isinstance(asked.settings, ApiSettings) and asked.settings.api_key is not None
    return gives_key and has.key_from_server and not asked.key_from_server


def as_known(known: LoadSpec, asked: LoadSpec) -> LoadSpec:
    """The known model (not loaded now: the operator's, or unloaded while idle) that `asked` asks for, as it was
    declared (the operator's limits, its settings), with the keep_alive `asked` gives; ALREADY_EXISTS when `asked`
    asks for another model under its id."""
    if _filled(asked, known) != known or _gives_key_for_servers(asked, known):
        raise AlreadyExistsError(
            f"the model id {asked.model_id!r} is taken by a model not loaded now ({known.name}: the operator's, or"
            " unloaded while idle), which a LoadModel leaving its settings unset loads; choose another model_id for"
            " other settings (or unload a model unloaded while idle first)",
            field="model_id",
            reason="MODEL_ID_TAKEN",
        )
    return known if asked.keep_alive is None else dataclasses.replace(known, keep_alive=asked.keep_alive)


def _as_loaded(loaded: LoadedModel, asked: LoadSpec) -> LoadSpec:
    """`asked`, with what it leaves unset as `loaded` has it: context size, parallel sequences and kind (a text or an
    embedding model) as it got them."""
    filled = _filled(asked, loaded.spec)
    settings = filled.settings or (ApiSettings() if loaded.backend.hosted else LocalSettings())
    if isinstance(settings, LocalSettings) and settings.parallel is None:
        settings = dataclasses.replace(settings, parallel=loaded.info.parallel)
    if settings.embedding is None:  # a model_type that names the kind the model is asks for it
        settings = dataclasses.replace(settings, embedding=not loaded.info.capabilities.generate)
    return dataclasses.replace(filled, context_size=filled.context_size or loaded.info.context_size, settings=settings)


def same_model(loaded: LoadedModel, spec: LoadSpec) -> bool:
    """Whether `spec` asks for the loaded model: the same request, one that leaves to the server what the model got
    (its settings from the environment, its context size), or one that names outright the context size and parallel
    sequences the model got by default (a client that fills in defaults, or echoes what LoadModel answered, retries
    safely)."""
    if _gives_key_for_servers(spec, loaded.spec):
        return False
    return spec == loaded.spec or _as_loaded(loaded, spec) == _as_loaded(loaded, loaded.spec)


def differing_settings(loaded: LoadedModel, spec: LoadSpec) -> list[str]:
    """The names of the settings in which `spec` asks for other than the loaded model has (names only: a key is a
    setting too)."""
    asked, has = _as_loaded(loaded, spec), _as_loaded(loaded, loaded.spec)
    names = ["context_size"] if asked.context_size != has.context_size else []
    if type(asked.settings) is not type(has.settings) or asked.settings is None or has.settings is None:
        return names if asked.settings == has.settings else [*names, "backend settings"]
    differ = _gives_key_for_servers(spec, loaded.spec)  # named whether or not the key is the server's
    return names + [
        field.name
        for field in dataclasses.fields(asked.settings)
        if getattr(asked.settings, field.name) != getattr(has.settings, field.name)
        or (differ and field.name == "api_key")
    ]


class ModelRegistry:
    """The first use of a backend imports its adapter module, which takes seconds for a vendor SDK: on a thread, so
    that the streams already running go on meanwhile (slower, sharing the interpreter, but not stopped)."""

    def __init__(self, adapter_factory: AdapterFactory = create_adapter, models_path: str | None = None) -> None:
        self._create_adapter = adapter_factory
        self._models_path = models_path
        """MODELS_PATH, as the factory's adapters read it: the GGUF files a hosted model's id may not hide."""
        self._models: dict[str, LoadedModel] = {}
        # Models released, whose running generations finish before they close: they hold their ids and memory.
        self._unloading: dict[str, LoadedModel] = {}
        self._releases: set[asyncio.Task[None]] = set()
        self.listeners: list[Callable[[str, bool], Awaitable[None]]] = []
        """Told (model id, loaded?) after each load, and as each unload starts."""
        self.freed: list[Callable[[str], Awaitable[None]]] = []
        """Told the model id once an unloaded model's memory is freed, and its id free again."""
        self.loads: list[Callable[[LoadedModel, float], None]] = []
        """Told (the model, its load's seconds) after each load, whatever asked for it: a call, the start, a first
        use, a reload after an eviction; before any call can use the model."""

    async def load(self, spec: LoadSpec, admit: Callable[[int], Awaitable[None]] | None = None) -> LoadedModel:
        """Load a model. Loading the same spec again gives the same model (so a retried LoadModel is harmless); a
        different model under a taken id is ALREADY_EXISTS. Loads and unloads of one id never overlap: the residency
        takes them in turns. `admit` is given the memory the model is estimated to hold before it loads (0 when its
        adapter cannot tell), and may refuse it by raising."""
        existing = self._models.get(spec.model_id)
        if existing is not None and same_model(existing, spec):
            return existing
        if existing is not None or spec.model_id in self._unloading:
            if existing is None:
                what = "a model being unloaded; wait for its unload to end"
            elif (existing.backend, existing.name) == (spec.backend, spec.name):
                settings = ", ".join(differing_settings(existing, spec))
                what = f"{existing.name!r} loaded with other settings ({settings}); unload it first to change them"
            else:
                # A caller who meant this model, by the id ListModels shows, learns how to name it.
                what = (
                    f"model {existing.name!r} ({existing.backend.value}): a LoadModel naming that model under this"
                    " id gets it (and a keep_alive given changes its own); unload it first to load another here"
                )
            raise AlreadyExistsError(
                f"the model id {spec.model_id!r} is taken by {what}, or choose another model_id",
                field="model_id",
                reason="MODEL_ID_TAKEN",
            )
        return await self._load(spec, admit)

    async def refuse_hiding(self, spec: LoadSpec) -> None:
        """Refuse a hosted model whose id would hide a GGUF file under MODELS_PATH (check_hides_no_file), reading
        the disk off the event loop. Asked by Engine.load for an id the server does not hold yet, never at a lazy
        model's first call: a file that appears later does not make the operator's model fail its calls, which
        could do nothing about it; it stays hidden, as behind a hosted model loaded before it came."""
        await asyncio.to_thread(check_hides_no_file, spec, self._models_path)

    async def _load(self, spec: LoadSpec, admit: Callable[[int], Awaitable[None]] | None) -> LoadedModel:
        started = time.monotonic()
        await asyncio.to_thread(adapter_type, spec.backend)
        adapter = self._create_adapter(spec.backend, spec.settings)
        try:
            if admit is not None:
                estimate = 0
                if isinstance(adapter, EstimatesMemory):
                    estimate = await adapter.estimate_memory(spec.name, spec.context_size)
                await admit(estimate)
            info = await adapter.load(spec.name, spec.context_size)
        except BaseException:
            await adapter.close()
            raise
        loaded = LoadedModel(spec.model_id, spec.backend, spec.name, info, adapter, spec)
        self._models[spec.model_id] = loaded
        seconds = time.monotonic() - started
        # Here, where a model is loaded, once, however many calls asked for it at once.
        context = f", {info.context_size}-token context" if info.context_size else ""  # an API's is not known
        _log.info("loaded model %s (%s %s%s) in %.2fs", spec.model_id, spec.backend.value, spec.name, context, seconds)
        for told in self.loads:
            told(loaded, seconds)
        for listener in self.listeners:
            await listener(spec.model_id, True)
        return loaded

    def find(self, model_id: str) -> LoadedModel | None:
        return self._models.get(model_id)

    def get(self, model_id: str) -> LoadedModel:
        try:
            return self._models[model_id]
        except KeyError:
            raise NotFoundError(
                f"no model with id {model_id!r} is loaded; load it with LoadModel (ListModels shows loaded models)",
                field="model_id",
                reason="MODEL_NOT_LOADED",
            ) from None

    async def unload(
        self, model_id: str, unheld: Callable[[], Awaitable[None]] | None = None, refusal: Refusal | None = None
    ) -> LoadedModel:
        """Release a model once `unheld()` has returned (the calls running on it have ended: every backend then
        closes alike, a hosted one's streams included), its generations waiting for a slot of its own refused with
        `refusal` first. The release completes even if the caller stops waiting, and the id stays taken until it
        has."""
        loaded = self.get(model_id)
        if refusal is not None and isinstance(loaded.adapter, QueuesGenerations):
            loaded.adapter.refuse_waiting(refusal)
        del self._models[model_id]
        self._unloading[model_id] = loaded
        release = asyncio.ensure_future(self._release(loaded, unheld))
        self._releases.add(release)
        release.add_done_callback(self._releases.discard)
        for listener in self.listeners:
            await listener(model_id, False)
        await asyncio.shield(release)
        return loaded

    async def _release(self, loaded: LoadedModel, unheld: Callable[[], Awaitable[None]] | None) -> None:
        try:
            if unheld is not None:
                await unheld()
            await loaded.adapter.close()
            _log.info("unloaded model %s", loaded.id)
        finally:
            self._unloading.pop(loaded.id, None)
            for listener in self.freed:
                await listener(loaded.id)

    def loaded(self, backend: BackendKind | None = None) -> list[LoadedModel]:
        return [model for model in self._models.values() if backend in (None, model.backend)]

    def unloading(self, backend: BackendKind | None = None) -> list[LoadedModel]:
        """Models released whose running generations have not all finished: gone for new calls, not yet freed."""
        return [model for model in self._unloading.values() if backend in (None, model.backend)]

    def resident(self) -> list[LoadedModel]:
        """Models holding their memory: loaded, or unloading until their release ends."""
        return [*self._models.values(), *self._unloading.values()]

    async def available(self, backend: BackendKind, settings: BackendSettings | None) -> Sequence[str]:
        """Models `backend` can serve, asked with `settings` (or the environment)."""
        await asyncio.to_thread(adapter_type, backend)
        adapter = self._create_adapter(backend, settings)
        try:
            return await adapter.list_models()
        finally:
            await adapter.close()

    async def close(self) -> None:
        for model_id in list(self._models):
            await self.unload(model_id)
        await asyncio.gather(*self._releases)

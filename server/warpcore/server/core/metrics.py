"""Prometheus metrics of one server: defined here, counted where the work happens, served on their own port."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from warpcore.server.adapters.base import CachesPrompts
from warpcore.server.core.domain import BackendKind
from warpcore.server.core.limits import Limits, activity
from warpcore.server.core.registry import LoadedModel
from warpcore.server.core.residence import UNLOAD_REASONS
from warpcore.server.tls import TlsFiles

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A hosted model loads in milliseconds (seconds when its SDK is first imported), a local one in seconds to minutes as
# its gigabytes are read and, for a GPU, copied: up to ten minutes, as the latency buckets' 30 s would leave every
# large model's load in +Inf.
_LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_RATE_BUCKETS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class _QueueDepth(Collector):
    """Generations waiting per model, read from the gates when scraped: 0 for a model whose gate no call has reached
    yet, so that its series lasts from its load until its memory is freed, as the other per-model gauges do."""

    def __init__(self, limits: Limits, models: Callable[[], Iterable[LoadedModel]]) -> None:
        self._limits = limits
        self._models = models

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "warpcore_queue_depth",
            "Generations waiting at a model's admission gate (beyond max_streams)",
            labels=["model"],
        )
        for model in self._models():
            gate = self._limits.gates.get(model.id)
            family.add_metric([model.id], gate.waiting if gate is not None else 0)
        yield family


class _PromptCaches(Collector):
    """Each local model's prompt cache, read from its adapter when scraped."""

    def __init__(self, models: Callable[[], Iterable[LoadedModel]]) -> None:
        self._models = models

    def collect(self) -> Iterable[Metric]:
        lookups = CounterMetricFamily(
            "warpcore_prompt_cache_lookups",
            "Prompts looked up in a model's prompt cache: those at least as long as the shortest beginning it keeps",
            labels=["model", "result"],
        )
        cells = GaugeMetricFamily("warpcore_prompt_cache_tokens", "Prompt tokens held in a cache", labels=["model"])
        capacity = GaugeMetricFamily(
            "warpcore_prompt_cache_capacity_tokens", "Prompt tokens a model's cache may hold", labels=["model"]
        )
        for model in self._models():
            stats = model.adapter.prompt_cache_stats() if isinstance(model.adapter, CachesPrompts) else None
            if stats is not None:
                lookups.add_metric([model.id, "hit"], stats.hits)
                lookups.add_metric([model.id, "miss"], stats.misses)
                cells.add_metric([model.id], stats.cells)
                capacity.add_metric([model.id], stats.capacity)
        yield from (lookups, cells, capacity)


class _ModelServerSignals(Collector):
    """The gauges an inference-aware router (the Gateway API Inference Extension's endpoint picker, llm-d) scores
    replicas on, as its model-server protocol defines them: queued requests, running requests and KV cache
    utilisation, for the whole server under fixed names (docs/deploying.md maps them in the picker's engine
    config), and the same per model. A generation waiting for its model to load counts as queued, as does one
    admitted to a local model past its gate but not yet decoding (tokenized, or waiting for a slot of its context);
    a model not loaded has the two request series while generations wait for it. Only a local model has a KV cache
    here, and a KV series."""

    def __init__(self, limits: Limits, models: Callable[[], Iterable[LoadedModel]]) -> None:
        self._limits = limits
        self._models = models

    def collect(self) -> Iterable[Metric]:
        waiting, running, usage = (
            GaugeMetricFamily(f"warpcore_model_{name}", f"{help_text}, per model", labels=["model"])
            for name, help_text in _SIGNALS
        )
        cells_used = cells = 0
        resident = set()
        for model in self._models():
            resident.add(model.id)
            now = activity(self._limits, model.id, model.info, model.backend, model.spec.admission)
            waiting.add_metric([model.id], now.waiting)
            running.add_metric([model.id], now.running)
            occupancy = model.info.occupancy
            if occupancy is not None:
                cells_used += occupancy.cells_used
                cells += occupancy.cells
                usage.add_metric([model.id], occupancy.cells_used / occupancy.cells if occupancy.cells else 0.0)
        for model_id, count in self._limits.awaiting_load.copy().items():  # models not loaded yet (or any more)
            if model_id not in resident:
                waiting.add_metric([model_id], count)
                running.add_metric([model_id], 0)
        totals = (sum(sample.value for sample in family.samples) for family in (waiting, running))
        values = (*totals, cells_used / cells if cells else 0.0)
        for (name, help_text), value in zip(_SIGNALS, values, strict=True):
            yield GaugeMetricFamily(f"warpcore_{name}", help_text, value=value)
        yield from (waiting, running, usage)


class _Residents(Collector):
    """Which models are loaded, with their estimated memory (weights and KV cache of a local model, 0 for a hosted
    one), how many per backend, and how many have been unloaded by reason. The labels are bounded: backends and
    reasons are fixed sets, and a model's series lasts while it holds memory (being unloaded too)."""

    def __init__(self, models: Callable[[], Iterable[LoadedModel]], unloads: Callable[[], Mapping[str, int]]) -> None:
        self._models = models
        self._unloads = unloads

    def collect(self) -> Iterable[Metric]:
        count = GaugeMetricFamily("warpcore_models_loaded", "Models loaded, per backend", labels=["backend"])
        memory = GaugeMetricFamily(
            "warpcore_model_memory_bytes", "Estimated memory of each loaded model", labels=["model", "backend"]
        )
        loaded = dict.fromkeys((backend.value for backend in BackendKind), 0)
        for model in self._models():
            loaded[model.backend.value] += 1
            memory.add_metric([model.id, model.backend.value], model.info.memory_bytes)
        for backend, number in loaded.items():
            count.add_metric([backend], number)
        unloads = CounterMetricFamily(
            "warpcore_model_unloads",
            "Models unloaded, by reason: idle (keep_alive ran out), room (evicted for a load), requested (UnloadModel)",
            labels=["reason"],
        )
        for reason, number in self._unloads().items():
            unloads.add_metric([reason], number)
        yield from (count, memory, unloads)


_SIGNALS = (
    ("num_requests_waiting", "Generations queued, not yet decoding, their model's load included (TotalQueuedRequests)"),
    ("num_requests_running", "Generations decoding (TotalRunningRequests)"),
    ("kv_cache_usage_perc", "KV cache cells in use over cells in all, 0 to 1, local models (KVCacheUtilization)"),
)


class Metrics:
    def __init__(
        self,
        limits: Limits,
        registry: CollectorRegistry | None = None,
        models: Callable[[], Iterable[LoadedModel]] | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "warpcore_requests",
            "Requests by method, status code and protocol (grpc, http)",
            ["method", "code", "protocol"],
            registry=self.registry,
        )
        self.active_streams = Gauge(
            "warpcore_active_streams", "Generations in flight, from either front door", registry=self.registry
        )
        self.time_to_first_token = Histogram(
            "warpcore_time_to_first_token_seconds",
            "Time from request to first text",
            ["backend", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens_per_second = Histogram(
            "warpcore_tokens_per_second",
            "Completion tokens per second after the first token",
            ["backend", "model"],
            buckets=_RATE_BUCKETS,
            registry=self.registry,
        )
        self.model_load_seconds = Histogram(
            "warpcore_model_load_seconds",
            "Time to load a model, whatever asked for it (LoadModel, the start, a first use, a reload)",
            ["backend"],
            buckets=_LOAD_BUCKETS,
            registry=self.registry,
        )
        self._per_model = (self.time_to_first_token, self.tokens_per_second)
        """The histograms with a model label: their series live as the model does (model_loaded, forget_model)."""
        self.unloads: Mapping[str, int] = dict.fromkeys(UNLOAD_REASONS, 0)
        """Models unloaded by reason: the residency's own count, once the engine has one."""
        if models is not None:
            self.registry.register(_QueueDepth(limits, models))
            self.registry.register(_Residents(models, lambda: self.unloads))
            self.registry.register(_ModelServerSignals(limits, models))
            self.registry.register(_PromptCaches(models))

    def serve(self, host: str, port: int, tls: TlsFiles | None = None) -> WSGIServer:
        """Expose /metrics over HTTP on its own port, over TLS when given (a client certificate required when it
        has a client CA); returns the server (its `server_port` is the bound port)."""
        files: dict[str, Any] = {}
        if tls is not None:
            files = {"certfile": str(tls.cert), "keyfile": str(tls.key), "client_auth_required": bool(tls.client_ca)}
            files["client_cafile"] = str(tls.client_ca) if tls.client_ca else None
        server, _ = start_http_server(port, host, registry=self.registry, **files)
        return server

    def observe_load(self, backend: BackendKind, seconds: float) -> None:
        self.model_load_seconds.labels(backend.value).observe(seconds)

    def model_loaded(self, model: LoadedModel, seconds: float) -> None:
        """Time a model's load, and start its series in the histograms with a model label at 0, as the gauges list
        it from now on: else a series first seen with one observation in it reads to Prometheus' increase() and
        rate() as no increase. A model that does not generate (an embedding model) never gets any."""
        self.observe_load(model.backend, seconds)
        if model.info.capabilities.generate:
            for histogram in self._per_model:
                histogram.labels(model.backend.value, model.id)

    async def forget_model(self, model_id: str) -> None:
        """Drop a freed model's series from the histograms that have a model label, as the gauges drop it (they list
        the models resident): ids are the callers' to choose, and the series of every id ever unloaded would grow
        without bound."""
        for histogram in self._per_model:
            for backend in BackendKind:  # removing a series that never was does nothing
                histogram.remove(backend.value, model_id)

    def observe_generation(
        self, backend: str, model: str, time_to_first_token: float, total: float, completion_tokens: int | None
    ) -> None:
        """`completion_tokens` None: the backend reported no count, and no rate is made up from none."""
        self.time_to_first_token.labels(backend, model).observe(time_to_first_token)
        decoding = total - time_to_first_token
        if decoding > 0 and completion_tokens is not None and completion_tokens > 1:
            self.tokens_per_second.labels(backend, model).observe((completion_tokens - 1) / decoding)

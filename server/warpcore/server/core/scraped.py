"""The series read off the server's state when /metrics is scraped, rather than counted as the work happens: the
gauges of the models held in memory and their gates, caches and unloads."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from warpcore.server.adapters.base import CachesPrompts
from warpcore.server.core.domain import BackendKind
from warpcore.server.core.limits import Limits, activity
from warpcore.server.core.registry import LoadedModel


class QueueDepth(Collector):
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


class PromptCaches(Collector):
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


class ModelServerSignals(Collector):
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


class Residents(Collector):
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

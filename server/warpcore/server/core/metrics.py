"""Prometheus metrics of one server: defined here, counted where the work happens, served on their own port."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from warpcore.server.core.domain import BackendKind, Finish
from warpcore.server.core.limits import Limits
from warpcore.server.core.registry import LoadedModel
from warpcore.server.core.residence import UNLOAD_REASONS
from warpcore.server.core.scraped import ModelServerSignals, PromptCaches, QueueDepth, Residents
from warpcore.server.core.tokens import PromptUsage
from warpcore.server.tls import TlsFiles

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A hosted model loads in milliseconds (seconds when its SDK is first imported), a local one in seconds to minutes as
# its gigabytes are read and, for a GPU, copied: up to ten minutes, as the latency buckets' 30 s would leave every
# large model's load in +Inf.
_LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# A generation lasts from a hosted model's fraction of a second to the minutes of a long answer or a reasoning model's
# thinking, its wait for a slot and its model's load included.
_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
_RATE_BUCKETS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)

_TOKEN_COUNTERS = (
    (
        "prompt_tokens",
        "Prompt tokens (cached ones included) of generations and embeddings, as their usage reports them",
    ),
    ("cached_prompt_tokens", "Prompt tokens a cache served (a provider's, a local model's), as the usage reports them"),
    ("completion_tokens", "Completion tokens of generations, as their usage reports them"),
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
        self.time_to_first_token = self._per_model_histogram(
            "warpcore_time_to_first_token_seconds", "Time from request to first text", _LATENCY_BUCKETS
        )
        self.tokens_per_second = self._per_model_histogram(
            "warpcore_tokens_per_second", "Completion tokens per second after the first token", _RATE_BUCKETS
        )
        self.request_duration = self._per_model_histogram(
            "warpcore_request_duration_seconds",
            "Time from a generation's arrival (its wait for a slot and for its model's load included) to its result",
            _DURATION_BUCKETS,
        )
        self.prompt_tokens, self.cached_prompt_tokens, self.completion_tokens = (
            Counter(f"warpcore_{name}", help_text, ["backend", "model"], registry=self.registry)
            for name, help_text in _TOKEN_COUNTERS
        )
        self.model_load_seconds = Histogram(
            "warpcore_model_load_seconds",
            "Time to load a model, whatever asked for it (LoadModel, the start, a first use, a reload)",
            ["backend"],
            buckets=_LOAD_BUCKETS,
            registry=self.registry,
        )
        self._generating: tuple[Counter | Histogram, ...] = (
            *(self.time_to_first_token, self.tokens_per_second, self.request_duration),
            *(self.cached_prompt_tokens, self.completion_tokens),
        )
        """The series with a model label of a model that generates; one that embeds has a prompt_tokens one alone.
        They live as the model does (model_loaded, forget_model)."""
        self.unloads: Mapping[str, int] = dict.fromkeys(UNLOAD_REASONS, 0)
        """Models unloaded by reason: the residency's own count, once the engine has one."""
        if models is not None:
            self.registry.register(QueueDepth(limits, models))
            self.registry.register(Residents(models, lambda: self.unloads))
            self.registry.register(ModelServerSignals(limits, models))
            self.registry.register(PromptCaches(models))

    def _per_model_histogram(self, name: str, help_text: str, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(name, help_text, ["backend", "model"], buckets=buckets, registry=self.registry)

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
        """Time a model's load, and start its series with a model label at 0, as the gauges list it from now on: else
        a series first seen with one observation in it reads to Prometheus' increase() and rate() as no increase. A
        model that does not generate (an embedding model) has its prompt tokens' alone."""
        self.observe_load(model.backend, seconds)
        series = self._generating if model.info.capabilities.generate else ()
        for family in (self.prompt_tokens, *series):
            family.labels(model.backend.value, model.id)

    async def forget_model(self, model_id: str) -> None:
        """Drop a freed model's series with a model label, as the gauges drop it (they list the models resident): ids
        are the callers' to choose, and the series of every id ever unloaded would grow without bound."""
        for family in (self.prompt_tokens, *self._generating):
            for backend in BackendKind:  # removing a series that never was does nothing
                family.remove(backend.value, model_id)

    def observe_generation(
        self, model: LoadedModel, finish: Finish, time_to_first_token: float | None, total: float
    ) -> None:
        """A generation that ended with its result: its usage, counted as the result reports it (a count the backend
        did not report adds nothing, and makes no rate up), and its timings."""
        labels = (model.backend.value, model.id)
        self.request_duration.labels(*labels).observe(total)
        self.count_prompt(model, PromptUsage(finish.prompt_tokens or 0, finish.cached_prompt_tokens))
        self.completion_tokens.labels(*labels).inc(finish.completion_tokens or 0)
        if time_to_first_token is None:  # no text: no first token to time
            return
        self.time_to_first_token.labels(*labels).observe(time_to_first_token)
        decoding, completion_tokens = total - time_to_first_token, finish.completion_tokens
        if decoding > 0 and completion_tokens is not None and completion_tokens > 1:
            self.tokens_per_second.labels(*labels).observe((completion_tokens - 1) / decoding)

    def count_prompt(self, model: LoadedModel | None, prompt: PromptUsage | None) -> None:
        """A prompt's tokens as its usage tells them, the cached ones apart too; also of a generation whose caller
        went before its result, once the backend told them (None: it had not, or no model was reached)."""
        if model is not None and prompt is not None:
            self.prompt_tokens.labels(model.backend.value, model.id).inc(prompt.prompt_tokens)
            self.cached_prompt_tokens.labels(model.backend.value, model.id).inc(prompt.cached_prompt_tokens)

    def count_embedding(self, model: LoadedModel, prompt_tokens: int) -> None:
        """An embedding's input tokens count as prompt tokens: the work (and a provider's bill) of reading them."""
        self.prompt_tokens.labels(model.backend.value, model.id).inc(prompt_tokens)

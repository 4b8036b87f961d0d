"""Prometheus metrics of one server: defined here, counted where the work happens, served on their own port."""

from __future__ import annotations

from collections.abc import Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from warpcore.server.core.limits import Limits

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_RATE_BUCKETS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class _QueueDepth(Collector):
    """Generations waiting per model, read from the gates when scraped."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("warpcore_queue_depth", "Generations waiting for a model", labels=["model"])
        for model_id, gate in self._limits.gates.items():
            family.add_metric([model_id], gate.waiting)
        yield family


class Metrics:
    def __init__(self, limits: Limits, registry: CollectorRegistry | None = None) -> None:
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
            "LoadModel duration",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_QueueDepth(limits))

    def serve(self, host: str, port: int) -> WSGIServer:
        """Expose /metrics over HTTP on its own port; returns the server (its `server_port` is the bound port)."""
        server, _ = start_http_server(port, host, registry=self.registry)
        return server

    def observe_generation(
        self, backend: str, model: str, time_to_first_token: float, total: float, completion_tokens: int
    ) -> None:
        self.time_to_first_token.labels(backend, model).observe(time_to_first_token)
        decoding = total - time_to_first_token
        if decoding > 0 and completion_tokens > 1:
            self.tokens_per_second.labels(backend, model).observe((completion_tokens - 1) / decoding)

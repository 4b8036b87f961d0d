"""Prometheus metrics and one structured log line per request, gathered by one server interceptor."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from warpcore.server.limits import Limits
from warpcore.v1 import inference_pb2 as pb

access_log = logging.getLogger("warpcore.access")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_RATE_BUCKETS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_LOG_FIELDS = ("method", "model", "code", "duration_ms", "prompt_tokens", "completion_tokens", "peer")


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
            "warpcore_requests", "gRPC requests by method and status code", ["method", "code"], registry=self.registry
        )
        self.active_streams = Gauge("warpcore_active_streams", "Generate calls in flight", registry=self.registry)
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

    def observe_generation(self, backend: str, model: str, result: pb.GenerateResult) -> None:
        if not result.timings.HasField("time_to_first_token"):
            return
        first = result.timings.time_to_first_token.ToNanoseconds() / 1e9
        self.time_to_first_token.labels(backend, model).observe(first)
        decoding = result.timings.total.ToNanoseconds() / 1e9 - first
        if decoding > 0 and result.usage.completion_tokens > 1:
            self.tokens_per_second.labels(backend, model).observe((result.usage.completion_tokens - 1) / decoding)


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Counts and logs every unary and server-streaming call; `backend_of` names the backend of a model id."""

    def __init__(self, metrics: Metrics, backend_of: Callable[[str], str | None]) -> None:
        self._metrics = metrics
        self._backend_of = backend_of

    def _finish(self, method: str, request: Any, peer: str, started: float, code: str) -> dict[str, Any]:
        name = method.rsplit("/", 1)[-1]
        self._metrics.requests.labels(name, code).inc()
        duration = time.monotonic() - started
        if name == "LoadModel" and code == "OK":
            self._metrics.model_load_seconds.labels(pb.BackendType.Name(request.backend)).observe(duration)
        return {
            "method": name,
            "model": getattr(request, "model_id", "") or getattr(request, "model", ""),
            "code": code,
            "duration_ms": round(duration * 1000, 3),
            "peer": peer,
        }

    @staticmethod
    def _code(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
        if error is None:
            return "OK"
        if isinstance(error, asyncio.CancelledError):
            return "CANCELLED"
        status = context.code()
        return status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        serializers = {
            "request_deserializer": handler.request_deserializer if handler else None,
            "response_serializer": handler.response_serializer if handler else None,
        }
        if handler is None or (handler.unary_unary is None and handler.unary_stream is None):
            return handler  # client- and bidirectional-streaming calls (reflection) are not counted
        if handler.unary_unary is not None or not inspect.isasyncgenfunction(handler.unary_stream):
            # Unary calls, and streaming ones written with context.write (health's Watch).
            behavior: Any = handler.unary_unary or handler.unary_stream  # an async callable under grpc.aio

            async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                # The peer is read first: grpc crashes when peer() is called on a call that has ended.
                started, error, peer = time.monotonic(), None, context.peer()
                try:
                    return await behavior(request, context)
                except BaseException as failure:
                    error = failure
                    raise
                finally:
                    code = self._code(context, error)
                    access_log.info("request", extra=self._finish(method, request, peer, started, code))

            if handler.unary_unary is not None:
                return grpc.unary_unary_rpc_method_handler(call, **serializers)
            return grpc.unary_stream_rpc_method_handler(call, **serializers)
        # An async generator of responses: Generate.
        streaming: Any = handler.unary_stream  # an async generator function under grpc.aio

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started, error, usage, peer = time.monotonic(), None, {}, context.peer()
            self._metrics.active_streams.inc()
            try:
                async for response in streaming(request, context):
                    if isinstance(response, pb.GenerateResponse) and response.HasField("result"):
                        usage = {
                            "prompt_tokens": response.result.usage.prompt_tokens,
                            "completion_tokens": response.result.usage.completion_tokens,
                        }
                        backend = self._backend_of(request.model_id)
                        if backend is not None:
                            self._metrics.observe_generation(backend, request.model_id, response.result)
                    yield response
            except BaseException as failure:
                error = failure
                raise
            finally:
                self._metrics.active_streams.dec()
                fields = self._finish(method, request, peer, started, self._code(context, error))
                access_log.info("request", extra={**fields, **usage})

        return grpc.unary_stream_rpc_method_handler(stream, **serializers)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a request's fields when it has them."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({name: getattr(record, name) for name in _LOG_FIELDS if hasattr(record, name)})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(log_format: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)

"""One structured log line and one request count per call, from a server interceptor."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from warpcore.server.core.domain import Finish
from warpcore.server.core.metrics import Metrics
from warpcore.v1 import inference_pb2 as pb

access_log = logging.getLogger("warpcore.access")
_usage: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar("usage", default=None)


def record_usage(finish: Finish) -> None:
    """Note a generation's usage for the access-log line of the call that runs it."""
    usage = _usage.get()
    if usage is not None:
        usage.update(prompt_tokens=finish.prompt_tokens, completion_tokens=finish.completion_tokens)


class AccessLogInterceptor(grpc.aio.ServerInterceptor):
    """Counts and logs every unary and server-streaming call."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

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
            started, error, peer = time.monotonic(), None, context.peer()
            usage: dict[str, int] = {}
            _usage.set(usage)  # each call runs in a task of its own, whose context ends with it
            try:
                async for response in streaming(request, context):
                    yield response
            except BaseException as failure:
                error = failure
                raise
            finally:
                fields = self._finish(method, request, peer, started, self._code(context, error))
                access_log.info("request", extra={**fields, **usage})

        return grpc.unary_stream_rpc_method_handler(stream, **serializers)

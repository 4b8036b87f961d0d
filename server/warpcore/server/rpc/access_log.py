"""The access log of gRPC calls (core/access.py), from a server interceptor."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from warpcore.server.core.access import (
    REQUEST_ID_HEADER,
    STALLED_READER,
    log_request,
    recording_usage,
    request_id,
)
from warpcore.server.core.metrics import Metrics
from warpcore.server.rpc.status import hold_request_id, send_request_id

HEALTH_SERVICE = "/" + health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
"""The service whose calls (Check, Watch) are health checks: counted, not access-logged."""
UNKNOWN_METHOD = "/unmatched"
"""The method a call to a method the server does not have is counted and logged under, as the HTTP door's route for a
path none matches: one value, whatever the caller named, lest each name add a series to the request counter."""


Context = grpc.aio.ServicerContext[Any, Any]

DEADLINE_SLACK = 0.1
"""Of a call's time (capped at MAX_DEADLINE_SLACK), how much may be left when its client cancels for it still to count
as its deadline passing. The client's clock starts before the request travels, the server's when it arrives, so a
client's own deadline passes a little first (milliseconds; more on a loaded machine) and its cancel reaches the call
before the server's deadline does."""
MAX_DEADLINE_SLACK = 0.25


def _identify(context: Context) -> str:
    """The call's request id: the caller's `x-request-id` when sane, else a new one; noted for the error details, and
    held for the response's initial metadata (send_request_id)."""
    offered = next((str(value) for key, value in context.invocation_metadata() or () if key == REQUEST_ID_HEADER), None)
    identity = request_id(offered)
    hold_request_id(identity)
    return identity


class AccessLogInterceptor(grpc.aio.ServerInterceptor):
    """Gives every unary and server-streaming call, and every call to a method the server has not, a request id, and
    counts and logs it."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def _finish(
        self,
        method: str,
        request: Any,
        peer: str,
        identity: str,
        started: float,
        code: str,
        usage: dict[str, int | str] | None = None,
    ) -> None:
        service, _, name = method.rpartition("/")
        named = getattr(request, "request", request)  # CountTokens holds the GenerateRequest whose prompt it counts
        model = getattr(named, "model_id", "") or getattr(named, "model", "")
        config = getattr(named, "backend_config", None)  # LoadModel's and ListModels' may bring a key
        health, key = service == HEALTH_SERVICE, config.api.api_key if config is not None else ""
        fields = {"model": model, "peer": peer, "request_id": identity, **(usage or {})}
        log_request(self._metrics, "grpc", name, code, started, key, health=health, **fields)

    @staticmethod
    def _code(context: Context, error: BaseException | None, timeout: float | None) -> str:
        """The call's status name; `timeout` is the time it had when it began (None: no deadline)."""
        if error is None:
            return "OK"
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            # grpc cancels the handler both when the client goes and when the call's deadline passes; a stream's
            # generator cancelled between two responses is closed instead.
            remaining = context.time_remaining()
            slack = 0.0 if timeout is None else min(MAX_DEADLINE_SLACK, DEADLINE_SLACK * timeout)
            return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= slack else "CANCELLED"
        status = context.code()
        return status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"

    async def _unimplemented(self, requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
        """gRPC's own answer to a method it does not have, with a request id, counted and logged; streamed both ways,
        so that whatever the caller sends (none, one request, a stream) is left unread."""
        started, peer = time.monotonic(), context.peer()
        identity = _identify(context)
        try:
            await send_request_id(context)
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        finally:
            self._finish(UNKNOWN_METHOD, None, peer, identity, started, "UNIMPLEMENTED")
        yield b""  # pragma: no cover - makes this a streaming handler

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None:  # no such method: gRPC would answer UNIMPLEMENTED unseen
            return grpc.stream_stream_rpc_method_handler(self._unimplemented)
        serializers = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is None and handler.unary_stream is None:
            return handler  # client- and bidirectional-streaming calls (reflection) are not counted
        if handler.unary_unary is not None or not inspect.isasyncgenfunction(handler.unary_stream):
            # Unary calls, and streaming ones written with context.write (health's Watch).
            behavior: Any = handler.unary_unary or handler.unary_stream  # an async callable under grpc.aio
            written = handler.unary_unary is None  # whose first write would send initial metadata of its own

            async def call(request: Any, context: Context) -> Any:
                # The peer is read first: grpc crashes when peer() is called on a call that has ended.
                started, error, peer, timeout = time.monotonic(), None, context.peer(), context.time_remaining()
                identity = _identify(context)  # a unary call's goes with its answer, or before the status ending it
                with recording_usage() as usage:  # an Embed's prompt tokens
                    try:
                        if written:
                            await send_request_id(context)
                        response = await behavior(request, context)
                        await send_request_id(context)
                        return response
                    except BaseException as failure:
                        error = failure
                        raise
                    finally:
                        code = self._code(context, error, timeout)
                        self._finish(method, request, peer, identity, started, code, usage)

            if handler.unary_unary is not None:
                return grpc.unary_unary_rpc_method_handler(call, **serializers)
            return grpc.unary_stream_rpc_method_handler(call, **serializers)
        # An async generator of responses: Generate.
        streaming: Any = handler.unary_stream  # an async generator function under grpc.aio

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            started, error, peer, timeout = time.monotonic(), None, context.peer(), context.time_remaining()
            identity = _identify(context)
            await send_request_id(context)  # at once: a stream is never retried, and its caller may want it early
            with recording_usage() as usage:
                responses = streaming(request, context)
                try:
                    async for response in responses:
                        yield response
                except BaseException as failure:
                    error = failure
                    raise
                finally:
                    # A stream grpc abandons as it writes a frame (its deadline passed) is closed later by the event
                    # loop's finalizer, in a context of its own: its generation notes how it ended into this call's
                    # usage, before the line is written, rather than nowhere after it.
                    with recording_usage(usage):
                        await responses.aclose()
                    stalled = usage.get("ended_by") == STALLED_READER  # the status _end_stalled sends its caller
                    code = "DEADLINE_EXCEEDED" if stalled else self._code(context, error, timeout)
                    self._finish(method, request, peer, identity, started, code, usage)

        return grpc.unary_stream_rpc_method_handler(stream, **serializers)

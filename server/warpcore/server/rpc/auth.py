"""Bearer-token authentication for the inference service; health and reflection stay open."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from warpcore.server.core.auth import bearer_token, token_matches
from warpcore.server.core.errors import UnauthenticatedError
from warpcore.server.rpc.status import end_call, to_status

PROTECTED_PREFIX = "/warpcore.v1.InferenceService/"


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses inference calls whose `authorization` metadata is not "Bearer <token>"."""

    def __init__(self, token: str) -> None:
        self._expected = token.encode()

    def _authorized(self, details: grpc.HandlerCallDetails) -> bool:
        # Exactly one authorization value: with several, which one counts would depend on the order of headers.
        values = [value for key, value in details.invocation_metadata or () if key == "authorization"]
        return len(values) == 1 and token_matches(bearer_token(str(values[0])), self._expected)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or not method.startswith(PROTECTED_PREFIX) or self._authorized(handler_call_details):
            return handler
        refusal = UnauthenticatedError("missing or wrong bearer token: send 'authorization: Bearer <token>' metadata")

        # The status is built in the call, which has its request id by then.
        async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await end_call(context, to_status(refusal))

        async def deny_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await end_call(context, to_status(refusal))
            yield  # pragma: no cover - makes this a streaming handler

        serializers = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny_stream, **serializers)
        return grpc.unary_unary_rpc_method_handler(deny, **serializers)

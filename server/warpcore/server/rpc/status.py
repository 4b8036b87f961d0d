"""The one place where domain errors become gRPC statuses with rich details."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from warpcore.server.core.access import REQUEST_ID_HEADER, current_request_id, record_failure
from warpcore.server.core.bounds import fitted_message, shortened
from warpcore.server.core.errors import DeadlinePassedError, ErrorCode, InvalidArgumentError, WarpcoreError
from warpcore.server.core.stalled import on_stalled
from warpcore.server.rpc.translate import field_path

ERROR_DOMAIN = "warpcore.v1"
# Domain codes are google.rpc.Code names, so each has its gRPC status of the same name.
_GRPC_CODES = {code: grpc.StatusCode[code.name] for code in ErrorCode}
_log = logging.getLogger(__name__)

_unsent_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("unsent_request_id", default=None)
"""A unary call's request id, until its initial metadata goes: with the answer, or the status that ends it."""

Request = TypeVar("Request")
Response = TypeVar("Response")
Servicer = TypeVar("Servicer")


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: WarpcoreError) -> grpc.Status:
    """Build the gRPC status for a domain error: ErrorInfo always, RequestInfo with the call's request id (as the
    HTTP door's error bodies carry it where their format has a place for it), BadRequest and RetryInfo when known.
    Every call a domain error ends is ended with this status: so it notes the upstream's id for the call's log line."""
    record_failure(error)
    metadata = {key: shortened(value) for key, value in error.metadata.items()}
    details = [_packed(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata))]
    if request_id := current_request_id():  # the id the call's initial metadata gave its caller
        details.append(_packed(error_details_pb2.RequestInfo(request_id=request_id)))
    field = None if error.field is None else field_path(error.field)
    message = fitted_message(error.message if field is None else error.message_naming(field))
    if field is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
        details.append(_packed(error_details_pb2.BadRequest(field_violations=[violation])))
    if error.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after * 1e9))
        details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(code=_GRPC_CODES[error.code].value[0], message=message, details=details)
    return cast(grpc.Status, rpc_status.to_status(status))


def hold_request_id(request_id: str) -> None:
    """Keep a unary call's request id for its initial metadata, sent only as the call ends. A client's retry policy
    can retry a call only until the response's headers arrive: sent at once, they would leave a unary call that dies
    with its server (a replica killed) failed, where gRPC would retry it on another."""
    _unsent_request_id.set(request_id)


async def send_request_id(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Send a unary call's held request id in its initial metadata, unless it has gone already."""
    if (request_id := _unsent_request_id.get()) is not None:
        _unsent_request_id.set(None)
        await context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))


async def end_call(context: grpc.aio.ServicerContext[Any, Any], status: grpc.Status) -> NoReturn:
    """End the call with `status`, its request id in the initial metadata before it."""
    await send_request_id(context)
    await context.abort_with_status(status)
    raise AssertionError("abort_with_status returned")  # pragma: no cover


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: Exception) -> NoReturn:
    if isinstance(error, grpc.aio.AbortError):
        raise error  # the call was already ended with its status
    if isinstance(error, DeadlinePassedError):
        # The call's deadline, met by the server before gRPC's own end of the call came: ended as gRPC ends it, in its
        # words and with no details, whose reason would read as the server's.
        await send_request_id(context)
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    if not isinstance(error, WarpcoreError):
        _log.exception("unexpected error", exc_info=error)
        error = WarpcoreError("internal server error; see the server log")
    await end_call(context, to_status(error))


def unary_errors(
    method: Callable[[Servicer, Request, grpc.aio.ServicerContext[Request, Response]], Awaitable[Response]],
) -> Callable[[Servicer, Request, grpc.aio.ServicerContext[Request, Response]], Awaitable[Response]]:
    """Turn errors escaping a unary method into statuses."""

    @functools.wraps(method)
    async def wrapper(
        self: Servicer, request: Request, context: grpc.aio.ServicerContext[Request, Response]
    ) -> Response:
        try:
            return await method(self, request, context)
        except Exception as error:  # noqa: BLE001 - every failure must end as a status
            await _abort(context, error)

    return wrapper


_ending: set[asyncio.Future[None]] = set()
"""The statuses waiting to follow the frames of calls cut for reading nothing (a task holds no reference to itself)."""


def _end_stalled(context: grpc.aio.ServicerContext[Any, Any], error: WarpcoreError) -> None:
    """Send the status of a call whose caller read nothing (stalled.py), its handler cancelled: it goes behind the
    frames already written, and reaches the caller if it reads again; cancelling alone would leave its call open
    with no status until its client goes."""

    async def end() -> None:
        with contextlib.suppress(Exception):  # an AbortError, or a failed send: the client went first
            await end_call(context, to_status(error))

    ending = asyncio.ensure_future(end())
    _ending.add(ending)
    ending.add_done_callback(_ending.discard)


def streaming_errors(
    method: Callable[[Servicer, Request, grpc.aio.ServicerContext[Request, Response]], AsyncGenerator[Response, None]],
) -> Callable[[Servicer, Request, grpc.aio.ServicerContext[Request, Response]], AsyncGenerator[Response, None]]:
    """Turn errors escaping a server-streaming method into statuses, after the frames already sent."""

    @functools.wraps(method)
    async def wrapper(
        self: Servicer, request: Request, context: grpc.aio.ServicerContext[Request, Response]
    ) -> AsyncGenerator[Response, None]:
        on_stalled(functools.partial(_end_stalled, context))
        try:
            async with contextlib.aclosing(method(self, request, context)) as responses:
                async for response in responses:
                    yield response
        except Exception as error:  # noqa: BLE001 - every failure must end as a status
            await _abort(context, error)

    return wrapper


class _Undecodable:
    """Stands in for a request whose bytes are not a valid message (e.g. a string that is not UTF-8)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _undecodable_error(request: _Undecodable) -> WarpcoreError:
    # The hint that fits protobuf's words for what went wrong: a string that is not UTF-8, or bytes no message of
    # this type encodes (another message's, or cut short).
    utf8 = "UTF-8" in request.problem
    hint = "strings must be valid UTF-8" if utf8 else "send the bytes of this method's request message whole"
    return InvalidArgumentError(
        f"the request could not be decoded ({request.problem}); {hint}",
        field="request",
        reason="REQUEST_UNDECODABLE",
    )


async def _decoded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    if isinstance(request, _Undecodable):
        await _abort(context, _undecodable_error(request))
    return request


async def _each_decoded(
    requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[Any]:
    async for request in requests:
        yield await _decoded(request, context)


def _checking(behaviour: Any, streamed: bool) -> Any:
    """`behaviour` (an async function or async generator function, its request one message or an iterator of them),
    ending its call with INVALID_ARGUMENT where a request stands in for bytes that did not decode."""

    async def requests(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return _each_decoded(request, context) if streamed else await _decoded(request, context)

    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncGenerator[Any, None]:
            async with contextlib.aclosing(behaviour(await requests(request, context), context)) as responses:
                async for response in responses:
                    yield response

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await behaviour(await requests(request, context), context)

    return call


# Each kind of method, by whether its requests and its responses stream: its handler's field, and what builds one.
_KINDS: dict[tuple[bool, bool], tuple[str, Callable[..., grpc.RpcMethodHandler[Any, Any]]]] = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


class DecodeErrorInterceptor(grpc.aio.ServerInterceptor):
    """Answers a request that does not decode with INVALID_ARGUMENT, where grpc would say UNKNOWN and log a traceback:
    for every kind of method (health's Watch, reflection's stream of requests), a streamed request as the handler
    reads it from its iterator."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        deserialize = handler.request_deserializer

        def tolerant(data: bytes) -> Any:
            try:
                return deserialize(data)
            except DecodeError as error:
                return _Undecodable(str(error))

        kind, build = _KINDS[handler.request_streaming, handler.response_streaming]
        checking = _checking(getattr(handler, kind), handler.request_streaming)
        return build(checking, request_deserializer=tolerant, response_serializer=handler.response_serializer)

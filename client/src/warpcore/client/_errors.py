"""Typed exceptions for failed calls, one per gRPC status, built in one function for both clients."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from warpcore.client._pickling import PicklableError

if TYPE_CHECKING:
    from warpcore.client._types import GenerateResponse


class WarpcoreError(PicklableError):
    """A failed call: its gRPC status code, the server's message, and the google.rpc details it sent. It pickles
    whole (a ProcessPoolExecutor's worker's failure comes back as itself), as every exception the SDK raises does."""

    code: ClassVar[grpc.StatusCode | None] = None

    def __init__(
        self,
        message: str,
        *,
        status: grpc.StatusCode,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        field_violations: dict[str, str] | None = None,
        retry_after: float | None = None,
        request_id: str = "",
        response: GenerateResponse | None = None,
    ) -> None:
        super().__init__(f"{status.name}: {message}")
        self.status = status
        self.message = message
        self.reason = reason
        """google.rpc.ErrorInfo.reason, e.g. "MODEL_NOT_LOADED"; empty when the server sent none."""
        self.metadata = metadata or {}
        self.field_violations = field_violations or {}
        """Offending request field -> description (google.rpc.BadRequest)."""
        self.retry_after = retry_after
        """Seconds to wait before retrying (google.rpc.RetryInfo), when the server said."""
        self.request_id = request_id
        """The server's id of the call, as its access log names it (google.rpc.RequestInfo, or the x-request-id the
        call's first answer carried, for a call cut without details); empty when no server answered."""
        self.response = response
        """Of a generation that failed once it had begun, when the server ended it with a result frame (an upstream
        that failed mid-stream, the server's shutdown): the answer as far as it came, with the usage the backend
        had told (a hosted API's completion count comes only at its end); else None."""


class InvalidArgumentError(WarpcoreError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(WarpcoreError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(WarpcoreError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(WarpcoreError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AuthenticationError(WarpcoreError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(WarpcoreError):
    code = grpc.StatusCode.PERMISSION_DENIED


class RateLimitError(WarpcoreError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class MessageTooLargeError(WarpcoreError):
    """A call that holds too much: a request larger than the server's --max-message-bytes, which gRPC itself refuses
    before the server reads it (RESOURCE_EXHAUSTED, "Received message larger than max (N vs. M)", with no reason or
    request id), one over a limit that the client's channel_options set, or one over the server's limits on what one
    call holds (reasons TOO_MANY_IMAGES, IMAGE_TOO_LARGE, the documents', RESPONSE_TOO_LARGE). Unlike a RateLimitError,
    of the same status, no retry of the same call can succeed: send less in one call. Its `status` is
    RESOURCE_EXHAUSTED."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(WarpcoreError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(WarpcoreError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class CancelledError(WarpcoreError):
    code = grpc.StatusCode.CANCELLED


class UnimplementedError(WarpcoreError):
    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(WarpcoreError):
    code = grpc.StatusCode.INTERNAL


class ResponseParseError(WarpcoreError, ValueError):
    """A generation that finished whose text does not parse as its response_format asks (not JSON, or JSON that
    does not fit the pydantic model), as a hosted model may answer. The call itself succeeded (status OK), so
    nothing of it is lost: `response` holds the whole answer (text, usage, finish reason; parsed None), and the
    parser's exception (json.JSONDecodeError, pydantic's ValidationError) is the __cause__. A ValueError too, as
    those are."""

    def __init__(self, response: GenerateResponse, cause: ValueError) -> None:
        summary = "; ".join(line.strip() for line in str(cause).splitlines() if line.strip())
        super().__init__(
            f"the answer does not parse as response_format asks: {summary}",
            status=grpc.StatusCode.OK,
            request_id=response.request_id,
            response=response,  # the whole answer, unparsed
        )
        self.response: GenerateResponse = response

    def __str__(self) -> str:
        return self.message  # no status before it: no call failed


STOPPED_BY_SERVER = "the server stopped the generation before its end (it is shutting down); retry"


def stopped_by_server(response: GenerateResponse) -> UnavailableError:
    """A generation that the server's shutdown ended (FINISH_REASON_CANCELLED, status OK) is no answer: its text is
    cut short, and a caller that reads only the text must not take it for the whole. Another replica may answer."""
    return UnavailableError(
        STOPPED_BY_SERVER,
        status=grpc.StatusCode.UNAVAILABLE,
        reason="SHUTTING_DOWN",
        request_id=response.request_id,
        response=response,
    )


_BY_CODE: dict[grpc.StatusCode, type[WarpcoreError]] = {  # MessageTooLargeError, of RateLimitError's code, aside
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        AuthenticationError,
        PermissionDeniedError,
        RateLimitError,
        UnavailableError,
        DeadlineExceededError,
        CancelledError,
        UnimplementedError,
        InternalError,
    )
    if cls.code is not None
}


_GRPC_SIZE_LIMIT = re.compile(r"\b(Received|Sent) message larger than max \(")
"""gRPC's own words for a message over its size limit, on either side of the call (grpc-core's; some versions put
"SERVER: " before them)."""


_OVER_A_CONTENT_LIMIT = re.compile(r"TOO_MANY_[A-Z_]+|[A-Z_]+_TOO_LARGE")
"""The server's reasons for a request over one of its limits on what one call holds (TOO_MANY_IMAGES,
IMAGE_TOO_LARGE, the documents', RESPONSE_TOO_LARGE for vectors): RESOURCE_EXHAUSTED, as a full queue is, but no wait
ends them."""


@dataclass(frozen=True)
class Deadline:
    """A call's timeout and whose it was: gRPC's words when it passes ("Deadline Exceeded") name neither how long it
    was nor which timeout to raise."""

    seconds: float
    owner: str
    """"the call's" (its `timeout` argument) or "the client's" (the client's `timeout` option)."""

    def passed(self) -> str:
        return f"timed out after {self.seconds:g} s ({self.owner} timeout)"


def request_id_from(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The call's id from the initial metadata the server sent (the server sends one on every call)."""
    return next((str(value) for key, value in metadata or () if key == "x-request-id"), "")


def _rich_status(call: grpc.Call) -> status_pb2.Status | None:
    """The google.rpc.Status the server sent, when it is the call's. A deadline that passes as the server fails the
    call gives the call DEADLINE_EXCEEDED while the trailer holds the server's status of another code, whose details
    are not this failure's; a trailer that is no Status (another server's, a proxy's) tells nothing. grpc_status
    raises on either, and the call's own status still stands."""
    try:
        return rpc_status.from_call(call)
    except (ValueError, DecodeError):
        return None


def error_from_rpc(error: grpc.RpcError, deadline: Deadline | None) -> WarpcoreError:
    """The typed exception for a failed call, from the sync or the asyncio API alike; one whose `deadline` passed says
    so. The server's own DEADLINE_EXCEEDED (a stalled reader, an upstream's timeout) carries its reason and its
    words, which say whose deadline it was."""
    call: grpc.Call = error  # type: ignore[assignment]  # every failed call's error is also its Call
    status_code = call.code()
    reason, metadata, violations, retry_after, request_id = "", {}, {}, None, ""
    status = _rich_status(call)
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations = {v.field: v.description for v in bad_request.field_violations}
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToTimedelta().total_seconds()
        elif detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            request = error_details_pb2.RequestInfo()
            detail.Unpack(request)
            request_id = request.request_id
    # A call the server answered, then lost (the server died mid-stream), has no details: its id came first.
    request_id = request_id or request_id_from(call.initial_metadata())
    message = call.details() or status_code.name
    if status_code is grpc.StatusCode.DEADLINE_EXCEEDED and not reason and deadline is not None:
        message = deadline.passed()
    kind = _BY_CODE.get(status_code, WarpcoreError)
    if status_code is grpc.StatusCode.RESOURCE_EXHAUSTED and (
        _OVER_A_CONTENT_LIMIT.fullmatch(reason) or (not reason and _GRPC_SIZE_LIMIT.search(message))
    ):
        kind = MessageTooLargeError  # no wait ends it: the server's limit, or gRPC's own, which the server never saw
    return kind(
        message,
        status=status_code,
        reason=reason,
        metadata=metadata,
        field_violations=violations,
        retry_after=retry_after,
        request_id=request_id,
    )

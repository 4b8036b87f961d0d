"""Domain errors: one base class, one gRPC status code per subclass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from grpc import StatusCode


class WarpcoreError(Exception):
    """A failure a client can act on, reported as a gRPC status with rich details.

    `reason` is a stable UPPER_SNAKE identifier (google.rpc.ErrorInfo.reason);
    `field` names the offending request field, if any (google.rpc.BadRequest).
    """

    code: ClassVar[StatusCode] = StatusCode.INTERNAL
    default_reason: ClassVar[str] = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        field: str | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.field = field
        self.metadata = dict(metadata or {})
        self.retry_after = retry_after


class InvalidArgumentError(WarpcoreError):
    code = StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"


class NotFoundError(WarpcoreError):
    code = StatusCode.NOT_FOUND
    default_reason = "NOT_FOUND"


class AlreadyExistsError(WarpcoreError):
    code = StatusCode.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPreconditionError(WarpcoreError):
    code = StatusCode.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class UnauthenticatedError(WarpcoreError):
    code = StatusCode.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class PermissionDeniedError(WarpcoreError):
    code = StatusCode.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class ResourceExhaustedError(WarpcoreError):
    code = StatusCode.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"


class UnavailableError(WarpcoreError):
    code = StatusCode.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class DeadlineExceededError(WarpcoreError):
    code = StatusCode.DEADLINE_EXCEEDED
    default_reason = "DEADLINE_EXCEEDED"

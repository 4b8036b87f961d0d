"""Domain errors: one base class, one protocol-neutral code per subclass; each front door maps the codes to its own
protocol (rpc/status.py for gRPC)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import ClassVar


class ErrorCode(enum.Enum):
    """What kind of failure: the canonical codes of google.rpc.Code, which gRPC and HTTP both map from."""

    INVALID_ARGUMENT = enum.auto()
    NOT_FOUND = enum.auto()
    ALREADY_EXISTS = enum.auto()
    FAILED_PRECONDITION = enum.auto()
    UNAUTHENTICATED = enum.auto()
    PERMISSION_DENIED = enum.auto()
    RESOURCE_EXHAUSTED = enum.auto()
    UNAVAILABLE = enum.auto()
    DEADLINE_EXCEEDED = enum.auto()
    INTERNAL = enum.auto()


QUOTA_EXHAUSTED = "UPSTREAM_QUOTA_EXHAUSTED"
"""The reason of a RESOURCE_EXHAUSTED that no wait ends (an upstream account's quota used up), where a rate limit's
refusal says when to retry."""
UPSTREAM_MALFORMED = "UPSTREAM_MALFORMED"
"""An upstream's answer not of its API's shape (a model list, embeddings, a token count)."""
UPSTREAM_MALFORMED_STREAM = "UPSTREAM_MALFORMED_STREAM"
"""A stream event that is not UTF-8, not JSON, or not of the API's shape."""
UPSTREAM_MALFORMED_TOOL_CALL = "UPSTREAM_MALFORMED_TOOL_CALL"
"""A streamed tool call that begins or ends broken (no id, an earlier call's id, arguments that do not parse)."""
UPSTREAM_NOT_STREAMING = "UPSTREAM_NOT_STREAMING"
"""A streaming request answered with no event stream."""
_UNFIXED_BY_RETRY = frozenset(
    {
        QUOTA_EXHAUSTED,
        UPSTREAM_MALFORMED,
        UPSTREAM_MALFORMED_STREAM,
        UPSTREAM_MALFORMED_TOOL_CALL,
        UPSTREAM_NOT_STREAMING,
    }
)


def unfixed_by_retry(reason: str) -> bool:
    """Whether the failure of `reason` comes again however long a client waits to send the same request: a quota used
    up, and an upstream that answers of the wrong shape, a defect of its own (LiteLLM's Messages route opens a new
    tool_use block with one id for each piece of a call's input). Their codes stay those that say where the fault is
    (RESOURCE_EXHAUSTED, UNAVAILABLE), but neither door asks for a retry: no RetryInfo over gRPC, and the HTTP door's
    `x-should-retry: false`, which both official SDKs obey over their default retries of a 429 or a 503."""
    return reason in _UNFIXED_BY_RETRY


class WarpcoreError(Exception):
    """A failure a client can act on.

    `reason` is a stable UPPER_SNAKE identifier (google.rpc.ErrorInfo.reason over gRPC);
    `field` names the offending request field, if any, by its path in the domain request (rpc/ maps it to the
    protobuf field path).
    """

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL

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
        self.reason = reason or self.code.name
        self.field = field
        self.metadata = dict(metadata or {})
        self.retry_after = None if unfixed_by_retry(self.reason) else retry_after

    def begins_with_field(self) -> bool:
        """Whether the message begins with the field's name, not with a longer name that begins as it does (`tools`
        in `tools[0]...`)."""
        rest = self.message.removeprefix(self.field or "")
        return bool(self.field) and rest != self.message and not rest[:1].isidentifier() and rest[:1] not in ".["

    def message_naming(self, name: str) -> str:
        """The message, its leading field name said as a front door names it (`name`): the client reads the name it
        sent, not the domain's."""
        if not self.begins_with_field():
            return self.message
        return name + self.message.removeprefix(self.field or "")


class InvalidArgumentError(WarpcoreError):
    code = ErrorCode.INVALID_ARGUMENT


# Routers tell a prompt that does not fit by the words of its refusal, not by its code, and only then fall back to a
# model with a larger context: LiteLLM's context_window_fallbacks (ExceptionCheckers.is_error_str_context_window_
# exceeded) match OpenAI's and vLLM's first phrase and llama.cpp server's second; LiteLLM's Anthropic and Bedrock
# routes match Anthropic's third. Every refusal of a prompt or input over the context says the first two, a prompt's
# the third too, a local model's or an upstream's alike (too_long).
MAXIMUM_CONTEXT_LENGTH = "this model's maximum context length is"
EXCEEDS_CONTEXT_SIZE = "exceeds the available context size"
PROMPT_TOO_LONG = "prompt is too long"
CONTEXT_LENGTH_EXCEEDED = "CONTEXT_LENGTH_EXCEEDED"
"""The reason of every such refusal; the HTTP door's OpenAI code is its lower case."""


def too_long(subject: str, context_size: int | None, length: str = "") -> str:
    """`subject` (the prompt, an input) refused as longer than a `context_size`-token context, of `length` (tokens or
    bytes, and why they do not fit) where it is known, in the words routers read (above); a context of a size nobody
    said (an upstream's refusal that does not tell it) is said to be less than the subject's length."""
    limit = f"{context_size} tokens" if context_size is not None else f"less than {subject}'s length"
    said = f": {length}" if length else ""
    return f"{subject} is too long{said}, which {EXCEEDS_CONTEXT_SIZE}: {MAXIMUM_CONTEXT_LENGTH} {limit}"


def context_length_exceeded(
    subject: str, length: str, context_size: int, *, field: str, metadata: Mapping[str, str], also: str = ""
) -> InvalidArgumentError:
    """The refusal of `subject` of `length` for a local model's `context_size`-token context (too_long), then what to
    do: shorten it, `also` something else, or load the model with a larger context."""
    return InvalidArgumentError(
        f"{too_long(subject, context_size, length)}; shorten it{also} or load the model with a larger context_size",
        reason=CONTEXT_LENGTH_EXCEEDED,
        field=field,
        metadata={**metadata, "context_size": str(context_size)},
    )


class NotFoundError(WarpcoreError):
    code = ErrorCode.NOT_FOUND


class AlreadyExistsError(WarpcoreError):
    code = ErrorCode.ALREADY_EXISTS


class FailedPreconditionError(WarpcoreError):
    code = ErrorCode.FAILED_PRECONDITION


class UnauthenticatedError(WarpcoreError):
    code = ErrorCode.UNAUTHENTICATED


class PermissionDeniedError(WarpcoreError):
    code = ErrorCode.PERMISSION_DENIED


class ResourceExhaustedError(WarpcoreError):
    code = ErrorCode.RESOURCE_EXHAUSTED


class ContentTooLargeError(ResourceExhaustedError):
    """The request's own content over a limit (an image's size, the number of images): unlike a full queue,
    retrying the same request cannot succeed (the HTTP door answers 413, not 429)."""


class UnavailableError(WarpcoreError):
    code = ErrorCode.UNAVAILABLE


class DeadlineExceededError(WarpcoreError):
    code = ErrorCode.DEADLINE_EXCEEDED


class DeadlinePassedError(DeadlineExceededError):
    """The caller's own deadline passed, and the server met it first: a hosted upstream's wait that the deadline cut
    short timed out before the door's own end of the call came. Each door ends the call as it ends any whose deadline
    passed, naming no reason of the server's, as the deadline was the caller's."""

    def __init__(self) -> None:
        super().__init__("the call's deadline passed")

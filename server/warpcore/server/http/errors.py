"""The one place where domain errors become HTTP statuses and each dialect's error body, as its official SDK
parses them: OpenAI `{"error": {"message", "type", "param", "code"}}`, Anthropic `{"type": "error", "error":
{"type", "message"}, "request_id"}`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from warpcore.server.core.bounds import fitted_message, quoted, shortened
from warpcore.server.core.errors import (
    QUOTA_EXHAUSTED,
    ContentTooLargeError,
    ErrorCode,
    InvalidArgumentError,
    PermissionDeniedError,
    WarpcoreError,
    unfixed_by_retry,
)
from warpcore.server.core.limits import BUSY_RETRY_AFTER
from warpcore.server.http.fields import DIALECT_NAMED

OVERLOADED = 529
"""Anthropic's "overloaded" status: an upstream's 529 is passed on as such, never turned into a 500."""
WHOLE_REQUEST = "request"
"""The field of a refusal of the request as a whole (its body, its method, its route), which no member names."""
THREAD = "thread"
"""Anthropic's member that asks the API to keep the conversation; its refusal carries the details on which the
anthropic SDK's threaded helpers (the tool runner) send the request again without it."""
_UNTHREADED = {"error_code": "thread_unsupported_request", "unsupported": [THREAD]}


@dataclass(frozen=True)
class _Kind:
    status: int
    openai_type: str
    anthropic_type: str


# Domain codes are google.rpc.Code names; each has the HTTP status google.rpc documents for it.
_KINDS = {
    ErrorCode.INVALID_ARGUMENT: _Kind(400, "invalid_request_error", "invalid_request_error"),
    ErrorCode.FAILED_PRECONDITION: _Kind(400, "invalid_request_error", "invalid_request_error"),
    ErrorCode.UNAUTHENTICATED: _Kind(401, "invalid_request_error", "authentication_error"),
    ErrorCode.PERMISSION_DENIED: _Kind(403, "permission_error", "permission_error"),
    ErrorCode.NOT_FOUND: _Kind(404, "invalid_request_error", "not_found_error"),
    ErrorCode.ALREADY_EXISTS: _Kind(409, "invalid_request_error", "conflict_error"),
    ErrorCode.RESOURCE_EXHAUSTED: _Kind(429, "requests", "rate_limit_error"),
    ErrorCode.INTERNAL: _Kind(500, "server_error", "api_error"),
    ErrorCode.UNAVAILABLE: _Kind(503, "server_error", "api_error"),
    ErrorCode.DEADLINE_EXCEEDED: _Kind(504, "timeout", "timeout_error"),
}
_OVERLOADED = _Kind(OVERLOADED, "overloaded_error", "overloaded_error")
_TOO_LARGE = _Kind(413, "invalid_request_error", "request_too_large")
_TOO_SLOW = _Kind(408, "invalid_request_error", "timeout_error")
_UNSUPPORTED_MEDIA_TYPE = _Kind(415, "invalid_request_error", "invalid_request_error")
_PASSED_ON = {"413": _TOO_LARGE, str(OVERLOADED): _OVERLOADED}
"""An upstream's statuses the door answers with as they came, where gRPC has the code of the table (INVALID_ARGUMENT,
UNAVAILABLE): each says what no other status does, a request too large for the upstream as it was passed on (which the
door's own limit answers so too) and an upstream overloaded, and each SDK has an error type of its own for them."""
# OpenAI's own codes where they differ from the lowercased reason.
_OPENAI_CODES = {
    "MODEL_NOT_LOADED": "model_not_found",
    "UNAUTHENTICATED": "invalid_api_key",
    QUOTA_EXHAUSTED: "insufficient_quota",
}
_RETRY_STATUSES = (429, 503, OVERLOADED)


class RequestTooLargeError(ContentTooLargeError):
    """A body over the door's size limit (HTTP 413): counted RESOURCE_EXHAUSTED, as an image over its limit is, and
    as gRPC refuses a message over its own."""


class UnsupportedMediaTypeError(InvalidArgumentError):
    """A body in a Content-Encoding the door does not decode, or of another Content-Type than JSON (HTTP 415)."""


def unsupported_encoding() -> UnsupportedMediaTypeError:
    return UnsupportedMediaTypeError(
        "the request's Content-Encoding is not one this server decodes; send the body uncompressed, or in gzip or"
        " deflate (one of them, not both)",
        field=WHOLE_REQUEST,
        reason="UNSUPPORTED_CONTENT_ENCODING",
    )


def not_json(content_type: str) -> UnsupportedMediaTypeError:
    # A web page may send a cross-site request with a body of a few types (text/plain, forms) without asking the
    # server first: a door that read those as JSON would let any page a user opens spend the server's keys.
    return UnsupportedMediaTypeError(
        f"the request body is {quoted(content_type) if content_type else 'of no Content-Type'}; send JSON, with"
        " Content-Type: application/json",
        field=WHOLE_REQUEST,
        reason="UNSUPPORTED_CONTENT_TYPE",
    )


def foreign_host(host: str) -> PermissionDeniedError:
    # A web page can have its own name resolve to 127.0.0.1 (DNS rebinding): its requests then reach a door on
    # loopback as same-origin ones, free to read the answers, but with the page's name in their Host header.
    return PermissionDeniedError(
        f"the request names the host {quoted(host)}: a door listening on loopback only takes requests for localhost,"
        " 127.0.0.1 or [::1] (any port); set --http-host to an address other machines reach to take other names",
        reason="HOST_NOT_LOOPBACK",
    )


class RequestTooSlowError(WarpcoreError):
    """A body that did not arrive within BODY_READ_SECONDS (HTTP 408)."""

    code = ErrorCode.DEADLINE_EXCEEDED


def _kind(error: WarpcoreError) -> _Kind:
    if isinstance(error, ContentTooLargeError):
        return _TOO_LARGE
    if isinstance(error, RequestTooSlowError):
        return _TOO_SLOW
    if isinstance(error, UnsupportedMediaTypeError):
        return _UNSUPPORTED_MEDIA_TYPE
    return _PASSED_ON.get(error.metadata.get("http_status", ""), _KINDS[error.code])


def http_status(error: WarpcoreError) -> int:
    return _kind(error).status


def retry_headers(error: WarpcoreError) -> dict[str, str]:
    """Retry-After (whole seconds) and retry-after-ms on the statuses a client retries; on a failure that no wait
    ends, whatever its status (a quota used up, a 429; an upstream's broken answer, a 503), the header both official
    SDKs read as "do not retry"."""
    if unfixed_by_retry(error.reason):
        return {"x-should-retry": "false"}
    if _kind(error).status not in _RETRY_STATUSES:
        return {}
    delay = BUSY_RETRY_AFTER if error.retry_after is None else error.retry_after
    return {"Retry-After": str(max(math.ceil(delay), 1)), "retry-after-ms": str(int(delay * 1000))}


def challenge(error: WarpcoreError) -> dict[str, str]:
    """WWW-Authenticate on a 401, which RFC 9110 asks of every one: the scheme the token goes in (x-api-key, the
    Anthropic SDK's header, carries it as well)."""
    return {"WWW-Authenticate": "Bearer"} if _kind(error).status == 401 else {}


UPSTREAM_REQUEST_ID_HEADER = "x-upstream-request-id"


def upstream_id(error: WarpcoreError) -> dict[str, str]:
    """The upstream's own id of the request that failed, when it gave one: the id its provider's support asks for
    (over gRPC, ErrorInfo's metadata carries it)."""
    upstream = error.metadata.get("upstream_request_id")
    return {UPSTREAM_REQUEST_ID_HEADER: upstream} if upstream else {}


def _named(error: WarpcoreError, names: Mapping[str, str]) -> tuple[str | None, str]:
    """The error's field as the dialect names it (`names` maps domain field paths to the dialect's), and its message
    beginning with that name where it began with the domain's; both cut, as a gRPC status's are, where they quote a
    caller's long value."""
    if error.field is None:
        return None, fitted_message(error.message)
    field = error.field if error.reason in DIALECT_NAMED else names.get(error.field, error.field)
    return shortened(field), fitted_message(error.message_naming(field))


_WHOLE_REQUEST_SUBJECTS = {"the request body": "the body", "the request's": "its"}


def _said_of(field: str, words: str) -> str:
    """The words after an Anthropic message's path and colon, which say what the path is, as the API's own do
    (`messages.0.content: Field required`): not "is" first (`messages[0].content[0]: 5242881 bytes; ...`, where the
    domain says `messages[0].content[0] is 5242881 bytes; ...`), nor the member's own name again (`budget_tokens must
    be ...` of `thinking.budget_tokens`), nor the request again after `request:`."""
    words = words.removeprefix(f"{field.rpartition('.')[2]} ").removeprefix("is ")
    if field == WHOLE_REQUEST:
        for said, shorter in _WHOLE_REQUEST_SUBJECTS.items():
            if words.startswith(said):
                return shorter + words.removeprefix(said)
    return words


def openai_error(error: WarpcoreError, names: Mapping[str, str]) -> dict[str, Any]:
    param, message = _named(error, names)
    if param == WHOLE_REQUEST:  # OpenAI's `param` names a member of the body, or is null
        param = None
    code = _OPENAI_CODES.get(error.reason, error.reason.lower())
    return {"error": {"message": message, "type": _kind(error).openai_type, "param": param, "code": code}}


def anthropic_error(error: WarpcoreError, request_id: str, names: Mapping[str, str]) -> dict[str, Any]:
    """Anthropic's body has no field member: its messages begin with the field's path and a colon, as the API's own
    do; a message that says the field's name first (`max_tokens must be between ...`, gRPC's words) says it so."""
    field, message = _named(error, names)
    if field is not None:
        # The rest of a message that names the field first (as the dialect names it), or all of one that does not.
        rest = message.removeprefix(field) if error.begins_with_field() else f" {message}"
        message = f"{field}: {_said_of(field, rest.removeprefix(':').strip())}"
    body: dict[str, Any] = {"type": _kind(error).anthropic_type, "message": message}
    if field == THREAD:
        body["details"] = _UNTHREADED
    return {"type": "error", "error": body, "request_id": request_id}

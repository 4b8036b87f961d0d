"""Upstream failures as domain errors: one table per vendor SDK and one context manager that applies it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httpx2

from warpcore.server.adapters.hosted.config import ResolvedApi, deadline_bounds
from warpcore.server.adapters.hosted.connection_failures import causes_of, connection_failure
from warpcore.server.adapters.hosted.refusals import lacks_feature, prompt_too_long, refusal_reason
from warpcore.server.adapters.hosted.retry_after import retry_after
from warpcore.server.adapters.hosted.scrub import upstream_host, upstream_request_id, upstream_words
from warpcore.server.adapters.hosted.sdk_client import ErrorBodyCut
from warpcore.server.core.bounds import shortened
from warpcore.server.core.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    UPSTREAM_MALFORMED_STREAM,
    UPSTREAM_NOT_STREAMING,
    DeadlineExceededError,
    DeadlinePassedError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    WarpcoreError,
)


@dataclass(frozen=True)
class ErrorTable:
    """How one vendor SDK's exceptions become domain errors.

    An exception that carries an HTTP response (`status_error`) maps by its status, so the SDK's classes per status
    need no entry; `kinds` names the others that are not UNAVAILABLE (timeouts), looked up along the exception's
    MRO, httpx2's timeout with every SDK. Whatever `catches` holds is an upstream failure; anything else is a bug of
    ours and propagates as it is.
    """

    sdk_errors: tuple[type[Exception], ...]
    kinds: Mapping[type[Exception], type[WarpcoreError]]
    status_error: type[Exception]
    event_statuses: Mapping[str, int] = field(default_factory=dict)
    """The HTTP status each error type of an in-stream `error` event stands for; unknown types count as 500."""

    @property
    def catches(self) -> tuple[type[Exception], ...]:
        """The SDK's failures, and httpx2's own, which reach us as they are where an SDK reads a body past its wrapping
        of the transport's errors (the anthropic SDK a stream's)."""
        return (*self.sdk_errors, httpx2.HTTPError)


class HasHeaders(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...


class UpstreamResponse(HasHeaders, Protocol):  # the httpx2.Response an SDK's AsyncStream arrives in
    @property
    def num_bytes_downloaded(self) -> int: ...


class StatusErrorLike(Protocol):
    """The shape both vendor SDKs give an error that carries an HTTP response."""

    status_code: int
    message: str
    body: object
    request_id: str | None

    @property
    def response(self) -> HasHeaders: ...


_BY_STATUS: dict[int, type[WarpcoreError]] = {
    400: InvalidArgumentError,
    401: UnauthenticatedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: DeadlineExceededError,
    413: InvalidArgumentError,
    422: InvalidArgumentError,
    429: ResourceExhaustedError,
    # Not Implemented: the upstream lacks what was asked (llama.cpp's server without --embeddings), which no retry
    # changes, unlike the other 5xx.
    501: FailedPreconditionError,
}


def error_for_status(status: int) -> type[WarpcoreError]:
    """The domain error for an HTTP status no SDK class covers more precisely."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return UnavailableError if status >= 500 else FailedPreconditionError


_WAITED_FOR = (ResourceExhaustedError, UnavailableError)
"""The kinds of failure whose statuses (429, 503, 529) a client retries after a wait."""


def upstream_error(
    kind: type[WarpcoreError],
    api: ResolvedApi,
    message: str,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    reason: str | None = None,
    event_type: str | None = None,
) -> WarpcoreError:
    """A domain error describing an upstream failure, with the key scrubbed from the upstream's words and the
    request id of its answer's `headers`; an error event inside a stream (`event_type`, scrubbed too) has no status of
    its own and reports the one its type stands for."""
    metadata = {"provider": api.provider}
    if status is not None:
        metadata["http_status"] = str(status)
    if request_id := upstream_request_id(headers or {}, api.api_key):
        metadata["upstream_request_id"] = request_id
    upstream = f" (HTTP {status})" if status is not None else ""
    if event_type is not None:
        metadata["upstream_error_type"] = event_type = upstream_words(event_type, api.api_key)
        upstream = f" ({event_type} in the stream)"
    return kind(
        f"{api.provider} upstream error{upstream}: {upstream_words(message, api.api_key)}",
        reason=reason or f"UPSTREAM_{kind.code.name}",
        metadata=metadata,
        # The statuses a client retries (429, 503, 529) keep the delay the upstream asked for (but not those of
        # failures no wait ends: the domain error drops it).
        retry_after=retry_after(headers or {}) if kind in _WAITED_FOR else None,
    )


_CONTENT_TYPE_QUOTED = 64  # characters of an upstream's content type quoted in an error


def unfinished_stream(api: ResolvedApi, response: UpstreamResponse) -> WarpcoreError:
    """The failure of a stream that ended without its finish: cut short, empty, or none at all (an upstream that
    ignored `stream` and answered with one JSON body reads as a stream of no events)."""
    content_type = response.headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() != "text/event-stream":
        answered = shortened(content_type or "no content type", _CONTENT_TYPE_QUOTED)
        return upstream_error(
            UnavailableError,
            api,
            f"it answered with {answered}, not an event stream: it does not stream answers (or ignored the"
            " request's stream: true)",
            reason=UPSTREAM_NOT_STREAMING,
        )
    if not response.num_bytes_downloaded:
        return UnavailableError(
            f"{api.provider} upstream sent an empty event stream, no event before its end: the server failed to"
            " generate, and its own log says why (llama-cpp-python's OpenAI-compatible one answers so whatever failed,"
            " a prompt longer than the model's context too)",
            reason="UPSTREAM_STREAM_TRUNCATED",
        )
    return UnavailableError(
        f"{api.provider} upstream ended the stream before it finished", reason="UPSTREAM_STREAM_TRUNCATED"
    )


def malformed_stream(api: ResolvedApi, error: Exception) -> WarpcoreError:
    if isinstance(error, UnicodeDecodeError):  # the SDK's reading of the event's bytes, before any JSON
        what = "that is not UTF-8 text"
    elif isinstance(error, json.JSONDecodeError):
        what = f"that is not JSON ({error})"
    else:
        what = "of the wrong shape"
    return upstream_error(UnavailableError, api, f"a stream event {what}", reason=UPSTREAM_MALFORMED_STREAM)


_PAGE_QUOTED = 200  # characters of an upstream's body that is no JSON quoted in an error


def upstream_message(body: object, secret: str) -> str | None:
    """The human message in a vendor error body: {"error": {"message": ...}} or the inner {"message": ...}; a body
    that is no JSON (a proxy's page, a web server's that is no API), as the start of its text on one line: a whole
    HTML page would fill the log line, or the one line a start that fails prints, with its markup."""
    if isinstance(body, str):
        # Scrubbed before it is cut: a key cut in two would no longer be found, and its first part would be quoted.
        return shortened(" ".join(upstream_words(body, secret).split()), _PAGE_QUOTED) or None
    if not isinstance(body, dict):
        return None
    inner = body.get("error", body)
    message = inner.get("message") if isinstance(inner, dict) else None
    return message if isinstance(message, str) else None


@contextlib.contextmanager
def map_sdk_errors(table: ErrorTable, api: ResolvedApi, remaining: float | None = None) -> Iterator[None]:
    """Within the block, an upstream failure the SDK raises becomes the domain error `table` gives it, its cause
    kept and the key scrubbed from its words; a timeout of waits that `remaining`, what was left of the caller's
    deadline before the request began, cut short is the caller's deadline passing (config.deadline_bounds)."""
    try:
        yield
    except table.catches as error:
        raise _translate(error, table, api, remaining) from error


def _translate(error: Exception, table: ErrorTable, api: ResolvedApi, remaining: float | None) -> WarpcoreError:
    kinds: dict[type[Exception], type[WarpcoreError]] = {httpx2.TimeoutException: DeadlineExceededError, **table.kinds}
    kind = next((kinds[cls] for cls in type(error).__mro__ if cls in kinds), None)
    broken = connection_failure(error, api.base_url)
    if broken is not None:
        kind = UnavailableError
    reason = refusal_reason(error)
    cut = next((cause for cause in causes_of(error) if isinstance(cause, ErrorBodyCut)), None)
    if cut is not None:  # no answer, though its status came: what it said is kept, but the client retries
        answer = cut.response
        message = broken or str(cut)
        return upstream_error(UnavailableError, api, message, status=answer.status_code, headers=answer.headers)
    if not isinstance(error, table.status_error):
        message = broken or str(error) or type(error).__name__
        if kind is DeadlineExceededError and broken is None:
            if deadline_bounds(api.timeout, remaining):
                # Not the upstream's timeout but the caller's deadline, which the door's own end of the call may
                # not have come yet to tell (a deadline of a few milliseconds).
                return DeadlinePassedError()
            # The same words from either SDK: theirs name the library under them, or point at the vendor's
            # documentation whatever the upstream is.
            message = (
                f"{upstream_host(api.base_url)} did not answer in time (the backend's timeout allows {api.timeout:g} s"
                " for each wait, the call's deadline less if it is sooner)"
            )
        return upstream_error(kind or UnavailableError, api, message, reason=reason)
    failed: StatusErrorLike = error  # type: ignore[assignment]
    message = upstream_message(failed.body, api.api_key) or failed.message
    if failed.status_code == 200:
        # An `error` event inside a stream: raised with the stream's HTTP 200, so its error type tells what the
        # status would have been, and that status is the one reported (an overloaded_error stays 529).
        event_error = failed.body.get("error") if isinstance(failed.body, dict) else None
        error_type = event_error.get("type") if isinstance(event_error, dict) else None
        status = table.event_statuses.get(str(error_type), 500)
        return upstream_error(
            error_for_status(status),
            api,
            message,
            status=status,
            headers=failed.response.headers,
            event_type=str(error_type),
        )
    if kind is None and lacks_feature(error):
        kind = FailedPreconditionError
    if reason == CONTEXT_LENGTH_EXCEEDED:
        message = prompt_too_long(error, message)
    if 300 <= failed.status_code < 400:
        message = "a redirect, which this server does not follow: set the base URL to where the upstream now is"
        return upstream_error(
            FailedPreconditionError, api, message, status=failed.status_code, reason="UPSTREAM_REDIRECT"
        )
    return upstream_error(
        kind or error_for_status(failed.status_code),
        api,
        message,
        status=failed.status_code,
        headers=failed.response.headers,
        reason=reason,
    )

"""Upstream failures as domain errors: one table per vendor SDK and one context manager that applies it."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from warpcore.server.adapters.hosted.config import ResolvedApi
from warpcore.server.adapters.hosted.refusals import lacks_feature, refusal_reason
from warpcore.server.adapters.hosted.retry_after import retry_after
from warpcore.server.adapters.hosted.scrub import upstream_host, upstream_request_id, upstream_words
from warpcore.server.core.bounds import shortened
from warpcore.server.core.errors import (
    QUOTA_EXHAUSTED,
    DeadlineExceededError,
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
    MRO. Whatever `catches` holds is an upstream failure; anything else is a bug of ours and propagates as it is.
    """

    catches: tuple[type[Exception], ...]
    kinds: Mapping[type[Exception], type[WarpcoreError]]
    status_error: type[Exception]
    event_statuses: Mapping[str, int] = field(default_factory=dict)
    """The HTTP status each error type of an in-stream `error` event stands for; unknown types count as 500."""


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
    request id of its answer's `headers`; an error event inside a stream (`event_type`) has no status of its own
    and reports the one its type stands for."""
    metadata = {"provider": api.provider}
    if status is not None:
        metadata["http_status"] = str(status)
    if request_id := upstream_request_id(headers or {}, api.api_key):
        metadata["upstream_request_id"] = request_id
    upstream = f" (HTTP {status})" if status is not None else ""
    if event_type is not None:
        metadata["upstream_error_type"] = event_type
        upstream = f" ({event_type} in the stream)"
    return kind(
        f"{api.provider} upstream error{upstream}: {upstream_words(message, api.api_key)}",
        reason=reason or f"UPSTREAM_{kind.code.name}",
        metadata=metadata,
        # The statuses a client retries (429, 503, 529) keep the delay the upstream asked for; a quota used up,
        # which no wait ends, tells none.
        retry_after=retry_after(headers or {}) if kind in _WAITED_FOR and reason != QUOTA_EXHAUSTED else None,
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
            reason="UPSTREAM_NOT_STREAMING",
        )
    if not response.num_bytes_downloaded:
        return UnavailableError(
            f"{api.provider} upstream sent an empty event stream, no event before its end; some servers answer so a"
            " prompt longer than the model's context (llama-cpp-python's OpenAI-compatible one does): check the"
            " prompt's length",
            reason="UPSTREAM_STREAM_TRUNCATED",
        )
    return UnavailableError(
        f"{api.provider} upstream ended the stream before it finished", reason="UPSTREAM_STREAM_TRUNCATED"
    )


def malformed_stream(api: ResolvedApi, error: Exception) -> WarpcoreError:
    what = f"that is not JSON ({error})" if isinstance(error, json.JSONDecodeError) else "of the wrong shape"
    return upstream_error(UnavailableError, api, f"a stream event {what}", reason="UPSTREAM_MALFORMED_STREAM")


def upstream_message(body: object) -> str | None:
    """The human message in a vendor error body: {"error": {"message": ...}} or the inner {"message": ...}; a body
    that is no JSON (a proxy's page), as its text."""
    if isinstance(body, str):
        return body.strip() or None
    if not isinstance(body, dict):
        return None
    inner = body.get("error", body)
    message = inner.get("message") if isinstance(inner, dict) else None
    return message if isinstance(message, str) else None


@contextlib.contextmanager
def map_sdk_errors(table: ErrorTable, api: ResolvedApi) -> Iterator[None]:
    """Within the block, an upstream failure the SDK raises becomes the domain error `table` gives it, its cause
    kept and the key scrubbed from its words."""
    try:
        yield
    except table.catches as error:
        raise _translate(error, table, api) from error


def _translate(error: Exception, table: ErrorTable, api: ResolvedApi) -> WarpcoreError:
    kind = next((table.kinds[cls] for cls in type(error).__mro__ if cls in table.kinds), None)
    connection_failure = _connection_failure(error, api.base_url)
    if connection_failure is not None:
        kind = UnavailableError
    reason = refusal_reason(error)
    if not isinstance(error, table.status_error):
        message = connection_failure or str(error) or type(error).__name__
        if kind is DeadlineExceededError and connection_failure is None:
            # The same words from either SDK: theirs name the library under them, or point at the vendor's
            # documentation whatever the upstream is.
            message = (
                f"{upstream_host(api.base_url)} did not answer in time (the backend's timeout allows {api.timeout:g} s"
                " for each wait, the call's deadline less if it is sooner)"
            )
        return upstream_error(kind or UnavailableError, api, message, reason=reason)
    failed: StatusErrorLike = error  # type: ignore[assignment]
    message = upstream_message(failed.body) or failed.message
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


# What each kind of broken connection is called in an error message; the first class in an exception's MRO wins.
_CONNECTION_FAILURES: dict[type[Exception], str] = {
    socket.gaierror: "could not resolve the host name of {host}",
    ConnectionRefusedError: "could not connect to {host} (connection refused)",
    ConnectionResetError: "the connection to {host} was reset",
    ConnectionAbortedError: "the connection to {host} was aborted",
    BrokenPipeError: "the connection to {host} was closed while sending",
    ConnectionError: "the connection to {host} failed",
}
# aiohttp's own words for a broken connection, when no socket error lies under them (and no timeout does).
_AIOHTTP_FAILURES: dict[type[Exception], str] = {
    aiohttp.ServerDisconnectedError: "{host} closed the connection before answering",
    aiohttp.ClientOSError: "the connection to {host} failed",
    aiohttp.ClientPayloadError: "{host} closed the connection before the answer was complete",
}
_CLOSED_BEFORE_ANSWERING = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    ConnectionResetError,
    BrokenPipeError,
)
"""What sending a request on a kept-alive connection the upstream has closed meanwhile raises: nothing answered."""


def closed_before_answering(error: BaseException) -> bool:
    """Whether `error` says that the upstream closed an open connection before it answered the request (not that
    no connection could be made)."""
    causes = list(_causes(error))
    connected = not any(isinstance(cause, aiohttp.ClientConnectorError) for cause in causes)
    return connected and any(isinstance(cause, _CLOSED_BEFORE_ANSWERING) for cause in causes)


def _connection_failure(error: BaseException, base_url: str) -> str | None:
    """What broke, naming the upstream, when an unresolvable host name or a refused or reset connection lies under
    `error`; else None.

    The SDKs' aiohttp transport reports a refused connection as a connect timeout ("Request timed out."), and the
    openai SDK's a host name that does not resolve too; httpx2's says "All connection attempts failed". The
    exceptions underneath tell the truth, and it is UNAVAILABLE (try elsewhere or later), not DEADLINE_EXCEEDED.
    Underneath means an explicit cause, a context nobody suppressed, an exception wrapped as an argument (httpcore2
    wraps the socket's error so, and its pool then re-raises with `from None`), or a member of a group (one error
    per address tried).
    """
    causes = list(_causes(error))
    timed_out = any(isinstance(cause, TimeoutError) for cause in causes)
    for phrases in (_CONNECTION_FAILURES, {} if timed_out else _AIOHTTP_FAILURES):
        for cause in causes:
            phrase = next((phrases[cls] for cls in type(cause).__mro__ if cls in phrases), None)
            if phrase is not None:
                return phrase.format(host=upstream_host(base_url))
    return None


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and every exception under it, breadth first: explicit causes, contexts nobody suppressed, exceptions
    wrapped as arguments and members of groups."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        cause = pending.pop(0)
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        under = [cause.__cause__, None if cause.__suppress_context__ else cause.__context__, *cause.args]
        if isinstance(cause, BaseExceptionGroup):
            under += cause.exceptions
        pending += [inner for inner in under if isinstance(inner, BaseException)]

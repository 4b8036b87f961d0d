"""What broke the connection to an upstream, read from the exceptions under an SDK's: the SDKs' own words name
neither the host nor the failure (a refused connection reads as a connect timeout)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import aiohttp

from warpcore.server.adapters.hosted.scrub import upstream_host

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
    causes = list(causes_of(error))
    connected = not any(isinstance(cause, aiohttp.ClientConnectorError) for cause in causes)
    return connected and any(isinstance(cause, _CLOSED_BEFORE_ANSWERING) for cause in causes)


def connection_failure(error: BaseException, base_url: str) -> str | None:
    """What broke, naming the upstream, when an unresolvable host name or a refused or reset connection lies under
    `error`; else None.

    The SDKs' aiohttp transport reports a refused connection as a connect timeout ("Request timed out."), and the
    openai SDK's a host name that does not resolve too; httpx2's says "All connection attempts failed". The
    exceptions underneath tell the truth, and it is UNAVAILABLE (try elsewhere or later), not DEADLINE_EXCEEDED.
    Underneath means an explicit cause, a context nobody suppressed, an exception wrapped as an argument (httpcore2
    wraps the socket's error so, and its pool then re-raises with `from None`), or a member of a group (one error
    per address tried).
    """
    causes = list(causes_of(error))
    timed_out = any(isinstance(cause, TimeoutError) for cause in causes)
    for phrases in (_CONNECTION_FAILURES, {} if timed_out else _AIOHTTP_FAILURES):
        for cause in causes:
            phrase = next((phrases[cls] for cls in type(cause).__mro__ if cls in phrases), None)
            if phrase is not None:
                return phrase.format(host=upstream_host(base_url))
    return None


def causes_of(error: BaseException) -> Iterator[BaseException]:
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

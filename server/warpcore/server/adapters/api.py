"""What the hosted-API adapters share: settings from config or environment, timeouts, error translation."""

from __future__ import annotations

import email.utils
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from warpcore.server.adapters.env import env_float, env_str
from warpcore.server.core.domain import ApiSettings
from warpcore.server.core.errors import (
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

DEFAULT_TIMEOUT = 600.0  # seconds for one upstream request, as in both vendor SDKs
_REDACTED = "[redacted]"
# Key-shaped strings that an upstream may echo back (OpenAI quotes a masked key in 401 messages).
_KEY_PATTERN = re.compile(r"\b(sk|key)-[A-Za-z0-9_\-*]{6,}")
# An upstream's request id is an opaque token (OpenAI and Anthropic send "req_" and 24-32 characters; compatible
# servers often a UUID): far more than that is no id, and would let an upstream fill our frames and logs.
MAX_REQUEST_ID = 128
# Printable ASCII but the space: a token has neither control characters (which could forge log lines or
# terminal escapes) nor characters a caller would have to decode.
_NOT_IN_REQUEST_ID = re.compile(r"[^\x21-\x7e]")


@dataclass(frozen=True)
class ApiEnvironment:
    """The environment variables a provider reads its settings from."""

    provider: str
    api_key: str
    base_url: str
    default_base_url: str
    organization: str | None = None


@dataclass(frozen=True)
class ResolvedApi:
    api_key: str = field(repr=False)
    base_url: str
    organization: str | None
    timeout: float


def resolve_api(settings: ApiSettings, env: Mapping[str, str], names: ApiEnvironment) -> ResolvedApi:
    """Each field from the request's ApiConfig, else the environment, else the default; the key is required.

    The server's own key only ever goes to the server's own base URL: a request that names a base URL must bring
    its key too, or anyone able to call LoadModel could have the server send its key to a host of their choosing.
    """
    if settings.base_url and not settings.api_key:
        raise InvalidArgumentError(
            "backend_config.api.base_url is set, so backend_config.api.api_key must be set too:"
            " the server's own key is only sent to the base URL configured on the server",
            field="backend_config.api.api_key",
            reason="API_KEY_REQUIRED_WITH_BASE_URL",
        )
    api_key = settings.api_key or env_str(env, names.api_key)
    if not api_key:
        raise FailedPreconditionError(
            f"no {names.provider} API key: set backend_config.api.api_key in the request"
            f" or {names.api_key} in the server's environment",
            reason="API_KEY_MISSING",
            metadata={"provider": names.provider},
        )
    organization = settings.organization
    if organization is None and names.organization is not None:
        organization = env_str(env, names.organization)
    timeout = settings.timeout or env_float(env, f"{names.provider.upper()}_TIMEOUT") or DEFAULT_TIMEOUT
    return ResolvedApi(
        api_key=api_key,
        base_url=settings.base_url or env_str(env, names.base_url) or names.default_base_url,
        organization=organization,
        timeout=timeout,
    )


def check_offered(model: str, offered: Sequence[str], api: str, backend: str) -> None:
    """Loading a model the provider does not list is a NOT_FOUND that says where to look."""
    if model not in offered:
        raise NotFoundError(
            f"the {api} API does not offer model {model!r};"
            f" ListModels with backend {backend} lists the models it offers",
            field="model",
            reason="UPSTREAM_MODEL_NOT_FOUND",
            metadata={"provider": api.lower()},
        )


def request_timeout(configured: float, remaining: float | None) -> float:
    """The upstream timeout: the configured one, cut to what is left of the caller's deadline."""
    return configured if remaining is None else max(min(configured, remaining), 0.001)


def redact(text: str, secret: str) -> str:
    """`text` without the secret, any 8 characters of it in a row, or anything shaped like an API key."""
    run = 8
    # No provider issues keys under 8 characters: a shorter "key" (one a client sent by mistake, say "x") is no
    # secret, and scrubbing it would blank every occurrence of it in the upstream's message.
    if len(secret) >= run:
        # Upstreams also quote keys partly masked ("abcd1234****wxyz"): any `run` characters of it in a row go.
        runs = {secret[start : start + run] for start in range(len(secret) - run + 1)}
        spans: list[list[int]] = []
        for start in range(len(text) - run + 1):
            if text[start : start + run] in runs:
                if spans and start <= spans[-1][1]:
                    spans[-1][1] = start + run
                else:
                    spans.append([start, start + run])
        for start, end in reversed(spans):
            text = text[:start] + _REDACTED + text[end:]
    return _KEY_PATTERN.sub(_REDACTED, text)


def scrub_request_id(value: str | None, secret: str) -> str:
    """An upstream's request id fit to pass on: printable, scrubbed like error text, bounded; "" when none is left.

    The upstream chooses this value, so it is as untrusted as its error text: one echoing the caller's key there
    must not get the key returned to the caller in a result frame or in error metadata.
    """
    if not value:
        return ""
    # Dropped before redacting, so a key split by control characters still shows as a run of it and goes.
    return redact(_NOT_IN_REQUEST_ID.sub("", value), secret)[:MAX_REQUEST_ID]


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    if milliseconds := headers.get("retry-after-ms"):
        try:
            return max(float(milliseconds) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


_BY_STATUS: dict[int, type[WarpcoreError]] = {
    400: InvalidArgumentError,
    401: UnauthenticatedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: DeadlineExceededError,
    413: InvalidArgumentError,
    422: InvalidArgumentError,
    429: ResourceExhaustedError,
}


def error_for_status(status: int) -> type[WarpcoreError]:
    """The domain error for an HTTP status no SDK class covers more precisely."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return UnavailableError if status >= 500 else FailedPreconditionError


def upstream_error(
    kind: type[WarpcoreError],
    *,
    provider: str,
    message: str,
    secret: str,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    reason: str | None = None,
    request_id: str | None = None,
) -> WarpcoreError:
    """A domain error describing an upstream failure, with the key scrubbed from the upstream's words."""
    metadata = {"provider": provider}
    if status is not None:
        metadata["http_status"] = str(status)
    if request_id := scrub_request_id(request_id, secret):
        metadata["upstream_request_id"] = request_id
    upstream = f" (HTTP {status})" if status is not None else ""
    return kind(
        f"{provider} upstream error{upstream}: {redact(message, secret)}",
        reason=reason or f"UPSTREAM_{kind.default_reason}",
        metadata=metadata,
        retry_after=retry_after(headers or {}) if kind is ResourceExhaustedError else None,
    )


class StatusErrorLike(Protocol):
    """The shape both vendor SDKs give an error that carries an HTTP response."""

    status_code: int
    message: str
    body: object
    request_id: str | None

    @property
    def response(self) -> HasHeaders: ...


class HasHeaders(Protocol):
    @property
    def headers(self) -> Mapping[str, str]: ...


ErrorTable = Mapping[type[Exception], type[WarpcoreError]]


def upstream_message(body: object) -> str | None:
    """The human message in a vendor error body: {"error": {"message": ...}} or the inner {"message": ...}."""
    if not isinstance(body, dict):
        return None
    inner = body.get("error", body)
    message = inner.get("message") if isinstance(inner, dict) else None
    return message if isinstance(message, str) else None


# What each kind of broken connection is called in an error message; the first class in an exception's MRO wins.
_CONNECTION_FAILURES: dict[type[ConnectionError], str] = {
    ConnectionRefusedError: "could not connect to {host} (connection refused)",
    ConnectionResetError: "the connection to {host} was reset",
    ConnectionAbortedError: "the connection to {host} was aborted",
    BrokenPipeError: "the connection to {host} was closed while sending",
    ConnectionError: "the connection to {host} failed",
}


def upstream_host(base_url: str) -> str:
    """host:port of a base URL, for messages: no user info, path or query, which may hold credentials."""
    parts = urllib.parse.urlsplit(base_url)
    host = parts.hostname
    if not host:
        return "the upstream"
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port out of range: the SDK failed on it too, so no need to name it
        port = None
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def _connection_failure(error: BaseException, base_url: str) -> str | None:
    """What broke, naming the upstream, when a refused or reset connection lies under `error`; else None.

    The SDKs' aiohttp transport reports a refused connection as a connect timeout ("Request timed out."), httpx2's
    as "All connection attempts failed": the exceptions underneath tell the truth, and it is UNAVAILABLE (try
    elsewhere or later), not DEADLINE_EXCEEDED. Underneath means an explicit cause, a context nobody suppressed, an
    exception wrapped as an argument (httpcore2 wraps the socket's error so, and its pool then re-raises with
    `from None`), or a member of a group (one error per address tried).
    """
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        cause = pending.pop(0)
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, ConnectionError):
            phrase = next(_CONNECTION_FAILURES[cls] for cls in type(cause).__mro__ if cls in _CONNECTION_FAILURES)
            return phrase.format(host=upstream_host(base_url))
        under = [cause.__cause__, None if cause.__suppress_context__ else cause.__context__, *cause.args]
        if isinstance(cause, BaseExceptionGroup):
            under += cause.exceptions
        pending += [inner for inner in under if isinstance(inner, BaseException)]
    return None


def translate_sdk_error(
    error: Exception,
    table: ErrorTable,
    *,
    provider: str,
    secret: str,
    base_url: str,
    status_error: type[Exception],
    context_length: Callable[[Exception], bool],
) -> WarpcoreError:
    """Turn a vendor SDK exception into a domain error, through the adapter's table (most specific class first)."""
    kind = next((table[cls] for cls in type(error).__mro__ if cls in table), None)
    connection_failure = _connection_failure(error, base_url)
    if connection_failure is not None:
        kind = UnavailableError
    reason = "CONTEXT_LENGTH_EXCEEDED" if context_length(error) else None
    if isinstance(error, status_error):
        failed: StatusErrorLike = error  # type: ignore[assignment]
        return upstream_error(
            kind or error_for_status(failed.status_code),
            provider=provider,
            message=upstream_message(failed.body) or failed.message,
            secret=secret,
            status=failed.status_code,
            headers=failed.response.headers,
            reason=reason,
            request_id=failed.request_id,
        )
    message = connection_failure or str(error) or type(error).__name__
    return upstream_error(kind or UnavailableError, provider=provider, message=message, secret=secret, reason=reason)

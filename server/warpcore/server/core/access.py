"""One structured access-log line and one request count per call, whichever front door took it: the fields and the
counter are the same for gRPC and HTTP, told apart by `protocol`."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

from warpcore.server.adapters.redaction import holds_key, redact
from warpcore.server.core.bounds import REQUEST_ID, shortened
from warpcore.server.core.domain import Finish, FinishReason
from warpcore.server.core.embeddings import Embeddings
from warpcore.server.core.errors import WarpcoreError
from warpcore.server.core.metrics import Metrics
from warpcore.server.core.tokens import PromptUsage

access_log = logging.getLogger("warpcore.access")
_usage: contextvars.ContextVar[dict[str, int | str] | None] = contextvars.ContextVar("usage", default=None)
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
REQUEST_ID_HEADER = "x-request-id"
"""Where a caller may send its own request id, and where either door returns the call's (HTTP header, gRPC
metadata)."""


def request_id(offered: str | None) -> str:
    """The call's id: the caller's own when it is a sane one (`bounds.REQUEST_ID`), else a new one. Noted as the id
    of the call running in this task (each call runs in a task of its own, whose context ends with it), for the
    errors that end it and the warnings about it, through either door."""
    identity = offered if offered is not None and REQUEST_ID.fullmatch(offered) else f"req_{uuid.uuid4().hex}"
    _request_id.set(identity)
    return identity


def current_request_id() -> str:
    """The id of the call running in this task; "" outside one."""
    return _request_id.get()


def record_usage(finish: Finish) -> None:
    """Note a generation's usage, and how it ended, for the access-log line of the call that runs it: a stream cut
    by the drain is an OK call whose generation was cancelled, and only `finish_reason` tells it from a whole one."""
    usage = _usage.get()
    if usage is not None:
        # A count the backend did not report (a compatible server that sends no usage, a stream cut before the end
        # that tells it) is left out rather than written as a false 0; the one it did report is written alone.
        counts = {"prompt_tokens": finish.prompt_tokens, "completion_tokens": finish.completion_tokens}
        usage.update(
            {name: count for name, count in counts.items() if count is not None}, finish_reason=finish.reason.value
        )
        if finish.upstream_request_id:
            usage["upstream_request_id"] = finish.upstream_request_id


def record_embedding(embeddings: Embeddings) -> None:
    """Note an embedding's input tokens, its prompt tokens as the usage its client gets says and the prompt-token
    counter adds, for the access-log line of the call that made it: a generation's line has its own."""
    usage = _usage.get()
    if usage is not None:
        usage["prompt_tokens"] = embeddings.prompt_tokens


STALLED_READER = "stalled_reader"
"""`ended_by` of a call whose generation was stopped because its caller read nothing (stalled.py)."""


def record_stalled() -> None:
    """Note a call cut because its caller read nothing: its access line says so (`ended_by`), and a gRPC call's
    the status its caller gets, DEADLINE_EXCEEDED, where the cancellation alone would read as its client gone."""
    usage = _usage.get()
    if usage is not None:
        usage["ended_by"] = STALLED_READER


def record_cancelled(prompt: PromptUsage | None, upstream_request_id: str) -> None:
    """Note a generation whose caller went before the backend could count what it used: `cancelled`, with the
    prompt's size when the backend told it first (a local model, Anthropic) and the upstream's request id once it
    answered (a hosted model); the tokens generated meanwhile are counted by the backend at its end, which never
    came, so no count is noted rather than a wrong one."""
    usage = _usage.get()
    if usage is not None:
        usage["finish_reason"] = FinishReason.CANCELLED.value
        if prompt is not None:
            usage["prompt_tokens"] = prompt.prompt_tokens
        if upstream_request_id:
            usage["upstream_request_id"] = upstream_request_id


def record_failure(error: WarpcoreError) -> None:
    """Note the upstream's request id of a failure, when it names one, for the access-log line of the call it ends:
    the id a provider's support asks for."""
    usage = _usage.get()
    if usage is not None and (upstream := error.metadata.get("upstream_request_id")):
        usage["upstream_request_id"] = upstream


@contextlib.contextmanager
def recording_usage(usage: dict[str, int | str] | None = None) -> Iterator[dict[str, int | str]]:
    """The usage `record_usage` notes within the block (each call runs in a task of its own, whose context ends
    with it), into `usage` when given: a stream closed in another task's context notes into its call's own."""
    usage = {} if usage is None else usage
    token = _usage.set(usage)
    try:
        yield usage
    finally:
        # A stream abandoned mid-way (its deadline passed) is closed by the event loop's finalizer, in a context of
        # its own: there is nothing to restore there, and failing would hide how the call ended.
        with contextlib.suppress(ValueError):
            _usage.reset(token)


def log_request(
    metrics: Metrics,
    protocol: str,
    method: str,
    code: str,
    started: float,
    api_key: str = "",
    /,
    *,
    health: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """Count the call and write its access-log line; `fields` are the model, the peer and the usage, `api_key` the
    key the request brings (a LoadModel's; positional only, so that no field spread into `fields` binds to it).
    Returns the line's fields. A health check (`health`) is counted but not written: the probes of an orchestrator
    come every few seconds, and their lines would bury the calls that did something."""
    metrics.requests.labels(method, code, protocol).inc()
    line = {
        "protocol": protocol,
        "method": method,
        "code": code,
        "duration_ms": round((time.monotonic() - started) * 1000, 3),
        **{name: _loggable(value, api_key) for name, value in fields.items()},
    }
    if not health:
        access_log.info("request", extra=line)
    return line


def _loggable(value: Any, api_key: str) -> Any:
    """A field's value as the line writes it: a caller chooses some of them (a model id, before it is checked, even
    without the token), and one of megabytes made a line of megabytes. One holding the request's key, as a model id
    is refused for (`holds_key`), has it redacted: the refused request still has its line, which operators read.
    Redacted before it is cut, lest a key across the cut leave its start."""
    if not isinstance(value, str):
        return value
    return shortened(redact(value, api_key) if holds_key(value, api_key) else value)

"""What an upstream's refusal says beyond its HTTP status: a prompt that does not fit, a quota used up, a feature the
server lacks. Each changes what a caller should do next, which the status alone does not tell. And the refusals made
before anything goes upstream: an option the API cannot honour, a call the model's kind cannot take."""

from __future__ import annotations

import re

from warpcore.server.core.domain import GenerationParams
from warpcore.server.core.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    MAXIMUM_CONTEXT_LENGTH,
    PROMPT_TOO_LONG,
    QUOTA_EXHAUSTED,
    FailedPreconditionError,
    InvalidArgumentError,
    too_long,
)

# How the servers a hosted backend may point at refuse a prompt that does not fit, by their labels and the openings of
# their messages, nothing looser: such a refusal is told in the words routers read, which would send any other one to
# a model with a larger context. Each label in the member its server puts it in: OpenAI's `code`, llama.cpp server's
# `type` (OpenAI's `type` says only invalid_request_error); then OpenAI's and vLLM's words, LiteLLM's exception's name,
# Anthropic's words (lower case: the openings are compared so).
_CONTEXT_LENGTH_LABELS = {"code": "context_length_exceeded", "type": "exceed_context_size_error"}
_CONTEXT_LENGTH_OPENINGS = (MAXIMUM_CONTEXT_LENGTH, "litellm.contextwindowexceedederror", PROMPT_TOO_LONG)
# The context's size where those refusals tell it: OpenAI's and vLLM's "maximum context length is 8192 tokens",
# Anthropic's "prompt is too long: 250000 tokens > 200000 maximum", llama.cpp's "available context size (512 tokens)"
# (its body's `n_ctx` says it too, where its words do not). ASCII digits alone: int() would read full-width ones too.
_CONTEXT_SIZE = re.compile(
    r"maximum context length is (\d+) tokens|> (\d+) maximum|available context size \((\d+) tokens\)",
    re.IGNORECASE | re.ASCII,
)
# OpenAI's 429 for an account whose credit or plan is used up: a rate limit's status, but no wait ends it.
_QUOTA_LABELS = frozenset({"insufficient_quota"})


def refused(field: str, message: str) -> InvalidArgumentError:
    """An option the provider's API cannot honour: refused before anything goes upstream, rather than dropped."""
    return InvalidArgumentError(message, field=field, reason="OPTION_UNSUPPORTED")


def answer_refused(params: GenerationParams, api_reads: str, unless: str, instead: str = "") -> InvalidArgumentError:
    """A refusal of how the answer would meet a last assistant message (`api_reads`: what the API does instead):
    naming continue_last_message where the caller chose it, with the value the API can honour (`unless`); else the
    messages, which a caller changes whose request left it unset, or has no such choice (a door's dialect; `instead`:
    what else that caller may do)."""
    if params.continue_last is not None and not params.continue_last_read:
        return refused(
            "continue_last_message", f"{api_reads}; leave continue_last_message {unless}, or end with a user message"
        )
    return refused("messages", f"{api_reads}; end with a user message{instead if params.continue_last_read else ''}")


def refusal_reason(error: Exception) -> str | None:
    """The ErrorInfo reason an upstream's refusal calls for, where its body or words say more than its status."""
    status = getattr(error, "status_code", None)
    inner = _inner(error)
    labelled = any(inner.get(key) == label for key, label in _CONTEXT_LENGTH_LABELS.items())
    message = str(inner.get("message", "")).lstrip().lower()
    if status in (400, 413, 422) and (labelled or message.startswith(_CONTEXT_LENGTH_OPENINGS)):
        # An in-stream error (status 200) never says so: the prompt was read.
        return CONTEXT_LENGTH_EXCEEDED
    if status == 429 and {str(inner.get(key)) for key in ("code", "type")} & _QUOTA_LABELS:
        return QUOTA_EXHAUSTED
    return None


def prompt_too_long(error: Exception, message: str) -> str:
    """An upstream's refusal of a prompt over its model's context, told as a local model's is (core.errors.too_long),
    with the context's size where the upstream's body (llama.cpp's `n_ctx`) or its `message` says it, and that
    message kept."""
    n_ctx = _inner(error).get("n_ctx")
    size = _CONTEXT_SIZE.search(message)
    if type(n_ctx) is int and n_ctx > 0:  # JSON's true is no size
        tokens: int | None = n_ctx
    else:
        tokens = int(next(group for group in size.groups() if group)) if size else None
    advice = "shorten it or use a model with a larger context"
    return f"{too_long('the prompt', tokens)}; {advice} (the upstream said: {message})"


def _inner(error: Exception) -> dict[object, object]:
    """A vendor error body's inner object, of {"error": {...}} or that object itself."""
    body = getattr(error, "body", None)
    inner = body.get("error", body) if isinstance(body, dict) else None
    return inner if isinstance(inner, dict) else {}


# A 500 that says what is missing is no passing failure, which no retry changes (as a 501 says): llama.cpp's server
# answers "image input is not supported" (no projector), "tools param requires --jinja flag" (a server flag), "input
# (3002 tokens) is too large to process" (an embedding over its batch size) with HTTP 500. Narrowly: "requires more
# memory, retry later" is a passing failure.
_UNSUPPORTED_WORDS = re.compile(r"\b(not supported|unsupported|requires --|too large to process)", re.IGNORECASE)


def lacks_feature(error: Exception) -> bool:
    return getattr(error, "status_code", None) == 500 and _UNSUPPORTED_WORDS.search(str(error)) is not None


# What a hosted model of the other kind cannot be asked, by whether it is an embedding model: (why, reason).
_OTHER_KIND = {
    True: (
        "was loaded as an embedding model (LoadModel's model_type), so it cannot generate; load a text model,"
        " or this one with model_type MODEL_TYPE_TEXT_TO_TEXT if it generates",
        "MODEL_LOADED_FOR_EMBEDDINGS",
    ),
    False: (
        "was loaded as a text model (model_type MODEL_TYPE_TEXT_TO_TEXT), so it cannot embed; load it under another"
        " model_id with model_type MODEL_TYPE_TEXT_TO_EMBEDDING",
        "MODEL_NOT_LOADED_FOR_EMBEDDINGS",
    ),
}


def other_kind(*, embedding_model: bool) -> FailedPreconditionError:
    """Generate on a hosted embedding model, or Embed on one loaded as a text model: refused before anything goes
    upstream, which would refuse it too. Named as the caller's model_id, not as the API's model, a name the caller
    may never have used (a tester's finding)."""
    why, reason = _OTHER_KIND[embedding_model]
    return FailedPreconditionError(f"this model {why}", field="model_id", reason=reason)

"""Cleaning what an upstream sends back before it reaches a caller or a log: the upstream chooses every byte of it,
and may echo the caller's API key in error text, a request id, a tool call's id or a stop sequence."""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Mapping, Sequence

from warpcore.server.adapters.redaction import redact
from warpcore.server.core.bounds import MAX_ID_LENGTH, MAX_REQUEST_ID, REQUEST_ID_CHARACTER
from warpcore.server.core.domain import ToolCallDelta
from warpcore.server.core.errors import WarpcoreError

# An upstream's request id is held to the rule of a caller's (core/bounds.py), by dropping and cutting.
_NOT_IN_REQUEST_ID = re.compile(REQUEST_ID_CHARACTER.replace("[", "[^", 1))
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-litellm-call-id")
"""Where an upstream says its request id, the first present wins: OpenAI's header, Anthropic's, and LiteLLM's own
call id. A LiteLLM proxy passes its provider's id on as `request-id` on both of its routes (OpenAI's
`x-request-id` only under its `llm_provider-` prefix), and gives its own call id when the provider gave none."""


_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Control characters (but tab and newline) and the marks that reorder text: a terminal or a log viewer showing an
upstream's words would do as they say (hide what follows, show it backwards)."""


def upstream_words(text: str, secret: str) -> str:
    """An upstream's error text fit to pass on: without control characters or direction marks, scrubbed."""
    # Dropped before redacting, so a key split by control characters still shows as a run of it and goes.
    return redact(_UNPRINTABLE.sub("", text), secret)


def upstream_request_id(headers: Mapping[str, str], secret: str) -> str:
    """The request id of an upstream's answer with `headers`, scrubbed; "" when it gave none."""
    for name in REQUEST_ID_HEADERS:
        if value := headers.get(name):
            return scrub_request_id(value, secret)
    return ""


def scrub_request_id(value: str | None, secret: str) -> str:
    """An upstream's request id fit to pass on: printable, scrubbed like error text, bounded; "" when none is left.

    The upstream chooses this value, so it is as untrusted as its error text: one echoing the caller's key there
    must not get the key returned to the caller in a result frame or in error metadata.
    """
    if not value:
        return ""
    # Dropped before redacting, so a key split by control characters still shows as a run of it and goes.
    return redact(_NOT_IN_REQUEST_ID.sub("", value), secret)[:MAX_REQUEST_ID]


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


def listed_model_ids(ids: Sequence[str], secret: str) -> list[str]:
    """The model ids an upstream listed that a caller may be shown: an id the upstream made of the caller's key, or of
    a run of it, is left out, as is one longer than any id a request may give."""
    return [model for model in ids if len(model) <= MAX_ID_LENGTH and redact(model, secret) == model]


def scrubbed_call(delta: ToolCallDelta, secret: str) -> ToolCallDelta:
    """A tool-call delta fit to pass on: its id, which the upstream chose, scrubbed as error text is (its name and
    arguments are the model's words). Each call's deltas and the Finish's call are made of the delta scrubbed here,
    so the id the caller sends back with the call's result is the one it was shown."""
    return dataclasses.replace(delta, id=upstream_words(delta.id, secret)) if delta.id else delta


def scrubbed_failure(error: WarpcoreError | None, secret: str) -> WarpcoreError | None:
    """`error`, its message and metadata scrubbed as error text is. The failure a generation's stream ends with passes
    here, an error the upstream sent in it and what the server found wrong with it alike (a tool call that names a
    tool after the key), so that no message quoting what the upstream sent can forget the scrubbing."""
    if error is not None:
        error.message = upstream_words(error.message, secret)
        error.args = (error.message,)
        error.metadata = {name: upstream_words(value, secret) for name, value in error.metadata.items()}
    return error


def upstream_stop_sequence(named: str, asked: Sequence[str], secret: str) -> str:
    """The stop sequence an upstream says ended the answer, fit to pass on: one the request gave passes as it is (the
    caller's own, though shaped like a key: "key-takeaways:"), any other is scrubbed as error text is."""
    return named if named in asked else upstream_words(named, secret)

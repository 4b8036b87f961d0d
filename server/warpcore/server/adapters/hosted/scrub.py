"""Cleaning what an upstream sends back before it reaches a caller or a log: the upstream chooses every byte of it,
and may echo the caller's API key in error text or in a request id."""

from __future__ import annotations

import re
import urllib.parse

from warpcore.server.core.bounds import MAX_REQUEST_ID, REQUEST_ID_CHARACTER

_REDACTED = "[redacted]"
# Key-shaped strings that an upstream may echo back (OpenAI quotes a masked key in 401 messages).
_KEY_PATTERN = re.compile(r"\b(sk|key)-[A-Za-z0-9_\-*]{6,}")
# An upstream's request id is held to the rule of a caller's (core/bounds.py), by dropping and cutting.
_NOT_IN_REQUEST_ID = re.compile(REQUEST_ID_CHARACTER.replace("[", "[^", 1))


def redact(text: str, secret: str) -> str:
    """`text` without the secret, any 8 characters of it in a row, or anything shaped like an API key; in any
    letter case, as an upstream may quote a key upper-cased."""
    run = min(len(secret), 8)
    # A "key" under 4 characters (one a client sent by mistake, say "x") is no secret, and scrubbing it would blank
    # every occurrence of it in the upstream's message. Any longer one goes, whole or in part.
    if run >= 4:
        # Upstreams also quote keys partly masked ("abcd1234****wxyz"): any `run` characters of it in a row go.
        runs = {secret[start : start + run].casefold() for start in range(len(secret) - run + 1)}
        spans: list[list[int]] = []
        for start in range(len(text) - run + 1):
            if text[start : start + run].casefold() in runs:
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

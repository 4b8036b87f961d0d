"""Secrets out of text a caller or a log will see: an upstream may echo the caller's API key in its error text, and a
library may quote a token in its messages."""

from __future__ import annotations

import re

_REDACTED = "[redacted]"
# Key-shaped strings that an upstream may echo back (OpenAI quotes a masked key in 401 messages).
_KEY_PATTERN = re.compile(r"\b(sk|key)-[A-Za-z0-9_\-*]{6,}")


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
    return redact_key_shapes(text)


def redact_key_shapes(text: str) -> str:
    """`text` without anything shaped like an API key."""
    return _KEY_PATTERN.sub(_REDACTED, text)

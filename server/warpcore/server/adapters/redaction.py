"""Secrets out of text a caller or a log will see: an upstream may echo the caller's API key in its error text, and a
library may quote a token in its messages."""

from __future__ import annotations

import base64
import functools
import json
import re
import urllib.parse

_REDACTED = "[redacted]"
# Key-shaped words that an upstream may echo back (OpenAI quotes a masked key in 401 messages): sk-... or key-...
# whose random part shows, as a run of 16 or more letters and digits, both, or as 32 or more characters past the
# prefix holding capitals, small letters and digits (a base64url key's random part, cut into short runs by its `-`
# and `_`). A model's name, words and versions ("sk-roberta-base-finetuned-ner-v2", "key-phrase-extractor"), has
# neither. The word may follow a letter-less joint (`call_sk-...`, a tool call's id built on a key), not a letter or
# a digit ("task-...").
_KEY_PATTERN = re.compile(r"(?<![A-Za-z0-9])(?:sk|key)-([A-Za-z0-9_\-*]{6,})")
_RANDOM_RUN = re.compile(r"[A-Za-z0-9]{16,}")
_LONG_RANDOM_PART = 32
SHORTEST_SECRET_KEY = 16
"""The fewest characters of a key that an id or a name is refused for holding: real keys are far longer, and a
shorter one is a stand-in that a compatible server takes ("ollama", "EMPTY"), no secret, and may well be part of a
model's name ("ollama/llama3")."""
# A key quoted masked, of any vendor's shape or none ("abcd1234****wxyz"): the word holding the mask goes whole. A
# match starts only where a word does (the look-behind), so that a long run of letters with no mask in it is tried
# once, not again from each of its letters: a time in proportion to the text, not to its square.
_MASKED_PATTERN = re.compile(r"(?<![A-Za-z0-9_\-*])[A-Za-z0-9_\-*]*\*{3,}[A-Za-z0-9_\-*]*")


def redact(text: str, secret: str) -> str:
    """`text` without the secret, in any letter case (an upstream may quote a key upper-cased), and without anything
    shaped like an API key, whole or masked. Never a part of the secret alone: an upstream's error may quote what
    the caller sent, so a caller could learn, run by run, whether a guess is part of the key from whether it came
    back redacted."""
    # A "key" under 4 characters (one a client sent by mistake, say "x") is no secret, and scrubbing it would blank
    # every occurrence of it in the upstream's message.
    if not text:
        return text
    if len(secret) >= 4:
        text = _secret_pattern(secret).sub(_REDACTED, text)
    return redact_key_shapes(text)


@functools.lru_cache(maxsize=64)
def _secret_pattern(secret: str) -> re.Pattern[str]:
    """Every spelling of the secret, longest first, in one pattern: made once per key, as every answer of an upstream
    has its request id scrubbed before its first token goes out."""
    forms = "|".join(re.escape(form) for form in sorted(_spellings(secret), key=len, reverse=True))
    return re.compile(forms, re.IGNORECASE)


def _spellings(secret: str) -> set[str]:
    """The secret as an upstream may quote it: as sent, percent-encoded (in a URL or a form), escaped in a JSON
    string (a key holding `/`, `+`, `"` or a space, say) and inside base64 text."""
    return {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
        urllib.parse.quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        *_in_base64(secret),
    }


_URL_SAFE = str.maketrans("+/", "-_")


def _in_base64(secret: str) -> set[str]:
    """What base64 text holding the secret holds whatever surrounds it (an `Authorization` header's `Bearer ` before
    it), in the standard alphabet and the URL-safe one. Base64 writes each 6 bits as a character: the secret starts at
    one of the three places of a group of three bytes, and at each the characters whose bits all come from the
    secret's bytes are the same."""
    data = secret.encode()
    runs = set()
    for before in range(3):
        encoded = base64.b64encode(bytes(before) + data + bytes(2)).decode()
        run = encoded[-(-8 * before // 6) : 8 * (before + len(data)) // 6]  # from the first whole character on
        runs |= {run, run.translate(_URL_SAFE)}
    return runs


def redact_key_shapes(text: str) -> str:
    """`text` without anything shaped like an API key, whole or masked."""
    return _MASKED_PATTERN.sub(_REDACTED, _KEY_PATTERN.sub(_redacted_if_random, text))


def _redacted_if_random(word: re.Match[str]) -> str:
    return _REDACTED if _random(word.group(1)) else word.group()


def _random(part: str) -> bool:
    if any(not run.isalpha() and not run.isdigit() for run in _RANDOM_RUN.findall(part)):
        return True
    kinds = (str.isupper, str.islower, str.isdigit)
    return len(part) >= _LONG_RANDOM_PART and all(any(kind(char) for char in part) for kind in kinds)


def holds_key(text: str, key: str | None = None) -> bool:
    """Whether `text` holds `key` (of at least SHORTEST_SECRET_KEY characters) or anything the logs redact as shaped
    like an API key (redact_key_shapes: sk-... or key-..., whole or masked). One rule for both: an id or a name
    holding one is refused, as it is shown to every caller, while the log would hide it."""
    if key and len(key) >= SHORTEST_SECRET_KEY and key in text:
        return True
    return redact_key_shapes(text) != text

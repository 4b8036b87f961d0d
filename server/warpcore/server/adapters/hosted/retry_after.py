"""How long an upstream asks its callers to wait before they retry, read from its answer's headers."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

from warpcore.server.core.bounds import MAX_RETRY_AFTER

# LiteLLM's proxy passes its upstream's headers on under this prefix, and says its own wait so too.
_PASSED_ON = "llm_provider-"


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date; from their
    `llm_provider-` forms when a LiteLLM proxy sends only those."""
    prefix = "" if "retry-after" in headers or "retry-after-ms" in headers else _PASSED_ON
    if (milliseconds := _seconds(headers.get(f"{prefix}retry-after-ms"))) is not None:
        return _bounded(milliseconds / 1000)
    value = headers.get(f"{prefix}retry-after")
    if not value:
        return None
    if (seconds := _seconds(value)) is not None:
        return _bounded(seconds)
    try:
        return _bounded(email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def _seconds(value: str | None) -> float | None:
    """A header's number, when it is a finite one, not below 0: an upstream's "inf", "nan" or "-5" says nothing of
    when to retry (RFC 9110 writes the delay as digits)."""
    try:
        number = float(value or "")
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _bounded(seconds: float) -> float:
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)

"""How a keep_alive is written as text: one grammar for the server's `--keep-alive` (WARPCORE_KEEP_ALIVE) and config
file, and for the `warpcore load --keep-alive` command. It sits outside warpcore.client so that the server reads it
without importing grpc (the server depends on this distribution). Its range is here too, for both."""

from __future__ import annotations

import math
import re

MAX_KEEP_ALIVE_SECONDS = 30 * 86400
"""The longest idle time a keep_alive may name: the server refuses a longer one (it is not taken as forever), and the
warpcore command refuses it before any call."""
FOREVER = "forever"
SPELLINGS = "seconds (90), a number with a unit ms, s, m, h or d (45s, 10m, 1.5h, 2d), or forever (-1, inf)"
"""What parse_keep_alive takes, for messages and help texts."""
# Every spelling the server has ever started with: an upgrade must not refuse a deployment's WARPCORE_KEEP_ALIVE.
_FOREVER_WORDS = frozenset({FOREVER, "inf", "infinite", "-1"})
_SPELLING = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_SECONDS_PER_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_keep_alive(text: str) -> float | None:
    """Seconds for a keep_alive written as SPELLINGS says, in any case, spaces around it or before its unit
    (math.inf for forever); None for anything else: another sign, an exponent, an underscore or another unit."""
    lowered = text.strip().lower()
    if lowered in _FOREVER_WORDS:
        return math.inf
    match = _SPELLING.fullmatch(lowered)
    if match is None:
        return None
    return float(match[1]) * _SECONDS_PER_UNIT[match[2] or "s"]

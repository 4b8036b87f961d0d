"""How a keep_alive is written as text: one grammar for the server's `--keep-alive` (WARPCORE_KEEP_ALIVE) and config
file, and for the `warpcore load --keep-alive` command. It sits outside warpcore.client so that the server reads it
without importing grpc (the server depends on this distribution). Its range is the server's to check."""

from __future__ import annotations

import math
import re

FOREVER = "forever"
SPELLINGS = "whole seconds (90), a number with a unit s, m or h (45s, 10m, 1.5h), or forever"
"""What parse_keep_alive takes, for messages and help texts."""
_SPELLING = re.compile(r"([0-9]+)|([0-9]+(?:\.[0-9]+)?)([smh])")
_SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600}


def parse_keep_alive(text: str) -> float | None:
    """Seconds for a keep_alive written as SPELLINGS says (math.inf for forever); None for anything else: a sign, an
    exponent, an underscore, a space or another unit."""
    if text == FOREVER:
        return math.inf
    match = _SPELLING.fullmatch(text)
    if match is None:
        return None
    if match[1] is not None:
        return float(match[1])
    return float(match[2]) * _SECONDS_PER_UNIT[match[3]]

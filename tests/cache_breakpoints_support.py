"""Shared by the tests/test_cache_breakpoints_*.py modules: the cache_control blocks the Anthropic wire receives."""

from __future__ import annotations

EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}

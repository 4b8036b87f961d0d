"""Where a request may ask a hosted API to cache its prompt: Anthropic's rules (at most MAX_CACHE_BREAKPOINTS, the
long-lived ones first), kept for every backend so that a request valid for one backend is valid for all."""

from __future__ import annotations

from collections.abc import Sequence

from warpcore.server.core.bounds import MAX_CACHE_BREAKPOINTS
from warpcore.server.core.content import CacheBreakpoint
from warpcore.server.core.domain import GenerationParams
from warpcore.server.core.rules import require

NONE = CacheBreakpoint.NONE
CacheMark = tuple[str, CacheBreakpoint]
"""A breakpoint and the field that asks for it, in the request's own naming."""


def check_cache_marks(marks: Sequence[CacheMark]) -> None:
    """`marks` in prompt order (tools, system, then each message's parts and end), breakpoints or not."""
    placed = [(field, mark) for field, mark in marks if mark is not CacheBreakpoint.NONE]
    if len(placed) > MAX_CACHE_BREAKPOINTS:
        field = placed[MAX_CACHE_BREAKPOINTS][0]
        require(False, field, f"{field}: a request holds at most {MAX_CACHE_BREAKPOINTS} cache breakpoints")
    short = None
    for field, mark in placed:
        require(
            short is None or mark is not CacheBreakpoint.LONG,
            field,
            f"{field}: a long cache breakpoint comes before every short one, and {short} is short and comes first",
        )
        if mark is CacheBreakpoint.SHORT and short is None:
            short = field


def check_cache_breakpoints(params: GenerationParams) -> None:
    require(
        params.system_cache is CacheBreakpoint.NONE or bool(params.system),
        "system_cache_breakpoint",
        "system_cache_breakpoint needs a system prompt",
    )
    marks: list[CacheMark] = [(f"tools[{i}].cache_breakpoint", tool.cache) for i, tool in enumerate(params.tools)]
    marks.append(("system_cache_breakpoint", params.system_cache))
    # Only the breakpoints placed are named: a request may hold a hundred thousand messages, and a few breakpoints.
    for index, message in enumerate(params.messages):
        placed = [(number, part.cache) for number, part in enumerate(message.parts) if part.cache is not NONE]
        marks += [(f"messages[{index}].parts[{number}].cache_breakpoint", mark) for number, mark in placed]
        if message.cache is not NONE:
            marks.append((f"messages[{index}].cache_breakpoint", message.cache))
    check_cache_marks(marks)

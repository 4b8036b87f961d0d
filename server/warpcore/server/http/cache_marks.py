"""Cache breakpoints as each dialect writes them, into the domain's.

Anthropic's `cache_control` (`ephemeral`, `ttl` 5m or 1h) on a block, and on the request (its automatic caching: up to
the last block). In the OpenAI dialect, a content part's `prompt_cache_breakpoint` (OpenAI's own, `ttl` 30m or 12h)
or its `cache_control` (the Anthropic-style marker that OpenAI-compatible gateways take on parts and tools).

A breakpoint goes where the domain has a place at its block's end: after a tool, after the system prompt, after a
message (its last block, a tool result) or after a part of one (as gRPC's ContentPart.cache_breakpoint): a text block
with more after it in a turn or a tool result, an image, a document. A block that ends no such place (a system block
before the last, the system text being one; a call or thinking block with more after it in its turn) gives its
breakpoint to a place before it: the message before, else the end of the system prompt, else the last tool; with none,
it is refused naming it, rather than lost. The prompt cached is then never more than the client asked for: a longer
one would be missed by every later request that shares only the part asked for. A lifetime the backend has not
(OpenAI's 30 minutes or 12 hours, for Anthropic) is the longest it has within the one asked for."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from warpcore.server.core.bounds import quoted
from warpcore.server.core.cache_rules import CacheMark
from warpcore.server.core.content import CacheBreakpoint
from warpcore.server.core.domain import (
    ChatMessage,
)
from warpcore.server.core.tooling import (
    Tool,
)
from warpcore.server.http.fields import Json, at, mapping, refuse, text
from warpcore.server.http.inner_members import CACHE_CONTROL, PROMPT_CACHE_BREAKPOINT

NONE = CacheBreakpoint.NONE
_ANTHROPIC_LIFETIMES = {None: CacheBreakpoint.SHORT, "5m": CacheBreakpoint.SHORT, "1h": CacheBreakpoint.LONG}
_OPENAI_LIFETIMES = {None: CacheBreakpoint.SHORT, "30m": CacheBreakpoint.SHORT, "12h": CacheBreakpoint.LONG}

UNMARKED: CacheMark = ("", NONE)
Marked = TypeVar("Marked", ChatMessage, Tool)


def cache_mark(block: Json, path: str, marks: list[CacheMark]) -> CacheBreakpoint:
    """The breakpoint of `block`'s `cache_control` (NONE without one), recorded in `marks` by its path."""
    control = mapping(block, "cache_control", path)
    if control is None:
        return NONE
    control_path = at(path, "cache_control")
    CACHE_CONTROL.check(control, control_path)
    if text(control, "type", control_path, required=True) != "ephemeral":
        raise refuse(at(control_path, "type"), "the only cache_control type is ephemeral")
    return _lifetime(control, control_path, _ANTHROPIC_LIFETIMES, marks)


def part_mark(part: Json, path: str, marks: list[CacheMark]) -> CacheBreakpoint:
    """The breakpoint of an OpenAI content part: its `prompt_cache_breakpoint`, or its `cache_control`."""
    breakpoint_path = at(path, "prompt_cache_breakpoint")
    explicit = mapping(part, "prompt_cache_breakpoint", path)
    if explicit is None:
        return cache_mark(part, path, marks)
    if part.get("cache_control") is not None:
        raise refuse(breakpoint_path, "give prompt_cache_breakpoint or cache_control, not both")
    PROMPT_CACHE_BREAKPOINT.check(explicit, breakpoint_path)
    if text(explicit, "mode", breakpoint_path, required=True) != "explicit":
        raise refuse(at(breakpoint_path, "mode"), "the only prompt_cache_breakpoint mode is explicit")
    return _lifetime(explicit, breakpoint_path, _OPENAI_LIFETIMES, marks)


def part_marker(part: Json, path: str) -> str:
    """The path of the member that holds an OpenAI content part's breakpoint."""
    return at(path, "cache_control" if part.get("prompt_cache_breakpoint") is None else "prompt_cache_breakpoint")


def _lifetime(
    marker: Json, path: str, lifetimes: dict[str | None, CacheBreakpoint], marks: list[CacheMark]
) -> CacheBreakpoint:
    lifetime = text(marker, "ttl", path)
    if lifetime not in lifetimes:
        expected = " or ".join(name for name in lifetimes if name)
        raise refuse(at(path, "ttl"), f"unknown ttl {quoted(lifetime)}; expected {expected}")
    mark = lifetimes[lifetime]
    marks.append((path, mark))
    return mark


def end_and_before(marks: list[CacheMark]) -> tuple[CacheBreakpoint, CacheMark]:
    """Of the breakpoints of a run of blocks, in order, each by its path: the last block's, which ends the run, and
    the first of those before it, which end no place of the domain's (UNMARKED for none)."""
    return (marks[-1][1] if marks else NONE), next((mark for mark in marks[:-1] if mark[1] is not NONE), UNMARKED)


def marked(item: Marked, mark: CacheBreakpoint) -> Marked:
    """`item` ending in `mark`, unless it has a breakpoint already (the earlier one is kept: both cache the same
    prompt)."""
    return item if mark is NONE or item.cache is not NONE else dataclasses.replace(item, cache=mark)


def marked_last(tools: tuple[Tool, ...], before: CacheMark) -> tuple[Tool, ...]:
    """The tools, the last ending in a breakpoint that belongs before the system prompt or the first message; with
    no tools there is no place for it, and it is refused rather than lost."""
    path, mark = before
    if mark is not NONE and not tools:
        raise refuse(
            path,
            "its block ends no place a breakpoint can stand (more is joined after it) and nothing comes before it"
            " to take the breakpoint; put it on the last block of the system prompt, the message or the turn",
        )
    return (*tools[:-1], marked(tools[-1], mark)) if tools else tools

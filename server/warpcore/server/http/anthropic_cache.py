"""Anthropic's cache_control in a Messages request, as the domain's cache breakpoints.

A breakpoint goes where the domain has a place at its block's end: after a tool, after the system prompt, after a
message (a turn's last block, a tool result) or after an image. A block that ends no such place (a text block with
more text after it in its turn, whose text the domain joins into one; a system block before the last) gives its
breakpoint to a place before it: the message before, else the end of the system prompt, else the last tool. The
prompt cached is then never more than the client asked for: a longer one would be missed by every later request
that shares only the part asked for. The top-level cache_control (the API's automatic caching) ends the last
message."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from warpcore.server.core.cache_rules import CacheMark
from warpcore.server.core.content import CacheBreakpoint
from warpcore.server.core.domain import ChatMessage, Tool
from warpcore.server.http.fields import Json, at, mapping, refuse, text

_LIFETIMES = {None: CacheBreakpoint.SHORT, "5m": CacheBreakpoint.SHORT, "1h": CacheBreakpoint.LONG}
NONE = CacheBreakpoint.NONE

Marked = TypeVar("Marked", ChatMessage, Tool)


def cache_mark(block: Json, path: str, marks: list[CacheMark]) -> CacheBreakpoint:
    """The breakpoint `block` asks for (NONE without cache_control), recorded in `marks` by its path."""
    control_path = at(path, "cache_control")
    control = mapping(block, "cache_control", path)
    if control is None:
        return NONE
    if text(control, "type", control_path, required=True) != "ephemeral":
        raise refuse(at(control_path, "type"), "the only cache_control type is ephemeral")
    lifetime = text(control, "ttl", control_path)
    if lifetime not in _LIFETIMES:
        raise refuse(at(control_path, "ttl"), f"unknown ttl {lifetime!r}; expected 5m or 1h")
    mark = _LIFETIMES[lifetime]
    marks.append((control_path, mark))
    return mark


def marked(item: Marked, mark: CacheBreakpoint) -> Marked:
    """`item` ending in `mark`, unless it has a breakpoint already (the earlier one is kept: both cache the same
    prompt)."""
    return item if mark is NONE or item.cache is not NONE else dataclasses.replace(item, cache=mark)


def marked_last(tools: tuple[Tool, ...], mark: CacheBreakpoint) -> tuple[Tool, ...]:
    return (*tools[:-1], marked(tools[-1], mark)) if tools else tools

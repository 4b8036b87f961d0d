"""Tools, the calls a model makes, structured output and reasoning: the domain's side of tools.proto."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from warpcore.server.core.content import CacheBreakpoint

JsonSchema = Mapping[str, Any]
"""A JSON Schema, parsed from the request's JSON text and checked against its metaschema."""


@dataclass(frozen=True)
class ToolCall:
    """A complete call the model made: `arguments` is JSON text that parses to an object."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ReasoningBlock:
    """Reasoning an assistant turn carried, handed back as received. `signature` (Anthropic) is opaque; a block
    with `redacted` set carries the provider's encrypted data in `signature` and no text."""

    text: str = ""
    signature: str = ""
    redacted: bool = False


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: JsonSchema
    strict: bool = False  # calls' arguments guaranteed valid against `parameters` (the APIs' strict tool use)
    cache: CacheBreakpoint = CacheBreakpoint.NONE


class ToolChoiceMode(enum.Enum):
    AUTO = "auto"
    NONE = "none"
    REQUIRED = "required"
    NAMED = "named"


@dataclass(frozen=True)
class ToolChoice:
    mode: ToolChoiceMode = ToolChoiceMode.AUTO
    name: str = ""
    """With NAMED: the tool the model must call."""
    allowed: tuple[str, ...] = ()
    """With AUTO or REQUIRED: the only tools the model may call; empty: any of them."""

    def may_call(self, tool: Tool) -> bool:
        """Whether this choice lets the model call `tool`, one of the request's tools."""
        if self.mode is ToolChoiceMode.NAMED:
            return tool.name == self.name
        return self.mode is not ToolChoiceMode.NONE and (not self.allowed or tool.name in self.allowed)

    def sent(self, tools: tuple[Tool, ...]) -> tuple[Tool, ...]:
        """The tools a hosted API is told of: the allowed ones, as neither vendor's API takes a list of them for
        every model and compatible server."""
        return tuple(tool for tool in tools if tool.name in self.allowed) if self.allowed else tools


class ResponseFormatKind(enum.Enum):
    TEXT = "text"
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


@dataclass(frozen=True)
class ResponseFormat:
    kind: ResponseFormatKind = ResponseFormatKind.TEXT
    schema: JsonSchema | None = None
    name: str = ""
    strict: bool = False


class ReasoningEffort(enum.Enum):
    NONE = "none"
    MINIMAL = "minimal"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    XHIGH = "xhigh"
    MAX = "max"


@dataclass(frozen=True)
class ReasoningOptions:
    effort: ReasoningEffort | None = None
    budget_tokens: int | None = None
    adaptive: bool = False
    """The model decides how much to think (Anthropic's adaptive thinking); never with a budget."""

    @property
    def off(self) -> bool:
        """No reasoning asked for (effort NONE alone): what a model without reasoning does anyway."""
        return self.effort is ReasoningEffort.NONE and self.budget_tokens is None and not self.adaptive

"""Pure translation of tools, tool calls and reasoning, shared by both clients."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from warpcore.client._checks import choice
from warpcore.client._extras import cache_breakpoint
from warpcore.client._formats import Parse, response_format_message
from warpcore.client._messages import Cache, Message, ReasoningBlock, Tool, ToolCall
from warpcore.client._options import GenerationOptions
from warpcore.client._types import ReasoningDelta
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

_CHOICES = {
    "auto": tools_pb2.TOOL_CHOICE_MODE_AUTO,
    "none": tools_pb2.TOOL_CHOICE_MODE_NONE,
    "required": tools_pb2.TOOL_CHOICE_MODE_REQUIRED,
}
_VENDOR_MODES = {**_CHOICES, "any": tools_pb2.TOOL_CHOICE_MODE_REQUIRED}
"""tool_choice types of the vendors' objects that name no tool (Anthropic's "any" is "required")."""
_TOOL_KEYS = {"name", "description", "parameters", "input_schema", "strict", "cache_control"}


def as_tool(tool: Any) -> Tool:
    """A Tool from a Tool, a pydantic model class, a typed function, or a mapping as either vendor's SDK takes it."""
    if isinstance(tool, Tool):
        return tool
    if isinstance(tool, Mapping):
        return _tool_from_mapping(tool)
    if hasattr(tool, "model_json_schema"):
        return Tool.from_model(tool)
    if callable(tool):
        return Tool.from_function(tool)
    raise TypeError(f"a tool is a Tool, a mapping, a pydantic model class or a function, not {type(tool).__name__}")


def _tool_from_mapping(tool: Mapping[str, Any]) -> Tool:
    """OpenAI's {"type": "function", "function": {...}}, or the fields themselves as Anthropic's SDK (input_schema)
    or Tool (parameters) name them. A key that cannot be carried is refused rather than dropped."""
    fields = dict(tool)
    kind = fields.pop("type", None)
    if kind == "function" and "function" in fields:
        extra = sorted(fields.keys() - {"function"})
        if extra:
            raise ValueError(f"tool key {extra[0]!r} is not carried; an OpenAI tool holds only type and function")
        fields = dict(fields["function"])
    elif kind not in (None, "function", "custom"):
        raise ValueError(f"tool type {kind!r} is no function tool; a tool here is a function the caller runs")
    unknown = sorted(fields.keys() - _TOOL_KEYS)
    if unknown:
        raise ValueError(f"tool key {unknown[0]!r} is not carried; a tool has {', '.join(sorted(_TOOL_KEYS))}")
    if "parameters" in fields and "input_schema" in fields:
        raise ValueError("a tool has parameters (OpenAI) or input_schema (Anthropic), not both")
    if not isinstance(fields.get("name"), str):
        raise ValueError("a tool mapping needs a name (a string)")
    strict = fields.get("strict") or False  # OpenAI's SDK types allow None: not strict
    if not isinstance(strict, bool):
        raise ValueError("a tool's strict is true or false")
    schema = fields.get("parameters", fields.get("input_schema", {"type": "object"}))
    return Tool(fields["name"], fields.get("description") or "", schema, strict, _cache(fields.get("cache_control")))


def _cache(control: Any) -> Cache | None:
    """Anthropic's cache_control ({"type": "ephemeral", "ttl": "5m" | "1h"}) as a cache breakpoint."""
    if control is None:
        return None
    if not isinstance(control, Mapping) or control.get("type") != "ephemeral" or not control.keys() <= {"type", "ttl"}:
        raise ValueError('a cache_control is {"type": "ephemeral"}, with a "ttl" of "5m" or "1h"')
    lifetimes: dict[Any, Cache] = {None: "short", "5m": "short", "1h": "long"}
    if control.get("ttl") not in lifetimes:
        raise ValueError(f'a cache_control\'s ttl is "5m" or "1h", not {control.get("ttl")!r}')
    return lifetimes[control.get("ttl")]


def tool_message(tool: Any) -> tools_pb2.Tool:
    if isinstance(tool, tools_pb2.Tool):
        return tool
    found = as_tool(tool)
    return tools_pb2.Tool(
        name=found.name,
        description=found.description,
        parameters_json=json.dumps(found.parameters),
        strict=found.strict,
        cache_breakpoint=cache_breakpoint(found.cache),
    )


def tool_choice_fields(choice: str | Mapping[str, Any]) -> tuple[tools_pb2.ToolChoice, bool | None]:
    """The ToolChoice for "auto", "none", "required" or a tool's name, or for either vendor's tool_choice object; and
    whether parallel calls are allowed, when the object says (Anthropic's disable_parallel_tool_use)."""
    if isinstance(choice, str):
        if choice in _CHOICES:
            return tools_pb2.ToolChoice(mode=_CHOICES[choice]), None
        return tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_NAMED, name=choice), None
    fields = dict(choice)
    kind = fields.pop("type", None)
    parallel = None
    if "disable_parallel_tool_use" in fields:
        parallel = not fields.pop("disable_parallel_tool_use")
    name: Any = None
    if kind == "function":  # OpenAI's, in the Chat Completions shape or the Responses one
        name = fields.pop("function", {}).get("name") if "function" in fields else fields.pop("name", None)
    elif kind == "tool":  # Anthropic's
        name = fields.pop("name", None)
    elif kind in _VENDOR_MODES and not fields:
        return tools_pb2.ToolChoice(mode=_VENDOR_MODES[kind]), parallel
    elif kind == "allowed_tools":  # OpenAI's, in the Chat Completions shape or the Responses one
        nested = fields.pop("allowed_tools", None)
        if nested is not None and fields:
            raise ValueError("a tool_choice of type 'allowed_tools' holds allowed_tools, and nothing else")
        return _allowed_tools(fields if nested is None else nested), parallel
    else:
        raise ValueError(f"unknown tool_choice type {kind!r}; expected auto, any, required, none, tool or function")
    if fields or not isinstance(name, str):
        raise ValueError(f"a tool_choice of type {kind!r} holds the name of one tool, and nothing else")
    return tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_NAMED, name=name), parallel


def _allowed_tools(fields: object) -> tools_pb2.ToolChoice:
    """OpenAI's allowed_tools: a mode, auto or required, and the function tools it allows, one at least, each named
    on the entry (Responses) or under its `function` (Chat Completions)."""
    if (
        not isinstance(fields, Mapping)
        or set(fields) != {"mode", "tools"}
        or fields["mode"] not in ("auto", "required")
    ):
        raise ValueError("an allowed_tools tool_choice holds a mode, auto or required, and a list of tools")
    tools = fields["tools"]
    if not isinstance(tools, list) or not tools:
        raise ValueError("an allowed_tools tool_choice lists one tool at least")
    return tools_pb2.ToolChoice(mode=_CHOICES[fields["mode"]], allowed_tools=[_allowed_name(tool) for tool in tools])


def _allowed_name(tool: object) -> str:
    """The name of one of allowed_tools' entries: {"type": "function", "name"} or {"type": "function", "function":
    {"name"}}, nothing else."""
    if isinstance(tool, Mapping) and tool.get("type") == "function":
        named = tool.get("function", tool)
        keys = {"type", "function"} if "function" in tool else {"type", "name"}
        whole = named is tool or (isinstance(named, Mapping) and set(named) == {"name"})
        if set(tool) == keys and whole and isinstance(named, Mapping) and isinstance(named.get("name"), str):
            return str(named["name"])
    raise ValueError(f"an allowed tool is {{'type': 'function', 'name': ...}}, or the name under 'function': {tool!r}")


def request_fields(options: GenerationOptions) -> tuple[dict[str, Any], dict[str, Any], Parse | None]:
    """`options` split into the GenerateRequest's own fields (tools, tool choice) and the GenerationOptions' fields;
    with the parser of a pydantic response_format."""
    fields: dict[str, Any] = dict(options)
    request: dict[str, Any] = {}
    parse = None
    if "tools" in fields:
        request["tools"] = [tool_message(tool) for tool in fields.pop("tools")]
    if "tool_choice" in fields:
        request["tool_choice"], parallel = tool_choice_fields(fields.pop("tool_choice"))
        if parallel is not None:
            if fields.get("parallel_tool_calls", parallel) != parallel:
                raise ValueError("parallel_tool_calls and the tool_choice's disable_parallel_tool_use disagree")
            request["parallel_tool_calls"] = parallel
    if "parallel_tool_calls" in fields:
        request["parallel_tool_calls"] = fields.pop("parallel_tool_calls")
    if (continue_last := fields.pop("continue_last_message", None)) is not None:  # None: unset, the model's reading
        request["continue_last_message"] = continue_last
    if "system_cache" in fields:
        fields["system_cache_breakpoint"] = cache_breakpoint(fields.pop("system_cache"))
    if "verbosity" in fields:
        fields["verbosity"] = _verbosity(fields["verbosity"])
    if "response_format" in fields:
        fields["response_format"], parse = response_format_message(fields.pop("response_format"))
    effort, budget = fields.pop("reasoning_effort", None), fields.pop("reasoning_budget", None)
    adaptive = fields.pop("adaptive_thinking", False)
    if effort is not None or budget is not None or adaptive:
        efforts = levels(tools_pb2.ReasoningEffort)
        level = "unspecified" if effort is None else choice("reasoning_effort", effort, efforts)
        fields["reasoning"] = tools_pb2.ReasoningOptions(
            effort=tools_pb2.ReasoningEffort.Value(f"REASONING_EFFORT_{level.upper()}"),
            budget_tokens=budget,
            adaptive=adaptive,
        )
    return request, fields, parse


def levels(enum: Any) -> list[str]:
    """A protocol enum's values as the SDK takes them: by name, lower case, without the prefix; unset left out."""
    prefix = enum.DESCRIPTOR.values[0].name.removesuffix("UNSPECIFIED")
    return [name.removeprefix(prefix).lower() for name, number in enum.items() if number]


def _verbosity(level: str) -> pb.Verbosity.ValueType:
    return pb.Verbosity.Value(f"VERBOSITY_{choice('verbosity', level, levels(pb.Verbosity)).upper()}")


def message_fields(message: Message) -> dict[str, Any]:
    """The tool and reasoning fields of a chat turn."""
    return {
        "tool_calls": [tools_pb2.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in message.tool_calls],
        "tool_call_id": message.tool_call_id,
        "is_error": message.is_error,
        "reasoning": [
            tools_pb2.ReasoningBlock(text=b.text, signature=b.signature, redacted=b.redacted) for b in message.reasoning
        ],
    }


def tool_calls_from(calls: Sequence[tools_pb2.ToolCall]) -> tuple[ToolCall, ...]:
    return tuple(ToolCall(call.id, call.name, call.arguments) for call in calls)


class ReasoningCollector:
    """Reasoning deltas joined into the blocks to send back: a block ends with its signature, a redacted one
    arrives whole; text with no signature after it (OpenAI-compatible servers) makes a block of its own."""

    def __init__(self) -> None:
        self._blocks: list[ReasoningBlock] = []
        self._text: list[str] = []

    def add(self, delta: ReasoningDelta) -> None:
        if delta.redacted:
            self._blocks.append(ReasoningBlock(signature=delta.signature, redacted=True))
            return
        self._text.append(delta.text)
        if delta.signature:
            self._blocks.append(ReasoningBlock("".join(self._text), delta.signature))
            self._text.clear()

    def blocks(self) -> tuple[ReasoningBlock, ...]:
        rest = "".join(self._text)
        return (*self._blocks, ReasoningBlock(rest)) if rest else tuple(self._blocks)


_ROLES = tuple(value.name.removeprefix("ROLE_") for value in pb.Role.DESCRIPTOR.values if value.number)


def chat_role(role: str) -> pb.Role.ValueType:
    if not isinstance(role, str) or role.upper() not in _ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(name.lower() for name in _ROLES)}")
    return pb.Role.Value(f"ROLE_{role.upper()}")

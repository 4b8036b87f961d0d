"""Pure translation of tools, tool calls, structured output and reasoning, shared by both clients."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from warpcore.client._types import (
    GenerationOptions,
    Message,
    ReasoningBlock,
    ReasoningDelta,
    Tool,
    ToolCall,
)
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

Parse = Callable[[str], Any]
_CHOICES = {
    "auto": tools_pb2.TOOL_CHOICE_MODE_AUTO,
    "none": tools_pb2.TOOL_CHOICE_MODE_NONE,
    "required": tools_pb2.TOOL_CHOICE_MODE_REQUIRED,
}
_NOT_A_NAME = re.compile(r"[^a-zA-Z0-9_-]")


def as_tool(tool: Any) -> Tool:
    """A Tool from a Tool, a pydantic model class, or a typed function."""
    if isinstance(tool, Tool):
        return tool
    if hasattr(tool, "model_json_schema"):
        return Tool.from_model(tool)
    if callable(tool):
        return Tool.from_function(tool)
    raise TypeError(f"a tool is a Tool, a pydantic model class or a function, not {type(tool).__name__}")


def tool_message(tool: Any) -> tools_pb2.Tool:
    if isinstance(tool, tools_pb2.Tool):
        return tool
    found = as_tool(tool)
    return tools_pb2.Tool(name=found.name, description=found.description, parameters_json=json.dumps(found.parameters))


def tool_choice_message(choice: str) -> tools_pb2.ToolChoice:
    """ "auto", "none", "required", or any other word as the name of the one tool to call."""
    if choice in _CHOICES:
        return tools_pb2.ToolChoice(mode=_CHOICES[choice])
    return tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_NAMED, name=choice)


def response_format_message(response_format: Any) -> tuple[tools_pb2.ResponseFormat, Parse | None]:
    """The ResponseFormat for "json_object", a JSON Schema dict, or a pydantic model class; and, for a model, the
    function that parses the answer's text into it."""
    if isinstance(response_format, tools_pb2.ResponseFormat):
        return response_format, None
    if response_format == "json_object":
        return tools_pb2.ResponseFormat(type=tools_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT), None
    parse: Parse | None = None
    if isinstance(response_format, dict):
        schema = response_format
    elif hasattr(response_format, "model_json_schema"):
        schema, parse = response_format.model_json_schema(), response_format.model_validate_json
    else:
        raise TypeError('response_format is "json_object", a JSON Schema dict or a pydantic model class')
    name = _NOT_A_NAME.sub("_", str(schema.get("title") or "response"))[:64]
    message = tools_pb2.ResponseFormat(
        type=tools_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, name=name, schema_json=json.dumps(schema)
    )
    return message, parse


def request_fields(options: GenerationOptions) -> tuple[dict[str, Any], dict[str, Any], Parse | None]:
    """`options` split into the GenerateRequest's own fields (tools, tool choice) and the GenerationOptions' fields;
    with the parser of a pydantic response_format."""
    fields: dict[str, Any] = dict(options)
    request: dict[str, Any] = {}
    parse = None
    if "tools" in fields:
        request["tools"] = [tool_message(tool) for tool in fields.pop("tools")]
    if "tool_choice" in fields:
        request["tool_choice"] = tool_choice_message(fields.pop("tool_choice"))
    if "parallel_tool_calls" in fields:
        request["parallel_tool_calls"] = fields.pop("parallel_tool_calls")
    if "response_format" in fields:
        fields["response_format"], parse = response_format_message(fields.pop("response_format"))
    effort, budget = fields.pop("reasoning_effort", None), fields.pop("reasoning_budget", None)
    if effort is not None or budget is not None:
        value = f"REASONING_EFFORT_{(effort or 'unspecified').upper()}"
        fields["reasoning"] = tools_pb2.ReasoningOptions(
            effort=tools_pb2.ReasoningEffort.Value(value), budget_tokens=budget
        )
    return request, fields, parse


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

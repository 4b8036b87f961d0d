"""The tools, structured output and reasoning of a Generate request to domain values, and the reasoning and
tool-call deltas to frames; JSON Schemas are parsed and checked by the core (core/json_schema.py)."""

from __future__ import annotations

from warpcore.server.core.domain import (
    ChatMessage,
    ReasoningChunk,
    Role,
    TextChunk,
    ToolCallDelta,
)
from warpcore.server.core.json_schema import parse_schema
from warpcore.server.core.rules import require
from warpcore.server.core.tool_rules import check_tool_count
from warpcore.server.core.tooling import (
    ReasoningBlock,
    ReasoningEffort,
    ReasoningOptions,
    ResponseFormat,
    ResponseFormatKind,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
)
from warpcore.server.rpc import translate_extras
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

_ROLES = {
    pb.ROLE_SYSTEM: Role.SYSTEM,
    pb.ROLE_USER: Role.USER,
    pb.ROLE_ASSISTANT: Role.ASSISTANT,
    pb.ROLE_TOOL: Role.TOOL,
}
_TOOL_CHOICES = {
    tools_pb2.TOOL_CHOICE_MODE_UNSPECIFIED: ToolChoiceMode.AUTO,
    tools_pb2.TOOL_CHOICE_MODE_AUTO: ToolChoiceMode.AUTO,
    tools_pb2.TOOL_CHOICE_MODE_NONE: ToolChoiceMode.NONE,
    tools_pb2.TOOL_CHOICE_MODE_REQUIRED: ToolChoiceMode.REQUIRED,
    tools_pb2.TOOL_CHOICE_MODE_NAMED: ToolChoiceMode.NAMED,
}
_RESPONSE_FORMATS = {
    tools_pb2.RESPONSE_FORMAT_TYPE_UNSPECIFIED: ResponseFormatKind.TEXT,
    tools_pb2.RESPONSE_FORMAT_TYPE_TEXT: ResponseFormatKind.TEXT,
    tools_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT: ResponseFormatKind.JSON_OBJECT,
    tools_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA: ResponseFormatKind.JSON_SCHEMA,
}
_EFFORTS = {
    tools_pb2.REASONING_EFFORT_MINIMAL: ReasoningEffort.MINIMAL,
    tools_pb2.REASONING_EFFORT_LOW: ReasoningEffort.LOW,
    tools_pb2.REASONING_EFFORT_MEDIUM: ReasoningEffort.MEDIUM,
    tools_pb2.REASONING_EFFORT_HIGH: ReasoningEffort.HIGH,
    tools_pb2.REASONING_EFFORT_NONE: ReasoningEffort.NONE,
    tools_pb2.REASONING_EFFORT_XHIGH: ReasoningEffort.XHIGH,
    tools_pb2.REASONING_EFFORT_MAX: ReasoningEffort.MAX,
}
_OBJECT_SCHEMA = '{"type": "object"}'


def chat_message(index: int, message: pb.ChatMessage) -> ChatMessage:
    role = _ROLES.get(message.role)
    require(
        role is not None, f"messages[{index}].role", "role must be ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT or ROLE_TOOL"
    )
    assert role is not None
    return ChatMessage(
        role,
        message.content,
        tool_calls=tuple(ToolCall(call.id, call.name, call.arguments) for call in message.tool_calls),
        tool_call_id=message.tool_call_id,
        is_error=message.is_error,
        reasoning=tuple(ReasoningBlock(block.text, block.signature, block.redacted) for block in message.reasoning),
        parts=translate_extras.content_parts(message.parts, f"messages[{index}]"),
        cache=translate_extras.cache_breakpoint(message.cache_breakpoint, f"messages[{index}].cache_breakpoint"),
    )


def tools(request: pb.GenerateRequest) -> tuple[Tool, ...]:
    check_tool_count(len(request.tools))  # before any schema is parsed
    return tuple(
        Tool(
            tool.name,
            tool.description,
            parse_schema(tool.parameters_json or _OBJECT_SCHEMA, f"tools[{i}].parameters"),
            strict=tool.strict,
            cache=translate_extras.cache_breakpoint(tool.cache_breakpoint, f"tools[{i}].cache_breakpoint"),
        )
        for i, tool in enumerate(request.tools)
    )


def tool_choice(request: pb.GenerateRequest) -> ToolChoice:
    mode = _TOOL_CHOICES.get(request.tool_choice.mode)
    require(mode is not None, "tool_choice.mode", "unknown tool choice mode")
    assert mode is not None
    return ToolChoice(mode, request.tool_choice.name, tuple(request.tool_choice.allowed_tools))


def response_format(options: pb.GenerationOptions) -> ResponseFormat | None:
    if not options.HasField("response_format"):
        return None
    wire = options.response_format
    kind = _RESPONSE_FORMATS.get(wire.type)
    require(kind is not None, "response_format", "unknown response format type")
    assert kind is not None
    schema = parse_schema(wire.schema_json, "response_format.schema") if wire.schema_json else None
    return ResponseFormat(kind, schema, wire.name, wire.strict)


def reasoning(options: pb.GenerationOptions) -> ReasoningOptions | None:
    if not options.HasField("reasoning"):
        return None
    wire = options.reasoning
    effort = None
    if wire.effort != tools_pb2.REASONING_EFFORT_UNSPECIFIED:
        effort = _EFFORTS.get(wire.effort)
        require(effort is not None, "reasoning.effort", "unknown reasoning effort")
    budget = wire.budget_tokens if wire.HasField("budget_tokens") else None
    if effort is None and budget is None and not wire.adaptive:
        return None  # a message of defaults asks for nothing (a binary client may always fill it)
    return ReasoningOptions(effort, budget, wire.adaptive)


def delta_frame(delta: TextChunk | ReasoningChunk | ToolCallDelta) -> pb.GenerateResponse:
    if isinstance(delta, TextChunk):
        return translate_extras.text_delta(delta)
    if isinstance(delta, ToolCallDelta):
        call = tools_pb2.ToolCallDelta(index=delta.index, id=delta.id, name=delta.name, arguments=delta.arguments)
        return pb.GenerateResponse(tool_call=call)
    if isinstance(delta, ReasoningChunk):
        reasoning = tools_pb2.ReasoningDelta(text=delta.text, signature=delta.signature, redacted=delta.redacted)
        return pb.GenerateResponse(reasoning=reasoning)
    raise TypeError(f"not a delta: {delta!r}")

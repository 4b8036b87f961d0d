"""The rules of tools, tool-call turns, response formats and reasoning options in one generation request."""

from __future__ import annotations

import re

from warpcore.server.core.bounds import (
    MAX_TOOL_ARGUMENTS_BYTES,
    MAX_TOOLS,
    MIN_THINKING_BUDGET,
    TOOL_NAME_PATTERN,
    quoted,
)
from warpcore.server.core.domain import (
    ChatMessage,
    GenerationParams,
    Role,
)
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.json_schema import parse_json
from warpcore.server.core.rules import require
from warpcore.server.core.tooling import (
    ReasoningEffort,
    ResponseFormatKind,
    ToolChoiceMode,
)

_TOOL_NAME = re.compile(TOOL_NAME_PATTERN)


def is_tool_name(name: str) -> bool:
    """Whether a tool may be named `name`."""
    return _TOOL_NAME.fullmatch(name) is not None


def check_name(name: str, field: str) -> None:
    require(is_tool_name(name), field, "a name must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -")


def check_tool_count(count: int) -> None:
    """Checked by front doors before they parse the tools' schemas, and again with the rest of the request."""
    require(count <= MAX_TOOLS, "tools", f"at most {MAX_TOOLS} tools")


def check_tools(params: GenerationParams) -> frozenset[str]:
    """The tools and the tool choice; returns the tools' names."""
    check_tool_count(len(params.tools))
    names: set[str] = set()
    for index, tool in enumerate(params.tools):
        check_name(tool.name, f"tools[{index}].name")
        require(tool.name not in names, f"tools[{index}].name", f"two tools are named {quoted(tool.name)}")
        names.add(tool.name)
        require(
            tool.parameters.get("type", "object") == "object",
            f"tools[{index}].parameters",
            'a tool\'s parameters must be an object schema ("type": "object")',
        )
    choice = params.tool_choice
    if choice.mode in (ToolChoiceMode.REQUIRED, ToolChoiceMode.NAMED):
        # Not named by the mode's value: each dialect has its own name for it (OpenAI's required, Anthropic's any).
        require(bool(names), "tool_choice", "tool_choice: forcing a tool call needs tools; give them, or unset it")
    if choice.mode is ToolChoiceMode.NAMED:
        require(choice.name in names, "tool_choice.name", f"no tool named {quoted(choice.name)} in tools")
    else:
        require(not choice.name, "tool_choice.name", "a tool name goes with the named tool choice only")
    _check_allowed(choice.mode, choice.allowed, names)
    return frozenset(names)


def _check_allowed(mode: ToolChoiceMode, allowed: tuple[str, ...], names: set[str]) -> None:
    require(
        not allowed or mode in (ToolChoiceMode.AUTO, ToolChoiceMode.REQUIRED),
        "tool_choice.allowed_tools",
        "allowed tools go with the auto and required tool choices only",
    )
    for index, name in enumerate(allowed):
        field = f"tool_choice.allowed_tools[{index}]"
        require(name in names, field, f"no tool named {quoted(name)} in tools")
        require(name not in allowed[:index], field, f"{quoted(name)} is allowed twice")


def check_conversation(messages: tuple[ChatMessage, ...], tool_names: frozenset[str]) -> None:
    """Tool calls and results in an order every provider accepts: each call of an assistant turn answered by one
    tool turn right after it (in any order), before any other turn."""
    seen: set[str] = set()
    pending: dict[str, int] = {}  # unanswered call ids -> the index of the assistant turn that made them
    for index, message in enumerate(messages):
        field = f"messages[{index}]"
        if message.role is Role.TOOL:
            require(bool(message.tool_call_id), f"{field}.tool_call_id", "a tool turn needs the id of its call")
            require(
                message.tool_call_id in pending,
                f"{field}.tool_call_id",
                f"no call with id {quoted(message.tool_call_id)} waits for a result: a tool turn answers a call of"
                " the assistant turn right before it, once",
            )
            del pending[message.tool_call_id]
        else:
            if pending:
                call_id, turn = next(iter(pending.items()))
                raise InvalidArgumentError(
                    f"call {quoted(call_id)} of messages[{turn}] has no tool result before this turn", field=field
                )
            # Each rule's field is spelt only where it may refuse: a request may hold a hundred thousand turns.
            if message.tool_call_id or message.is_error:
                require(not message.tool_call_id, f"{field}.tool_call_id", "only a tool turn answers a call")
                require(not message.is_error, f"{field}.is_error", "only a tool turn can be an error")
        if message.role is not Role.ASSISTANT and (message.tool_calls or message.reasoning):
            require(not message.tool_calls, f"{field}.tool_calls", "only an assistant turn carries tool calls")
            require(not message.reasoning, f"{field}.reasoning", "only an assistant turn carries reasoning")
        for number, call in enumerate(message.tool_calls):
            call_field = f"{field}.tool_calls[{number}]"
            require(bool(call.id), f"{call_field}.id", "a tool call needs an id")
            require(call.id not in seen, f"{call_field}.id", f"two tool calls have id {quoted(call.id)}")
            seen.add(call.id)
            pending[call.id] = index
            require(call.name in tool_names, f"{call_field}.name", f"no tool named {quoted(call.name)} in tools")
            arguments = parse_json(call.arguments, f"{call_field}.arguments", MAX_TOOL_ARGUMENTS_BYTES, "arguments")
            require(isinstance(arguments, dict), f"{call_field}.arguments", "arguments must be a JSON object")
        for number, block in enumerate(message.reasoning):
            if block.redacted:
                require(
                    bool(block.signature) and not block.text,
                    f"{field}.reasoning[{number}]",
                    "a redacted reasoning block carries its data in signature, and no text",
                )
    if pending:
        call_id, turn = next(iter(pending.items()))
        field = f"messages[{turn}]"
        raise InvalidArgumentError(f"call {quoted(call_id)} of {field} has no tool result", field=field)


def check_output(params: GenerationParams, max_tokens_limit: int) -> None:
    """The response format and the reasoning options."""
    response_format = params.response_format
    if response_format is not None:
        if response_format.kind is ResponseFormatKind.JSON_SCHEMA:
            require(response_format.schema is not None, "response_format.schema", "json_schema needs a schema")
            if response_format.name:
                check_name(response_format.name, "response_format.name")
        else:
            require(response_format.schema is None, "response_format.schema", "a schema goes with json_schema only")
            require(not response_format.name, "response_format.name", "a name goes with json_schema only")
    reasoning = params.reasoning
    if reasoning is not None and reasoning.effort is ReasoningEffort.NONE:
        no_thinking = reasoning.budget_tokens is None and not reasoning.adaptive
        require(no_thinking, "reasoning.effort", "effort none asks for no reasoning: give no budget, nor adaptive")
    if reasoning is not None and reasoning.budget_tokens is not None:
        require(
            not reasoning.adaptive,
            "reasoning.adaptive",
            "adaptive thinking sets its own budget: give budget_tokens or adaptive, not both",
        )
        budget = reasoning.budget_tokens
        if not 1 <= budget < params.max_tokens:
            message = (
                f"budget_tokens must be at least 1 and less than {_budget_limit(params, budget, max_tokens_limit)}"
            )
            raise InvalidArgumentError(message, field="reasoning.budget_tokens")


def _budget_limit(params: GenerationParams, budget: int, max_tokens_limit: int) -> str:
    """The max_tokens a budget is compared with, and what the client can do: where the server's own limit leaves no
    max_tokens above the budget, advice to raise max_tokens could not be followed."""
    if budget >= max_tokens_limit:
        limit = (
            f"max_tokens, which this server's --max-tokens-limit of {max_tokens_limit} caps: give a budget_tokens"
            f" below {max_tokens_limit}"
        )
        if max_tokens_limit <= MIN_THINKING_BUDGET:
            # Nor could advice to lower the budget, on a backend whose smallest is this large: say so, whichever
            # backend the request is for (the check precedes the model's), rather than lead to its refusal.
            limit += (
                f" (an Anthropic model's thinking needs a budget of {MIN_THINKING_BUDGET} or more, so a max_tokens"
                f" above {MIN_THINKING_BUDGET}, which this server's --max-tokens-limit of {max_tokens_limit} forbids)"
            )
        return limit
    if params.max_tokens_defaulted:
        return (
            f"max_tokens: the request gives none, so the server's default of {params.max_tokens} applies (give a"
            " max_tokens greater than budget_tokens)"
        )
    return f"max_tokens ({params.max_tokens})"

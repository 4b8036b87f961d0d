"""OpenAI Responses API requests into domain generations: `instructions` and the `input` items (messages, function
calls, their outputs, and reasoning handed back) as the conversation, function tools, tool choice, `text.format` and
reasoning effort. Stateless: what needs a stored response or conversation is refused, naming the field."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from warpcore.server.core.bounds import quoted
from warpcore.server.core.cache_rules import check_cache_marks
from warpcore.server.core.domain import GenerationParams, Role
from warpcore.server.core.tool_rules import check_tool_count
from warpcore.server.core.tooling import ReasoningOptions, Tool, ToolChoice, ToolChoiceMode
from warpcore.server.http import openai_ignored
from warpcore.server.http.fields import (
    Json,
    array,
    at,
    boolean,
    integer,
    mapping,
    number,
    objects,
    refuse,
    text,
    unsupported,
)
from warpcore.server.http.inner_members import REASONING, RESPONSES_TOOL, RESPONSES_TOOL_CHOICE, TEXT
from warpcore.server.http.members import OPENAI_INPUT_TOKENS, OPENAI_RESPONSES
from warpcore.server.http.openai_options import (
    allowed_tools_choice,
    choice_mode,
    function_tool,
    reasoning_options,
    response_format_at,
)
from warpcore.server.http.parts import numbered
from warpcore.server.http.responses_input import Conversation, input_items

FIELD_NAMES = {
    "model_id": "model",
    "messages": "input",
    "max_tokens": "max_output_tokens",
    "reasoning.effort": "reasoning.effort",
    "response_format": "text.format",
    "response_format.schema": "text.format.schema",
    "response_format.name": "text.format.name",
    "verbosity": "text.verbosity",
    "logprobs": "include",
}
"""Domain field paths as this dialect names them."""
_ECHOED = (
    *("instructions", "max_output_tokens", "temperature", "top_p", "top_logprobs", "max_tool_calls"),
    *("user", "safety_identifier", "prompt_cache_key"),
)
"""Request members a response repeats as they came (null when absent): the request's own settings and identifiers.
The members that report what was done with the request say what this server did instead (_echo)."""
_INCLUDABLE = (
    *("message.output_text.logprobs", "reasoning.encrypted_content", "message.input_image.image_url"),
    *("file_search_call.results", "web_search_call.results", "web_search_call.action.sources"),
    *("computer_call_output.output.image_url", "code_interpreter_call.outputs"),
)
"""What `include` may ask for, as the API lists it."""


@dataclass(frozen=True)
class ResponsesRequest:
    model: str
    params: GenerationParams
    stream: bool
    field_names: dict[str, str]
    """The path in this request of each domain message part, by its domain path."""
    echo: dict[str, Any]
    """The request's settings as the response object repeats them."""


def responses_request(body: Json, default_max_tokens: int, *, counting: bool = False) -> ResponsesRequest:
    """A Responses request; or, `counting`, the body of an input_tokens one (its prompt, no generation settings)."""
    (OPENAI_INPUT_TOKENS if counting else OPENAI_RESPONSES).check(body)
    openai_ignored.check_responses(body)
    logprobs = _include(body)
    listed = objects(body, "tools")
    check_tool_count(len(listed))  # before any of their schemas is checked
    conversation = Conversation(tuple(_tool(path, tool) for path, tool in listed))
    instructions = text(body, "instructions")
    if instructions:
        conversation.text_turn(Role.SYSTEM, instructions, "instructions")
    if isinstance(body.get("input"), str):
        conversation.text_turn(Role.USER, body["input"], "input")
    for path, item in input_items(body):
        conversation.item(path, item)
    conversation.check_reasoning_followed()
    check_cache_marks(conversation.marks)
    messages, part_names = numbered(conversation.turns)
    tool_choice, choice_names = _tool_choice(body.get("tool_choice"))
    field_names = conversation.field_names(part_names) | choice_names
    settings = mapping(body, "text") or {}
    TEXT.check(settings, "text")
    response_format = mapping(settings, "format", "text")
    reasoning = mapping(body, "reasoning") or {}
    REASONING.check(reasoning, "reasoning")
    effort, summary = text(reasoning, "effort", "reasoning"), text(reasoning, "summary", "reasoning")
    max_tokens = integer(body, "max_output_tokens")
    top_logprobs = integer(body, "top_logprobs") or 0
    params = GenerationParams(
        prompt=None,
        messages=messages,
        max_tokens=default_max_tokens if max_tokens is None else max_tokens,
        max_tokens_defaulted=max_tokens is None,
        temperature=number(body, "temperature"),
        top_p=number(body, "top_p"),
        tools=conversation.tools,
        tool_choice=tool_choice,
        parallel_tool_calls=boolean(body, "parallel_tool_calls") is not False,
        response_format=None if response_format is None else response_format_at(response_format, "text.format", None),
        reasoning=_reasoning(effort, summary),
        verbosity=text(settings, "verbosity", "text"),
        # `top_logprobs` alone asks for them too: the tokens they rank are given with their own.
        logprobs=logprobs or top_logprobs > 0,
        top_logprobs=top_logprobs,
        continue_last=False,  # this API answers after a last assistant message (an Anthropic model refuses to)
        continue_last_read=True,
    )
    return ResponsesRequest(
        model=text(body, "model", required=True) or "",
        params=params,
        stream=boolean(body, "stream") is True,
        # Log-probabilities asked for by top_logprobs alone: a refusal of them names the member that asked.
        field_names=field_names if logprobs or not top_logprobs else {**field_names, "logprobs": "top_logprobs"},
        echo=_echo(body, params, settings),
    )


def _include(body: Json) -> bool:
    """Whether `include` asks for the text's log-probabilities. Its other values ask for the outputs of OpenAI's
    built-in tools (none ever runs here) and the encrypted reasoning (always given here, when the backend signed it)."""
    included = array(body, "include") or []
    for index, value in enumerate(included):
        if value not in _INCLUDABLE:
            raise refuse(
                at("include", index), f"unknown value {quoted(value)}; expected one of {', '.join(_INCLUDABLE)}"
            )
    return "message.output_text.logprobs" in included


def _tool(path: str, tool: Json) -> Tool:
    kind = text(tool, "type", path, required=True)
    if kind != "function":
        raise unsupported(at(path, "type"), f"a tool of type {quoted(kind)}", "function tools are")
    RESPONSES_TOOL.check(tool, path)
    return function_tool(tool, path)


def _tool_choice(choice: object) -> tuple[ToolChoice, dict[str, str]]:
    """The tool choice, and the path in the request of each tool it allows, by its domain path."""
    if choice is None:
        return ToolChoice(), {}
    if isinstance(choice, str):
        return choice_mode(choice), {}
    if not isinstance(choice, dict):
        raise refuse("tool_choice", "must be a string or an object")
    kind = text(choice, "type", "tool_choice", required=True)
    if kind == "allowed_tools":
        return allowed_tools_choice(choice, nested=False)
    if kind != "function":
        raise unsupported(
            "tool_choice.type",
            f"tool_choice of type {quoted(kind)}",
            "auto, none, required, a function or allowed_tools are",
        )
    RESPONSES_TOOL_CHOICE.check(choice, "tool_choice")
    return ToolChoice(ToolChoiceMode.NAMED, text(choice, "name", "tool_choice", required=True) or ""), {}


def _reasoning(effort_name: str | None, summary: str | None) -> ReasoningOptions | None:
    """`reasoning.effort`; and a `summary` asked for, which asks to see the reasoning: what asks a Claude model to
    think (adaptive thinking, its reasoning items carrying its thinking whole), where OpenAI's reasoning models think
    unasked. The reasoning a backend shows is always its summary here."""
    effort = None if effort_name is None else reasoning_options(effort_name, "reasoning.effort")
    if summary is None or (effort is not None and effort.off):
        return effort
    return dataclasses.replace(effort or ReasoningOptions(), adaptive=True)


def _echo(body: Json, params: GenerationParams, settings: Json) -> dict[str, Any]:
    """The settings a response object repeats: those of the request, and what this server did of the others (nothing
    stored, nothing truncated, nothing in the background, no service tier nor cache retention chosen: OpenAI's
    response reports the ones used, not the ones asked for, and the chat route's `service_tier` is null too)."""
    reasoning = body.get("reasoning") or {}
    return {
        **{name: body.get(name) for name in _ECHOED},
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": params.parallel_tool_calls,
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "text": {"format": {"type": "text"}, **settings},
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "previous_response_id": None,
        "truncation": "disabled",
        "store": False,
        "background": False,
        "service_tier": None,
        "prompt_cache_retention": None,
    }

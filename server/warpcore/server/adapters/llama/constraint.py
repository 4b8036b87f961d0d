"""What a generation's output must be, as a grammar: JSON for a response format, tool calls for tools."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from warpcore.server.adapters.llama.schema_check import SchemaInliner
from warpcore.server.adapters.llama.schema_grammar import json_grammar, tool_calls_grammar
from warpcore.server.core.bounds import quoted
from warpcore.server.core.domain import (
    GenerationParams,
)
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.tooling import (
    ResponseFormatKind,
    ToolChoiceMode,
)


@dataclass(frozen=True)
class Constraint:
    grammar: str
    """GBNF, root rule `root`."""
    field: str
    """The request field the grammar comes from, for errors."""
    lazy: bool = False
    """Free text until a tool call opens, the grammar from there on."""
    tool_calls: bool = False
    """The output holds tool calls in the Hermes format (tool_calls.py)."""


def uses_tools(params: GenerationParams) -> bool:
    return bool(params.tools) and params.tool_choice.mode is not ToolChoiceMode.NONE


def shapes_output(params: GenerationParams) -> bool:
    """Whether the request asks for more than free text: only then is constraint_for worth a thread hop."""
    response_format = params.response_format
    json_output = response_format is not None and response_format.kind is not ResponseFormatKind.TEXT
    return json_output or uses_tools(params)


def check_servable(params: GenerationParams) -> None:
    """Refuse what no local model does, naming the field: at once, and for a count of the prompt as for its
    generation (the same request is counted only where it would be generated)."""
    if params.verbosity is not None:  # nothing in a chat template says how long to answer
        raise InvalidArgumentError("verbosity is not supported by local models; leave it unset", field="verbosity")
    if _reasons(params):
        raise InvalidArgumentError(
            # Not begun with the field's name, which would read as the field: "thinking options ..." at the door.
            "local models take no reasoning options: their chat templates have no thinking format",
            field="reasoning",
        )
    response_format = params.response_format
    kind = response_format.kind if response_format is not None else ResponseFormatKind.TEXT
    if params.continues_last(api_continues=False) and (kind is not ResponseFormatKind.TEXT or uses_tools(params)):
        # The grammar would make the continuation a whole JSON value or call of its own, after the text given.
        raise InvalidArgumentError(
            "a local model cannot continue a last assistant message under a response format or tools; drop one",
            field="messages",
        )


async def output_constraint(params: GenerationParams, vocabulary_size: int) -> Constraint | None:
    """The grammar of the output (None: free text) of a model with `vocabulary_size` tokens, built off the model's
    thread so that a large schema never stalls the generations decoding there; generate and count_tokens both ask
    for it, so that they refuse the same requests."""
    _check_token_ids(params, vocabulary_size)
    return await asyncio.to_thread(constraint_for, params) if shapes_output(params) else None


def _check_token_ids(params: GenerationParams, vocabulary_size: int) -> None:
    """Refuse a logit bias on a token the model does not have."""
    if any(token >= vocabulary_size for token, _ in params.logit_bias):
        raise InvalidArgumentError(
            f"logit_bias: this model's token ids go from 0 to {vocabulary_size - 1}",
            field="logit_bias",
            reason="TOKEN_OUT_OF_RANGE",
        )


def constraint_for(params: GenerationParams) -> Constraint | None:
    """The grammar the generation samples under, None for free text. Built off the model's worker: its cost is
    bounded by the GRAMMAR_* caps of core/bounds.py, and refusals name the request field."""
    response_format = params.response_format
    kind = response_format.kind if response_format is not None else ResponseFormatKind.TEXT
    if uses_tools(params):
        if kind is not ResponseFormatKind.TEXT:
            raise InvalidArgumentError(
                "a local model cannot enforce a response format and tools at once; set tool_choice to none or drop"
                " response_format",
                field="response_format",
            )
        return _tools_constraint(params)
    if response_format is None or kind is ResponseFormatKind.TEXT:
        return None
    if kind is ResponseFormatKind.JSON_OBJECT:
        return Constraint(json_grammar(None, "response_format"), "response_format")
    field = "response_format.schema"
    return Constraint(json_grammar(SchemaInliner().inline(response_format.schema, field), field), field)


def _tools_constraint(params: GenerationParams) -> Constraint:
    """Under auto, free text until the model opens a call, in the format its template declares or, for a template
    with none, the one the prompt then describes (chat.py); the grammar completes the call from there."""
    choice = params.tool_choice
    chosen = [(index, tool) for index, tool in enumerate(params.tools) if choice.may_call(tool)]
    if not chosen:
        raise InvalidArgumentError(
            f"tool_choice names {quoted(choice.name)}, which is not among tools", field="tool_choice"
        )
    inliner = SchemaInliner()
    schemas = [(tool.name, inliner.inline(tool.parameters, f"tools[{index}].parameters")) for index, tool in chosen]
    several = params.parallel_tool_calls and choice.mode is not ToolChoiceMode.NAMED
    grammar = tool_calls_grammar(schemas, several=several, field="tools")
    return Constraint(grammar, "tools", lazy=choice.mode is ToolChoiceMode.AUTO, tool_calls=True)


def _reasons(params: GenerationParams) -> bool:
    """Reasoning is asked for; effort none alone is honoured as it is, a local model not reasoning."""
    return params.reasoning is not None and not params.reasoning.off

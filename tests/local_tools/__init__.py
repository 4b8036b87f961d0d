"""Tools on local models: required and named tool choice constrained by grammar to valid calls of declared tools,
streamed as tool-call deltas; auto, with the tools shown by the template or, where it has no tool-call format, in words;
tool turns rendered through the template; what a model cannot do refused naming the field.

What the modules of this package share: the tools offered (weather and search) and their seeds, a Hermes-style chat
template, a request with a tool choice, and the check that a result's calls are valid. The fixture (the engine) is in
`conftest`; the tests in `test_*`."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from tests.local_engine import Outcome
from warpcore.server.core.domain import ChatMessage, FinishReason, GenerationParams, Role
from warpcore.server.core.tooling import Tool, ToolCall, ToolChoice

WEATHER = Tool(
    "get_weather",
    "The weather in a city",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 12},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "days"],
        "additionalProperties": False,
    },
)
SEARCH = Tool(
    "search-web",
    "Search the web",
    {
        "type": "object",
        "properties": {"query": {"type": "string", "minLength": 1, "maxLength": 20}, "top": {"type": "boolean"}},
        "required": ["query"],
    },
)
TOOLS = (WEATHER, SEARCH)
SAMPLES = 10
# A Hermes-style template (as Qwen's and Hermes' GGUFs carry): tools shown to the model, calls and results as turns.
HERMES_TEMPLATE = (
    "{{ bos_token }}{% if tools %}<system>Tools: {% for tool in tools %}{{ tool | tojson }}{% endfor %}"
    " Call one as <tool_call>{...}</tool_call>\n{% endif %}"
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}"
    "{% for call in m.tool_calls or [] %}<tool_call>\n{{ call.function | tojson }}\n</tool_call>{% endfor %}"
    "{% if m.tool_call_id %} (result of {{ m.tool_call_id }}){% endif %}\n{% endfor %}<assistant>"
)


def ask(choice: ToolChoice, *, seed: int = 0, parallel_calls: bool = False, **options: Any) -> GenerationParams:
    options = {"max_tokens": 300, "temperature": 1.0, **options}
    return GenerationParams(
        prompt=None,
        messages=(ChatMessage(Role.USER, "what is the weather in the world"),),
        seed=seed,
        tools=TOOLS,
        tool_choice=choice,
        parallel_tool_calls=parallel_calls,
        **options,
    )


def assert_valid_calls(
    outcome: Outcome, allowed: tuple[Tool, ...], *, may_be_cut: bool = False, text_before: bool = False
) -> tuple[ToolCall, ...]:
    """The result's calls are calls of `allowed` tools with valid arguments, and the deltas spell them out. With
    `may_be_cut`, max_tokens may have cut a further call short: its deltas came, it is not among the calls."""
    assert outcome.result is not None
    finish = outcome.result.finish
    cut = may_be_cut and finish.reason is FinishReason.LENGTH
    assert cut or finish.reason is FinishReason.TOOL_CALLS, (finish, outcome.deltas)
    assert bool(outcome.text) is text_before
    assert finish.tool_calls
    schemas = {tool.name: tool.parameters for tool in allowed}
    for index, call in enumerate(finish.tool_calls):
        jsonschema.validate(json.loads(call.arguments), schemas[call.name])
        assert call.id.startswith("call_")
        mine = [delta for delta in outcome.deltas if delta.index == index]
        assert (mine[0].id, mine[0].name) == (call.id, call.name)  # named on its first delta
        assert all(not delta.id and not delta.name for delta in mine[1:])
        assert "".join(delta.arguments for delta in mine) == call.arguments
        assert len(mine) > 2  # the arguments streamed as they decoded, not in one piece at the end
    assert len({call.id for call in finish.tool_calls}) == len(finish.tool_calls)
    assert {delta.index for delta in outcome.deltas} == set(range(len(finish.tool_calls) + cut))
    return finish.tool_calls

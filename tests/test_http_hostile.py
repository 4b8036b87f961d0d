"""Arbitrary JSON in either dialect's request: a domain request or a refusal naming a field, never a crash."""

from __future__ import annotations

import functools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from warpcore.server.core.bounds import DEFAULT_MAX_TOKENS
from warpcore.server.core.errors import WarpcoreError
from warpcore.server.http.anthropic_request import messages_request
from warpcore.server.http.openai_request import chat_request

# Every key either dialect reads, so that the generated bodies reach deep into the parsers.
KEYS = [
    *("model", "messages", "role", "content", "type", "text", "name", "id", "input", "arguments", "function"),
    *("tools", "tool_choice", "tool_calls", "tool_call_id", "tool_use_id", "is_error", "parameters", "input_schema"),
    *("response_format", "json_schema", "schema", "strict", "output_config", "format", "effort", "thinking"),
    *("budget_tokens", "signature", "data", "thinking_blocks", "reasoning_content", "reasoning_effort", "system"),
    *("stop", "stop_sequences", "seed", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k"),
    *(
        "stream",
        "stream_options",
        "include_usage",
        "n",
        "logprobs",
        "top_logprobs",
        "parallel_tool_calls",
        "modalities",
    ),
    "disable_parallel_tool_use",
]
WORDS = st.sampled_from(
    [
        *("user", "assistant", "system", "tool", "developer", "text", "tool_use", "tool_result", "thinking", "f"),
        *("redacted_thinking", "auto", "any", "none", "required", "json_schema", "json_object", "enabled", "low"),
    ]
)
SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True) | WORDS | st.text(max_size=5)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), JSON, max_size=8))
def test_any_body_parses_or_is_refused_with_a_field(body: dict[str, Any]) -> None:
    refusals: list[WarpcoreError] = []
    for parse in (functools.partial(chat_request, default_max_tokens=DEFAULT_MAX_TOKENS), messages_request):
        try:
            parse(body)
        except WarpcoreError as error:
            refusals.append(error)
    assert all(error.field for error in refusals), [error.message for error in refusals]

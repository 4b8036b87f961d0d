"""Tool calls, reasoning with its signatures, and JSON output translated by the HTTP door on the way in: the same
conversation in either dialect gives the same domain request, tool errors and turns that mix tool results with text
included (the way out, domain events through each official SDK, is in test_http_translation.py)."""

from __future__ import annotations

from warpcore.server.core.bounds import DEFAULT_MAX_TOKENS
from warpcore.server.core.domain import ChatMessage, Role
from warpcore.server.core.tooling import ReasoningBlock, ResponseFormatKind, ToolCall, ToolChoice, ToolChoiceMode
from warpcore.server.http.anthropic_request import messages_request
from warpcore.server.http.openai_request import chat_request

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_the_same_tool_loop_in_either_dialect_is_the_same_domain_request() -> None:
    openai_body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
                "thinking_blocks": [{"type": "thinking", "thinking": "Use the tool.", "signature": "sig"}],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather now",
                    "parameters": WEATHER_SCHEMA,
                    "strict": True,
                },
            },
            {"type": "function", "function": {"name": "get_time"}},
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": WEATHER_SCHEMA}},
        "max_tokens": 50,
    }
    anthropic_body = {
        "model": "m",
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Use the tool.", "signature": "sig"},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"}]},
        ],
        "tools": [
            {"name": "get_weather", "description": "Weather now", "input_schema": WEATHER_SCHEMA, "strict": True},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        "output_config": {"format": {"type": "json_schema", "schema": WEATHER_SCHEMA}},
        "max_tokens": 50,
    }
    from_openai = chat_request(openai_body, DEFAULT_MAX_TOKENS).params
    from_anthropic = messages_request(anthropic_body).params
    assert from_openai.messages[0] == ChatMessage(Role.SYSTEM, "Be brief.")
    assert from_anthropic.system == "Be brief."
    assert (
        from_openai.messages[1:]
        == from_anthropic.messages
        == (
            ChatMessage(Role.USER, "Weather in Paris?"),
            ChatMessage(
                Role.ASSISTANT,
                "",
                tool_calls=(ToolCall("call_1", "get_weather", '{"city":"Paris"}'),),
                reasoning=(ReasoningBlock("Use the tool.", "sig"),),
            ),
            ChatMessage(Role.TOOL, "sunny", tool_call_id="call_1"),
        )
    )
    assert from_openai.tools == from_anthropic.tools
    assert [tool.strict for tool in from_openai.tools] == [True, False]
    assert from_openai.tool_choice == from_anthropic.tool_choice == ToolChoice(ToolChoiceMode.NAMED, "get_weather")
    assert from_openai.parallel_tool_calls is from_anthropic.parallel_tool_calls is False
    for params in (from_openai, from_anthropic):
        assert params.response_format is not None
        assert params.response_format.kind is ResponseFormatKind.JSON_SCHEMA
        assert params.response_format.schema == WEATHER_SCHEMA


def test_tool_errors_and_mixed_turns_are_kept() -> None:
    params = messages_request(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "a",
                            "content": [{"type": "text", "text": "boom"}],
                            "is_error": True,
                        },
                        {"type": "tool_result", "tool_use_id": "b", "content": "ok"},
                        {"type": "text", "text": "go on"},
                    ],
                }
            ],
        }
    ).params
    assert params.messages == (
        ChatMessage(Role.TOOL, "boom", tool_call_id="a", is_error=True),
        ChatMessage(Role.TOOL, "ok", tool_call_id="b"),
        ChatMessage(Role.USER, "go on"),
    )

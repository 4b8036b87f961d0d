"""Shared by the tests/test_tools_bad_input_*.py modules: the time a refusal may take, and a tool, a call, an assistant
turn of calls and a tool result as gRPC messages."""

from __future__ import annotations

import json
from typing import Any

from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

TIME_LIMIT = 2.0  # seconds: every refusal here is a parse and a walk of at most a few hundred kilobytes


def tool(parameters: Any, name: str = "t") -> tools_pb2.Tool:
    text = parameters if isinstance(parameters, str) else json.dumps(parameters)
    return tools_pb2.Tool(name=name, parameters_json=text)


def call(call_id: str = "c1", arguments: str = '{"city": "Bern"}', name: str = "get_weather") -> tools_pb2.ToolCall:
    return tools_pb2.ToolCall(id=call_id, name=name, arguments=arguments)


def assistant(*calls: tools_pb2.ToolCall) -> pb.ChatMessage:
    return pb.ChatMessage(role=pb.ROLE_ASSISTANT, tool_calls=calls)


def result(call_id: str = "c1") -> pb.ChatMessage:
    return pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id=call_id, content="ok")

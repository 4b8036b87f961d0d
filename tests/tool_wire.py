"""Tool-call and reasoning streams scripted in each provider's wire events, and a Generate stream read whole."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakes.base import FakeUpstream, JsonObject
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    import grpc

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 50}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city"],
}
WEATHER = tools_pb2.Tool(
    name="get_weather", description="The weather in a city", parameters_json=json.dumps(WEATHER_SCHEMA)
)
CLOCK = tools_pb2.Tool(name="get_time")  # no parameters: an object schema without properties


@dataclass(frozen=True)
class Call:
    """A call begins: its index, id and tool name."""

    index: int
    id: str
    name: str


@dataclass(frozen=True)
class Args:
    """The next piece of call `index`'s arguments."""

    index: int
    piece: str


@dataclass(frozen=True)
class Text:
    text: str


Step = Call | Args | Text


def script_steps(upstream: FakeUpstream, steps: list[Step]) -> tuple[list[dict[str, Any]], str]:
    """The events of `steps` in the upstream's wire protocol, and its finish reason for tool calls."""
    if isinstance(upstream, FakeOpenAI):
        return [_openai(step) for step in steps], "tool_calls"
    events: list[dict[str, Any]] = []
    blocks: dict[object, int] = {}  # a call's index, or "text" -> its content block index

    def block(key: object, start: dict[str, Any]) -> int:
        if key not in blocks:
            blocks[key] = len(blocks)
            events.append({"type": "content_block_start", "index": blocks[key], "content_block": start})
        return blocks[key]

    for step in steps:
        if isinstance(step, Call):
            block(step.index, {"type": "tool_use", "id": step.id, "name": step.name, "input": {}})
        elif isinstance(step, Args):
            delta = {"type": "input_json_delta", "partial_json": step.piece}
            events.append({"type": "content_block_delta", "index": blocks[step.index], "delta": delta})
        else:
            index = block("text", {"type": "text", "text": ""})
            delta = {"type": "text_delta", "text": step.text}
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
    events += [{"type": "content_block_stop", "index": index} for index in blocks.values()]
    return events, "tool_use"


def _openai(step: Step) -> dict[str, Any]:
    if isinstance(step, Text):
        return {"content": step.text}
    if isinstance(step, Call):
        call = {"index": step.index, "id": step.id, "type": "function"}
        return {"tool_calls": [{**call, "function": {"name": step.name, "arguments": ""}}]}
    return {"tool_calls": [{"index": step.index, "function": {"arguments": step.piece}}]}


@dataclass
class Streamed:
    """Everything one Generate stream sent."""

    text: str = ""
    calls: list[tools_pb2.ToolCallDelta] = field(default_factory=list)
    reasoning: list[tools_pb2.ReasoningDelta] = field(default_factory=list)
    result: pb.GenerateResult | None = None

    def arguments(self, index: int) -> str:
        return "".join(delta.arguments for delta in self.calls if delta.index == index)


async def stream(call: grpc.aio.UnaryStreamCall[pb.GenerateRequest, pb.GenerateResponse]) -> Streamed:
    streamed = Streamed()
    async for frame in call:
        assert streamed.result is None, "a frame arrived after the result frame"
        kind = frame.WhichOneof("frame")
        if kind == "delta":
            streamed.text += frame.delta.text
        elif kind == "tool_call":
            streamed.calls.append(frame.tool_call)
        elif kind == "reasoning":
            streamed.reasoning.append(frame.reasoning)
        else:
            streamed.result = frame.result
    assert streamed.result is not None
    return streamed


def chat(
    *messages: pb.ChatMessage, tools: tuple[tools_pb2.Tool, ...] = (WEATHER,), **fields: Any
) -> pb.GenerateRequest:
    """A Generate request to the model `tests.hosted.load` loads."""
    return pb.GenerateRequest(model_id="m", messages=messages, tools=tools, **fields)


def user(text: str) -> pb.ChatMessage:
    return pb.ChatMessage(role=pb.ROLE_USER, content=text)


def weather_model(body: JsonObject) -> Script:
    """Stands in for an OpenAI model in the README's examples: calls the first tool about Paris until it has a
    result, answers a response format with a city, anything else with text."""
    tools, last = body.get("tools"), body["messages"][-1]
    if tools and last["role"] != "tool":
        name = tools[0]["function"]["name"]
        start = {"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": ""}}
        piece = {"index": 0, "function": {"arguments": '{"city": "Paris"}'}}
        return Script(events=[{"tool_calls": [start]}, {"tool_calls": [piece]}], finish_reason="tool_calls")
    if body.get("response_format"):
        return Script(chunks=['{"name": "Paris", ', '"population": 2102650}'])
    return Script(chunks=[f"It is {last['content']}."])

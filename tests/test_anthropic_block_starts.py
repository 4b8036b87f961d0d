"""What a compatible Anthropic server puts in a content block's start rather than in deltas (Claude starts text and
thinking empty and a call's input as {}): read as the anthropic SDK's accumulator reads it, nothing dropped."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.script import Script
from tests.hosted import load
from tests.tool_wire import WEATHER, chat, stream, user

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


def _block(index: int, block: dict[str, Any], *deltas: dict[str, Any]) -> list[dict[str, Any]]:
    middle = [{"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas]
    start = {"type": "content_block_start", "index": index, "content_block": block}
    return [start, *middle, {"type": "content_block_stop", "index": index}]


THINKING = {"type": "thinking", "thinking": "Given ", "signature": ""}
EVENTS = [
    *_block(
        0, {"type": "thinking", "thinking": "Given ", "signature": ""}, {"type": "thinking_delta", "thinking": "x"}
    ),
    *_block(1, {"type": "text", "text": "Pre-"}, {"type": "text_delta", "text": "hello"}),
    *_block(2, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Zürich"}}),
    *_block(
        3,
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "stale"}},
        {"type": "input_json_delta", "partial_json": '{"city": "Bern"}'},  # streamed: replaces the start's
    ),
]


async def test_text_thinking_and_input_in_a_blocks_start_are_kept(
    stub: Stub, anthropic_upstream: FakeAnthropic
) -> None:
    await load(stub, anthropic_upstream)
    anthropic_upstream.script = Script(events=EVENTS, finish_reason="tool_use")
    answered = await stream(stub.Generate(chat(user("Weather?"), tools=(WEATHER,))))
    assert "".join(delta.text for delta in answered.reasoning) == "Given x"
    assert answered.text == "Pre-hello"
    assert answered.result is not None
    calls = [(call.id, json.loads(call.arguments)) for call in answered.result.tool_calls]
    assert calls == [("toolu_1", {"city": "Zürich"}), ("toolu_2", {"city": "Bern"})]

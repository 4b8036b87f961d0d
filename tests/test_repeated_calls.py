"""A model that does not end its turn after its tool calls (Gemma, a base model) writes them again and again: on a
llama.cpp model, a call that repeats an earlier one ends the calls, and is neither streamed nor kept, so that the
answer is its calls (finish TOOL_CALLS), not a cut at the token budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.test_same_answer import gemma_path, gemma_stub, load_gemma  # noqa: F401 - the Gemma fixtures
from tests.tool_wire import WEATHER, stream, user
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import tools_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

BUDGET = 256


@pytest.mark.parametrize(
    ("question", "cities"),
    [("Weather in Paris?", ["Paris"]), ("Weather in Paris and Rome?", ["Paris", "Rome"])],
)
async def test_a_repeated_call_ends_the_calls_well_inside_the_budget(
    gemma_stub: Stub,  # noqa: F811 - the imported fixture
    gemma_path: tuple[Path, str],  # noqa: F811 - the imported fixture
    question: str,
    cities: list[str],
) -> None:
    await load_gemma(gemma_stub, gemma_path[1], "gemma", parallel=1)
    request = pb.GenerateRequest(
        model_id="gemma",
        messages=[user(question)],
        tools=[WEATHER],
        tool_choice=tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_REQUIRED),
        options=pb.GenerationOptions(max_tokens=BUDGET, temperature=0),
    )
    streamed = await stream(gemma_stub.Generate(request))
    assert streamed.result is not None
    result = streamed.result
    assert result.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    assert result.usage.completion_tokens < BUDGET
    assert [json.loads(call.arguments)["city"] for call in result.tool_calls] == cities
    # What streamed is the result's calls, and nothing of the repeat that ended them.
    assert sorted({delta.index for delta in streamed.calls}) == list(range(len(cities)))
    streamed_calls = [json.loads(streamed.arguments(index)) for index in range(len(cities))]
    assert streamed_calls == [json.loads(call.arguments) for call in result.tool_calls]


async def test_a_budget_that_runs_out_in_the_repeat_still_ends_with_the_calls(
    gemma_stub: Stub,  # noqa: F811 - the imported fixture
    gemma_path: tuple[Path, str],  # noqa: F811 - the imported fixture
) -> None:
    """A tester's finding: with max_tokens between the first call's end and the repeat's, the answer ended LENGTH,
    its one call complete."""
    await load_gemma(gemma_stub, gemma_path[1], "gemma", parallel=1)
    request = pb.GenerateRequest(
        model_id="gemma",
        messages=[user("Weather in Paris?")],
        tools=[WEATHER],
        tool_choice=tools_pb2.ToolChoice(mode=tools_pb2.TOOL_CHOICE_MODE_REQUIRED),
        options=pb.GenerationOptions(max_tokens=BUDGET, temperature=0),
    )
    whole = await stream(gemma_stub.Generate(request))
    assert whole.result is not None
    used = whole.result.usage.completion_tokens  # the call, then its repeat
    for cut_at in (used - 2, used - 8):
        request.options.max_tokens = cut_at
        cut = await stream(gemma_stub.Generate(request))
        assert cut.result is not None
        assert cut.result.finish_reason == pb.FINISH_REASON_TOOL_CALLS, cut_at
        assert [(call.name, call.arguments) for call in cut.result.tool_calls] == [
            (call.name, call.arguments) for call in whole.result.tool_calls
        ]
        # Nothing of the repeat streamed, also when the cut fell in its closing line.
        assert {delta.index for delta in cut.calls} == {0}, cut_at
        assert cut.arguments(0) == whole.result.tool_calls[0].arguments


# A tool as the Python SDK declares `def get_weather(city: str) -> str`, and a loop's second turn: Gemma calls again.
CITY_WEATHER = tools_pb2.Tool(
    name="get_weather",
    description="The current weather in a city.",
    parameters_json=json.dumps({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
)
AFTER_RESULT = [
    user("What is the weather in Paris?"),
    pb.ChatMessage(
        role=pb.ROLE_ASSISTANT,
        tool_calls=[tools_pb2.ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')],
    ),
    pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id="call_1", content="Sunny, 24 C in Paris"),
]


@pytest.mark.parametrize("parallel", [1, 4])
async def test_a_budget_that_runs_out_between_the_calls_ends_with_the_calls(
    gemma_stub: Stub,  # noqa: F811 - the imported fixture
    gemma_path: tuple[Path, str],  # noqa: F811 - the imported fixture
    parallel: int,
) -> None:
    """An outside tester's finding: max_tokens running out after a whole call, on the line break or the next call's
    opening marker (which may yet begin a repeat), ended LENGTH, where a cut inside the repeat ends TOOL_CALLS. A cut
    in the call itself is still a cut."""
    await load_gemma(gemma_stub, gemma_path[1], "gemma", parallel=parallel)
    request = pb.GenerateRequest(
        model_id="gemma",
        messages=AFTER_RESULT,
        tools=[CITY_WEATHER],
        options=pb.GenerationOptions(max_tokens=BUDGET, temperature=0),
    )
    whole = await stream(gemma_stub.Generate(request))
    assert whole.result is not None
    assert whole.result.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    (call,) = [(call.name, call.arguments) for call in whole.result.tool_calls]
    used = whole.result.usage.completion_tokens
    assert used % 2 == 1  # the call, a line break, and the call again token for token (the repeat that ends them)
    call_end = used // 2
    # In the call's closing line, then at its end, after the line break, and in the next call's opening marker.
    for cut_at, finish in (
        (call_end - 1, pb.FINISH_REASON_LENGTH),
        (call_end, pb.FINISH_REASON_TOOL_CALLS),
        (call_end + 1, pb.FINISH_REASON_TOOL_CALLS),
        (call_end + 3, pb.FINISH_REASON_TOOL_CALLS),
    ):
        request.options.max_tokens = cut_at
        cut = await stream(gemma_stub.Generate(request))
        assert cut.result is not None
        assert (cut.result.finish_reason, cut.result.usage.completion_tokens) == (finish, cut_at)
        assert [(call.name, call.arguments) for call in cut.result.tool_calls] == [call]
        # What streamed is the result's call, and nothing of what followed it.
        assert {delta.index for delta in cut.calls} == {0}
        assert (cut.calls[0].name, cut.arguments(0)) == call
